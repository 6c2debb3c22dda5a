//! What happened over a recent window, for the dashboard's overview: events per source
//! in time buckets, deliveries made in the window by state, and attempts per
//! destination with how many failed.
//!
//! Both backends read it the same way: rows whose time-ordered id falls in the window
//! (a range on the primary key), so the cost follows the window's traffic, not the
//! size of the archive.

/// The window asked for: `buckets` spans of `bucket_ms` ending at `until_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub until_ms: i64,
    pub bucket_ms: i64,
    pub buckets: usize,
}

impl Window {
    /// Where the window starts.
    pub fn since_ms(&self) -> i64 {
        self.until_ms - self.bucket_ms * i64::try_from(self.buckets).unwrap_or(i64::MAX)
    }

    /// The bucket of `at_ms`, if it falls in the window.
    pub fn bucket_of(&self, at_ms: i64) -> Option<usize> {
        let offset = at_ms.checked_sub(self.since_ms())?;
        let index = usize::try_from(offset / self.bucket_ms.max(1)).ok()?;
        (offset >= 0 && index < self.buckets).then_some(index)
    }
}

/// Events of one source per bucket, oldest bucket first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceActivity {
    pub source: String,
    pub per_bucket: Vec<u64>,
}

/// Attempts made to one destination in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationActivity {
    pub destination: String,
    pub attempts: u64,
    /// Attempts that failed (an error status, a timeout, a command's exit status).
    pub failed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    /// Sources that received events in the window, by name.
    pub sources: Vec<SourceActivity>,
    /// Deliveries created in the window, per state, by state name.
    pub deliveries: Vec<(String, u64)>,
    /// Destinations attempted in the window, by name.
    pub destinations: Vec<DestinationActivity>,
}

impl Activity {
    /// Gathers rows of (source, received_at_ms, count) into per-source buckets.
    pub fn add_events(&mut self, window: &Window, source: String, at_ms: i64, count: u64) {
        let Some(bucket) = window.bucket_of(at_ms) else {
            return;
        };
        let i = match self.sources.binary_search_by(|s| s.source.cmp(&source)) {
            Ok(i) => i,
            Err(i) => {
                self.sources.insert(
                    i,
                    SourceActivity {
                        source,
                        per_bucket: vec![0; window.buckets],
                    },
                );
                i
            }
        };
        self.sources[i].per_bucket[bucket] += count;
    }
}

/// An attempt (`a`) failed when it has an error: every destination kind records one
/// for each failure (`HTTP 500`, a timeout, an exit status), and none on success.
pub const FAILED_ATTEMPT_SQL: &str = "CASE WHEN a.error IS NULL THEN 0 ELSE 1 END";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_fall_in_their_bucket_and_outside_ones_are_dropped() {
        let w = Window {
            until_ms: 10_000,
            bucket_ms: 1_000,
            buckets: 10,
        };
        assert_eq!(w.since_ms(), 0);
        assert_eq!(w.bucket_of(0), Some(0));
        assert_eq!(w.bucket_of(9_999), Some(9));
        assert_eq!(w.bucket_of(10_000), None);
        assert_eq!(w.bucket_of(-1), None);
        let mut a = Activity::default();
        a.add_events(&w, "b".into(), 500, 2);
        a.add_events(&w, "a".into(), 9_500, 1);
        a.add_events(&w, "b".into(), 700, 1);
        a.add_events(&w, "b".into(), 20_000, 7);
        assert_eq!(a.sources[0].source, "a");
        assert_eq!(a.sources[1].per_bucket[0], 3);
        assert_eq!(a.sources[1].per_bucket.iter().sum::<u64>(), 3);
    }
}
