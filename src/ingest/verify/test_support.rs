//! Test helpers: requests with chosen headers, body and receive time, and verifiers
//! built from the same TOML a user would write.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;

use super::{Rejection, Verifier, VerifyConfig};
use crate::ingest::request::Unverified;

/// A request received at `received_at_secs` (plus half a second, so that only whole
/// seconds matter). Header values are raw bytes, so tests can send non-UTF-8.
pub(super) fn request(headers: &[(&str, &[u8])], body: &[u8], received_at_secs: i64) -> Unverified {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_bytes(value).expect("test header value"),
        );
    }
    Unverified {
        source: "test".into(),
        method: Method::POST,
        path: "/in/test".into(),
        query: None,
        headers: map,
        body: Bytes::copy_from_slice(body),
        remote_addr: None,
        received_at_ms: received_at_secs * 1000 + 500,
    }
}

/// Reads the inside of `verify = { ... }`; the error is the message a user would see.
pub(super) fn parse(inline_table: &str) -> Result<VerifyConfig, String> {
    #[derive(Deserialize)]
    struct Source {
        verify: VerifyConfig,
    }
    toml::from_str::<Source>(&format!("verify = {{ {inline_table} }}"))
        .map(|source| source.verify)
        .map_err(|e| e.to_string())
}

/// Builds a verifier from the inside of `verify = { ... }`.
pub(super) fn build(inline_table: &str) -> Verifier {
    parse(inline_table)
        .expect("test config parses")
        .build()
        .expect("test config builds")
}

/// Runs `verifier` and keeps only the outcome, checking that a rejection hands the
/// request back untouched.
pub(super) fn outcome(verifier: &Verifier, req: Unverified) -> Result<(), Rejection> {
    let body = req.body.clone();
    match verifier.verify(req) {
        Ok(verified) => {
            assert_eq!(verified.request().body, body);
            Ok(())
        }
        Err(rejected) => {
            assert_eq!(rejected.request.body, body);
            Err(rejected.reason)
        }
    }
}
