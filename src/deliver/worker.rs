//! The delivery loop.
//!
//! Each round visits every destination (starting one further each time, for fairness),
//! asks its [`super::limits::Limits`] how many sends may start, claims that many due
//! deliveries of that destination, sends each on its own task, and records the attempt
//! with the next state from the destination's retry policy. A slow or limited destination
//! only fills its own slots; the others are claimed in the same round. With nothing to
//! start the loop sleeps until ingest commits, a send finishes, the next retry falls due
//! or the rate allows another start, so an idle worker costs no CPU and the backlog lives
//! in the store, not in memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};

use super::Destination;
use super::batch::{self, BatchRoute, Ready};
use super::breaker::Gate;
use super::retry::Failure;
use crate::clock::Clock;
use crate::id;
use crate::store::{AfterAttempt, AttemptRecord, Claim, ClaimedDelivery, Pausable, Store};

/// The batching routes of each destination (a route's `batch`).
pub type Batches = BTreeMap<String, Vec<BatchRoute>>;

/// Longest nap with nothing due, so a clock jump cannot strand work for long.
const MAX_IDLE: Duration = Duration::from_secs(60);
/// Wait after the store fails, before trying again.
const STORE_BACKOFF: Duration = Duration::from_secs(1);
/// Most deliveries claimed for one destination in one round.
const CLAIM_BATCH: usize = 64;
/// While sends to a destination are in flight, a claim waits until this share of its
/// slots (1/N) is free, or [`GATHER_WAIT`] has passed: sends finish in waves (their
/// records commit in groups), and one claim for the wave costs a round trip to the store
/// where a claim per finished send cost one each.
const GATHER_SHARE: usize = 4;
/// The first wait before trying a failed attempt record again; it doubles up to
/// [`RECORD_RETRY_MAX`].
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(50);
const RECORD_RETRY_MAX: Duration = Duration::from_secs(2);

/// A batch's claim holds this many ordinary leases: the calls it is cut into (by
/// `max_bytes`) go one after another.
const BATCH_LEASES: u32 = 4;

/// Longest a claim waits to gather free slots.
const GATHER_WAIT: Duration = Duration::from_millis(1);

pub struct Worker {
    pub store: Arc<dyn Store>,
    /// The destinations in force, read at each round (a reload may change them).
    pub destinations: Arc<dyn Fn() -> Arc<BTreeMap<String, Arc<Destination>>> + Send + Sync>,
    /// The batching routes in force, by destination, read with the destinations.
    pub batches: Arc<dyn Fn() -> Arc<Batches> + Send + Sync>,
    /// Woken by ingest after it commits new deliveries.
    pub wake: Arc<Notify>,
    /// Most sends in flight at once, across destinations.
    pub slots: usize,
    /// Paused routes and destinations.
    pub pauses: Arc<super::pause::Pauses>,
    /// When deliveries are due and attempts start.
    pub clock: Arc<dyn Clock>,
}

impl Worker {
    /// Runs until `stop` turns true, then waits (up to `drain`) for sends in flight.
    pub async fn run(self, mut stop: watch::Receiver<bool>, drain: Duration) {
        let slots = Arc::new(Semaphore::new(self.slots.max(1)));
        let this = Arc::new(self);
        let mut round = 0usize;
        // Since when each destination has had free slots that were too few to claim for.
        let mut gathering: BTreeMap<String, std::time::Instant> = BTreeMap::new();
        loop {
            if *stop.borrow() {
                break;
            }
            if slots.available_permits() == 0 {
                // Every slot is busy: wait for one to come back (or for the stop).
                tokio::select! {
                    permit = slots.clone().acquire_owned() => drop(permit),
                    _ = stop.changed() => {}
                }
                continue;
            }
            // Each round starts at the next destination, so none is always served last.
            round = round.wrapping_add(1);
            // One instant for the whole round: the claims and the next due time must agree
            // on it, or a delivery falling due between the two would be neither claimed
            // (not yet due) nor waited for (no longer ahead).
            let now = this.clock.now_ms();
            // Sends started in this round keep the destination they were claimed for,
            // whatever a reload does meanwhile.
            let running = (this.destinations)();
            let destinations = &*running;
            let batching = (this.batches)();
            // When a batch that is not full yet will have waited long enough.
            let mut batch_at: Option<i64> = None;
            let names: Vec<&String> = destinations.keys().collect();
            let lease = lease_for(destinations);
            let mut claimed_any = false;
            let mut rate_wait: Option<Duration> = None;
            let mut gather_wait: Option<Duration> = None;
            let start = round % names.len().max(1);
            for &name in names.iter().cycle().skip(start).take(names.len()) {
                let Some(dest) = destinations.get(name) else {
                    continue;
                };
                if this.pauses.is_paused(Pausable::Destination, name) {
                    continue;
                }
                // An open breaker lets nothing through (no attempts are spent), then one
                // probe; the loop wakes when the cooldown ends or the probe reports.
                let mut want = slots.available_permits().min(CLAIM_BATCH);
                let probing = match dest.breaker.gate(std::time::Instant::now()) {
                    Gate::Open => false,
                    Gate::Probe => {
                        want = want.min(1);
                        true
                    }
                    Gate::Wait(until) => {
                        if let Some(until) = until {
                            let wait = until.saturating_duration_since(std::time::Instant::now());
                            rate_wait = Some(rate_wait.map_or(wait, |w| w.min(wait)));
                        }
                        continue;
                    }
                };
                let batch_routes: &[BatchRoute] =
                    batching.get(name).map(Vec::as_slice).unwrap_or_default();
                for route in batch_routes {
                    if want == 0 {
                        break;
                    }
                    if this.pauses.is_paused(Pausable::Route, &route.route) {
                        continue;
                    }
                    let due = match this
                        .store
                        .batch_due(name, &route.route, now, route.config.max_events)
                        .await
                    {
                        Ok(due) => due,
                        Err(e) => {
                            crate::throttled!(warn, destination = %name, route = %route.route, error = %crate::error_chain::Chain(&e), "cannot look for a batch; trying again shortly");
                            rate_wait = Some(STORE_BACKOFF);
                            continue;
                        }
                    };
                    match batch::ready(&due, route, now) {
                        Ready::Nothing => continue,
                        Ready::At(at) => {
                            batch_at = Some(batch_at.map_or(at, |b| b.min(at)));
                            continue;
                        }
                        Ready::Now => {}
                    }
                    let admission = dest.limits.admit(1);
                    if let Some(wait) = admission.retry_in {
                        rate_wait = Some(rate_wait.map_or(wait, |w| w.min(wait)));
                    }
                    if admission.count == 0 {
                        break;
                    }
                    // The calls a claim is cut into go one after another: its lease
                    // allows for a few of them.
                    let batch_lease = lease.saturating_mul(BATCH_LEASES);
                    let claim = Claim {
                        destination: name.clone(),
                        skip_routes: Vec::new(),
                        only_route: Some(route.route.clone()),
                        now_ms: now,
                        lease_ms: i64::try_from(batch_lease.as_millis()).unwrap_or(i64::MAX),
                        // A probe risks one event on a destination that may still be down.
                        limit: if probing { 1 } else { route.config.max_events },
                    };
                    let members = match this.store.claim_deliveries(claim).await {
                        Ok(members) if !members.is_empty() => members,
                        Ok(_) => continue,
                        Err(e) => {
                            crate::throttled!(warn, destination = %name, route = %route.route, error = %crate::error_chain::Chain(&e), "cannot claim a batch; trying again shortly");
                            rate_wait = Some(STORE_BACKOFF);
                            continue;
                        }
                    };
                    let (Ok(global), Some(local)) =
                        (slots.clone().try_acquire_owned(), dest.limits.slot())
                    else {
                        // Counted free just before: cannot happen; the leases end them.
                        break;
                    };
                    claimed_any = true;
                    want -= 1;
                    if probing {
                        want = 0;
                    }
                    let this = this.clone();
                    let dest = dest.clone();
                    let config = route.config;
                    tokio::spawn(async move {
                        this.deliver_batch(&dest, members, config).await;
                        drop((global, local));
                        this.wake.notify_one();
                    });
                }
                if want == 0 {
                    continue;
                }
                if !probing && !dest.limits.is_rated() {
                    let capacity = dest.limits.capacity();
                    let free = want.min(dest.limits.free());
                    let enough = (capacity.min(CLAIM_BATCH) / GATHER_SHARE).max(1);
                    let sending = dest.limits.free() < capacity;
                    if free > 0 && free < enough && sending {
                        let since = *gathering
                            .entry(name.clone())
                            .or_insert_with(std::time::Instant::now);
                        let left = GATHER_WAIT.saturating_sub(since.elapsed());
                        if !left.is_zero() {
                            gather_wait = Some(gather_wait.map_or(left, |w| w.min(left)));
                            continue;
                        }
                    }
                    gathering.remove(name);
                }
                let admission = dest.limits.admit(want);
                if let Some(wait) = admission.retry_in {
                    rate_wait = Some(rate_wait.map_or(wait, |w| w.min(wait)));
                }
                if admission.count == 0 {
                    if probing {
                        dest.breaker.probe_unused(std::time::Instant::now());
                    }
                    continue;
                }
                // Batching routes are claimed batch by batch above, never one by one.
                let mut skip_routes = this.pauses.routes();
                skip_routes.extend(batch_routes.iter().map(|b| b.route.clone()));
                let claim = Claim {
                    destination: name.clone(),
                    skip_routes,
                    only_route: None,
                    now_ms: now,
                    lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
                    limit: admission.count,
                };
                let claimed = this.store.claim_deliveries(claim).await;
                if probing && !matches!(&claimed, Ok(c) if !c.is_empty()) {
                    dest.breaker.probe_unused(std::time::Instant::now());
                }
                match claimed {
                    Ok(claimed) => {
                        for d in claimed {
                            // Both were counted free just before the claim; only this
                            // loop takes them, so neither can be missing.
                            let (Ok(global), Some(local)) =
                                (slots.clone().try_acquire_owned(), dest.limits.slot())
                            else {
                                break;
                            };
                            claimed_any = true;
                            let this = this.clone();
                            let dest = dest.clone();
                            tokio::spawn(async move {
                                this.deliver(&dest, d).await;
                                drop((global, local));
                                // A slot came free: the loop may claim again.
                                this.wake.notify_one();
                            });
                        }
                    }
                    Err(e) => {
                        crate::throttled!(warn, destination = %name, error = %crate::error_chain::Chain(&e), "cannot claim deliveries; trying again shortly");
                        rate_wait = Some(STORE_BACKOFF);
                    }
                }
            }
            if claimed_any {
                continue;
            }
            if let Some(wait) = gather_wait {
                // Back within a moment to claim what has gathered: no need to look up
                // the next due time for that.
                tokio::select! {
                    _ = this.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            // Nothing could start: sleep until new work is committed, a send finishes, the
            // next delivery falls due, or the rate allows another start.
            // Deliveries due now but not claimed are held by a limit, a pause or a breaker:
            // a finishing send, a resume, the rate or the cooldown wakes the loop for them.
            // So only due times still ahead count, for destinations not paused.
            let active: Vec<String> = names
                .iter()
                .filter(|n| !this.pauses.is_paused(Pausable::Destination, n))
                .map(|n| (*n).clone())
                .collect();
            drop(running);
            let max_idle_ms = i64::try_from(MAX_IDLE.as_millis()).unwrap_or(i64::MAX);
            let due = match this.store.next_due_ms(&active, now).await {
                Ok(Some(due)) => due.min(now.saturating_add(max_idle_ms)),
                Ok(None) | Err(_) => now.saturating_add(max_idle_ms),
            };
            let due = batch_at.map_or(due, |at| due.min(at));
            // Due times are on the engine's clock; rate limits and breaker cooldowns on
            // the process's own.
            let limit_nap = rate_wait.unwrap_or(MAX_IDLE).min(MAX_IDLE);
            tokio::select! {
                _ = this.wake.notified() => {}
                _ = this.clock.sleep_until(due) => {}
                _ = tokio::time::sleep(limit_nap) => {}
                _ = stop.changed() => {}
            }
        }
        // Sends in flight finish (each is bounded by its destination's timeout) or are
        // abandoned at the bound; an abandoned one is due again when its lease ends, or
        // at once when the next process opens the store.
        let all = u32::try_from(this.slots.max(1)).unwrap_or(u32::MAX);
        if tokio::time::timeout(drain, slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("deliveries still in flight at shutdown; they will be sent again");
        }
    }

    /// Records an attempt that was made; false if it could not be.
    ///
    /// A failed record (the store restarting, a full disk) is tried again, backing off,
    /// while the claim's lease still holds the delivery: giving up at once would leave it
    /// `in_flight` until the lease ends and then send it again, a duplicate a minute
    /// late. Past the lease another claim may already be sending it, so the record is
    /// dropped there (the store would not apply it to the newer claim anyway). Trying a
    /// record again is safe: one that landed without its answer is not applied twice.
    async fn record(&self, d: &ClaimedDelivery, record: AttemptRecord) -> bool {
        let mut wait = RECORD_RETRY_FIRST;
        loop {
            let e = match self.store.record_attempt(record.clone()).await {
                Ok(()) => return true,
                Err(e) => e,
            };
            let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
            if !e.is_transient() || self.clock.now_ms().saturating_add(wait_ms) >= d.lease_until_ms
            {
                crate::throttled!(error, error = %crate::error_chain::Chain(&e), delivery = %d.id, route = %d.route, destination = %d.destination, "cannot record an attempt; the delivery is sent again when its lease ends");
                return false;
            }
            crate::throttled!(warn, error = %crate::error_chain::Chain(&e), delivery = %d.id, route = %d.route, destination = %d.destination, "cannot record an attempt yet; trying again");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RECORD_RETRY_MAX);
        }
    }

    /// Sends one claimed delivery and records the attempt.
    async fn deliver(&self, dest: &Destination, d: ClaimedDelivery) {
        let (sent, started_at_ms, took) = self.send(dest, &d).await;
        let then = self.next_state(dest, d.attempt, &sent);
        if let Some(error) = &sent.error {
            tracing::info!(delivery = %d.id, event = %d.event_id, route = %d.route, destination = %d.destination, attempt = d.attempt, %error, "attempt failed");
        }
        self.finish(&d, sent, started_at_ms, took, then).await;
        if matches!(then, AfterAttempt::RetryAt(_)) {
            // The loop may be asleep until a lease that this attempt just ended; a retry
            // due sooner must not wait for it.
            self.wake.notify_one();
        }
    }

    /// Sends a batch's members, cut into calls by its limits, one call after another;
    /// every member of a call records the call's outcome as its attempt, and members
    /// that fail together are due again together.
    async fn deliver_batch(
        &self,
        dest: &Destination,
        members: Vec<ClaimedDelivery>,
        config: crate::config::BatchConfig,
    ) {
        // In receive order (a claim's rows come in no particular order).
        let mut members = members;
        members.sort_by(|a, b| {
            (a.received_at_ms, &a.event_id, a.part).cmp(&(b.received_at_ms, &b.event_id, b.part))
        });
        let elements: Vec<Vec<u8>> = members.iter().map(batch::element).collect();
        let sizes: Vec<usize> = elements.iter().map(Vec::len).collect();
        // One call after another, in the batch's one slot, so the destination never gets
        // more calls at once than its limits allow.
        for range in batch::assemble(&sizes, config.max_events, config.max_bytes.as_usize()) {
            let group = &members[range.clone()];
            let Some(call) = batch::as_delivery(group, batch::body(&elements[range])) else {
                continue;
            };
            let (sent, started_at_ms, took) = self.send(dest, &call).await;
            let call_then = self.next_state(dest, call.attempt, &sent);
            if let Some(error) = &sent.error {
                tracing::info!(batch = %call.id, events = group.len(), route = %call.route, destination = %call.destination, attempt = call.attempt, %error, "batch attempt failed");
            }
            // Each member's own attempt count decides whether it has attempts left; those
            // that retry do so together, at the call's retry time.
            let records = group.iter().map(|d| {
                let then = match (call_then, self.next_state(dest, d.attempt, &sent)) {
                    (_, AfterAttempt::Dead) => AfterAttempt::Dead,
                    (AfterAttempt::RetryAt(at), AfterAttempt::RetryAt(_)) => {
                        AfterAttempt::RetryAt(at)
                    }
                    (_, own) => own,
                };
                self.finish(d, sent.clone(), started_at_ms, took, then)
            });
            // Recorded side by side: they commit in groups, and one by one a large batch
            // could outlast its lease.
            futures_util::future::join_all(records).await;
            if !sent.ok {
                self.wake.notify_one();
            }
        }
    }

    /// Sends `d`: what came back, when it started (engine clock, ms) and how long it took.
    async fn send(
        &self,
        dest: &Destination,
        d: &ClaimedDelivery,
    ) -> (super::Sent, i64, std::time::Duration) {
        let started_at_ms = self.clock.now_ms();
        let started = std::time::Instant::now();
        let sent = dest.send(d, started_at_ms / 1000).await;
        let took = started.elapsed();
        crate::metrics::attempt_finished(&d.destination, took);
        dest.breaker.record(&sent, std::time::Instant::now());
        (sent, started_at_ms, took)
    }

    /// Where attempt number `attempt` leads, given what came back.
    fn next_state(&self, dest: &Destination, attempt: i64, sent: &super::Sent) -> AfterAttempt {
        if sent.ok {
            return AfterAttempt::Delivered;
        }
        let failure = Failure {
            status: sent.status,
            retry_after: sent.retry_after,
        };
        dest.retry.after_failure(
            u32::try_from(attempt).unwrap_or(u32::MAX),
            failure,
            self.clock.now_ms(),
            rand::random_range(-1.0..=1.0),
        )
    }

    /// Records `d`'s attempt with what came back and where it leads.
    async fn finish(
        &self,
        d: &ClaimedDelivery,
        sent: super::Sent,
        started_at_ms: i64,
        took: std::time::Duration,
        then: AfterAttempt,
    ) {
        let record = AttemptRecord {
            id: id::new(id::ATTEMPT),
            delivery_id: d.id.clone(),
            destination: d.destination.clone(),
            lease_until_ms: d.lease_until_ms,
            started_at_ms,
            duration_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
            status: sent.status,
            error: sent.error,
            response_headers: sent.response_headers,
            response_body: sent.response_body,
            then,
        };
        if !self.record(d, record).await {
            return;
        }
        crate::metrics::delivery_outcome(&d.destination, then);
        tracing::debug!(delivery = %d.id, event = %d.event_id, route = %d.route, destination = %d.destination, attempt = d.attempt, outcome = then.state(), "attempt recorded");
    }
}

/// A claim must outlast the slowest attempt, or a slow send would be claimed twice.
fn lease_for(destinations: &BTreeMap<String, Arc<Destination>>) -> Duration {
    let slowest = destinations
        .values()
        .map(|d| d.timeout())
        .max()
        .unwrap_or_default();
    (slowest + Duration::from_secs(30)).max(Duration::from_secs(60))
}
