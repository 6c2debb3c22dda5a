//! What a retention pass asks of the store: per source, the receive time before which
//! events, attempts and rejected requests go. Built from the configuration by
//! [`crate::maintenance`]; each backend turns it into bounded `DELETE`s.

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
    /// For data of sources not in `sources` (removed from the configuration).
    pub others: Cutoffs,
    /// Most rows of each kind removed by this pass, so that no transaction holds the
    /// store for long; the caller repeats while a pass comes back full.
    pub limit: usize,
}

/// What a pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub events: usize,
    pub attempts: usize,
    pub rejected: usize,
}

impl Purged {
    /// Whether any kind hit the pass's limit (more may be waiting).
    pub fn is_full(&self, limit: usize) -> bool {
        self.events >= limit || self.attempts >= limit || self.rejected >= limit
    }

    pub fn add(&mut self, other: Purged) {
        self.events += other.events;
        self.attempts += other.attempts;
        self.rejected += other.rejected;
    }
}

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

    /// The `DELETE` of one scope, for either backend: `sigil` is `?` (SQLite) or `$`
    /// (PostgreSQL), `scope` a condition on `e.source` over parameter 1. Parameters: 1
    /// the scope's names, 2 the [`id_bound`] of the cutoff, 3 the cutoff, 4 the room
    /// left in the pass. The walk follows ids up to the bound, so a pass costs the rows
    /// it removes plus those it must keep, not the whole table.
    pub fn delete_sql(self, scope: &str, sigil: char) -> String {
        let p = |n: u8| format!("{sigil}{n}");
        let (names, bound, cutoff, room) = (p(1), p(2), p(3), p(4));
        let scope = scope.replace("{names}", &names);
        match self {
            // An event stays while one of its deliveries waits: pending, in flight,
            // retrying or dead (a dead letter is work the user has yet to decide on).
            Kind::Events => format!(
                "DELETE FROM events WHERE id IN (
                     SELECT e.id FROM events AS e
                     WHERE {scope} AND e.id < {bound} AND e.received_at < {cutoff}
                       AND NOT EXISTS (
                           SELECT 1 FROM deliveries AS d WHERE d.event_id = e.id
                             AND d.state IN ('pending', 'in_flight', 'retrying', 'dead'))
                     ORDER BY e.id LIMIT {room})"
            ),
            // Attempts go only once their delivery has finished: a retrying delivery
            // counts its attempts.
            Kind::Attempts => format!(
                "DELETE FROM attempts WHERE id IN (
                     SELECT a.id FROM attempts AS a
                     JOIN deliveries AS d ON d.id = a.delivery_id
                     JOIN events AS e ON e.id = d.event_id
                     WHERE {scope} AND a.id < {bound} AND a.started_at < {cutoff}
                       AND d.state IN ('delivered', 'filtered', 'discarded')
                     ORDER BY a.id LIMIT {room})"
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

/// Which sources one step of a pass covers.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// One configured source.
    Source(&'a str),
    /// Every source not among these (those no longer configured).
    Others(&'a [(String, Cutoffs)]),
}

impl Purge {
    /// Each scope with its cutoffs: the configured sources, then the others.
    pub fn scopes(&self) -> impl Iterator<Item = (Scope<'_>, Cutoffs)> {
        self.sources
            .iter()
            .map(|(name, cutoffs)| (Scope::Source(name), *cutoffs))
            .chain(std::iter::once((Scope::Others(&self.sources), self.others)))
    }
}

impl Scope<'_> {
    /// The names this scope is about: the source, or the ones it excludes.
    pub fn names(&self) -> Vec<String> {
        match self {
            Scope::Source(name) => vec![(*name).to_owned()],
            Scope::Others(named) => named.iter().map(|(n, _)| n.clone()).collect(),
        }
    }
}
