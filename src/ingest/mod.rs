//! The public ingest listener: `/in/{source}`, `/healthz`, `/readyz`.
//!
//! A request is read with caps, verified, given its dedup key, and committed with its
//! deliveries; the sender hears 2xx only after the commit. **Ingest never waits on
//! delivery**: it writes rows and returns.

pub mod body;
pub mod budget;
pub mod dedup;
pub mod edge_limit;
mod receive;
pub mod redact;
pub mod request;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{any, get};
use http::StatusCode;
use tokio::sync::Notify;

use crate::http_error::ApiError;
use crate::live::Live;
use crate::store::Store;

/// What the ingest handlers share.
#[derive(Clone)]
pub struct IngestState {
    /// The sources and `jq:` and `js:` dedup keys in force; each request reads them once.
    pub live: Arc<Live>,
    pub store: Arc<dyn Store>,
    /// Deadline for reading a body.
    pub read_timeout: Duration,
    /// `Retry-After` seconds on 503.
    pub retry_after_secs: u64,
    /// Body bytes that may be held in memory at once.
    pub budget: budget::Budget,
    /// Most bytes kept of a rejected request's body.
    pub rejected_body_limit: usize,
    /// Wakes the delivery worker after new deliveries are committed.
    pub wake: Arc<Notify>,
    /// Wakes the preparer after deliveries with expressions to run are committed.
    pub prepare_wake: Arc<Notify>,
    /// Whether the store is at `storage.max_size` (then nothing new is taken in).
    pub capacity: Arc<crate::size_cap::Capacity>,
}

impl IngestState {
    /// `[server]` and `[storage]` settings are read once: they change only with a restart.
    pub fn new(
        live: Arc<Live>,
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
        prepare_wake: Arc<Notify>,
        capacity: Arc<crate::size_cap::Capacity>,
    ) -> Self {
        let running = live.current();
        let config = &running.config;
        let retry_after_secs = config.storage.retry_after.0.as_secs().max(1);
        Self {
            live: live.clone(),
            store,
            read_timeout: config.server.read_timeout.0,
            retry_after_secs,
            budget: budget::Budget::new(config.server.max_inflight_bytes, retry_after_secs),
            rejected_body_limit: config.storage.rejected_body_limit,
            wake,
            prepare_wake,
            capacity,
        }
    }
}

/// The ingest router.
pub fn router(state: IngestState) -> Router {
    Router::new()
        .route("/in/{source}", any(receive::receive))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            ApiError::not_found("not_found", "nothing here; webhooks go to /in/{source}")
        })
        .with_state(state)
}

/// The router of a `--role deliver` process: health and readiness, and a 503 on `/in/*`
/// so that a load balancer sends senders to an ingest process.
pub fn deliver_only_router(store: Arc<dyn Store>) -> Router {
    let ready_store = store.clone();
    Router::new()
        .route(
            "/in/{source}",
            any(|| async {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_an_ingest_process",
                    "this forebay process only delivers (--role deliver); send webhooks to an ingest process",
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let store = ready_store.clone();
                async move { ready(store.as_ref()).await }
            }),
        )
}

/// Ready when the store answers and its schema is current.
pub async fn readyz(State(state): State<IngestState>) -> Result<&'static str, ApiError> {
    ready(state.store.as_ref()).await
}

async fn ready(store: &dyn Store) -> Result<&'static str, ApiError> {
    store.ready().await.map_err(|e| {
        tracing::warn!(error = %crate::error_chain::Chain(&e), "not ready");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the store is not reachable or not migrated",
        )
    })?;
    Ok("ready\n")
}
