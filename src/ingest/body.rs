//! Reading a request body with a size cap and a deadline, from the first byte.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::http_error::ApiError;

/// Rejects a declared `Content-Length` over `max` before any body byte is read.
pub fn check_declared_length(headers: &HeaderMap, max: u64) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(len) if len > max => Err(too_large(max)),
        _ => Ok(()),
    }
}

/// Reads at most `max` bytes within `deadline`; a longer body is 413, a slower one 408.
pub async fn read_capped(body: Body, max: u64, deadline: Duration) -> Result<Bytes, ApiError> {
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(deadline, collect).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the body did not arrive within {}s; send it at once",
                deadline.as_secs_f64()
            ),
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(max)),
        Ok(Err(e)) => Err(ApiError::bad_request(
            "body_unreadable",
            format!("the body could not be read: {e}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "the body is larger than this source accepts ({max} bytes); raise the source's max_body if this is expected"
        ),
    )
}
