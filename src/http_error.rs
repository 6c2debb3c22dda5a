//! One JSON error shape for both listeners: `{"error": {"code": "...", "message": "..."}}`.
//!
//! `code` is stable for scripts; `message` names the problem and the fix for people.
//! Internal causes are logged, never sent.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra response headers (`Retry-After`, `Allow`).
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// The store could not serve the request; the client should retry later.
    pub fn unavailable(error: &crate::store::StoreError, retry_after_secs: u64) -> Self {
        crate::throttled!(warn, error = %crate::error_chain::Chain(error), "store unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the event store cannot accept this right now; nothing was stored, retry later",
        )
        .with_header(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs.max(1)),
        )
    }

    /// A store failure on a read, for the admin API.
    pub fn from_store(error: &crate::store::StoreError) -> Self {
        if let crate::store::StoreError::Sealed(e) = error {
            crate::throttled!(error, error = %e, "stored data does not open");
            return Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "sealed",
                format!("the stored data does not open: {e}"),
            );
        }
        if error.is_unavailable() {
            Self::unavailable(error, 1)
        } else {
            crate::throttled!(error, error = %crate::error_chain::Chain(error), "store error");
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the store failed to answer; see the server log",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
