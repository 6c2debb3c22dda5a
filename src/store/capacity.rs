//! What the size cap (`[storage] max_size`, see [`crate::size_cap`]) asks of a store:
//! how much its data takes, removing the oldest events that nothing waits for, and giving
//! freed space back to the file system.

use super::retention::NO_WAITING_DELIVERY;

/// How much room the store's data takes, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Held by data (rows and indexes); what the cap compares with `max_size`.
    pub used: u64,
    /// Taken from the file system: `used` plus free space the store keeps for reuse.
    pub allocated: u64,
}

/// What a reclaim gave back to the file system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    pub bytes: u64,
    /// Free space is left that the next reclaim could give back.
    pub more: bool,
}

/// One bounded pass of eviction.
#[derive(Debug, Clone, Default)]
pub struct Evict {
    /// Most events (and, separately, rejected requests) removed by the pass.
    pub limit: usize,
    /// The last event an earlier pass of the same round kept or removed: the walk goes
    /// on after it, so the waiting events at the front are not walked again by every
    /// pass. `""` starts from the oldest.
    pub after: String,
}

/// What a pass of eviction removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evicted {
    pub events: usize,
    pub rejected: usize,
    /// The newest event the pass removed (for [`Evict::after`]).
    pub last: Option<String>,
}

impl Evicted {
    pub fn is_empty(&self) -> bool {
        self.events + self.rejected == 0
    }
}

/// The oldest events after a cursor (parameter 1) that no delivery waits for (pending,
/// in flight, retrying or dead), at most parameter 2, in id order (receive order); the
/// same text on both backends but for the sigil.
pub fn evictable_events_sql(sigil: char) -> String {
    format!(
        "SELECT e.id FROM events AS e
         WHERE e.id > {sigil}1 AND {NO_WAITING_DELIVERY}
         ORDER BY e.id LIMIT {sigil}2"
    )
}

/// Rejected requests received no later than parameter 1, oldest first, at most
/// parameter 2. Eviction passes the newest removed event's receive time, so rejected
/// requests go in step with the events of their time (all of them, oldest first, when
/// no event may go).
pub fn evict_rejected_sql(sigil: char) -> String {
    format!(
        "DELETE FROM rejected WHERE id IN (
             SELECT id FROM rejected WHERE received_at <= {sigil}1
             ORDER BY id LIMIT {sigil}2)"
    )
}
