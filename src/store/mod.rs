//! The durable store: one [`Store`] trait shaped by what ingest, delivery and the admin
//! API need, with one implementation per backend. Only this module speaks SQL.

pub mod activity;
pub mod activity_tally;
pub mod archive;
pub mod capacity;
mod commit;
#[cfg(test)]
pub(crate) mod conformance;
pub mod delivery;
pub mod event_filter;
pub mod headers;
pub mod key_hash;
pub mod model;
pub mod postgres;
pub mod redaction;
pub mod rekey;
pub mod replay;
pub mod retention;
pub mod seal;
mod sealed;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

pub use delivery::{
    AfterAttempt, AttemptRecord, BatchDue, Claim, ClaimedDelivery, Cluster, ClusterLimit,
    DeadAction, DeadFilter, DeliveryCount, DeliveryQuery, EventInput, PRIORITY_LEVELS,
    PRIORITY_STEP_MS, Pausable, Paused, Preparation, Prepared, RetryNow, StoredAttempt,
    StoredDelivery, Unprepared,
};
pub use model::{
    DeliverySummary, EventQuery, Inserted, NewDelivery, NewEvent, NewRejected, StoredEvent,
    StoredRejected, StoredRequest, StreamPosition,
};
pub use replay::{NewReplay, ReplayDelivery, ReplayStep, ReplayWrite, StoredReplay};
pub use retention::{Cutoffs, Purge, Purged};

/// A backend's own error (rusqlite's or tokio-postgres's), kept whole for the cause chain.
pub type DbError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in the store, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Too many requests are waiting for a commit: shed load (503, retry later).
    #[error("the store is overloaded: {0} requests are waiting for a commit")]
    Overloaded(usize),
    /// The commit failed (lock held elsewhere, disk full, I/O error): nothing was stored.
    /// Shared by every write of a failed group, hence the `Arc`.
    #[error("the store could not commit")]
    Commit(#[source] Arc<dyn std::error::Error + Send + Sync + 'static>),
    /// No answer from the writer within the commit timeout (a stalled disk): the write
    /// may still land later, but the sender must not be told it did.
    #[error("no commit within {0:?}")]
    CommitTimeout(std::time::Duration),
    /// The store has shut down, or its writer stopped.
    #[error("the store is closed")]
    Closed,
    /// Any other database error (the database may be unreachable: retry later).
    #[error("database error")]
    Database(#[source] DbError),
    /// Stored data that does not decode (a bug or a damaged file).
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// Another process has the embedded database open.
    #[error(
        "{0} is in use by another forebay process; the embedded store has one owner (stop the other, or give this one its own storage.url)"
    )]
    InUse(std::path::PathBuf),
    /// A sealed blob that does not open (a key missing or changed, or damaged data).
    #[error("stored data does not open: {0}")]
    Sealed(#[source] seal::OpenError),
    /// The configured encryption keys do not fit the data in the store.
    #[error("{0}")]
    Keys(String),
    /// The database lacks something a setting needs (an extension, a permission); the
    /// message names the setting and the fix.
    #[error("{0}")]
    Setup(String),
    /// The database file is newer than this binary.
    #[error(
        "the database schema is version {found}, newer than this forebay knows ({known}); upgrade forebay"
    )]
    SchemaTooNew { found: i64, known: i64 },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Database(Box::new(e))
    }
}

impl StoreError {
    /// True when the caller should answer 503 and the sender should retry.
    pub fn is_unavailable(&self) -> bool {
        !matches!(
            self,
            StoreError::Corrupt(_)
                | StoreError::Sealed(_)
                | StoreError::Keys(_)
                | StoreError::Setup(_)
                | StoreError::SchemaTooNew { .. }
        )
    }
}

impl StoreError {
    /// True when the same write may succeed if tried again soon: the database is
    /// restarting, unreachable, busy or out of space. False for what a retry cannot
    /// change (a rejected statement, damaged data) and for a store that has closed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Overloaded(_) | StoreError::Commit(_) | StoreError::CommitTimeout(_) => {
                true
            }
            StoreError::Database(e) => transient_database_error(e.as_ref()),
            StoreError::Closed
            | StoreError::Corrupt(_)
            | StoreError::Sealed(_)
            | StoreError::Keys(_)
            | StoreError::Setup(_)
            | StoreError::InUse(_)
            | StoreError::SchemaTooNew { .. } => false,
        }
    }
}

/// Connection loss, resource exhaustion and lock contention, as each driver reports them.
fn transient_database_error(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
        return match pg.code() {
            // No SQLSTATE: the connection closed, timed out or never opened.
            None => true,
            // 08 connection, 40 rollback (serialization, deadlock), 53 insufficient
            // resources, 57 operator intervention (shutdown), 58 system error.
            Some(code) => matches!(&code.code()[..2], "08" | "40" | "53" | "57" | "58"),
        };
    }
    if let Some(sqlite) = e.downcast_ref::<rusqlite::Error>() {
        use rusqlite::ErrorCode::*;
        return matches!(
            sqlite.sqlite_error_code(),
            Some(
                DatabaseBusy
                    | DatabaseLocked
                    | DiskFull
                    | SystemIoFailure
                    | CannotOpen
                    | OutOfMemory
            )
        );
    }
    // The pool could not hand out a connection: the database is unreachable or busy.
    e.downcast_ref::<deadpool_postgres::PoolError>().is_some()
}

/// The storage operations forebay needs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Commits an event with its deliveries, or records it as a duplicate. Returns only
    /// after the commit is durable.
    async fn insert_event(&self, event: NewEvent) -> Result<Inserted, StoreError>;

    /// Commits a request that failed verification.
    async fn insert_rejected(&self, rejected: NewRejected) -> Result<(), StoreError>;

    /// One event with its body, headers and deliveries.
    async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError>;

    /// A page of events, newest first, without bodies.
    async fn list_events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError>;

    /// Where event `id` stands in commit order (later commits stand higher), if stored.
    async fn event_position(&self, id: &str) -> Result<Option<StreamPosition>, StoreError>;

    /// Where a follower starts to see only what commits from now on: every event
    /// committed later stands after it. (On PostgreSQL a few events committed just
    /// before, while other commits were still open, may stand after it too.)
    async fn last_event_position(&self) -> Result<StreamPosition, StoreError>;

    /// Up to `limit` events committed after `position`, in commit order, with bodies and
    /// their positions. Commit order, not id order: an event whose id was made earlier
    /// but whose commit came later still comes after, so a follower never skips it. (On
    /// PostgreSQL an event shows only once every transaction older than its own has
    /// ended: the stream lags by the longest open transaction.)
    async fn events_after_position(
        &self,
        position: StreamPosition,
        source: Option<String>,
        limit: usize,
    ) -> Result<Vec<(StreamPosition, StoredEvent)>, StoreError>;

    /// A page of rejected requests, newest first, without bodies.
    async fn list_rejected(&self, query: EventQuery) -> Result<Vec<StoredRejected>, StoreError>;

    /// One rejected request with its (possibly cut) body.
    async fn get_rejected(&self, id: &str) -> Result<Option<StoredRejected>, StoreError>;

    /// Claims due deliveries to one destination (pending or retrying whose time has
    /// come, or in flight with an expired lease) for `claim.lease_ms`, oldest due first.
    async fn claim_deliveries(&self, claim: Claim) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records an attempt and moves its delivery to the attempt's next state, if the claim
    /// that made it still holds (same lease): a late report from an expired claim is
    /// recorded but does not overrule the newer claim. Waits for room in the writer's
    /// queue rather than failing: the send has happened, its record must not be lost.
    async fn record_attempt(&self, attempt: AttemptRecord) -> Result<(), StoreError>;

    /// The oldest deliveries (in receive order) whose route's filter, transform or
    /// ordering key has yet to run, with their events.
    async fn unprepared(
        &self,
        limit: usize,
        skip_routes: &[String],
    ) -> Result<Vec<Unprepared>, StoreError>;

    /// Writes what preparing a batch came to, all in one transaction: a split adds the
    /// parts after the first as new deliveries. Deliveries no longer waiting (discarded
    /// meanwhile) are left alone.
    async fn prepare(&self, batch: Vec<Prepared>, now_ms: i64) -> Result<(), StoreError>;

    /// When, after `after_ms`, the next delivery to one of `destinations` falls due (or a
    /// lease ends).
    async fn next_due_ms(
        &self,
        destinations: &[String],
        after_ms: i64,
    ) -> Result<Option<i64>, StoreError>;

    /// What waits to go in a batch of `route` to `destination` at `now_ms`: its due,
    /// prepared deliveries (counted up to `cap`), the oldest due time, and whether one of
    /// them is a retry.
    async fn batch_due(
        &self,
        destination: &str,
        route: &str,
        now_ms: i64,
        cap: usize,
    ) -> Result<BatchDue, StoreError>;

    /// A page of deliveries, newest first, without attempts.
    async fn list_deliveries(
        &self,
        query: DeliveryQuery,
    ) -> Result<Vec<StoredDelivery>, StoreError>;

    /// One delivery with all its attempts.
    async fn get_delivery(&self, id: &str) -> Result<Option<StoredDelivery>, StoreError>;

    /// Makes a pending, retrying or dead delivery due at `now_ms`, keeping its attempts.
    async fn retry_delivery(&self, id: &str, now_ms: i64) -> Result<RetryNow, StoreError>;

    /// Retries or discards every dead delivery matching `filter`; returns how many.
    async fn act_on_dead(
        &self,
        filter: DeadFilter,
        action: DeadAction,
        now_ms: i64,
    ) -> Result<usize, StoreError>;

    /// Pauses (or resumes) a route or destination; kept across restarts. `reason` says
    /// why forebay paused it (`None` when an operator does); pausing what is paused
    /// replaces the reason.
    async fn set_paused(
        &self,
        kind: Pausable,
        name: &str,
        paused: bool,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Every paused route and destination.
    async fn paused(&self) -> Result<Vec<Paused>, StoreError>;

    /// How many deliveries are open (pending, in flight, retrying) or dead, per route,
    /// destination and state, for backlogs, the dead-letter size and metrics. Finished
    /// states are left out: counting them would read every delivery ever made.
    async fn delivery_counts(&self) -> Result<Vec<DeliveryCount>, StoreError>;

    /// Events, attempts and their outcomes over a recent window, for the dashboard: from
    /// the counters of every process sharing the store (as of their last flush) and this
    /// process's own tally.
    async fn activity(&self, window: activity::Window) -> Result<activity::Activity, StoreError>;

    /// Adds this process's activity tally to the store's counters (every
    /// [`activity_tally::FLUSH_EVERY`], and on close).
    async fn flush_activity(&self) -> Result<(), StoreError>;

    /// Creates, advances or cancels a replay job. Returns whether the job is still
    /// running afterwards (`false` when it was cancelled meanwhile or has finished), or
    /// `None` when there is no such job.
    async fn write_replay(&self, write: ReplayWrite) -> Result<Option<bool>, StoreError>;

    /// One replay job, with its deliveries per state.
    async fn get_replay(&self, id: &str) -> Result<Option<StoredReplay>, StoreError>;

    /// Replay jobs, newest first (without delivery counts); `running_only` for the ones
    /// to resume at start.
    async fn list_replays(
        &self,
        running_only: bool,
        limit: usize,
    ) -> Result<Vec<StoredReplay>, StoreError>;

    /// Removes what retention no longer keeps, at most `purge.limit` rows of each kind,
    /// in one transaction.
    async fn purge(&self, purge: &Purge) -> Result<Purged, StoreError>;

    /// The next events for the cold archive: received before `before_ms`, ids after
    /// `after`, none of their deliveries waiting, oldest first, at most `limit`, whole
    /// (bodies opened).
    async fn archivable(
        &self,
        before_ms: i64,
        after: &str,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// One step of the archive's manifest (see [`archive`]); `None` when a `Finish`
    /// found its object no longer uploading, else the events it removed.
    async fn archive_step(&self, step: archive::ArchiveStep) -> Result<Option<usize>, StoreError>;

    /// The archive's objects in `state`, newest first, before name `before`.
    async fn list_archive(
        &self,
        state: &str,
        before: Option<String>,
        limit: usize,
    ) -> Result<Vec<archive::ArchiveObject>, StoreError>;

    /// How much room the store's data takes (for `[storage] max_size`).
    async fn usage(&self) -> Result<capacity::Usage, StoreError>;

    /// Removes the oldest events that no delivery waits for, with their deliveries,
    /// attempts and duplicates, and rejected requests of their time, at most
    /// `evict.limit` of each, in one transaction (see [`capacity`]).
    async fn evict(&self, evict: &capacity::Evict) -> Result<capacity::Evicted, StoreError>;

    /// Gives up to `max_bytes` of the space freed by eviction and retention back to the
    /// file system, where the store can.
    async fn reclaim(&self, max_bytes: u64) -> Result<capacity::Reclaimed, StoreError>;

    /// Up to `limit` events whose redaction waited for their deliveries, all of which
    /// have now finished, oldest first, opened.
    async fn redactions_due(
        &self,
        limit: usize,
    ) -> Result<Vec<redaction::DueRedaction>, StoreError>;

    /// Writes what due redactions came to, each only if it still waits, and stops them
    /// waiting.
    async fn finish_redactions(
        &self,
        writes: Vec<redaction::RedactionWrite>,
    ) -> Result<(), StoreError>;

    /// Reseals one batch of `table` with the active key: up to `limit` rows with ids
    /// after `after` (`""` to start), in id order, each in one transaction with its
    /// batch (see [`rekey`]).
    async fn reseal(
        &self,
        table: rekey::SealedTable,
        after: String,
        limit: usize,
    ) -> Result<rekey::ResealStep, StoreError>;

    /// How many rows of `table` a rekey looks at (for its progress).
    async fn count_sealable(&self, table: rekey::SealedTable) -> Result<u64, StoreError>;

    /// After a rekey: records every key but the active one that no stored row is sealed
    /// with any more as retired, so it may leave the configuration. Keys some row still
    /// names (written since the rekey passed, by a process with another `active`) stay.
    async fn retire_keys(&self) -> Result<rekey::Retired, StoreError>;

    /// Whether this process is the one that runs background maintenance (retention,
    /// releasing dead processes' claims). A store with one owner process always is; a
    /// shared one elects one holder, and another takes over when it dies.
    async fn lead_maintenance(&self) -> bool {
        true
    }

    /// Ends now the leases of claims held by processes that have died, so that their
    /// deliveries are sent again at once rather than when the leases run out. Returns
    /// how many. A store with one owner process has no one else's claims to release.
    async fn release_dead_claims(&self, _now_ms: i64) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// Joins the cluster of processes sharing this store: the store holds each
    /// destination's limits across all of them, and wakes the engine when another
    /// process commits work for it. A store with one owner process (SQLite) has nothing
    /// to do: the engine's own limits and wake-ups suffice.
    fn join_cluster(&self, _cluster: Cluster) {}

    /// Ok when the store answers queries and its schema is current.
    async fn ready(&self) -> Result<(), StoreError>;

    /// Commits what is queued, the activity tally with it, and stops the writer. Later
    /// writes fail with `Closed`.
    async fn close(&self);
}

#[cfg(test)]
mod transient_tests {
    use super::StoreError;

    fn sqlite(code: std::ffi::c_int) -> StoreError {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None).into()
    }

    #[test]
    fn a_busy_or_full_sqlite_is_worth_retrying_a_rejected_statement_is_not() {
        for code in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_IOERR,
        ] {
            assert!(sqlite(code).is_transient(), "code {code}");
        }
        for code in [
            rusqlite::ffi::SQLITE_CONSTRAINT,
            rusqlite::ffi::SQLITE_MISMATCH,
        ] {
            assert!(!sqlite(code).is_transient(), "code {code}");
        }
        assert!(
            !StoreError::Closed.is_transient(),
            "a closed store stays closed"
        );
        assert!(!StoreError::Corrupt("x".into()).is_transient());
        assert!(StoreError::CommitTimeout(std::time::Duration::from_secs(1)).is_transient());
    }

    #[tokio::test]
    async fn an_unreachable_postgres_is_worth_retrying_a_rejected_statement_is_not() {
        // Nothing listens on port 1: a connection error, no SQLSTATE.
        let refused =
            tokio_postgres::connect("postgres://root@127.0.0.1:1/test", tokio_postgres::NoTls)
                .await
                .map(|_| ())
                .expect_err("nothing listens on port 1");
        assert!(StoreError::from(refused).is_transient());

        let url = super::postgres::test_support::url();
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("the local PostgreSQL");
        tokio::spawn(connection);
        let syntax = client
            .batch_execute("SELEC 1")
            .await
            .expect_err("syntax error");
        assert!(!StoreError::from(syntax).is_transient());
        let division = client
            .query_one("SELECT 1 / 0", &[])
            .await
            .expect_err("division by zero");
        assert!(!StoreError::from(division).is_transient());
    }
}
