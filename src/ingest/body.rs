//! Reading a request body with a size cap and a deadline, from the first byte.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::budget::{Budget, Charge};
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

/// Reads at most `max` bytes within `deadline`, charging `budget` as bytes arrive; a
/// longer body is 413, a slower one 408, one the budget cannot hold 503.
pub async fn read_capped(
    body: Body,
    max: u64,
    deadline: Duration,
    budget: &Budget,
) -> Result<(Bytes, Charge), ApiError> {
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let mut body = Limited::new(body, limit);
    let mut charge = Charge::default();
    let read = async {
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut len = 0;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue; // trailers carry no body bytes
            };
            len += data.len();
            budget.charge(&mut charge, len).map_err(BodyError::Budget)?;
            chunks.push(data);
        }
        // One chunk (the common case) is returned as is; several are joined once.
        Ok::<_, BodyError>(match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.swap_remove(0),
            _ => Bytes::from(chunks.concat()),
        })
    };
    let bytes = match tokio::time::timeout(deadline, read).await {
        Err(_elapsed) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the body did not arrive within {}s; send it at once",
                deadline.as_secs_f64()
            ),
        )),
        Ok(Err(BodyError::Budget(e))) => Err(e),
        Ok(Err(BodyError::Read(e))) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(too_large(max))
        }
        Ok(Err(BodyError::Read(e))) => Err(ApiError::bad_request(
            "body_unreadable",
            format!("the body could not be read: {e}"),
        )),
        Ok(Ok(bytes)) => Ok(bytes),
    }?;
    Ok((bytes, charge))
}

enum BodyError {
    Read(Box<dyn std::error::Error + Send + Sync>),
    Budget(ApiError),
}

impl From<Box<dyn std::error::Error + Send + Sync>> for BodyError {
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        BodyError::Read(e)
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
