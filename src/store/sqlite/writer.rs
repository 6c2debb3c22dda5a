//! The one writer: a thread that owns the write connection and commits in groups.
//!
//! Requests queue on a bounded channel. The writer takes the first, drains whatever else
//! is already waiting (up to `max_batch`), and commits them all in one transaction: one
//! fsync for the group, so throughput does not depend on the fsync rate. If one request
//! fails, the group is rolled back and committed again one request per transaction, so
//! one bad request cannot spoil its neighbours. Replies go out only after `COMMIT` has
//! returned.

use std::os::raw::c_int;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::Checkpointer;
use super::recent_dedup::RecentDedup;
use super::write_deliveries;
use super::write_deliveries::PauseChange;
use super::write_events::{insert_event, insert_rejected};
use crate::store::activity::ActivityCount;
use crate::store::archive::ArchiveStep;
use crate::store::capacity::{Evict, Evicted, Reclaimed};
use crate::store::rekey::{Resealed, SealedTable};
use crate::store::seal::Sealer;
use crate::store::{
    AttemptRecord, Claim, ClaimedDelivery, DeadAction, DeadFilter, Inserted, NewEvent, NewRejected,
    Prepared, Purge, Purged, ReplayWrite, RetryNow, StoreError,
};

/// Work for the writer.
#[allow(
    clippy::large_enum_variant,
    reason = "Close is sent once per process; boxing every write would cost an allocation per request"
)]
pub(super) enum Op {
    Write(Write),
    /// Commit everything queued before this, checkpoint the WAL, then stop.
    Close(oneshot::Sender<()>),
}

pub(super) struct Writer {
    conn: Connection,
    rx: mpsc::Receiver<Op>,
    max_batch: usize,
    checkpointer: Checkpointer,
    /// The newest dedup entries; lives and dies with the transactions of this thread.
    recent: RecentDedup,
    /// No merging of dedup entries before this (set after a merge failed).
    merge_after: Instant,
    /// Opens the events a claim sends.
    sealer: Arc<Sealer>,
}

/// How long merging pauses after a merge failed.
const MERGE_BACKOFF: Duration = Duration::from_secs(10);

impl Writer {
    pub(super) fn new(
        mut conn: Connection,
        rx: mpsc::Receiver<Op>,
        max_batch: usize,
        checkpointer: Checkpointer,
        recent: RecentDedup,
        sealer: Arc<Sealer>,
    ) -> rusqlite::Result<Self> {
        let progress = checkpointer.progress();
        // Registered after `wal_autocheckpoint = 0`, which would replace it.
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames: c_int| {
            progress
                .frames
                .store(usize::try_from(frames).unwrap_or(0), Ordering::Relaxed);
            Ok(())
        }))?;
        Ok(Self {
            conn,
            rx,
            max_batch,
            checkpointer,
            recent,
            merge_after: Instant::now(),
            sealer,
        })
    }

    /// Checkpoints from the writer itself once the WAL is long. Between two groups no
    /// frames are being added, so this checkpoint can finish (the checkpoint thread has
    /// already copied most frames), and the next transaction then rewinds the WAL to its
    /// start instead of growing it.
    fn keep_wal_short(&mut self) {
        if !self.checkpointer.writer_should_rewind() {
            return;
        }
        match self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            }) {
            Ok((frames, copied)) if copied < frames => tracing::debug!(
                frames,
                copied,
                "WAL not fully checkpointed (a reader holds an old snapshot); it rewinds later"
            ),
            Ok(_) => self.checkpointer.rewound(),
            Err(e) => crate::throttled!(warn, error = %e, "WAL checkpoint from the writer failed"),
        }
    }

    /// Runs until a `Close` op arrives or every sender is gone.
    pub(super) fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = self.rx.blocking_recv() {
            let mut close = None;
            match first {
                Op::Write(w) => batch.push(w),
                Op::Close(reply) => close = Some(reply),
            }
            while close.is_none() && batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(Op::Write(w)) => batch.push(w),
                    Ok(Op::Close(reply)) => close = Some(reply),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
            if let Some(reply) = close {
                // Ops queued after the close are answered `Closed` when `rx` drops.
                // Leave a compact file behind; a failed checkpoint loses nothing.
                let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
                let _ = reply.send(());
                return;
            }
        }
    }

    /// Commits `batch` in one transaction and answers every write in it.
    ///
    /// The fast path applies every write in one transaction without savepoints (a
    /// savepoint makes SQLite copy each page it touches into a statement journal, which
    /// cost about a sixth of the writer's time). If a write fails, the group is rolled
    /// back and each write is retried in its own transaction, so one bad write cannot
    /// fail its neighbours.
    fn commit(&mut self, batch: &mut Vec<Write>) {
        if batch.is_empty() {
            return;
        }
        let size = batch.len();
        let mut result = self.transact(batch, true);
        if let Err(GroupError::Merge(e)) = &result {
            // Merging is upkeep: the group commits without it, and merging waits a while
            // rather than costing every group a doomed try (a full disk, say).
            crate::throttled!(warn, error = %e, "merging dedup entries failed; retrying in {}s", MERGE_BACKOFF.as_secs());
            self.merge_after = Instant::now() + MERGE_BACKOFF;
            result = self.transact(batch, false);
        }
        match result {
            Ok(outcomes) => {
                tracing::trace!(size, "group commit");
                // Counted before the answers, so whoever hears back sees it counted.
                crate::metrics::commit_batch(size);
                for (w, outcome) in batch.drain(..).zip(outcomes) {
                    w.answer(outcome);
                }
            }
            Err(GroupError::Write(e)) if size > 1 => {
                crate::throttled!(warn, error = %e, size, "a write failed; committing the group one by one");
                self.commit_one_by_one(batch);
            }
            Err(GroupError::Write(e) | GroupError::Transaction(e) | GroupError::Merge(e)) => {
                crate::throttled!(error, error = %e, size, "commit failed; nothing in it was stored");
                let e = Arc::new(e);
                for w in batch.drain(..) {
                    w.fail(&e);
                }
            }
        }
        self.checkpointer.nudge();
        self.keep_wal_short();
    }

    /// The fallback after a failed write: each write in its own transaction, so only the
    /// bad one fails. If the store itself fails (the transaction cannot begin or commit),
    /// the rest fail at once rather than each waiting out the busy timeout.
    fn commit_one_by_one(&mut self, batch: &mut Vec<Write>) {
        let mut writes = batch.drain(..);
        while let Some(w) = writes.next() {
            match self.transact(std::slice::from_ref(&w), false) {
                Ok(mut outcomes) => match outcomes.pop() {
                    Some(outcome) => w.answer(outcome),
                    None => w.fail(&Arc::new(rusqlite::Error::QueryReturnedNoRows)),
                },
                Err(GroupError::Write(e)) => {
                    crate::throttled!(warn, error = %e, "a write failed on its own; answering 503");
                    w.fail(&Arc::new(e));
                }
                Err(GroupError::Transaction(e) | GroupError::Merge(e)) => {
                    crate::throttled!(error, error = %e, "commit failed; nothing left in the group was stored");
                    let e = Arc::new(e);
                    w.fail(&e);
                    writes.by_ref().for_each(|rest| rest.fail(&e));
                }
            }
        }
    }

    /// Applies `batch` in one transaction. A failed write rolls the whole group back.
    /// With `merge`, the transaction first merges a slice of dedup entries if one is due
    /// and merging is not backing off; a failed merge rolls the group back as
    /// [`GroupError::Merge`], and the caller commits the group again without it.
    fn transact(&mut self, batch: &[Write], merge: bool) -> Result<Vec<Outcome>, GroupError> {
        let merge = merge && Instant::now() >= self.merge_after;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(GroupError::Transaction)?;
        self.recent.begin();
        let applied = (|| {
            let merged = if merge {
                self.recent.merge_if_due(&tx).map_err(GroupError::Merge)?
            } else {
                None
            };
            let mut outcomes = Vec::with_capacity(batch.len());
            for w in batch {
                outcomes.push(
                    apply(&tx, &mut self.recent, &self.sealer, w).map_err(GroupError::Write)?,
                );
            }
            tx.commit().map_err(GroupError::Transaction)?;
            Ok((outcomes, merged))
        })();
        match applied {
            Ok((outcomes, merged)) => {
                self.recent.committed(merged);
                Ok(outcomes)
            }
            Err(e) => {
                self.recent.rolled_back();
                Err(e)
            }
        }
    }
}

/// Why a group did not commit.
enum GroupError {
    /// One write failed (possibly only that write's fault).
    Write(rusqlite::Error),
    /// Beginning or committing failed (the store's fault: lock, disk, I/O).
    Transaction(rusqlite::Error),
    /// Merging dedup entries failed; no write was tried.
    Merge(rusqlite::Error),
}

/// A write and the channel that awaits its answer.
pub(super) enum Write {
    Event(NewEvent, oneshot::Sender<Result<Inserted, StoreError>>),
    Rejected(NewRejected, oneshot::Sender<Result<(), StoreError>>),
    Claim(
        Claim,
        oneshot::Sender<Result<Vec<ClaimedDelivery>, StoreError>>,
    ),
    Attempt(AttemptRecord, oneshot::Sender<Result<(), StoreError>>),
    Retry(String, i64, oneshot::Sender<Result<RetryNow, StoreError>>),
    Pause(PauseChange, oneshot::Sender<Result<(), StoreError>>),
    Dead(
        DeadFilter,
        DeadAction,
        i64,
        oneshot::Sender<Result<usize, StoreError>>,
    ),
    Prepare(Vec<Prepared>, i64, oneshot::Sender<Result<(), StoreError>>),
    Replay(
        ReplayWrite,
        oneshot::Sender<Result<Option<bool>, StoreError>>,
    ),
    Purge(Purge, oneshot::Sender<Result<Purged, StoreError>>),
    /// One pass of the size cap's eviction.
    Evict(Evict, oneshot::Sender<Result<Evicted, StoreError>>),
    /// A step of the archive's manifest.
    Archive(
        ArchiveStep,
        oneshot::Sender<Result<Option<usize>, StoreError>>,
    ),
    /// Give up to this many bytes of free pages back to the file system.
    Reclaim(u64, oneshot::Sender<Result<Reclaimed, StoreError>>),
    /// Resealed blobs to write back (`forebay rekey`).
    Reseal(
        SealedTable,
        Vec<Resealed>,
        oneshot::Sender<Result<usize, StoreError>>,
    ),
    /// What due redactions came to.
    Redact(
        Vec<crate::store::redaction::RedactionWrite>,
        oneshot::Sender<Result<(), StoreError>>,
    ),
    /// Retire these keys, at this time.
    RetireKeys(Vec<String>, i64, oneshot::Sender<Result<(), StoreError>>),
    /// Activity counters to add, and the slot before which they are trimmed.
    Activity(
        Vec<ActivityCount>,
        i64,
        oneshot::Sender<Result<(), StoreError>>,
    ),
}

/// What one write produced inside the transaction; sent only once the commit is durable.
enum Outcome {
    Event(Inserted),
    Rejected,
    Claimed(Vec<ClaimedDelivery>),
    Recorded,
    Retried(RetryNow),
    Changed(usize),
    Replayed(Option<bool>),
    Purged(Purged),
    Evicted(Evicted),
    Archived(Option<usize>),
    Reclaimed(Reclaimed),
}

impl Write {
    /// Sends the outcome. The write's payload (the body, and the ingest memory it holds)
    /// is released first, so a sender that hears back can count on that memory being
    /// free again.
    fn answer(self, outcome: Outcome) {
        match (self, outcome) {
            (Write::Event(event, reply), Outcome::Event(inserted)) => {
                drop(event);
                let _ = reply.send(Ok(inserted));
            }
            (Write::Rejected(rejected, reply), Outcome::Rejected) => {
                drop(rejected);
                let _ = reply.send(Ok(()));
            }
            (Write::Attempt(_, reply), Outcome::Recorded)
            | (Write::Pause(_, reply), Outcome::Recorded)
            | (Write::Activity(_, _, reply), Outcome::Recorded)
            | (Write::Prepare(_, _, reply), Outcome::Recorded)
            | (Write::RetireKeys(_, _, reply), Outcome::Recorded)
            | (Write::Redact(_, reply), Outcome::Recorded) => {
                let _ = reply.send(Ok(()));
            }
            (Write::Claim(_, reply), Outcome::Claimed(claimed)) => {
                let _ = reply.send(Ok(claimed));
            }
            (Write::Retry(_, _, reply), Outcome::Retried(result)) => {
                let _ = reply.send(Ok(result));
            }
            (Write::Dead(_, _, _, reply), Outcome::Changed(n))
            | (Write::Reseal(_, _, reply), Outcome::Changed(n)) => {
                let _ = reply.send(Ok(n));
            }

            (Write::Replay(_, reply), Outcome::Replayed(running)) => {
                let _ = reply.send(Ok(running));
            }
            (Write::Purge(_, reply), Outcome::Purged(purged)) => {
                let _ = reply.send(Ok(purged));
            }
            (Write::Archive(_, reply), Outcome::Archived(n)) => {
                let _ = reply.send(Ok(n));
            }
            (Write::Evict(_, reply), Outcome::Evicted(evicted)) => {
                let _ = reply.send(Ok(evicted));
            }
            (Write::Reclaim(_, reply), Outcome::Reclaimed(reclaimed)) => {
                let _ = reply.send(Ok(reclaimed));
            }
            // `apply` returns the outcome kind of its write, so this cannot happen;
            // dropping the reply answers `Closed` rather than a wrong result.
            _ => {}
        }
    }

    fn fail(self, e: &Arc<rusqlite::Error>) {
        let error = || StoreError::Commit(e.clone() as Arc<dyn std::error::Error + Send + Sync>);
        match self {
            Write::Event(event, reply) => {
                drop(event);
                let _ = reply.send(Err(error()));
            }
            Write::Rejected(rejected, reply) => {
                drop(rejected);
                let _ = reply.send(Err(error()));
            }
            Write::Attempt(_, reply)
            | Write::Activity(_, _, reply)
            | Write::Pause(_, reply)
            | Write::Prepare(_, _, reply)
            | Write::RetireKeys(_, _, reply)
            | Write::Redact(_, reply) => {
                let _ = reply.send(Err(error()));
            }
            Write::Claim(_, reply) => {
                let _ = reply.send(Err(error()));
            }
            Write::Retry(_, _, reply) => {
                let _ = reply.send(Err(error()));
            }
            Write::Dead(_, _, _, reply) | Write::Reseal(_, _, reply) => {
                let _ = reply.send(Err(error()));
            }

            Write::Replay(_, reply) => {
                let _ = reply.send(Err(error()));
            }
            Write::Purge(_, reply) => {
                let _ = reply.send(Err(error()));
            }
            Write::Archive(_, reply) => {
                let _ = reply.send(Err(error()));
            }
            Write::Evict(_, reply) => {
                let _ = reply.send(Err(error()));
            }
            Write::Reclaim(_, reply) => {
                let _ = reply.send(Err(error()));
            }
        }
    }
}

/// Applies one write inside the group's transaction.
fn apply(
    conn: &Connection,
    recent: &mut RecentDedup,
    sealer: &Sealer,
    w: &Write,
) -> rusqlite::Result<Outcome> {
    match w {
        Write::Event(event, _) => insert_event(conn, recent, event).map(Outcome::Event),
        Write::Rejected(rej, _) => insert_rejected(conn, rej).map(|()| Outcome::Rejected),
        Write::Claim(claim, _) => {
            write_deliveries::claim(conn, sealer, claim).map(Outcome::Claimed)
        }
        Write::Attempt(attempt, _) => {
            write_deliveries::record_attempt(conn, attempt).map(|()| Outcome::Recorded)
        }
        Write::Retry(id, now_ms, _) => {
            write_deliveries::retry_now(conn, id, *now_ms).map(Outcome::Retried)
        }
        Write::Dead(filter, action, now_ms, _) => {
            write_deliveries::act_on_dead(conn, filter, action, *now_ms).map(Outcome::Changed)
        }
        Write::Pause(change, _) => {
            write_deliveries::set_paused(conn, change).map(|()| Outcome::Recorded)
        }
        Write::Replay(write, _) => super::replays::write(conn, write).map(Outcome::Replayed),
        Write::Purge(purge, _) => super::purge::purge(conn, purge).map(Outcome::Purged),
        Write::Evict(evict, _) => super::capacity::evict(conn, evict).map(Outcome::Evicted),
        Write::Archive(step, _) => super::archive::step(conn, step).map(Outcome::Archived),
        Write::Reclaim(bytes, _) => super::capacity::reclaim(conn, *bytes).map(Outcome::Reclaimed),
        Write::Prepare(prepared, now_ms, _) => {
            write_deliveries::prepare(conn, prepared, *now_ms).map(|()| Outcome::Recorded)
        }
        Write::Reseal(table, rows, _) => {
            super::reseal::write(conn, *table, rows).map(Outcome::Changed)
        }
        Write::Redact(writes, _) => {
            super::redactions::finish(conn, writes).map(|()| Outcome::Recorded)
        }
        Write::RetireKeys(ids, now_ms, _) => {
            super::reseal::retire_keys(conn, ids, *now_ms).map(|()| Outcome::Recorded)
        }
        Write::Activity(counts, trim_before, _) => {
            super::activity::add(conn, counts, *trim_before).map(|()| Outcome::Recorded)
        }
    }
}
