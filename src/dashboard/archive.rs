//! `/archive`: the cold archive's objects, newest first (what `GET /api/v1/archive`
//! lists), with how to read them back.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::Response;
use http::StatusCode;

use super::DashboardState;
use super::session::Session;
use super::view::{Frame, api_error, render, size, when};
use crate::admin::archive::{ArchiveObjectJson, ArchiveParams};

#[derive(Template)]
#[template(path = "dashboard/archive.html")]
struct Page {
    page: Frame,
    /// `[storage.archive] to`, when an archive is configured.
    to: Option<String>,
    after: String,
    objects: Vec<Object>,
    next: Option<String>,
}

struct Object {
    o: ArchiveObjectJson,
    first: String,
    last: String,
    archived: String,
    size: String,
}

pub async fn page(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    query: Query<ArchiveParams>,
) -> Response {
    let listed = crate::admin::archive::list(State(state.admin.clone()), Ok(query)).await;
    let running = state.admin.live.current();
    let archive = running.config.storage.archive.as_ref();
    match listed {
        Ok(page) => render(
            StatusCode::OK,
            &Page {
                page: Frame::new("archive", &session, state.has_login()),
                to: archive.map(|a| a.url.clone()),
                after: archive.map_or_else(String::new, |a| {
                    humantime::format_duration(a.after.0).to_string()
                }),
                next: page.0.next_cursor,
                objects: page
                    .0
                    .data
                    .into_iter()
                    .map(|o| Object {
                        first: when(&o.first_received_at),
                        last: when(&o.last_received_at),
                        archived: when(&o.archived_at),
                        size: size(o.bytes),
                        o,
                    })
                    .collect(),
            },
        ),
        Err(e) => api_error(e),
    }
}
