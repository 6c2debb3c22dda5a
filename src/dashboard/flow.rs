//! `/destinations`: every destination (breaker, limits, backlog, dead) and every route
//! (filter, transform, ordering key), each with pause and resume.

use askama::Template;
use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;

use super::DashboardState;
use super::session::Session;
use super::view::{Frame, api_error, render};
use crate::admin::flow::{DestinationJson, RouteJson};

#[derive(Template)]
#[template(path = "dashboard/destinations.html")]
struct FlowPage {
    page: Frame,
    destinations: Vec<DestinationJson>,
    routes: Vec<RouteJson>,
}

pub async fn page(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> Response {
    let admin = || State(state.admin.clone());
    let destinations = match crate::admin::flow::destinations(admin()).await {
        Ok(d) => d.0.data,
        Err(e) => return api_error(e),
    };
    let routes = match crate::admin::flow::routes(admin()).await {
        Ok(r) => r.0.data,
        Err(e) => return api_error(e),
    };
    render(
        StatusCode::OK,
        &FlowPage {
            page: Frame::new("destinations", &session, state.has_login()),
            destinations,
            routes,
        },
    )
}

pub async fn pause_destination(
    State(state): State<DashboardState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    back(crate::admin::flow::pause_destination(State(state.admin.clone()), path).await)
}

pub async fn pause_route(
    State(state): State<DashboardState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    back(crate::admin::flow::pause_route(State(state.admin.clone()), path).await)
}

fn back(done: Result<axum::Json<serde_json::Value>, crate::http_error::ApiError>) -> Response {
    match done {
        Ok(_) => Redirect::to("/destinations").into_response(),
        Err(e) => api_error(e),
    }
}
