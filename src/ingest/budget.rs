//! The in-flight body budget: bytes held in memory across all requests being read or
//! committed are bounded by `server.max_inflight_bytes`.
//!
//! A request is charged for the memory its body takes as it arrives (see
//! `body::read_capped`), so a connection that announces a large body (or none) and
//! then stalls holds nothing. The
//! charge travels with the event to the writer and is released when the writer is done
//! with the body, so a stalled disk cannot let bodies pile up in its queue either. When
//! the budget is spent the sender gets 503 with `Retry-After`: a spike costs senders a
//! retry, never the process its memory.

use std::sync::Arc;

use http::{HeaderValue, StatusCode, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http_error::ApiError;

/// The shared budget, counted in KiB.
#[derive(Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    total_kib: u32,
    retry_after_secs: u64,
}

/// What one request holds of the budget; released when dropped.
#[derive(Default)]
pub struct Charge {
    held: Option<OwnedSemaphorePermit>,
}

impl Budget {
    pub fn new(max_bytes: u64, retry_after_secs: u64) -> Self {
        let total_kib = u32::try_from(max_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, Semaphore::MAX_PERMITS as u32);
        Self {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            retry_after_secs,
        }
    }

    /// Grows `charge` to cover `bytes` received so far.
    pub fn charge(&self, charge: &mut Charge, bytes: usize) -> Result<(), ApiError> {
        let wanted = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.total_kib);
        let held = charge.held.as_ref().map_or(0, |p| p.num_permits() as u32);
        if wanted <= held {
            return Ok(());
        }
        let more = self
            .permits
            .clone()
            .try_acquire_many_owned(wanted - held)
            .map_err(|_| self.spent())?;
        match &mut charge.held {
            Some(p) => p.merge(more),
            None => charge.held = Some(more),
        }
        Ok(())
    }

    fn spent(&self) -> ApiError {
        crate::throttled!(
            warn,
            "in-flight body budget spent (server.max_inflight_bytes); answering 503"
        );
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "forebay is holding as many request bodies as it is allowed to; nothing was stored, retry later",
        )
        .with_header(
            header::RETRY_AFTER,
            HeaderValue::from(self.retry_after_secs),
        )
    }
}

impl Charge {
    /// KiB held, for tests and logs.
    pub fn kib(&self) -> usize {
        self.held.as_ref().map_or(0, |p| p.num_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_grow_with_bytes_and_free_on_drop() {
        let budget = Budget::new(3 * 1024, 1);
        let mut a = Charge::default();
        budget.charge(&mut a, 1500).unwrap();
        assert_eq!(a.kib(), 2);
        budget.charge(&mut a, 1600).unwrap(); // still within its 2 KiB
        assert_eq!(a.kib(), 2);
        let mut b = Charge::default();
        let err = budget.charge(&mut b, 2000).unwrap_err();
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        budget.charge(&mut b, 1000).unwrap(); // 1 KiB fits
        drop(a);
        budget.charge(&mut b, 3000).unwrap();
        assert_eq!(b.kib(), 3);
    }

    #[test]
    fn one_body_larger_than_the_budget_is_held_to_the_whole_budget() {
        let budget = Budget::new(2 * 1024, 1);
        let mut a = Charge::default();
        budget.charge(&mut a, 10 * 1024).unwrap();
        assert_eq!(a.kib(), 2);
    }
}
