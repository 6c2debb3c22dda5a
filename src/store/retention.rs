//! What a retention pass asks of the store: per source, the receive time before which
//! events, attempts and rejected requests go. Built from the configuration by
//! [`crate::maintenance`]; each backend turns it into bounded `DELETE`s.

use std::collections::BTreeMap;

/// Receive times (ms since the epoch) before which data is purged; `None` keeps all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cutoffs {
    /// Events received earlier go, with their deliveries, attempts and duplicates, unless
    /// one of their deliveries still waits (pending, in flight, retrying or dead).
    pub events: Option<i64>,
    /// Attempts started earlier go, when their delivery has finished (delivered,
    /// filtered or discarded).
    pub attempts: Option<i64>,
    /// Rejected requests received earlier go.
    pub rejected: Option<i64>,
}

/// One bounded pass of retention.
#[derive(Debug, Clone, Default)]
pub struct Purge {
    /// The configured sources and their cutoffs.
    pub sources: Vec<(String, Cutoffs)>,
    /// For data of sources not in `sources` (removed from the configuration), and for
    /// finished replay jobs (their `events` period, from when they finished).
    pub others: Cutoffs,
    /// Most rows of each kind removed by this pass, so that no transaction holds the
    /// store for long; the caller repeats while a pass comes back full.
    pub limit: usize,
    /// Per source, the last attempt an earlier pass of this round removed: the walk
    /// goes on after it, so the attempts a pass kept (their delivery still retrying or
    /// dead) are not walked again by every later pass. A new round starts from the
    /// beginning, since a kept attempt's delivery may have finished meanwhile.
    pub attempts_after: BTreeMap<String, String>,
}

/// What a pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    pub events: usize,
    pub attempts: usize,
    pub rejected: usize,
    /// Finished replay jobs.
    pub replays: usize,
    /// Per source, the last attempt this pass removed (for [`Purge::attempts_after`]).
    pub attempts_upto: BTreeMap<String, String>,
}

impl Purged {
    /// Whether any kind hit the pass's limit (more may be waiting).
    pub fn is_full(&self, limit: usize) -> bool {
        self.events >= limit
            || self.attempts >= limit
            || self.rejected >= limit
            || self.replays >= limit
    }

    /// Adds a pass's counts (the cursors are the caller's to carry).
    pub fn add(&mut self, other: &Purged) {
        self.events += other.events;
        self.attempts += other.attempts;
        self.rejected += other.rejected;
        self.replays += other.replays;
    }

    /// Whether the pass removed nothing.
    pub fn is_empty(&self) -> bool {
        self.events + self.attempts + self.rejected + self.replays == 0
    }
}

impl Purge {
    /// The next pass of the same round: its attempt walks go on after what `pass` removed.
    pub fn after(&mut self, pass: &Purged) {
        for (source, last) in &pass.attempts_upto {
            self.attempts_after.insert(source.clone(), last.clone());
        }
    }
}

/// Finished replay jobs that finished before the cutoff (parameter 1), at most the room
/// left (parameter 2); the same text on both backends but for the sigil.
pub fn delete_replays_sql(sigil: char) -> String {
    format!(
        "DELETE FROM replays WHERE id IN (
             SELECT id FROM replays
             WHERE state <> 'running' AND finished_at < {sigil}1
             ORDER BY id LIMIT {sigil}2)"
    )
}

/// The condition that keeps an event `e`: one of its deliveries waits (pending, in
/// flight, retrying or dead: a dead letter is work the user has yet to decide on).
pub const NO_WAITING_DELIVERY: &str = "NOT EXISTS (
    SELECT 1 FROM deliveries AS d WHERE d.event_id = e.id
      AND d.state IN ('pending', 'in_flight', 'retrying', 'dead'))";

/// The three kinds of data retention removes, each with its one bounded statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Events,
    Attempts,
    Rejected,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Events, Kind::Attempts, Kind::Rejected];

    pub fn cutoff(self, cutoffs: &Cutoffs) -> Option<i64> {
        match self {
            Kind::Events => cutoffs.events,
            Kind::Attempts => cutoffs.attempts,
            Kind::Rejected => cutoffs.rejected,
        }
    }

    /// This kind's tally in `purged`.
    pub fn tally(self, purged: &mut Purged) -> &mut usize {
        match self {
            Kind::Events => &mut purged.events,
            Kind::Attempts => &mut purged.attempts,
            Kind::Rejected => &mut purged.rejected,
        }
    }

    pub fn id_prefix(self) -> &'static str {
        match self {
            Kind::Events => crate::id::EVENT,
            Kind::Attempts => crate::id::ATTEMPT,
            Kind::Rejected => crate::id::REJECTED,
        }
    }

    /// The `DELETE` for one source, for either backend: `sigil` is `?` (SQLite) or `$`
    /// (PostgreSQL). Parameters: 1 the source, 2 the [`id_bound`] of the cutoff, 3 the
    /// cutoff, 4 the room left in the pass; for attempts 5, the id to walk after
    /// ([`Purge::attempts_after`], `""` from the start), and the removed ids come back
    /// (`RETURNING id`). The walk follows the source's ids up to the bound, so a pass
    /// costs the rows it removes plus those it must keep, not the whole table.
    pub fn delete_sql(self, sigil: char) -> String {
        let p = |n: u8| format!("{sigil}{n}");
        let (source, bound, cutoff, room) = (p(1), p(2), p(3), p(4));
        let scope = format!("e.source = {source}");
        match self {
            Kind::Events => format!(
                "DELETE FROM events WHERE id IN (
                     SELECT e.id FROM events AS e
                     WHERE {scope} AND e.id < {bound} AND e.received_at < {cutoff}
                       AND {NO_WAITING_DELIVERY}
                     ORDER BY e.id LIMIT {room})"
            ),
            // Attempts go only once their delivery has finished: a retrying delivery
            // counts its attempts.
            Kind::Attempts => format!(
                "DELETE FROM attempts WHERE id IN (
                     SELECT a.id FROM attempts AS a
                     JOIN deliveries AS d ON d.id = a.delivery_id
                     JOIN events AS e ON e.id = d.event_id
                     WHERE {scope} AND a.id > {after} AND a.id < {bound}
                       AND a.started_at < {cutoff}
                       AND d.state IN ('delivered', 'filtered', 'discarded', 'superseded')
                     ORDER BY a.id LIMIT {room})
                 RETURNING id",
                after = p(5)
            ),
            Kind::Rejected => format!(
                "DELETE FROM rejected WHERE id IN (
                     SELECT e.id FROM rejected AS e
                     WHERE {scope} AND e.id < {bound} AND e.received_at < {cutoff}
                     ORDER BY e.id LIMIT {room})"
            ),
        }
    }
}

/// Ids are made a moment apart from the time stamped beside them; bounds on ids are
/// widened by this much, and the stamped time decides.
const ID_SLACK_MS: i64 = 60_000;

/// Every id of `prefix` made before `cutoff_ms` sorts below this bound, so a purge walks
/// the primary key (or a `(source, id)` index) only as far as the cutoff.
pub fn id_bound(prefix: &str, cutoff_ms: i64) -> String {
    crate::id::at_time(prefix, cutoff_ms.saturating_add(ID_SLACK_MS))
}

/// The tables whose sources retention looks for (see [`distinct_sources_sql`]).
pub const SOURCE_TABLES: [&str; 2] = ["events", "rejected"];

/// The sources that have rows in `table`: one index seek per source (a loose index
/// scan over `(source, id)`), not a walk of the table. The same text runs on both
/// backends.
pub fn distinct_sources_sql(table: &str) -> String {
    format!(
        "WITH RECURSIVE s(source) AS (
             SELECT min(source) FROM {table}
             UNION ALL
             SELECT (SELECT min(source) FROM {table} WHERE source > s.source) FROM s
             WHERE s.source IS NOT NULL)
         SELECT source FROM s WHERE source IS NOT NULL"
    )
}

impl Purge {
    /// Each source with its cutoffs: the configured ones, then every other source that
    /// has data (`stored`, from [`distinct_sources_sql`]) with the cutoffs for others. Each
    /// is then purged along its own `(source, id)` index, so what one source keeps
    /// longer is never walked for another.
    pub fn scopes<'a>(
        &'a self,
        stored: &'a [String],
    ) -> impl Iterator<Item = (&'a str, Cutoffs)> + 'a {
        let configured = |name: &String| self.sources.iter().any(|(n, _)| n == name);
        self.sources
            .iter()
            .map(|(name, cutoffs)| (name.as_str(), *cutoffs))
            .chain(
                stored
                    .iter()
                    .filter(move |name| !configured(name))
                    .map(|name| (name.as_str(), self.others)),
            )
    }
}
