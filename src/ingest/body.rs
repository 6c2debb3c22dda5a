//! Reading a request body with a size cap and a deadline, from the first byte.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::budget::{Budget, Charge};
use crate::http_error::ApiError;

/// The declared `Content-Length`, rejected if over `max` before any body byte is read.
pub fn check_declared_length(headers: &HeaderMap, max: u64) -> Result<Option<u64>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(len) if len > max => Err(too_large(max)),
        _ => Ok(declared),
    }
}

/// The smallest allocation a body grows by.
const FIRST_ALLOCATION: usize = 16 << 10;

/// Reads at most `max` bytes (`declared` when the sender said so) within `deadline`,
/// charging `budget` as bytes arrive; a longer body is 413, a slower one 408, one the
/// budget cannot hold 503.
///
/// The body is copied into one buffer as it arrives, each chunk let go at once, and the
/// budget is charged for the buffer's allocation rather than the bytes in it: memory
/// held by bodies stays within the budget, where a list of chunks joined at the end
/// held each body twice for a moment. The buffer doubles (from [`FIRST_ALLOCATION`])
/// up to the declared length, so a body that says how long it is ends in an
/// allocation of exactly its size, and one that does not in at most twice it.
pub async fn read_capped(
    body: Body,
    max: u64,
    declared: Option<u64>,
    deadline: Duration,
    budget: &Budget,
) -> Result<(Bytes, Charge), ApiError> {
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let bound = declared
        .and_then(|d| usize::try_from(d).ok())
        .map_or(limit, |d| d.min(limit));
    let mut body = Limited::new(body, limit);
    let mut charge = Charge::default();
    let read = async {
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue; // trailers carry no body bytes
            };
            let needed = buf.len() + data.len();
            if needed > buf.capacity() {
                let grown = (buf.capacity() * 2)
                    .max(FIRST_ALLOCATION)
                    .min(bound)
                    .max(needed);
                budget
                    .charge(&mut charge, grown)
                    .map_err(BodyError::Budget)?;
                buf.reserve_exact(grown - buf.len());
            }
            buf.extend_from_slice(&data);
        }
        Ok::<_, BodyError>(Bytes::from(buf))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A body arriving in `chunks` chunks of `size` bytes.
    fn chunked(chunks: usize, size: usize) -> Body {
        let frames =
            (0..chunks).map(move |_| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; size])));
        Body::from_stream(tokio_stream::iter(frames))
    }

    async fn read(body: Body, declared: Option<u64>, budget: &Budget) -> (Bytes, Charge) {
        read_capped(body, 8 << 20, declared, Duration::from_secs(5), budget)
            .await
            .expect("read")
    }

    #[tokio::test]
    async fn a_declared_length_is_allocated_and_charged_exactly() {
        let budget = Budget::new(64 << 20, 1);
        let (bytes, charge) = read(chunked(16, 64 << 10), Some(1 << 20), &budget).await;
        assert_eq!(bytes.len(), 1 << 20);
        assert!(bytes.iter().all(|b| *b == 7));
        assert_eq!(charge.kib(), 1024);
    }

    #[tokio::test]
    async fn without_a_length_the_charge_covers_the_allocation_at_most_twice_the_body() {
        let budget = Budget::new(64 << 20, 1);
        // 1 MiB and one byte: the buffer doubles to 2 MiB, and that is what is charged.
        let body = Body::from_stream(tokio_stream::iter([
            Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 1 << 20])),
            Ok(Bytes::from_static(b"!")),
        ]));
        let (bytes, charge) = read(body, None, &budget).await;
        assert_eq!(bytes.len(), (1 << 20) + 1);
        assert_eq!(charge.kib(), 2048);
        // A small body is charged its first allocation only.
        let (bytes, charge) = read(chunked(1, 100), None, &budget).await;
        assert_eq!(bytes.len(), 100);
        assert_eq!(charge.kib(), FIRST_ALLOCATION / 1024);
    }

    #[tokio::test]
    async fn bodies_past_the_budget_are_refused_as_their_buffers_grow() {
        // Room for one 1 MiB body: a second one is refused while the first is held.
        let budget = Budget::new(1536 << 10, 1);
        let (_held, _charge) = read(chunked(16, 64 << 10), Some(1 << 20), &budget).await;
        let refused = read_capped(
            chunked(16, 64 << 10),
            8 << 20,
            Some(1 << 20),
            Duration::from_secs(5),
            &budget,
        )
        .await;
        assert!(
            matches!(refused, Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE),
            "the second body is refused"
        );
    }
}
