//! `/live`: new events as they are committed, from the same server-sent event stream
//! as `GET /api/v1/stream` (here under the dashboard's session instead of the token).

use askama::Template;
use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::DashboardState;
use super::session::Session;
use super::view::{Frame, Lenient, api_error, render};
use crate::admin::stream::StreamParams;

#[derive(Template)]
#[template(path = "dashboard/live.html")]
struct LivePage {
    page: Frame,
    sources: Vec<String>,
    source: String,
    stream: String,
}

#[derive(Deserialize, Default)]
pub struct Pick {
    #[serde(default)]
    source: String,
}

pub async fn page(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Lenient(pick): Lenient<Pick>,
) -> Response {
    let mut stream = form_urlencoded::Serializer::new("/live/stream?".to_owned());
    if !pick.source.is_empty() {
        stream.append_pair("source", &pick.source);
    }
    render(
        StatusCode::OK,
        &LivePage {
            page: Frame::new("live", &session, state.has_login()),
            sources: state.admin.source_names(),
            source: pick.source,
            stream: stream.finish(),
        },
    )
}

pub async fn stream(
    State(state): State<DashboardState>,
    headers: HeaderMap,
    query: Result<Query<StreamParams>, QueryRejection>,
) -> Response {
    match crate::admin::stream::stream(State(state.admin.clone()), headers, query).await {
        Ok(events) => events.into_response(),
        Err(e) => api_error(e),
    }
}
