//! The in-flight body budget: bytes held in memory across all requests being read or
//! committed are bounded by `server.max_inflight_bytes`.
//!
//! A request reserves its declared `Content-Length` (or its source's `max_body` when the
//! length is unknown) before any body byte is read, and holds the reservation until it
//! has been answered. When the budget is spent the sender gets 503 with `Retry-After`:
//! a sender spike costs senders a retry, never the process its memory.

use http::{HeaderMap, StatusCode, header};
use tokio::sync::OwnedSemaphorePermit;

use super::IngestState;
use crate::http_error::ApiError;

/// Reserves room for one request's body; the returned permit releases it when dropped.
pub fn reserve(
    state: &IngestState,
    headers: &HeaderMap,
    max_body: u64,
) -> Result<OwnedSemaphorePermit, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let bytes = declared.unwrap_or(max_body).min(max_body);
    // A request larger than the whole budget may still pass when it is alone.
    let kib = u32::try_from(bytes.div_ceil(1024).max(1))
        .unwrap_or(u32::MAX)
        .min(state.inflight_kib);
    state.inflight.clone().try_acquire_many_owned(kib).map_err(|_| {
        tracing::warn!(
            "in-flight body budget spent (server.max_inflight_bytes); answering 503"
        );
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "forebay is holding as many request bodies as it is allowed to; nothing was stored, retry later",
        )
        .with_header(
            header::RETRY_AFTER,
            http::HeaderValue::from(state.retry_after_secs),
        )
    })
}
