//! Per-destination limits: `max_concurrency` sends in flight and `rate_limit` starts per
//! second, minute or hour.
//!
//! The worker asks [`Limits::admit`] how many deliveries it may claim for a destination
//! *before* claiming them, so a limited destination's backlog waits in the store (where
//! it costs nothing and holds no lease), never in memory. The rate is enforced smoothly
//! (one start per `period / count`, no burst), so no window of the stated length ever
//! sees more than the limit allows.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Rate;

/// Sends in flight per destination when `max_concurrency` is not set.
pub const DEFAULT_CONCURRENCY: u32 = 64;

#[derive(Debug)]
pub struct Limits {
    slots: Arc<Semaphore>,
    capacity: usize,
    rate: Option<DefaultDirectRateLimiter>,
}

/// How many sends may start now, and when to ask again if the rate said no.
#[derive(Debug, Default)]
pub struct Admission {
    pub count: usize,
    pub retry_in: Option<Duration>,
}

impl Limits {
    pub fn new(max_concurrency: Option<u32>, rate: Option<Rate>) -> Self {
        let slots = max_concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1);
        Self {
            slots: Arc::new(Semaphore::new(slots as usize)),
            capacity: slots as usize,
            // Without a burst: one start per `per / count`.
            rate: rate
                .and_then(|r| r.quota(NonZeroU32::MIN))
                .map(RateLimiter::direct),
        }
    }

    /// Up to `want` sends may start now: bounded by free slots, then by rate tokens,
    /// which are taken here (a token not used because fewer deliveries were due is lost:
    /// the rate errs low, never high).
    pub fn admit(&self, want: usize) -> Admission {
        let mut admission = Admission::default();
        let want = want.min(self.slots.available_permits());
        let Some(limiter) = &self.rate else {
            admission.count = want;
            return admission;
        };
        for _ in 0..want {
            match limiter.check() {
                Ok(()) => admission.count += 1,
                Err(not_until) => {
                    admission.retry_in =
                        Some(not_until.wait_time_from(DefaultClock::default().now()));
                    break;
                }
            }
        }
        admission
    }

    /// Sends this process may have in flight at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Slots free now.
    pub fn free(&self) -> usize {
        self.slots.available_permits()
    }

    /// Whether starts are metered by a rate (one token at a time, never gathered).
    pub fn is_rated(&self) -> bool {
        self.rate.is_some()
    }

    /// A slot for one send; `None` when all are taken.
    pub fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_bounds_admission() {
        let limits = Limits::new(Some(2), None);
        assert_eq!(limits.admit(10).count, 2);
        let held = limits.slot().unwrap();
        assert_eq!(limits.admit(10).count, 1);
        drop(held);
        assert_eq!(limits.admit(10).count, 2);
    }

    #[test]
    fn rate_admits_one_at_a_time_and_says_when_to_come_back() {
        let limits = Limits::new(
            None,
            Some(Rate {
                count: 10,
                per: Duration::from_secs(1),
            }),
        );
        let first = limits.admit(5);
        assert_eq!(first.count, 1, "no burst");
        let wait = first.retry_in.expect("told when");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
    }
}
