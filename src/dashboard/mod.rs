//! The dashboard: server-rendered pages on the admin listener at `/`, for the person on
//! call: what arrived, which deliveries fail and why, retry, discard, pause, replay.
//!
//! Each page calls the admin API's own handlers (`crate::admin`) and renders what they
//! return with a compiled template (`templates/dashboard/`), so the dashboard can never
//! show or do something the API would not. No script is needed to use it; a small one
//! (`assets/dashboard.js`) adds the live tail and select-all. Pages are sent with a
//! strict Content-Security-Policy, and everything stored is escaped by the templates.

mod archive;
mod auth;
mod deliveries;
mod events;
mod flow;
mod live;
mod overview;
mod replays;
pub mod session;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, header};

use crate::admin::AdminState;
use session::Sessions;

#[derive(Clone)]
pub struct DashboardState {
    pub admin: AdminState,
    pub sessions: Arc<Sessions>,
}

impl DashboardState {
    /// Whether there is a token to log in with (and so a session to log out of).
    fn has_login(&self) -> bool {
        self.admin.token.is_some()
    }
}

/// The dashboard's routes, to merge into the admin router.
pub fn router(admin: AdminState) -> Router {
    let state = DashboardState {
        admin,
        sessions: Arc::new(Sessions::default()),
    };
    let pages = Router::new()
        .route("/", get(overview::page))
        .route("/events", get(events::list))
        .route("/events/{id}", get(events::show))
        .route("/rejected", get(events::rejected_list))
        .route("/rejected/{id}", get(events::rejected_show))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{id}", get(deliveries::show))
        .route("/deliveries/{id}/retry", post(deliveries::retry))
        .route("/deliveries/{id}/discard", post(deliveries::discard))
        .route(
            "/dead-letters",
            get(deliveries::dead).post(deliveries::act_on_dead),
        )
        .route("/destinations", get(flow::page))
        .route(
            "/destinations/{name}/{action}",
            post(flow::pause_destination),
        )
        .route("/routes/{name}/{action}", post(flow::pause_route))
        .route("/replays", get(replays::list).post(replays::start))
        .route("/replays/{id}", get(replays::show))
        .route("/replays/{id}/cancel", post(replays::cancel))
        .route("/archive", get(archive::page))
        .route("/live", get(live::page))
        .route("/live/stream", get(live::stream))
        .route("/logout", post(auth::logout))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            session::guard,
        ));
    Router::new()
        .merge(pages)
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/assets/style.css", get(style))
        .route("/assets/dashboard.js", get(script))
        .layer(middleware::from_fn(protect))
        .with_state(state)
}

/// Headers on every dashboard response: only this listener's own scripts, styles and
/// images run or load, no framing, no caching of pages that hold stored data. The
/// referrer policy is `same-origin`, not `no-referrer`: under the latter browsers send
/// `Origin: null` with the dashboard's own forms, and the origin check refuses them.
async fn protect(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", include_str!("assets/style.css"))
}

async fn script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/dashboard.js"),
    )
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        text,
    )
        .into_response()
}
