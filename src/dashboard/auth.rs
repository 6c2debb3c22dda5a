//! `/login` and `/logout`, when `server.admin_token` is set.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{StatusCode, header};
use serde::Deserialize;

use super::DashboardState;
use super::session::Session;
use super::view::render;

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginPage<'a> {
    next: &'a str,
    failed: bool,
}

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
    next: Option<String>,
}

/// Where to go after logging in: a path of this dashboard, never another site.
fn local(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

pub async fn login_page(State(state): State<DashboardState>, Query(q): Query<Next>) -> Response {
    if !state.has_login() {
        return Redirect::to("/").into_response();
    }
    render(
        StatusCode::OK,
        &LoginPage {
            next: local(q.next.as_deref()),
            failed: false,
        },
    )
}

pub async fn login(
    State(state): State<DashboardState>,
    headers: http::HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    let Some(token) = &state.admin.token else {
        return Redirect::to("/").into_response();
    };
    let next = local(form.next.as_deref());
    // A login form posted from another site is refused like any other cross-site form.
    let cross_site = !super::session::same_origin(&headers);
    if cross_site || !crate::admin::token_matches(form.token.as_bytes(), token) {
        tracing::warn!("dashboard login refused");
        return render(StatusCode::UNAUTHORIZED, &LoginPage { next, failed: true });
    }
    let (_, cookie) = state.sessions.open();
    let mut response = Redirect::to(next).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

pub async fn logout(
    State(state): State<DashboardState>,
    axum::Extension(session): axum::Extension<Session>,
) -> Response {
    let cookie = state.sessions.close(&session);
    let to = if state.has_login() { "/login" } else { "/" };
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}
