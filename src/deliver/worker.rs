//! The delivery loop.
//!
//! It claims as many due deliveries as it has free send slots, sends each on its own task,
//! and records the attempt with the next state from the destination's retry policy. With
//! nothing due it sleeps until ingest commits new work or the next retry falls due, so an
//! idle worker costs no CPU and the backlog lives in the store, not in memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore, watch};

use super::Destination;
use super::retry::Failure;
use crate::id;
use crate::store::{AfterAttempt, AttemptRecord, Claim, ClaimedDelivery, Store};

/// Longest nap with nothing due, so a clock jump cannot strand work for long.
const MAX_IDLE: Duration = Duration::from_secs(60);
/// Wait after the store fails, before trying again.
const STORE_BACKOFF: Duration = Duration::from_secs(1);

pub struct Worker {
    pub store: Arc<dyn Store>,
    pub destinations: BTreeMap<String, Arc<Destination>>,
    /// Woken by ingest after it commits new deliveries.
    pub wake: Arc<Notify>,
    /// Most sends in flight at once, across destinations.
    pub slots: usize,
    /// How long a claim holds before another claim may take the delivery.
    pub lease: Duration,
}

impl Worker {
    /// Runs until `stop` turns true, then waits (up to `drain`) for sends in flight.
    pub async fn run(self, mut stop: watch::Receiver<bool>, drain: Duration) {
        let slots = Arc::new(Semaphore::new(self.slots.max(1)));
        let this = Arc::new(self);
        loop {
            if *stop.borrow() {
                break;
            }
            let free = slots.available_permits();
            if free == 0 {
                // Every slot is busy: wait for one to come back (or for the stop).
                tokio::select! {
                    permit = slots.clone().acquire_owned() => drop(permit),
                    _ = stop.changed() => {}
                }
                continue;
            }
            let claim = Claim {
                now_ms: now_ms(),
                lease_ms: i64::try_from(this.lease.as_millis()).unwrap_or(i64::MAX),
                limit: free,
            };
            match this.store.claim_deliveries(claim).await {
                Ok(claimed) if !claimed.is_empty() => {
                    for d in claimed {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            break; // cannot happen: we claimed no more than were free
                        };
                        let this = this.clone();
                        tokio::spawn(async move {
                            this.deliver(d).await;
                            drop(permit);
                        });
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim deliveries; trying again shortly");
                    tokio::select! {
                        _ = tokio::time::sleep(STORE_BACKOFF) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            }
            let nap = match this.store.next_due_ms().await {
                Ok(Some(due)) => Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)),
                Ok(None) | Err(_) => MAX_IDLE,
            }
            .min(MAX_IDLE);
            tokio::select! {
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(nap) => {}
                _ = stop.changed() => {}
            }
        }
        // Sends in flight finish (each is bounded by its destination's timeout) or are
        // abandoned at the bound; an abandoned one is claimed again when its lease ends.
        let all = u32::try_from(this.slots.max(1)).unwrap_or(u32::MAX);
        if tokio::time::timeout(drain, slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(
                "deliveries still in flight at shutdown; they will be retried after their lease"
            );
        }
    }

    /// Sends one claimed delivery and records the attempt.
    async fn deliver(&self, d: ClaimedDelivery) {
        let started_at_ms = now_ms();
        let started = std::time::Instant::now();
        let (sent, then) = match self.destinations.get(&d.destination) {
            Some(dest) => {
                let sent = dest.send(&d, started_at_ms / 1000).await;
                let then = if sent.ok {
                    AfterAttempt::Delivered
                } else {
                    let attempt = u32::try_from(d.attempt).unwrap_or(u32::MAX);
                    let failure = Failure {
                        status: sent.status,
                        retry_after: sent.retry_after,
                    };
                    dest.retry.after_failure(
                        attempt,
                        failure,
                        now_ms(),
                        rand::random_range(-1.0..=1.0),
                    )
                };
                (sent, then)
            }
            None => {
                // The route or destination left the configuration: keep the delivery
                // (nothing acknowledged is thrown away) and look again in an hour.
                let sent = super::Sent {
                    error: Some(format!(
                        "destination {:?} is not in the configuration",
                        d.destination
                    )),
                    ..super::Sent::default()
                };
                (
                    sent,
                    AfterAttempt::RetryAt(now_ms().saturating_add(3_600_000)),
                )
            }
        };
        if let Some(error) = &sent.error {
            tracing::info!(delivery = %d.id, destination = %d.destination, attempt = d.attempt, %error, "attempt failed");
        }
        let record = AttemptRecord {
            id: id::new(id::ATTEMPT),
            delivery_id: d.id.clone(),
            started_at_ms,
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            status: sent.status,
            error: sent.error,
            response_headers: sent.response_headers,
            response_body: sent.response_body,
            then,
        };
        if let Err(e) = self.store.record_attempt(record).await {
            // The lease still holds the delivery; it is sent again when the lease ends.
            tracing::error!(error = %e, delivery = %d.id, "cannot record an attempt");
        } else if matches!(then, AfterAttempt::RetryAt(_)) {
            // The loop may be asleep until a lease that this attempt just ended; a retry
            // due sooner must not wait for it.
            self.wake.notify_one();
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
