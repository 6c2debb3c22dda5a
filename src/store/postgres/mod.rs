//! The shared store: PostgreSQL, for any number of forebay processes on one database.
//!
//! - [`pool`]: the connection pool (deadpool-postgres) and per-connection settings.
//! - [`schema`]: versioned migrations, applied at start under an advisory lock.
//! - [`writer`] and [`write_events`]: group commit for ingest (dedup and commit order
//!   across processes are explained in [`write_events`]).
//! - [`claim`]: claims (`FOR UPDATE SKIP LOCKED`, one advisory lock per destination),
//!   many deliveries per statement; [`attempt_writer`]: attempt records in groups, one
//!   commit and one NOTIFY per group; [`write_deliveries`]: the statements of both, and
//!   preparation, retries, pauses, the dead-letter queue.
//! - [`cluster`]: wake-ups across processes (LISTEN/NOTIFY) and cluster-wide limits.
//! - [`presence`]: who is alive (claims of a dead process are released at once) and
//!   which one process leads maintenance; [`purge`]: retention.
//! - [`read`], [`read_deliveries`], [`replays`]: the rest of the trait.
//!
//! Every write other than ingest runs in its own transaction on a pooled connection;
//! reads run on pooled connections too. Nothing is kept in process memory that another
//! process would need: leases, pauses and replay progress all live in the database.

mod activity;
mod archive;
mod attempt_writer;
mod capacity;
mod claim;
mod cluster;
mod pool;
mod presence;
mod purge;
mod read;
mod read_deliveries;
mod redactions;
mod replays;
mod reseal;
mod schema;
mod sealing_keys;
pub mod tls;
mod write_deliveries;
mod write_events;
mod writer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Client, Pool};
use tokio::sync::{mpsc, oneshot};

use super::activity_tally::{ActivityTally, AttemptTally};
use super::rekey::{ResealStep, Retired, SealedTable};
use super::seal::{Keys, Sealer};
use super::{
    AttemptRecord, BatchDue, Claim, ClaimedDelivery, DeadAction, DeadFilter, DeliveryCount,
    DeliveryQuery, EventQuery, Inserted, NewEvent, NewRejected, Pausable, Paused, Prepared, Purge,
    Purged, ReplayWrite, RetryNow, Store, StoreError, StoredDelivery, StoredEvent, StoredRejected,
    StoredReplay, StreamPosition, Unprepared,
};
use writer::{Op, Write, Writer};

pub use schema::VERSION;

/// Tuning for [`PostgresStore::open`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The schema for forebay's tables (created if missing); `None` for the connection's
    /// default search_path.
    pub schema: Option<String>,
    pub pool_size: usize,
    /// How long to wait for a connection (to open one, or for one to come free).
    pub connect_timeout: Duration,
    pub max_batch: usize,
    pub queue_depth: usize,
    pub commit_timeout: Duration,
    /// The keys stored blobs are sealed with (`[storage] encryption`).
    pub keys: Keys,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            max_batch: 512,
            queue_depth: 8192,
            commit_timeout: Duration::from_secs(10),
            keys: Keys::default(),
        }
    }
}

/// True for a schema name that needs no quoting: `[a-z_][a-z0-9_]*`, at most 63 bytes.
pub fn valid_schema_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub struct PostgresStore {
    pool: Pool,
    /// Settings of the pool's connections, for the listening connection.
    connect: tls::Connect,
    /// The schema's NOTIFY channel.
    channel: String,
    cluster: Arc<Mutex<cluster::Shared>>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    writes: mpsc::Sender<Op>,
    queue_depth: usize,
    commit_timeout: Duration,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Attempt records, committed in groups by [`attempt_writer`].
    attempts: mpsc::Sender<attempt_writer::Op>,
    attempt_writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    presence: presence::Presence,
    /// When each claim owner was first seen without its presence lock (the leader's).
    absent_since: Mutex<std::collections::HashMap<i64, std::time::Instant>>,
    tally: ActivityTally,
    sealer: Arc<Sealer>,
    /// The last free-space scan, for [`Store::usage`].
    free_space: capacity::FreeSpace,
}

impl PostgresStore {
    /// Connects, migrates (creating the schema if asked to), and starts the group-commit
    /// writer. Must run inside a Tokio runtime.
    pub async fn open(url: &str, options: PostgresOptions) -> Result<Arc<Self>, StoreError> {
        if let Some(schema) = &options.schema
            && !valid_schema_name(schema)
        {
            return Err(StoreError::Corrupt(format!(
                "{schema:?} is not a plain schema name"
            )));
        }
        let (pool, connect) = pool::build(
            url,
            options.schema.as_deref(),
            options.pool_size.max(2),
            options.connect_timeout,
        )?;
        {
            let mut client = pool.get().await?;
            schema::migrate(&mut client, options.schema.as_deref()).await?;
        }
        let sealer = Arc::new(Sealer::new(&options.keys));
        sealing_keys::register(&pool.get().await?, &sealer).await?;
        let (tx, rx) = mpsc::channel(options.queue_depth);
        let channel = cluster::channel(options.schema.as_deref());
        let writer = Writer {
            pool: pool.clone(),
            channel: channel.clone(),
            rx,
            max_batch: options.max_batch,
        };
        let handle = tokio::spawn(writer.run());
        let (attempts, attempts_rx) = mpsc::channel(options.queue_depth);
        let attempt_writer = attempt_writer::AttemptWriter {
            pool: pool.clone(),
            channel: channel.clone(),
            rx: attempts_rx,
            max_batch: options.max_batch,
        };
        let attempt_handle = tokio::spawn(attempt_writer.run());
        let presence = presence::Presence::start(connect.clone());
        Ok(Arc::new(Self {
            pool,
            connect,
            channel,
            cluster: Arc::default(),
            listener: Mutex::new(None),
            writes: tx,
            queue_depth: options.queue_depth,
            commit_timeout: options.commit_timeout,
            writer: Mutex::new(Some(handle)),
            attempts,
            attempt_writer: Mutex::new(Some(attempt_handle)),
            presence,
            absent_since: Mutex::default(),
            tally: ActivityTally::default(),
            sealer,
            free_space: capacity::FreeSpace::default(),
        }))
    }

    /// Queues an ingest write without waiting for room: a full queue is an overload (503).
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

    async fn client(&self) -> Result<Client, StoreError> {
        if self.writes.is_closed() {
            return Err(StoreError::Closed);
        }
        Ok(self.pool.get().await?)
    }
}

/// Runs `$body` (which may use `?` and `.await`) in a transaction of its own on a
/// pooled connection, and commits it.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut client = $store.client().await?;
        let transaction = client.transaction().await?;
        let $tx = &transaction;
        let out = $body;
        transaction.commit().await?;
        Ok(out)
    }};
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert_event(&self, mut event: NewEvent) -> Result<Inserted, StoreError> {
        self.sealer.seal_event(&mut event);
        let (reply, answer) = oneshot::channel();
        let (source, at) = (event.source.clone(), event.received_at_ms);
        self.submit(Write::Event(Box::new(event), reply))?;
        let inserted = self.answer(answer).await?;
        self.tally.event(&inserted, at, &source);
        Ok(inserted)
    }

    async fn insert_rejected(&self, mut rejected: NewRejected) -> Result<(), StoreError> {
        self.sealer.seal_rejected(&mut rejected);
        let (reply, answer) = oneshot::channel();
        self.submit(Write::Rejected(Box::new(rejected), reply))?;
        self.answer(answer).await
    }

    async fn get_event(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        read::get_event(&self.client().await?, &self.sealer, id).await
    }

    async fn list_events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        read::list_events(&self.client().await?, &self.sealer, &query).await
    }

    async fn event_position(&self, id: &str) -> Result<Option<StreamPosition>, StoreError> {
        read::event_position(&self.client().await?, id).await
    }

    async fn last_event_position(&self) -> Result<StreamPosition, StoreError> {
        read::last_event_position(&self.client().await?).await
    }

    async fn events_after_position(
        &self,
        position: StreamPosition,
        source: Option<String>,
        limit: usize,
    ) -> Result<Vec<(StreamPosition, StoredEvent)>, StoreError> {
        read::events_after_position(
            &self.client().await?,
            &self.sealer,
            position,
            source.as_deref(),
            limit,
        )
        .await
    }

    async fn list_rejected(&self, query: EventQuery) -> Result<Vec<StoredRejected>, StoreError> {
        read::list_rejected(&self.client().await?, &self.sealer, &query).await
    }

    async fn get_rejected(&self, id: &str) -> Result<Option<StoredRejected>, StoreError> {
        read::get_rejected(&self.client().await?, &self.sealer, id).await
    }

    async fn claim_deliveries(&self, claim: Claim) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let limit = self
            .cluster
            .lock()
            .ok()
            .and_then(|c| c.limits.get(&claim.destination).cloned())
            // A batch is one call: the cluster-wide cap and rate count rows, so a batch
            // claim keeps only the destination's order; the process's own limits admitted
            // the call.
            .map(|l| match claim.only_route {
                Some(_) => crate::store::ClusterLimit {
                    max_in_flight: None,
                    rate: None,
                    ..l
                },
                None => l,
            });
        let client = pool::HandRun::new(self.client().await?);
        let claimed = claim::claim(
            &client,
            &self.sealer,
            &claim,
            limit.as_ref(),
            self.presence.owner(),
        )
        .await;
        let (claimed, retry_in) = client.end(claimed).await?;
        if let Some(wait) = retry_in {
            // The rate holds back due deliveries: wake the engine when the next token
            // is in (no notification would).
            let shared = self.cluster.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                if let Ok(s) = shared.lock() {
                    s.wake_all();
                }
            });
        }
        Ok(claimed)
    }

    async fn record_attempt(&self, mut attempt: AttemptRecord) -> Result<(), StoreError> {
        // Waits for room: the attempt was made, its record must not be dropped for load.
        let (reply, answer) = oneshot::channel();
        let tally = AttemptTally::of(&attempt);
        self.sealer.seal_attempt(&mut attempt);
        self.attempts
            .send(attempt_writer::Op::Record(Box::new(attempt), reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)??;
        self.tally.attempt(&tally);
        Ok(())
    }

    async fn unprepared(
        &self,
        limit: usize,
        skip_routes: &[String],
    ) -> Result<Vec<Unprepared>, StoreError> {
        read_deliveries::unprepared(&self.client().await?, &self.sealer, limit, skip_routes).await
    }

    async fn prepare(&self, mut batch: Vec<Prepared>, now_ms: i64) -> Result<(), StoreError> {
        self.sealer.seal_prepared(&mut batch);
        in_transaction!(self, |tx| {
            let out = write_deliveries::prepare(tx, &batch, now_ms).await?;
            cluster::notify(tx, &self.channel).await?;
            out
        })
    }

    async fn next_due_ms(
        &self,
        destinations: &[String],
        after_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let client = pool::HandRun::new(self.client().await?);
        let due = read_deliveries::next_due_ms(&client, destinations, after_ms).await;
        client.end(due).await
    }

    async fn batch_due(
        &self,
        destination: &str,
        route: &str,
        now_ms: i64,
        cap: usize,
    ) -> Result<BatchDue, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(crate::store::delivery::BATCH_DUE)
            .await?;
        let row = client
            .query_one(&stmt, &[&destination, &route, &now_ms, &(cap as i64)])
            .await?;
        Ok(BatchDue {
            count: row.get::<_, i64>(0) as usize,
            oldest_due_ms: row.get(1),
            retry: row.get::<_, i64>(2) > 0,
        })
    }

    async fn list_deliveries(
        &self,
        query: DeliveryQuery,
    ) -> Result<Vec<StoredDelivery>, StoreError> {
        read_deliveries::list(&self.client().await?, &query).await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<StoredDelivery>, StoreError> {
        read_deliveries::get(&self.client().await?, &self.sealer, id).await
    }

    async fn retry_delivery(&self, id: &str, now_ms: i64) -> Result<RetryNow, StoreError> {
        let id = id.to_owned();
        in_transaction!(self, |tx| {
            let out = write_deliveries::retry_now(tx, &id, now_ms).await?;
            cluster::notify(tx, &self.channel).await?;
            out
        })
    }

    async fn act_on_dead(
        &self,
        filter: DeadFilter,
        action: DeadAction,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        in_transaction!(self, |tx| {
            let out = write_deliveries::act_on_dead(tx, &filter, &action, now_ms).await?;
            cluster::notify(tx, &self.channel).await?;
            out
        })
    }

    async fn set_paused(
        &self,
        kind: Pausable,
        name: &str,
        paused: bool,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        let reason = reason.map(str::to_owned);
        in_transaction!(self, |tx| {
            let out =
                write_deliveries::set_paused(tx, kind, &name, paused, reason.as_deref(), now_ms)
                    .await?;
            cluster::notify(tx, &self.channel).await?;
            out
        })
    }

    async fn paused(&self) -> Result<Vec<Paused>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT kind, name, reason FROM paused ORDER BY kind, name",
                &[],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(Paused {
                kind: Paused::kind_from(r.get(0))?,
                name: r.get(1),
                reason: r.get(2),
            });
        }
        Ok(out)
    }

    async fn delivery_counts(&self) -> Result<Vec<DeliveryCount>, StoreError> {
        read_deliveries::counts(&self.client().await?).await
    }

    async fn activity(
        &self,
        window: crate::store::activity::Window,
    ) -> Result<crate::store::activity::Activity, StoreError> {
        self.tally
            .read(window, |first, end| async move {
                activity::counts(&self.client().await?, first, end).await
            })
            .await
    }

    async fn flush_activity(&self) -> Result<(), StoreError> {
        self.tally
            .flush(crate::clock::now_ms(), |counts, trim_before| async move {
                activity::add(&self.client().await?, &counts, trim_before).await
            })
            .await
    }

    async fn write_replay(&self, write: ReplayWrite) -> Result<Option<bool>, StoreError> {
        in_transaction!(self, |tx| {
            let out = replays::write(tx, &write).await?;
            cluster::notify(tx, &self.channel).await?;
            out
        })
    }

    async fn redactions_due(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::store::redaction::DueRedaction>, StoreError> {
        redactions::due(&self.client().await?, &self.sealer, limit).await
    }

    async fn finish_redactions(
        &self,
        mut writes: Vec<crate::store::redaction::RedactionWrite>,
    ) -> Result<(), StoreError> {
        self.sealer.seal_redactions(&mut writes);
        redactions::finish(&mut self.client().await?, &writes).await
    }

    async fn reseal(
        &self,
        table: SealedTable,
        after: String,
        limit: usize,
    ) -> Result<ResealStep, StoreError> {
        let mut client = self.client().await?;
        reseal::batch(&mut client, &self.sealer, table, &after, limit).await
    }

    async fn count_sealable(&self, table: SealedTable) -> Result<u64, StoreError> {
        reseal::count(&self.client().await?, table).await
    }

    async fn retire_keys(&self) -> Result<Retired, StoreError> {
        reseal::retire_keys(&mut self.client().await?, self.sealer.active()).await
    }

    async fn get_replay(&self, id: &str) -> Result<Option<StoredReplay>, StoreError> {
        replays::get(&self.client().await?, id).await
    }

    async fn list_replays(
        &self,
        running_only: bool,
        limit: usize,
    ) -> Result<Vec<StoredReplay>, StoreError> {
        replays::list(&self.client().await?, running_only, limit).await
    }

    fn join_cluster(&self, joined: super::Cluster) {
        if let Ok(mut shared) = self.cluster.lock() {
            shared.limits = joined
                .limits
                .into_iter()
                .map(|l| (l.destination.clone(), l))
                .collect();
            shared.wakes = joined.wake.into_iter().chain(joined.prepare_wake).collect();
        }
        if let Ok(mut listener) = self.listener.lock()
            && listener.is_none()
        {
            *listener = Some(cluster::listen(
                self.connect.clone(),
                self.channel.clone(),
                self.cluster.clone(),
            ));
        }
    }

    async fn archivable(
        &self,
        before_ms: i64,
        after: &str,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.client().await?;
        let ids = archive::archivable_ids(&client, before_ms, after, limit).await?;
        let mut events = Vec::with_capacity(ids.len());
        for id in ids {
            // Gone meanwhile (retention, eviction): left out.
            if let Some(event) = read::get_event(&client, &self.sealer, &id).await? {
                events.push(event);
            }
        }
        Ok(events)
    }

    async fn archive_step(
        &self,
        step: crate::store::archive::ArchiveStep,
    ) -> Result<Option<usize>, StoreError> {
        in_transaction!(self, |tx| archive::step(tx, &step).await?)
    }

    async fn list_archive(
        &self,
        state: &str,
        before: Option<String>,
        limit: usize,
    ) -> Result<Vec<crate::store::archive::ArchiveObject>, StoreError> {
        archive::list(&self.client().await?, state, before.as_deref(), limit).await
    }

    async fn usage(&self) -> Result<crate::store::capacity::Usage, StoreError> {
        capacity::usage(&self.client().await?, &self.free_space).await
    }

    async fn evict(
        &self,
        evict: &crate::store::capacity::Evict,
    ) -> Result<crate::store::capacity::Evicted, StoreError> {
        let evicted: Result<_, StoreError> =
            in_transaction!(self, |tx| capacity::evict(tx, evict).await?);
        self.free_space.forget();
        evicted
    }

    async fn reclaim(
        &self,
        _max_bytes: u64,
    ) -> Result<crate::store::capacity::Reclaimed, StoreError> {
        let bytes = capacity::reclaim(&self.client().await?).await;
        self.free_space.forget();
        // One `VACUUM` does all it can; the rest of the free space is reused in place.
        Ok(crate::store::capacity::Reclaimed {
            bytes: bytes?,
            more: false,
        })
    }

    async fn purge(&self, purge: &Purge) -> Result<Purged, StoreError> {
        in_transaction!(self, |tx| purge::purge(tx, purge).await?)
    }

    async fn lead_maintenance(&self) -> bool {
        self.presence.leads()
    }

    async fn release_dead_claims(&self, now_ms: i64) -> Result<usize, StoreError> {
        let released: Result<u64, StoreError> = in_transaction!(self, |tx| {
            let released = presence::release_dead_claims(tx, now_ms, &self.absent_since).await?;
            if released > 0 {
                // Wake every engine: the released deliveries are due now.
                cluster::notify(tx, &self.channel).await?;
            }
            released
        });
        Ok(released? as usize)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let found = schema::version(&client).await?;
        if found == schema::VERSION {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "schema version {found}, expected {}",
                schema::VERSION
            )))
        }
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
            let _ = handle.await;
        }
        let (reply, done) = oneshot::channel();
        if self
            .attempts
            .send(attempt_writer::Op::Close(reply))
            .await
            .is_ok()
        {
            let _ = done.await;
        }
        let handle = self.attempt_writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        let listener = self.listener.lock().ok().and_then(|mut l| l.take());
        if let Some(listener) = listener {
            listener.abort();
        }
        self.pool.close();
    }
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
