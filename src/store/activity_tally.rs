//! A process's activity counters not written yet: what it committed (events stored,
//! attempts recorded), tallied in memory and added to the store's `activity` table
//! every few seconds (see `activity.rs`).
//!
//! Reading a window and writing the tally take turns (the gate), so a count is never
//! seen twice (in the table and in memory) nor missed (taken from memory, not yet
//! committed). A write that fails leaves its counts in memory for the next one. A
//! process that is killed loses the counts of its last few seconds, never an event.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use super::activity::{Activity, ActivityCount, Counted, KEEP_MS, Window, slot_of};
use super::{AfterAttempt, AttemptRecord, Inserted, StoreError};

/// How often each process adds its tally to the table: how far behind another process's
/// counts may be.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// What the tally counts of an attempt, kept while its record is written.
#[derive(Debug)]
pub struct AttemptTally {
    destination: String,
    started_at_ms: i64,
    failed: bool,
    then: AfterAttempt,
}

impl AttemptTally {
    pub fn of(a: &AttemptRecord) -> Self {
        AttemptTally {
            destination: a.destination.clone(),
            started_at_ms: a.started_at_ms,
            failed: a.error.is_some(),
            then: a.then,
        }
    }
}

/// Per (slot, what): per name, the count.
type Counts = HashMap<(i64, Counted), HashMap<String, i64>>;

#[derive(Debug, Default)]
pub struct ActivityTally {
    pending: Mutex<Counts>,
    gate: tokio::sync::Mutex<()>,
}

impl ActivityTally {
    /// Counts one `what` for `name` at `at_ms`.
    pub fn add(&self, at_ms: i64, what: Counted, name: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let names = pending.entry((slot_of(at_ms), what)).or_default();
        match names.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                names.insert(name.to_owned(), 1);
            }
        }
    }

    /// Counts an event of `source` received at `at_ms`, if it was stored (a duplicate is
    /// not a new event).
    pub fn event(&self, inserted: &Inserted, at_ms: i64, source: &str) {
        if matches!(inserted, Inserted::New { .. }) {
            self.add(at_ms, Counted::Event, source);
        }
    }

    /// Counts a recorded attempt, and where it led its delivery.
    pub fn attempt(&self, a: &AttemptTally) {
        let (at, destination) = (a.started_at_ms, a.destination.as_str());
        self.add(at, Counted::Attempt, destination);
        if a.failed {
            self.add(at, Counted::Failed, destination);
        }
        let outcome = match a.then {
            AfterAttempt::Delivered => Counted::Delivered,
            AfterAttempt::RetryAt(_) => Counted::Retrying,
            AfterAttempt::Dead => Counted::Dead,
        };
        self.add(at, outcome, destination);
    }

    /// Hands the tally to `write` (with the slot before which counters may be trimmed,
    /// for a process that has been up `KEEP_MS`); on failure the counts stay for the
    /// next flush.
    pub async fn flush<F, Fut>(&self, now_ms: i64, write: F) -> Result<(), StoreError>
    where
        F: FnOnce(Vec<ActivityCount>, i64) -> Fut,
        Fut: Future<Output = Result<(), StoreError>>,
    {
        let _turn = self.gate.lock().await;
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if taken.is_empty() {
            return Ok(());
        }
        let mut counts = to_counts(&taken);
        // One order for every process, so that two flushes upserting the same counters
        // lock them in the same order.
        counts.sort_by(|a, b| (a.slot, a.what, &a.name).cmp(&(b.slot, b.what, &b.name)));
        let written = write(counts, slot_of(now_ms - KEEP_MS)).await;
        if written.is_err() {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for (key, names) in taken {
                let held = pending.entry(key).or_default();
                for (name, n) in names {
                    *held.entry(name).or_default() += n;
                }
            }
        }
        written
    }

    /// The window's activity: the counters `fetch` reads from the store for the slots
    /// `[first, end)`, and this process's tally.
    pub async fn read<F, Fut>(&self, window: Window, fetch: F) -> Result<Activity, StoreError>
    where
        F: FnOnce(i64, i64) -> Fut,
        Fut: Future<Output = Result<Vec<ActivityCount>, StoreError>>,
    {
        let _turn = self.gate.lock().await;
        let (first, end) = window.slots();
        let mut counts = fetch(first, end).await?;
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        counts.extend(
            to_counts(&pending)
                .into_iter()
                .filter(|c| (first..end).contains(&c.slot)),
        );
        drop(pending);
        Ok(Activity::from_counts(&window, counts))
    }
}

fn to_counts(counts: &Counts) -> Vec<ActivityCount> {
    counts
        .iter()
        .flat_map(|((slot, what), names)| {
            names.iter().map(|(name, count)| ActivityCount {
                slot: *slot,
                what: *what,
                name: name.clone(),
                count: *count,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::activity::SLOT_MS;

    fn window() -> Window {
        Window::aligned(10 * SLOT_MS - 1, 10 * SLOT_MS, 10)
    }

    #[tokio::test]
    async fn a_failed_flush_keeps_its_counts_and_a_good_one_hands_them_over() {
        let tally = ActivityTally::default();
        tally.add(SLOT_MS, Counted::Event, "shop");
        tally.add(SLOT_MS + 5, Counted::Event, "shop");
        tally.add(3 * SLOT_MS, Counted::Event, "other");
        let refused = tally
            .flush(0, |_, _| async { Err(StoreError::Closed) })
            .await;
        assert!(refused.is_err());
        tally.add(SLOT_MS, Counted::Event, "shop");

        let mut written = Vec::new();
        tally
            .flush(0, |counts, _| {
                written = counts;
                async { Ok(()) }
            })
            .await
            .unwrap();
        let shop = |slot| ActivityCount {
            slot,
            what: Counted::Event,
            name: "shop".into(),
            count: 3,
        };
        assert_eq!(written[0], shop(1), "{written:?}");
        assert_eq!((written.len(), written[1].name.as_str()), (2, "other"));

        // Written counts are the store's to give back; memory holds only what is new.
        tally.add(2 * SLOT_MS, Counted::Event, "shop");
        let read = tally
            .read(window(), |first, end| {
                assert_eq!((first, end), (0, 10));
                async { Ok(vec![shop(1)]) }
            })
            .await
            .unwrap();
        assert_eq!(read.sources[0].per_bucket[..3], [0, 3, 1]);
    }
}
