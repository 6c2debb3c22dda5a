//! The request as it arrived, before anyone has vouched for it.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method};

/// A fully read inbound request on `/in/{source}`. Verifiers look at it; only
/// [`super::verify::Verified`] may be stored as an event.
#[derive(Debug, Clone)]
pub struct Unverified {
    pub source: String,
    pub method: Method,
    /// Path as received, e.g. `/in/stripe`.
    pub path: String,
    /// Raw query string without the `?`, if any.
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// Raw body bytes, exactly as received.
    pub body: Bytes,
    pub remote_addr: Option<SocketAddr>,
    /// Receive time, milliseconds since the Unix epoch.
    pub received_at_ms: i64,
}

impl Unverified {
    /// The request of `source` from its head `parts`, with `body` as read.
    pub fn new(
        source: &str,
        parts: http::request::Parts,
        body: Bytes,
        remote_addr: Option<SocketAddr>,
        received_at_ms: i64,
    ) -> Self {
        Self {
            source: source.to_owned(),
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            body,
            remote_addr,
            received_at_ms,
        }
    }

    /// First value of a header as UTF-8 text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Receive time in whole seconds since the Unix epoch, for timestamp tolerance checks.
    pub fn received_at_secs(&self) -> i64 {
        self.received_at_ms.div_euclid(1000)
    }
}

/// Headers that carry the sender's credentials for forebay itself, lower-case. They are
/// never passed on: not to handlers, not to expressions, not by `forebay listen`.
/// `X-Gitlab-Token`, Flutterwave's `verif-hash` and Vapi's `x-vapi-secret` are shared
/// secrets sent as they are: a handler that saw one could pose as the sender.
pub const CREDENTIAL_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-gitlab-token",
    "verif-hash",
    "x-vapi-secret",
];

/// Whether `name` (lower-case) carries the sender's credentials for forebay.
pub fn is_credential(name: &str) -> bool {
    CREDENTIAL_HEADERS.contains(&name)
}
