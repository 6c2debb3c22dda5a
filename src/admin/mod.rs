//! The private admin listener: `/api/v1/…` (JSON, described by `docs/openapi.yaml`) and
//! `/metrics`, bearer-token protected.
//!
//! With `server.admin_token` set every request needs `Authorization: Bearer TOKEN`;
//! without it the listener must be on loopback (configuration refuses anything else).

pub(crate) mod activity;
pub(crate) mod archive;
pub(crate) mod deliveries;
pub(crate) mod events;
mod export;
pub(crate) mod flow;
pub(crate) mod json;
pub(crate) mod paging;
mod rekey;
mod reload;
pub(crate) mod replays;
pub(crate) mod search;
pub(crate) mod stream;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use http::{StatusCode, header};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::http_error::ApiError;
use crate::store::Store;

#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn Store>,
    pub token: Option<Secret>,
    /// Wakes the delivery worker when a retry or a resume is asked for.
    pub wake: Arc<tokio::sync::Notify>,
    /// Wakes the preparer when a route is resumed (a paused route's deliveries wait
    /// unprepared).
    pub prepare_wake: Arc<tokio::sync::Notify>,
    pub pauses: Arc<crate::deliver::pause::Pauses>,
    /// The configuration in force (sources, routes, destinations), and its reload.
    pub live: Arc<crate::live::Live>,
    /// Turns true when the server shuts down: open event streams end then.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Runs replay jobs.
    pub replayer: Arc<crate::replay::Replayer>,
    /// Runs the rekey job.
    pub rekeyer: Arc<crate::rekey::Rekeyer>,
    /// The store's size against `storage.max_size`.
    pub capacity: Arc<crate::size_cap::Capacity>,
}

impl AdminState {
    /// The configured sources' names, in order.
    pub fn source_names(&self) -> Vec<String> {
        self.live.current().config.sources.keys().cloned().collect()
    }

    /// The configured destinations' names, in order.
    pub fn destination_names(&self) -> Vec<String> {
        self.live
            .current()
            .config
            .destinations
            .keys()
            .cloned()
            .collect()
    }

    /// The configured routes' names, in file order.
    pub fn route_names(&self) -> Vec<String> {
        let running = self.live.current();
        running
            .config
            .routes
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }
}

pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/v1/events", get(events::list))
        .route("/api/v1/events/{id}", get(events::show))
        .route("/api/v1/export", get(export::export))
        .route("/api/v1/stream", get(stream::stream))
        .route("/api/v1/replays", get(replays::list).post(replays::create))
        .route("/api/v1/replays/{id}", get(replays::show))
        .route("/api/v1/replays/{id}/cancel", post(replays::cancel))
        .route("/api/v1/rejected", get(events::list_rejected))
        .route("/api/v1/rejected/{id}", get(events::show_rejected))
        .route("/api/v1/deliveries", get(deliveries::list))
        .route("/api/v1/deliveries/{id}", get(deliveries::show))
        .route("/api/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route("/api/v1/deliveries/{id}/discard", post(deliveries::discard))
        .route("/api/v1/dlq", get(deliveries::dead))
        .route("/api/v1/dlq/retry", post(deliveries::retry_dead))
        .route("/api/v1/dlq/discard", post(deliveries::discard_dead))
        .route("/api/v1/activity", get(activity::activity))
        .route("/api/v1/sources", get(flow::sources))
        .route("/api/v1/routes", get(flow::routes))
        .route("/api/v1/routes/{name}/{action}", post(flow::pause_route))
        .route("/api/v1/destinations", get(flow::destinations))
        .route(
            "/api/v1/destinations/{name}/{action}",
            post(flow::pause_destination),
        )
        .route("/api/v1/reload", post(reload::reload))
        .route("/api/v1/rekey", get(rekey::show).post(rekey::start))
        .route("/api/v1/archive", get(archive::list))
        .route("/metrics", get(crate::metrics::render))
        // Unknown addresses under the API answer in JSON, after the token check (so
        // without the token nothing under /api tells what exists).
        .route("/api", any(not_found))
        .route("/api/", any(not_found))
        .route("/api/{*rest}", any(not_found))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see the API reference in the README",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state.clone());
    // The dashboard (merged in beside this by the server) has its own login: a
    // session cookie, not the bearer token.
    Router::new()
        .merge(api)
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { not_found().await })
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "not_found",
        "no such endpoint; the admin API lives under /api/v1, the dashboard at /",
    )
}

async fn require_token(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = &state.token else {
        return Ok(next.run(request).await);
    };
    // The scheme name is case-insensitive (RFC 9110); the token is not.
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
        .map(|v| &v[7..])
        .unwrap_or_default();
    if token_matches(presented, token) {
        Ok(next.run(request).await)
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the admin token as `Authorization: Bearer TOKEN` (server.admin_token)",
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        ))
    }
}

/// Whether `presented` is the admin token. Digests are compared, so that neither the
/// content nor the length leaks through timing.
pub(crate) fn token_matches(presented: &[u8], token: &Secret) -> bool {
    let matches = sha256(presented).ct_eq(&sha256(token.expose()));
    bool::from(matches) && !presented.is_empty()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}
