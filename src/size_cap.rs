//! The size cap (`[storage] max_size`): keeps the store's data under its size by removing
//! the oldest events that nothing waits for, gives freed space back to the file system,
//! and tells ingest when only waiting data is left, so that it answers 507 instead of
//! filling the disk.
//!
//! Every process measures the store every [`CHECK_EVERY`] (its ingest reads the verdict
//! from [`Capacity`]); only the maintenance leader evicts and reclaims. Eviction starts
//! at [`EVICT_FROM`] of the cap, before ingest is refused, and goes down to
//! [`EVICT_TO`], so that a store at its cap does not evict on every check. Events still
//! pending, in flight, retrying or dead are never evicted: they are work the user has
//! yet to see done or decide on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::Store;
use crate::store::capacity::{Evict, Evicted, Usage};

/// Time between two measures.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Eviction starts when the data passes this share of `max_size`...
const EVICT_FROM: f64 = 0.95;
/// ...and stops once it is back under this share.
const EVICT_TO: f64 = 0.90;

/// Most events (and rejected requests) one pass of eviction removes (one transaction).
const PASS_LIMIT: usize = 250;
/// Most passes in one check; the rest waits for the next, so that eviction does not
/// monopolise the store.
const MAX_PASSES: usize = 200;

/// Most bytes one reclaim gives back (one transaction on SQLite, which moves pages from
/// the end of the file into the free ones first: kept small so that ingest does not
/// wait long behind it).
const RECLAIM_BYTES: u64 = 16 * 1024 * 1024;
/// Free space that grew past this share of the allocated size since the last reclaim
/// (or this many bytes, whichever is larger) is reclaimed.
const RECLAIM_SHARE: u64 = 10;
const RECLAIM_MIN_BYTES: u64 = 4 * 1024 * 1024;
/// Least time between two reclaims (a PostgreSQL `VACUUM` is not free), unless the last
/// one gave back all it could and more is waiting.
const RECLAIM_EVERY: Duration = Duration::from_secs(10);

/// The cap, and what the last measure found; shared by the job, ingest and `/metrics`.
#[derive(Debug, Default)]
pub struct Capacity {
    /// `[storage] max_size`, in bytes.
    pub max: Option<u64>,
    full: AtomicBool,
    used: AtomicU64,
    /// 0 until the first measure (a store always takes some room).
    allocated: AtomicU64,
}

impl Capacity {
    pub fn new(max: Option<u64>) -> Self {
        Self {
            max,
            ..Self::default()
        }
    }

    /// True while the store is at its cap with nothing left to evict: ingest refuses.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// The last measure, once there has been one.
    pub fn usage(&self) -> Option<Usage> {
        let allocated = self.allocated.load(Ordering::Relaxed);
        (allocated > 0).then(|| Usage {
            used: self.used.load(Ordering::Relaxed),
            allocated,
        })
    }

    fn record(&self, usage: Usage) {
        self.used.store(usage.used, Ordering::Relaxed);
        self.allocated.store(usage.allocated, Ordering::Relaxed);
        let full = self.max.is_some_and(|max| usage.used >= max);
        let was = self.full.swap(full, Ordering::Relaxed);
        if full && !was {
            tracing::warn!(
                used = usage.used,
                max_size = self.max,
                "the store has reached storage.max_size and could not make room (what it holds still waits for delivery or is dead-lettered, or eviction is failing: see the log); ingest answers 507 until some are delivered or discarded, or max_size is raised"
            );
        } else if was && !full {
            tracing::info!(
                used = usage.used,
                "the store is back under storage.max_size; ingest accepts again"
            );
        }
    }

    fn share(&self, share: f64) -> Option<u64> {
        self.max.map(|max| (max as f64 * share) as u64)
    }
}

/// The job; see the module documentation.
pub struct SizeCap {
    pub store: Arc<dyn Store>,
    pub capacity: Arc<Capacity>,
}

impl SizeCap {
    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut reclaim = Reclaim::default();
        loop {
            if *stop.borrow() {
                return;
            }
            self.check(&mut reclaim, &stop).await;
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One measure, with eviction and reclaiming when this process leads.
    async fn check(&self, reclaim: &mut Reclaim, stop: &watch::Receiver<bool>) {
        let Some(mut usage) = self.measure().await else {
            return;
        };
        if !self.store.lead_maintenance().await {
            self.capacity.record(usage);
            return;
        }
        if let (Some(from), Some(to)) = (
            self.capacity.share(EVICT_FROM),
            self.capacity.share(EVICT_TO),
        ) && usage.used > from
        {
            let before = usage;
            let evicted = self.evict_to(to, &mut usage, stop).await;
            if !evicted.is_empty() {
                crate::metrics::evicted(&evicted);
                tracing::info!(
                    events = evicted.events,
                    rejected = evicted.rejected,
                    used_before = before.used,
                    used_after = usage.used,
                    max_size = self.capacity.max,
                    "the store passed storage.max_size; removed the oldest events already delivered"
                );
                reclaim.owed = true;
            }
        }
        self.capacity.record(usage);
        if reclaim.due(usage) {
            match self.store.reclaim(RECLAIM_BYTES).await {
                Ok(reclaimed) => {
                    if reclaimed.bytes > 0 {
                        tracing::debug!(
                            bytes = reclaimed.bytes,
                            "gave free space back to the file system"
                        );
                    }
                    if let Some(after) = self.measure().await {
                        self.capacity.record(after);
                        reclaim.done(after, reclaimed.more);
                    }
                }
                Err(e) => {
                    crate::throttled!(warn, error = %crate::error_chain::Chain(&e), "cannot give the store's free space back; trying again later");
                    reclaim.done(usage, false);
                }
            }
        }
    }

    async fn measure(&self) -> Option<Usage> {
        match self.store.usage().await {
            Ok(usage) => Some(usage),
            Err(e) => {
                // The last verdict stands: a store that cannot be measured may still
                // be full, and is likely failing commits anyway.
                crate::throttled!(warn, error = %crate::error_chain::Chain(&e), "cannot measure the store's size; trying again shortly");
                None
            }
        }
    }

    /// Passes until the data is under `target`, nothing more may go, or the check's
    /// budget is spent; `usage` follows.
    async fn evict_to(
        &self,
        target: u64,
        usage: &mut Usage,
        stop: &watch::Receiver<bool>,
    ) -> Evicted {
        let mut total = Evicted::default();
        let mut evict = Evict {
            limit: PASS_LIMIT,
            after: String::new(),
        };
        for _ in 0..MAX_PASSES {
            if *stop.borrow() || usage.used <= target {
                break;
            }
            let pass = match self.store.evict(&evict).await {
                Ok(pass) => pass,
                Err(e) => {
                    crate::throttled!(warn, error = %crate::error_chain::Chain(&e), "cannot evict old events to keep under storage.max_size; trying again shortly");
                    break;
                }
            };
            total.events += pass.events;
            total.rejected += pass.rejected;
            if let Some(last) = &pass.last {
                evict.after.clone_from(last);
            }
            if pass.is_empty() {
                break;
            }
            let before = usage.used;
            match self.measure().await {
                Some(now) => *usage = now,
                None => break,
            }
            evict.limit = next_limit(
                before - before.min(usage.used),
                pass.events,
                usage.used,
                target,
            );
            // Let queued commits through between two passes.
            tokio::task::yield_now().await;
        }
        total
    }
}

/// The next pass's size: as many events as the last pass's took room for what is still
/// over `target` (plus one), so that a small cap is not cut far below its target.
fn next_limit(freed: u64, events: usize, used: u64, target: u64) -> usize {
    let per_event = freed / events.max(1) as u64;
    if per_event == 0 {
        return PASS_LIMIT;
    }
    let over = used.saturating_sub(target);
    usize::try_from((over / per_event).saturating_add(1))
        .map_or(PASS_LIMIT, |n| n.clamp(1, PASS_LIMIT))
}

/// When to give free space back: after eviction, or once free space has grown by a
/// share of the store since the last time (retention freed some); never more often than
/// [`RECLAIM_EVERY`], except to go on with what the last one had no room for.
#[derive(Default)]
struct Reclaim {
    owed: bool,
    free_after_last: u64,
    last: Option<Instant>,
}

impl Reclaim {
    fn due(&self, usage: Usage) -> bool {
        if self.owed {
            return self.last.is_none_or(|at| at.elapsed() >= RECLAIM_EVERY);
        }
        let free = usage.allocated.saturating_sub(usage.used);
        let grown = free.saturating_sub(self.free_after_last);
        grown > (usage.allocated / RECLAIM_SHARE).max(RECLAIM_MIN_BYTES)
            && self.last.is_none_or(|at| at.elapsed() >= RECLAIM_EVERY)
    }

    /// After a reclaim; `more` when it gave back all it may and free space is left: the
    /// next check goes on at once.
    fn done(&mut self, usage: Usage, more: bool) {
        self.owed = more;
        self.free_after_last = usage.allocated.saturating_sub(usage.used);
        self.last = (!more).then(Instant::now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn usage(used: u64, allocated: u64) -> Usage {
        Usage { used, allocated }
    }

    #[test]
    fn full_only_at_the_cap_and_never_without_one() {
        let capped = Capacity::new(Some(100 * MIB));
        capped.record(usage(99 * MIB, 120 * MIB));
        assert!(!capped.is_full());
        capped.record(usage(100 * MIB, 120 * MIB));
        assert!(capped.is_full());
        capped.record(usage(90 * MIB, 120 * MIB));
        assert!(!capped.is_full());
        let uncapped = Capacity::new(None);
        uncapped.record(usage(u64::MAX, u64::MAX));
        assert!(!uncapped.is_full());
        assert_eq!(uncapped.usage(), Some(usage(u64::MAX, u64::MAX)));
    }

    #[test]
    fn a_pass_takes_as_many_events_as_the_excess_needs() {
        // 1,000 events freed 4 KiB each; 40 KiB over is 10 more, and one for the rest.
        let freed = 1000 * 4096;
        assert_eq!(
            next_limit(freed, 1000, 100 * MIB + 40 * 1024, 100 * MIB),
            11
        );
        assert_eq!(next_limit(freed, 1000, 99 * MIB, 100 * MIB), 1);
        // Nothing measurable freed (pages still half full): full passes.
        assert_eq!(next_limit(0, 1000, 120 * MIB, 100 * MIB), PASS_LIMIT);
        assert_eq!(next_limit(1, 1, u64::MAX, 0), PASS_LIMIT);
    }

    #[test]
    fn reclaim_follows_eviction_or_grown_free_space_at_most_every_few_seconds() {
        let mut reclaim = Reclaim::default();
        // 2 MiB free of 100: under both thresholds.
        assert!(!reclaim.due(usage(98 * MIB, 100 * MIB)));
        // 11 MiB free of 100: past a tenth.
        assert!(reclaim.due(usage(89 * MIB, 100 * MIB)));
        reclaim.done(usage(89 * MIB, 100 * MIB), false);
        reclaim.owed = true;
        // Owed, but just reclaimed.
        assert!(!reclaim.due(usage(89 * MIB, 100 * MIB)));
        reclaim.last = Some(Instant::now() - RECLAIM_EVERY);
        assert!(reclaim.due(usage(89 * MIB, 100 * MIB)));
        reclaim.done(usage(89 * MIB, 100 * MIB), false);
        // The same free space as after the last one: nothing new to give back.
        reclaim.last = Some(Instant::now() - RECLAIM_EVERY);
        assert!(!reclaim.due(usage(89 * MIB, 100 * MIB)));
        // A reclaim that gave back all it may, with 11 MiB left: on at once.
        reclaim.done(usage(89 * MIB, 100 * MIB), true);
        assert!(reclaim.due(usage(89 * MIB, 100 * MIB)));
    }
}
