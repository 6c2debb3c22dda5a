//! What both stores' writer queues share: waiting for a writer's answer, but not
//! forever.

use std::time::Duration;

use tokio::sync::oneshot;

use super::StoreError;

/// Waits for the writer's answer, at most `timeout`: a stalled disk or database must
/// turn into 503s, not into senders hanging until they time out themselves. A writer
/// that went away answers `Closed`.
pub async fn await_answer<T>(
    answer: oneshot::Receiver<Result<T, StoreError>>,
    timeout: Duration,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(StoreError::Closed),
        Err(_) => Err(StoreError::CommitTimeout(timeout)),
    }
}
