//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! One writer thread owns the only write connection and commits in groups
//! ([`writer`]); reads run on a small pool of read-only connections on the blocking
//! thread pool, so they never queue behind commits.

mod activity;
mod archive;
mod capacity;
mod checkpoint;
mod dedup;
mod purge;
mod read;
mod read_deliveries;
mod recent_dedup;
mod redactions;
mod replays;
mod reseal;
mod schema;
mod sealing_keys;
mod write_deliveries;
use write_deliveries::PauseChange;
mod write_events;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use super::activity_tally::{ActivityTally, AttemptTally};
use super::rekey::{self, ResealStep, SealedTable};
use super::seal::{Keys, Sealer};
use super::{
    AttemptRecord, BatchDue, Claim, ClaimedDelivery, DeadAction, DeadFilter, DeliveryCount,
    DeliveryQuery, EventQuery, Inserted, NewEvent, NewRejected, Pausable, Paused, Prepared, Purge,
    Purged, ReplayWrite, RetryNow, Store, StoreError, StoredDelivery, StoredEvent, StoredRejected,
    StoredReplay, StreamPosition, Unprepared,
};
use writer::{Op, Write, Writer};

/// The shared batch query with SQLite's `?n` parameters, rewritten once.
static BATCH_DUE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::store::delivery::BATCH_DUE.replace('$', "?"));

/// Tuning for [`SqliteStore::open`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub busy_timeout: Duration,
    pub max_batch: usize,
    pub queue_depth: usize,
    pub commit_timeout: Duration,
    /// WAL length (in frames, one page each) past which the writer checkpoints between
    /// groups so the WAL rewinds; bounds the WAL file under steady load.
    pub wal_rewind_frames: usize,
    /// Dedup entries held in memory before they are merged into the dedup table
    /// (`recent_dedup.rs`).
    pub dedup_merge_at: usize,
    /// The keys stored blobs are sealed with (`[storage] encryption`).
    pub keys: Keys,
    /// Overwrite deleted and rewritten content with zeros (`secure_delete`).
    pub scrub_freed: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            max_batch: 512,
            queue_depth: 8192,
            commit_timeout: Duration::from_secs(10),
            // 8192 pages of 4 KiB: 32 MiB of WAL.
            wal_rewind_frames: 8192,
            dedup_merge_at: recent_dedup::MERGE_AT,
            keys: Keys::default(),
            scrub_freed: false,
        }
    }
}

pub struct SqliteStore {
    /// The lock on `<db>.lock` that makes this process the file's only user.
    owner: Mutex<Option<std::fs::File>>,
    writes: mpsc::Sender<Op>,
    queue_depth: usize,
    commit_timeout: Duration,
    reads: ReadPool,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    tally: ActivityTally,
    sealer: Arc<Sealer>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates it, and starts the
    /// writer thread.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<Arc<Self>, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(Box::new(rusqlite::Error::InvalidPath(
                    format!("{}: {e}", dir.display()).into(),
                )))
            })?;
        }
        let owner = claim_ownership(path)?;
        let mut conn = Connection::open(path)?;
        capacity::prepare_new_file(&conn)?;
        configure_writer(&conn, options.busy_timeout)?;
        if options.scrub_freed || !options.keys.keys.is_empty() {
            // What a rekey or a redaction rewrites, and what retention removes, is
            // overwritten with zeros, so no plaintext is left behind in free space.
            conn.pragma_update(None, "secure_delete", "ON")?;
        }
        schema::migrate(&mut conn)?;
        let sealer = Arc::new(Sealer::new(&options.keys));
        sealing_keys::register(&conn, &sealer)?;
        release_orphaned_leases(&conn)?;

        let checkpointer = checkpoint::Checkpointer::start(
            path.to_owned(),
            options.busy_timeout,
            options.wal_rewind_frames,
        )
        .map_err(|e| StoreError::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
        let (tx, rx) = mpsc::channel(options.queue_depth);
        let recent = recent_dedup::RecentDedup::load(&conn, options.dedup_merge_at)?;
        let writer = Writer::new(
            conn,
            rx,
            options.max_batch,
            checkpointer,
            recent,
            sealer.clone(),
        )?;
        let handle = std::thread::Builder::new()
            .name("forebay-sqlite-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(Arc::new(Self {
            owner: Mutex::new(Some(owner)),
            writes: tx,
            queue_depth: options.queue_depth,
            commit_timeout: options.commit_timeout,
            reads: ReadPool::new(path.to_owned(), options.busy_timeout),
            writer: Mutex::new(Some(handle)),
            tally: ActivityTally::default(),
            sealer,
        }))
    }

    /// Queues a write without waiting for room: a full queue is an overload (503), not a
    /// reason to hold the sender's connection open.
    fn submit(&self, write: Write) -> Result<(), StoreError> {
        self.writes.try_send(Op::Write(write)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded(self.queue_depth),
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })
    }

    /// Waits for the writer's answer, at most `commit_timeout`.
    async fn answer<T>(
        &self,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        super::commit::await_answer(answer, self.commit_timeout).await
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.reads.clone();
        tokio::task::spawn_blocking(move || pool.with(f))
            .await
            .map_err(|e| StoreError::Corrupt(format!("read task failed: {e}")))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_event(&self, mut event: NewEvent) -> Result<Inserted, StoreError> {
        self.sealer.seal_event(&mut event);
        let (reply, answer) = oneshot::channel();
        let (source, at) = (event.source.clone(), event.received_at_ms);
        self.submit(Write::Event(event, reply))?;
        let inserted = self.answer(answer).await?;
        self.tally.event(&inserted, at, &source);
        Ok(inserted)
    }

    async fn insert_rejected(&self, mut rejected: NewRejected) -> Result<(), StoreError> {
        self.sealer.seal_rejected(&mut rejected);
        let (reply, answer) = oneshot::channel();
        self.submit(Write::Rejected(rejected, reply))?;
        self.answer(answer).await
    }

    async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let (id, sealer) = (id.to_owned(), self.sealer.clone());
        self.read(move |c| read::get_event(c, &sealer, &id)).await
    }

    async fn list_events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let sealer = self.sealer.clone();
        self.read(move |c| read::list_events(c, &sealer, &query))
            .await
    }

    async fn event_position(&self, id: &str) -> Result<Option<StreamPosition>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| read::event_position(c, &id)).await
    }

    async fn last_event_position(&self) -> Result<StreamPosition, StoreError> {
        self.read(read::last_event_position).await
    }

    async fn events_after_position(
        &self,
        position: StreamPosition,
        source: Option<String>,
        limit: usize,
    ) -> Result<Vec<(StreamPosition, StoredEvent)>, StoreError> {
        let sealer = self.sealer.clone();
        self.read(move |c| {
            read::events_after_position(c, &sealer, position, source.as_deref(), limit)
        })
        .await
    }

    async fn list_rejected(&self, query: EventQuery) -> Result<Vec<StoredRejected>, StoreError> {
        let sealer = self.sealer.clone();
        self.read(move |c| read::list_rejected(c, &sealer, &query))
            .await
    }

    async fn get_rejected(&self, id: &str) -> Result<Option<StoredRejected>, StoreError> {
        let (id, sealer) = (id.to_owned(), self.sealer.clone());
        self.read(move |c| read::get_rejected(c, &sealer, &id))
            .await
    }

    async fn claim_deliveries(&self, claim: Claim) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::Claim(claim, reply))?;
        self.answer(answer).await
    }

    async fn record_attempt(&self, mut attempt: AttemptRecord) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let tally = AttemptTally::of(&attempt);
        self.sealer.seal_attempt(&mut attempt);
        // Waits for room: a full queue sheds ingest (the sender retries), but an attempt
        // already made must be recorded, or the delivery would be sent again.
        self.writes
            .send(Op::Write(Write::Attempt(attempt, reply)))
            .await
            .map_err(|_| StoreError::Closed)?;
        self.answer(answer).await?;
        self.tally.attempt(&tally);
        Ok(())
    }

    async fn write_replay(&self, write: ReplayWrite) -> Result<Option<bool>, StoreError> {
        let (reply, answer) = oneshot::channel();
        // A replay step waits for room like an attempt does: it is work already done.
        self.writes
            .send(Op::Write(Write::Replay(write, reply)))
            .await
            .map_err(|_| StoreError::Closed)?;
        self.answer(answer).await
    }

    async fn get_replay(&self, id: &str) -> Result<Option<StoredReplay>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| replays::get(c, &id)).await
    }

    async fn list_replays(
        &self,
        running_only: bool,
        limit: usize,
    ) -> Result<Vec<StoredReplay>, StoreError> {
        self.read(move |c| replays::list(c, running_only, limit))
            .await
    }

    async fn delivery_counts(&self) -> Result<Vec<DeliveryCount>, StoreError> {
        self.read(read_deliveries::counts).await
    }

    async fn activity(
        &self,
        window: crate::store::activity::Window,
    ) -> Result<crate::store::activity::Activity, StoreError> {
        self.tally
            .read(window, |first, end| {
                self.read(move |c| activity::counts(c, first, end))
            })
            .await
    }

    async fn flush_activity(&self) -> Result<(), StoreError> {
        self.tally
            .flush(crate::clock::now_ms(), |counts, trim_before| async move {
                let (reply, answer) = oneshot::channel();
                self.submit(Write::Activity(counts, trim_before, reply))?;
                self.answer(answer).await
            })
            .await
    }

    async fn unprepared(
        &self,
        limit: usize,
        skip_routes: &[String],
    ) -> Result<Vec<Unprepared>, StoreError> {
        let sealer = self.sealer.clone();
        let skip_routes = skip_routes.to_vec();
        self.read(move |c| read_deliveries::unprepared(c, &sealer, limit, &skip_routes))
            .await
    }

    async fn prepare(&self, mut batch: Vec<Prepared>, now_ms: i64) -> Result<(), StoreError> {
        self.sealer.seal_prepared(&mut batch);
        let (reply, answer) = oneshot::channel();
        // Like an attempt, the expressions have run: wait for room rather than fail.
        self.writes
            .send(Op::Write(Write::Prepare(batch, now_ms, reply)))
            .await
            .map_err(|_| StoreError::Closed)?;
        self.answer(answer).await
    }

    async fn next_due_ms(
        &self,
        destinations: &[String],
        after_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let destinations = destinations.to_vec();
        self.read(move |c| {
            // One index seek per destination: its earliest due delivery, and its
            // earliest-ending lease.
            let mut due = c.prepare_cached(
                "SELECT min(next_attempt_at) FROM deliveries
                 WHERE destination = ?1 AND state IN ('pending', 'retrying')
                   AND next_attempt_at > ?2",
            )?;
            let mut leases = c.prepare_cached(
                "SELECT min(lease_until) FROM deliveries
                 WHERE state = 'in_flight' AND destination = ?1 AND lease_until > ?2",
            )?;
            let mut earliest: Option<i64> = None;
            for d in &destinations {
                for stmt in [&mut due, &mut leases] {
                    let at: Option<i64> =
                        stmt.query_row(rusqlite::params![d, after_ms], |r| r.get(0))?;
                    earliest = match (earliest, at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
            Ok(earliest)
        })
        .await
    }

    async fn batch_due(
        &self,
        destination: &str,
        route: &str,
        now_ms: i64,
        cap: usize,
    ) -> Result<BatchDue, StoreError> {
        let (destination, route) = (destination.to_owned(), route.to_owned());
        self.read(move |c| {
            Ok(c.prepare_cached(&BATCH_DUE)?.query_row(
                rusqlite::params![destination, route, now_ms, cap as i64],
                |r| {
                    Ok(BatchDue {
                        count: r.get::<_, i64>(0)? as usize,
                        oldest_due_ms: r.get(1)?,
                        retry: r.get::<_, i64>(2)? > 0,
                    })
                },
            )?)
        })
        .await
    }

    async fn list_deliveries(
        &self,
        query: DeliveryQuery,
    ) -> Result<Vec<StoredDelivery>, StoreError> {
        self.read(move |c| read_deliveries::list(c, &query)).await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<StoredDelivery>, StoreError> {
        let (id, sealer) = (id.to_owned(), self.sealer.clone());
        self.read(move |c| read_deliveries::get(c, &sealer, &id))
            .await
    }

    async fn retry_delivery(&self, id: &str, now_ms: i64) -> Result<RetryNow, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::Retry(id.to_owned(), now_ms, reply))?;
        self.answer(answer).await
    }

    async fn act_on_dead(
        &self,
        filter: DeadFilter,
        action: DeadAction,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::Dead(filter, action, now_ms, reply))?;
        self.answer(answer).await
    }

    async fn archivable(
        &self,
        before_ms: i64,
        after: &str,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (after, sealer) = (after.to_owned(), self.sealer.clone());
        self.read(move |c| {
            let ids = archive::archivable_ids(c, before_ms, &after, limit)?;
            let mut events = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(event) = read::get_event(c, &sealer, &id)? {
                    events.push(event);
                }
            }
            Ok(events)
        })
        .await
    }

    async fn archive_step(
        &self,
        step: crate::store::archive::ArchiveStep,
    ) -> Result<Option<usize>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::Archive(step, reply))?;
        self.answer(answer).await
    }

    async fn list_archive(
        &self,
        state: &str,
        before: Option<String>,
        limit: usize,
    ) -> Result<Vec<crate::store::archive::ArchiveObject>, StoreError> {
        let state = state.to_owned();
        self.read(move |c| archive::list(c, &state, before.as_deref(), limit))
            .await
    }

    async fn usage(&self) -> Result<crate::store::capacity::Usage, StoreError> {
        self.read(|c| Ok(capacity::usage(c)?)).await
    }

    async fn evict(
        &self,
        evict: &crate::store::capacity::Evict,
    ) -> Result<crate::store::capacity::Evicted, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::Evict(evict.clone(), reply))?;
        self.answer(answer).await
    }

    async fn reclaim(
        &self,
        max_bytes: u64,
    ) -> Result<crate::store::capacity::Reclaimed, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::Reclaim(max_bytes, reply))?;
        self.answer(answer).await
    }

    async fn purge(&self, purge: &Purge) -> Result<Purged, StoreError> {
        let (reply, answer) = oneshot::channel();
        // Under overload this fails like ingest does; retention tries again next round.
        self.submit(Write::Purge(purge.clone(), reply))?;
        self.answer(answer).await
    }

    async fn set_paused(
        &self,
        kind: Pausable,
        name: &str,
        paused: bool,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let change = PauseChange {
            kind,
            name: name.to_owned(),
            paused,
            reason: reason.map(str::to_owned),
            now_ms,
        };
        self.submit(Write::Pause(change, reply))?;
        self.answer(answer).await
    }

    async fn paused(&self) -> Result<Vec<Paused>, StoreError> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT kind, name, reason FROM paused ORDER BY kind, name")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (kind, name, reason) = row?;
                out.push(Paused {
                    kind: Paused::kind_from(&kind)?,
                    name,
                    reason,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn redactions_due(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::store::redaction::DueRedaction>, StoreError> {
        let sealer = self.sealer.clone();
        self.read(move |c| redactions::due(c, &sealer, limit)).await
    }

    async fn finish_redactions(
        &self,
        mut writes: Vec<crate::store::redaction::RedactionWrite>,
    ) -> Result<(), StoreError> {
        self.sealer.seal_redactions(&mut writes);
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(Op::Write(Write::Redact(writes, reply)))
            .await
            .map_err(|_| StoreError::Closed)?;
        self.answer(answer).await
    }

    async fn reseal(
        &self,
        table: SealedTable,
        after: String,
        limit: usize,
    ) -> Result<ResealStep, StoreError> {
        // Read and resealed on a read connection's thread: the writer only writes.
        let sealer = self.sealer.clone();
        let (rows, mut step) = self
            .read(move |c| {
                let rows = reseal::batch(c, table, &after, limit)?;
                Ok(rekey::reseal_batch(&sealer, table, &rows))
            })
            .await?;
        if !rows.is_empty() {
            let (reply, answer) = oneshot::channel();
            self.writes
                .send(Op::Write(Write::Reseal(table, rows, reply)))
                .await
                .map_err(|_| StoreError::Closed)?;
            step.resealed = self.answer(answer).await?;
        }
        Ok(step)
    }

    async fn count_sealable(&self, table: SealedTable) -> Result<u64, StoreError> {
        self.read(move |c| reseal::count(c, table)).await
    }

    async fn retire_keys(&self) -> Result<rekey::Retired, StoreError> {
        let active = self.sealer.active().map(str::to_owned);
        let found = self
            .read(move |c| reseal::retirable(c, active.as_deref()))
            .await?;
        if !found.retired.is_empty() {
            let (reply, answer) = oneshot::channel();
            let write = Write::RetireKeys(found.retired.clone(), crate::clock::now_ms(), reply);
            self.writes
                .send(Op::Write(write))
                .await
                .map_err(|_| StoreError::Closed)?;
            self.answer(answer).await?;
        }
        Ok(found)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self.writes.is_closed() {
            return Err(StoreError::Closed);
        }
        self.read(|c| {
            let found = schema::version(c)?;
            if found == schema::VERSION {
                Ok(())
            } else {
                Err(StoreError::Corrupt(format!(
                    "schema version {found}, expected {}",
                    schema::VERSION
                )))
            }
        })
        .await
    }

    async fn close(&self) {
        if let Err(e) = self.flush_activity().await {
            tracing::warn!(error = %crate::error_chain::Chain(&e), "the last activity counts were not written");
        }
        let (reply, done) = oneshot::channel();
        if self.writes.send(Op::Close(reply)).await.is_ok() {
            let _ = done.await;
        }
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        // The file is free for the next process (or a restart in this one).
        if let Ok(mut owner) = self.owner.lock() {
            owner.take();
        }
    }
}

/// Takes an exclusive lock on `<db>.lock`: the embedded store has one owner. A second
/// process on the same file would break the single-writer design (and the release of
/// orphaned leases below), so it is refused with a message. The lock dies with the
/// process, so a crash never leaves it behind.
fn claim_ownership(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            StoreError::Corrupt(format!(
                "cannot open {}: {e}",
                Path::new(&lock_path).display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse(path.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Corrupt(format!(
            "cannot lock {}: {e}",
            Path::new(&lock_path).display()
        ))),
    }
}

/// Deliveries left `in_flight` by a previous run are orphans (this process owns the file),
/// so they are due again now instead of when their leases would have ended.
fn release_orphaned_leases(conn: &Connection) -> Result<(), StoreError> {
    let released = conn.execute(
        "UPDATE deliveries
         SET state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END,
             lease_until = NULL
         WHERE state = 'in_flight'",
        [],
    )?;
    if released > 0 {
        tracing::info!(
            released,
            "deliveries in flight when the last run stopped are due again"
        );
    }
    Ok(())
}

/// Settings of the one write connection.
fn configure_writer(conn: &Connection, busy_timeout: Duration) -> Result<(), StoreError> {
    conn.busy_timeout(busy_timeout)?;
    // WAL lets readers run beside the writer; FULL syncs the WAL on every commit, so a
    // committed group survives power loss, not just a process crash.
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "SQLite refused WAL mode (got {mode}); put the database on a local file system"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // SQLite (built with STAT4) lets some bound values shape a statement's plan, and then
    // compiles the statement again whenever they change, which rusqlite's clearing of a
    // cached statement's bindings after each use makes every time: the claims, a union of
    // ten index scans, were compiled anew on every claim (delivery ran 1.4× as fast once
    // they were not). With a stable plan they are compiled once; every writer
    // statement's plan rests on its literals and indexes, not on the values bound.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // Checkpoints run on their own thread (see `checkpoint`), not inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // When the WAL rewinds, cut a file that grew during a burst back to this size.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    // A small cache on purpose: SQLite walks its whole page cache at the end of every
    // transaction that split a B-tree page (to drop a page it parked past the end of the
    // file), so each commit costs time in proportion to the cache's size. With 16 MiB
    // that walk was an eighth of the writer's time; 4 MiB still holds the hot pages (the
    // ends of the tables and the narrow `dedup` table's upper levels).
    conn.pragma_update(None, "cache_size", -4 * 1024)?;
    // Room for every statement the writer runs (ingest, claims, attempts, retention),
    // so none is compiled again because another pushed it out.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Read-only connections, opened on demand and reused.
#[derive(Clone)]
struct ReadPool {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl ReadPool {
    const MAX_IDLE: usize = 8;

    fn new(path: PathBuf, busy_timeout: Duration) -> Self {
        Self {
            path,
            busy_timeout,
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(self.busy_timeout)?;
                // The event list has a statement per combination of filters given.
                c.set_prepared_statement_cache_capacity(64);
                c
            }
        };
        let result = f(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < Self::MAX_IDLE
        {
            idle.push(conn);
        }
        result
    }
}

#[cfg(test)]
mod dedup_tests;
#[cfg(test)]
mod sqlite_conformance;
#[cfg(test)]
mod tests;
