//! What one send came to, whatever the destination kind.

use std::time::Duration;

use crate::store::delivery::RESPONSE_CAPTURE;

/// The result of one attempt at sending.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// The destination accepted the payload (2xx, or exit code 0).
    pub ok: bool,
    /// HTTP status, or the exit code of a command.
    pub status: Option<u16>,
    /// Why it failed, for people: timeout, connection refused, HTTP 503…
    pub error: Option<String>,
    /// `Retry-After` on the response, when there was one.
    pub retry_after: Option<Duration>,
    /// Response headers in wire form (HTTP), or empty.
    pub response_headers: Vec<u8>,
    /// Response body (HTTP) or output (exec), capped.
    pub response_body: Vec<u8>,
}

/// Appends to `buf` without passing the capture cap.
pub fn capture(buf: &mut Vec<u8>, chunk: &[u8]) {
    let room = RESPONSE_CAPTURE.saturating_sub(buf.len());
    buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
}
