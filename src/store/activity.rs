//! What happened over a recent window, for the dashboard's overview: events per source
//! in time buckets, what the attempts of the window led to (delivered, retrying, dead),
//! and attempts per destination with how many failed.
//!
//! Counting the window's rows would cost in proportion to its traffic (1.6 s for an hour
//! of a million events), so both backends keep counters instead: per slot of
//! [`SLOT_MS`], per [`Counted`] thing and name, in a small `activity` table. Each
//! process tallies in memory what it commits (`activity_tally.rs`) and adds it to the
//! table every few seconds; a window reads at most a few hundred rows per name, plus
//! what this process has not written yet.

use std::collections::HashMap;

/// Counters are kept per slot of this many milliseconds: the finest bucket a window has.
pub const SLOT_MS: i64 = 10_000;

/// Slots older than this are trimmed: the longest window asked for (24 h), and an hour.
pub const KEEP_MS: i64 = 25 * 3_600_000;

/// What a counter counts; `name` is a source for events, a destination for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counted {
    /// Events stored (duplicates are not).
    Event,
    /// Attempts recorded.
    Attempt,
    /// Attempts that failed.
    Failed,
    /// Attempts that left their delivery `delivered`, `retrying` or `dead`.
    Delivered,
    Retrying,
    Dead,
}

impl Counted {
    pub fn as_str(self) -> &'static str {
        match self {
            Counted::Event => "event",
            Counted::Attempt => "attempt",
            Counted::Failed => "failed",
            Counted::Delivered => "delivered",
            Counted::Retrying => "retrying",
            Counted::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Counted::Event,
            Counted::Attempt,
            Counted::Failed,
            Counted::Delivered,
            Counted::Retrying,
            Counted::Dead,
        ]
        .into_iter()
        .find(|c| c.as_str() == text)
    }
}

/// One counter: how many of `what` for `name` in the slot starting at `slot * SLOT_MS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityCount {
    pub slot: i64,
    pub what: Counted,
    pub name: String,
    pub count: i64,
}

/// The slot holding the instant `at_ms`.
pub fn slot_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(SLOT_MS)
}

/// The window asked for: `buckets` spans of `bucket_ms` ending at `until_ms`. Counters
/// are whole slots: a window whose ends and buckets fall on slot boundaries (as
/// [`Window::aligned`] makes them) is counted exactly; otherwise a slot counts in the
/// bucket its start falls in.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub until_ms: i64,
    pub bucket_ms: i64,
    pub buckets: usize,
}

impl Window {
    /// The window of `buckets` bars over the `span_ms` up to now (`now_ms`), ends and bars
    /// on slot boundaries: the end is the end of the current slot, and a bar is a whole
    /// number of slots (fewer bars when the span has fewer slots than that).
    pub fn aligned(now_ms: i64, span_ms: i64, buckets: usize) -> Self {
        let slots = (span_ms / SLOT_MS).max(1);
        let buckets = i64::try_from(buckets).unwrap_or(i64::MAX).clamp(1, slots);
        Window {
            until_ms: (slot_of(now_ms) + 1) * SLOT_MS,
            bucket_ms: slots / buckets * SLOT_MS,
            buckets: usize::try_from(buckets).unwrap_or(1),
        }
    }

    /// The slots the window covers, `[first, end)`.
    pub fn slots(&self) -> (i64, i64) {
        (slot_of(self.since_ms()), slot_of(self.until_ms - 1) + 1)
    }

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
    /// What the window's attempts left their deliveries in (`delivered`, `retrying`,
    /// `dead`), by name; a state no attempt led to is left out.
    pub deliveries: Vec<(String, u64)>,
    /// Destinations attempted in the window, by name.
    pub destinations: Vec<DestinationActivity>,
}

impl Activity {
    /// The window's activity from its counters (any order, repeats added up).
    pub fn from_counts(window: &Window, counts: impl IntoIterator<Item = ActivityCount>) -> Self {
        let mut activity = Activity::default();
        let mut outcomes: HashMap<Counted, u64> = HashMap::new();
        let mut destinations: HashMap<String, (u64, u64)> = HashMap::new();
        for c in counts {
            let at_ms = c.slot * SLOT_MS;
            if window.bucket_of(at_ms).is_none() {
                continue;
            }
            let n = u64::try_from(c.count).unwrap_or(0);
            match c.what {
                Counted::Event => activity.add_events(window, c.name, at_ms, n),
                Counted::Attempt => destinations.entry(c.name).or_default().0 += n,
                Counted::Failed => destinations.entry(c.name).or_default().1 += n,
                outcome => *outcomes.entry(outcome).or_default() += n,
            }
        }
        let mut outcomes: Vec<(Counted, u64)> =
            outcomes.into_iter().filter(|(_, n)| *n > 0).collect();
        outcomes.sort();
        activity.deliveries = outcomes
            .into_iter()
            .map(|(what, n)| (what.as_str().to_owned(), n))
            .collect();
        activity.destinations = destinations
            .into_iter()
            .map(|(destination, (attempts, failed))| DestinationActivity {
                destination,
                attempts,
                failed,
            })
            .collect();
        activity
            .destinations
            .sort_by(|a, b| a.destination.cmp(&b.destination));
        activity
    }

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

    #[test]
    fn aligned_windows_end_with_the_current_slot_and_split_into_whole_slots() {
        let w = Window::aligned(3_600_000 + 4_321, 3_600_000, 12);
        assert_eq!(
            (w.until_ms, w.bucket_ms, w.buckets),
            (3_610_000, 300_000, 12)
        );
        assert_eq!(w.since_ms(), 10_000);
        assert_eq!(w.slots(), (1, 361));
        // A minute has six slots: at most six bars, of one slot each.
        let w = Window::aligned(60_000, 60_000, 120);
        assert_eq!((w.until_ms, w.bucket_ms, w.buckets), (70_000, 10_000, 6));
        // Bars that do not divide the slots evenly are whole slots, and fewer of them cover
        // a little less than the span.
        let w = Window::aligned(0, 3_600_000, 7);
        assert_eq!((w.bucket_ms, w.buckets), (510_000, 7));
    }

    #[test]
    fn counters_add_up_per_bucket_outcome_and_destination() {
        let w = Window::aligned(3_600_000 - 1, 3_600_000, 6);
        let count = |slot, what, name: &str, count| ActivityCount {
            slot,
            what,
            name: name.into(),
            count,
        };
        let a = Activity::from_counts(
            &w,
            [
                count(359, Counted::Event, "shop", 2),
                count(359, Counted::Event, "shop", 3),
                count(0, Counted::Event, "shop", 1),
                count(-5, Counted::Event, "shop", 100),
                count(10, Counted::Attempt, "orders", 4),
                count(11, Counted::Failed, "orders", 1),
                count(11, Counted::Delivered, "orders", 3),
                count(12, Counted::Retrying, "b", 1),
                count(12, Counted::Dead, "b", 0),
            ],
        );
        assert_eq!(a.sources[0].per_bucket, [1, 0, 0, 0, 0, 5]);
        assert_eq!(
            a.deliveries,
            [("delivered".to_owned(), 3), ("retrying".to_owned(), 1)]
        );
        assert_eq!(
            a.destinations,
            [DestinationActivity {
                destination: "orders".into(),
                attempts: 4,
                failed: 1
            }]
        );
        for what in [Counted::Event, Counted::Failed, Counted::Dead] {
            assert_eq!(Counted::parse(what.as_str()), Some(what));
        }
    }
}
