//! `/replays`: start a replay of a search (or of named events) to the events' routes or
//! to one destination, list the jobs, and follow one while it runs.

use askama::Template;
use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use http::StatusCode;

use super::DashboardState;
use super::session::Session;
use super::view::{FormFields, Frame, api_error, render, when};
use crate::admin::replays::{ReplayJson, ReplayRequest};
use crate::admin::search::Filter;

#[derive(Template)]
#[template(path = "dashboard/replays.html")]
struct ListPage {
    page: Frame,
    sources: Vec<String>,
    destinations: Vec<String>,
    jobs: Vec<Job>,
}

/// A replay job, ready to show.
struct Job {
    j: ReplayJson,
    created_at: String,
    filter: String,
    /// Share of matched events queued so far, 0–100.
    percent: u64,
}

impl From<ReplayJson> for Job {
    fn from(j: ReplayJson) -> Self {
        let percent = if j.matched > 0 {
            u64::try_from(j.queued * 100 / j.matched)
                .unwrap_or(0)
                .min(100)
        } else if j.state == "running" {
            0
        } else {
            100
        };
        Self {
            created_at: when(&j.created_at),
            filter: j.filter.to_string(),
            percent,
            j,
        }
    }
}

pub async fn list(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> Response {
    match crate::admin::replays::list(State(state.admin.clone())).await {
        Ok(jobs) => render(
            StatusCode::OK,
            &ListPage {
                page: Frame::new("replays", &session, state.has_login()),
                sources: state.admin.source_names(),
                destinations: state.admin.destination_names(),
                jobs: jobs.0.data.into_iter().map(Job::from).collect(),
            },
        ),
        Err(e) => api_error(e),
    }
}

/// The replay form (from `/replays` or an event's page): the search fields, or
/// `event_ids`; `destination`, `rate`, and `all` to confirm replaying everything.
pub async fn start(State(state): State<DashboardState>, form: Bytes) -> Response {
    let form = FormFields::parse(&form);
    let field = |name: &str| form.one(name);
    let event_ids = form.all("event_ids");
    let request = ReplayRequest {
        filter: Filter {
            source: field("source"),
            since: field("since"),
            until: field("until"),
            status: field("status"),
            dedup_key: field("dedup_key"),
            q: field("q"),
        },
        event_ids: (!event_ids.is_empty()).then_some(event_ids),
        all: field("all").is_some(),
        destination: field("destination"),
        rate: field("rate"),
    };
    match crate::admin::replays::create(State(state.admin.clone()), Ok(axum::Json(request))).await {
        Ok((_, job)) => Redirect::to(&format!("/replays/{}", job.0.id)).into_response(),
        Err(e) => api_error(e),
    }
}

#[derive(Template)]
#[template(path = "dashboard/replay.html")]
struct JobPage {
    page: Frame,
    job: Job,
    deliveries: Vec<(String, i64)>,
}

pub async fn show(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    match crate::admin::replays::show(State(state.admin.clone()), path).await {
        Ok(job) => {
            let deliveries = job
                .0
                .deliveries
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            render(
                StatusCode::OK,
                &JobPage {
                    page: Frame::new("replays", &session, state.has_login()),
                    job: Job::from(job.0),
                    deliveries,
                },
            )
        }
        Err(e) => api_error(e),
    }
}

pub async fn cancel(
    State(state): State<DashboardState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    match crate::admin::replays::cancel(State(state.admin.clone()), path).await {
        Ok(job) => Redirect::to(&format!("/replays/{}", job.0.id)).into_response(),
        Err(e) => api_error(e),
    }
}
