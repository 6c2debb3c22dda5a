//! `/login` and `/logout`, when `server.admin_token` is set.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use http::{StatusCode, header};
use serde::Deserialize;

use super::DashboardState;
use super::session::Session;
use super::view::{Lenient, render};

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginPage<'a> {
    next: &'a str,
    failed: bool,
}

#[derive(Deserialize, Default)]
pub struct Next {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
    next: Option<String>,
}

/// Where to go after logging in: a path of this dashboard, never another site. Browsers
/// drop tabs and newlines from a `Location` and read `\` as `/`, so `/\t/evil.example`
/// would lead off the site; anything but a plain path and query goes to `/`.
fn local(next: Option<&str>) -> &str {
    let plain = |n: &str| {
        n.is_ascii()
            && n.starts_with('/')
            && !n.starts_with("//")
            && !n
                .bytes()
                .any(|b| b == b'\\' || b.is_ascii_whitespace() || b.is_ascii_control())
            && n.parse::<http::uri::PathAndQuery>().is_ok()
    };
    match next {
        Some(n) if plain(n) => n,
        _ => "/",
    }
}

pub async fn login_page(
    State(state): State<DashboardState>,
    Lenient(q): Lenient<Next>,
) -> Response {
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

#[cfg(test)]
mod tests {
    use super::local;

    #[test]
    fn only_a_plain_path_of_this_site_is_a_place_to_go_after_login() {
        for fine in ["/", "/events?source=shop", "/deliveries/d_1?x=%2F%2Fa"] {
            assert_eq!(local(Some(fine)), fine);
        }
        for away in [
            "//evil.example/",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/x\r\nSet-Cookie: a=b",
            " /events",
            "https://evil.example/",
            "events",
            "/caf\u{e9}",
            "",
        ] {
            assert_eq!(local(Some(away)), "/", "{away:?}");
        }
        assert_eq!(local(None), "/");
    }
}
