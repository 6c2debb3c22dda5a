//! Who is alive, and who leads maintenance, among the processes on one schema.
//!
//! Each store keeps one dedicated connection (not a pooled one) holding session-level
//! advisory locks. PostgreSQL releases those the moment the connection ends, and a
//! process that dies (even by `SIGKILL`) closes its socket, so the locks say who is
//! alive without heartbeats or timeouts:
//!
//! - its **presence** lock, on a random key of its own: claims record that key
//!   (`deliveries.claimed_by`), and a claim whose key no session has held for
//!   [`GRACE`] belongs to a process that has died ([`release_dead_claims`]);
//! - the **maintenance** lock, one per schema, which at most one process holds: that
//!   process runs retention and releases dead processes' claims. The others try to take
//!   it every [`TRY_EVERY`], so when its holder dies another takes over within that.
//!
//! Both keys are pairs of `int4` (the two-key form of the advisory lock functions), the
//! first naming the schema (from `current_schema()`), so several schemas on one
//! database do not mix.
//! While the presence connection is down (PostgreSQL restarting, a cut connection) the
//! process neither claims as a known owner nor leads: its claims then fall back to
//! plain lease expiry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Transaction;

use super::tls::Connect;
use crate::store::StoreError;

/// How often a process that does not lead tries to take the maintenance lock.
pub(super) const TRY_EVERY: Duration = Duration::from_secs(1);

/// The first key of the presence locks: the schema's own, computed by the server from
/// `current_schema()` as the claim and ingest locks are, so every process on the same
/// schema (named or through `search_path`) agrees. Masked to non-negative, because
/// `pg_locks` shows keys as unsigned `oid`s.
const PRESENCE_NAMESPACE: &str = "(hashtext('forebay/presence/' || current_schema()) & 2147483647)";

/// The maintenance lock of the schema.
const MAINTENANCE_NAMESPACE: &str =
    "(hashtext('forebay/maintenance/' || current_schema()) & 2147483647)";

/// What the presence connection currently holds.
#[derive(Debug, Default)]
struct Held {
    /// The presence key while its lock is held, else 0.
    owner: AtomicI64,
    /// The last key held: taken again after a reconnect, so that claims made before
    /// the connection dropped stay this process's.
    last: AtomicI64,
    leader: AtomicBool,
}

/// This process's presence; dropping it ends the connection and so releases its locks.
pub(super) struct Presence {
    held: Arc<Held>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Presence {
    /// Starts holding a presence lock (and trying for the maintenance lock) on its own
    /// connection, reconnecting with backoff whenever that connection ends.
    pub(super) fn start(connect: Connect) -> Self {
        let held = Arc::new(Held::default());
        let task = tokio::spawn(hold(connect, held.clone()));
        Self { held, task }
    }

    /// The key claims record as their owner, while the presence lock is held.
    pub(super) fn owner(&self) -> Option<i64> {
        match self.held.owner.load(Ordering::SeqCst) {
            0 => None,
            key => Some(key),
        }
    }

    pub(super) fn leads(&self) -> bool {
        self.held.leader.load(Ordering::SeqCst)
    }
}

async fn hold(connect: Connect, held: Arc<Held>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match connect.config.connect(connect.tls.clone()).await {
            Ok((client, connection)) => {
                let mut connection = std::pin::pin!(connection);
                let holding = async {
                    let owner =
                        bounded(take_presence(&client, held.last.load(Ordering::SeqCst))).await?;
                    held.owner.store(owner, Ordering::SeqCst);
                    held.last.store(owner, Ordering::SeqCst);
                    loop {
                        // Every second, one query within a deadline: it takes the
                        // maintenance lock when free (holding it already, it counts
                        // twice, harmlessly), and proves the connection alive. A
                        // connection that died silently (a moved address, a partition)
                        // fails it, and this process stops claiming as an owner and
                        // leading at once instead of when TCP keepalive notices.
                        let leads = bounded(async {
                            let row = client
                                .query_one(
                                    &format!(
                                        "SELECT pg_try_advisory_lock({MAINTENANCE_NAMESPACE}, 0)"
                                    ),
                                    &[],
                                )
                                .await?;
                            Ok(row.get::<_, bool>(0))
                        })
                        .await?;
                        if leads && !held.leader.swap(true, Ordering::SeqCst) {
                            tracing::info!("this process now leads background maintenance");
                        }
                        tokio::time::sleep(TRY_EVERY).await;
                    }
                };
                // The connection must be driven while the queries run: poll both. Either
                // ending means the locks are gone.
                let outcome: Result<(), Lost> = tokio::select! {
                    result = holding => result,
                    _ = &mut connection => Ok(()),
                };
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "presence connection lost; reconnecting");
                }
                backoff = Duration::from_millis(100);
            }
            Err(e) => tracing::debug!(error = %e, "cannot open the presence connection"),
        }
        held.owner.store(0, Ordering::SeqCst);
        if held.leader.swap(false, Ordering::SeqCst) {
            tracing::info!("this process no longer leads background maintenance");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Why the presence connection was given up.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error(transparent)]
    Query(#[from] tokio_postgres::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Longest a presence query may take before the connection is given up.
const QUERY_DEADLINE: Duration = Duration::from_secs(3);

async fn bounded<T>(
    query: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Lost> {
    match tokio::time::timeout(QUERY_DEADLINE, query).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Lost::Timeout(QUERY_DEADLINE)),
    }
}

/// Takes a presence lock: on `previous` if there was one and it is free, else on a fresh
/// random key (another if that one is taken).
async fn take_presence(
    client: &tokio_postgres::Client,
    previous: i64,
) -> Result<i64, tokio_postgres::Error> {
    let mut candidate = i32::try_from(previous).ok().filter(|k| *k > 0);
    loop {
        // Keys start at 1: 0 means "none" in `Held`.
        let key = candidate.take().unwrap_or_else(|| {
            i32::try_from(rand::random::<u32>() >> 1)
                .unwrap_or(1)
                .max(1)
        });
        let row = client
            .query_one(
                &format!("SELECT pg_try_advisory_lock({PRESENCE_NAMESPACE}, $1)"),
                &[&key],
            )
            .await?;
        if row.get::<_, bool>(0) {
            return Ok(i64::from(key));
        }
    }
}

/// How long a claim's owner must have been without its presence lock before its leases
/// are ended: a live process whose presence connection blips (a restart of
/// PostgreSQL, a dropped connection) reconnects and takes its key again well within
/// this, and keeps its claims.
pub(super) const GRACE: Duration = Duration::from_secs(10);

/// The condition "no session holds the presence lock of `d.claimed_by`", read from
/// `pg_locks` (two-key form: key 1 is `classid`, key 2 `objid`).
fn owner_absent() -> String {
    format!(
        "NOT EXISTS (
            SELECT 1 FROM pg_locks AS l
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
              AND l.classid::bigint = {PRESENCE_NAMESPACE} AND l.objid::bigint = d.claimed_by
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
    )
}

/// Ends now the leases of in-flight claims whose owner has held no presence lock for
/// [`GRACE`]: its process has died. Their deliveries are then claimable at once, by any
/// process. `absent_since` is the leader's memory of when each owner was first seen
/// without its lock.
pub(super) async fn release_dead_claims(
    tx: &Transaction<'_>,
    now_ms: i64,
    absent_since: &Mutex<HashMap<i64, Instant>>,
) -> Result<u64, StoreError> {
    let owner_absent = owner_absent();
    let absent: Vec<i64> = tx
        .query(
            &format!(
                "SELECT DISTINCT d.claimed_by FROM deliveries AS d
                 WHERE d.state = 'in_flight' AND d.lease_until > $1
                   AND d.claimed_by IS NOT NULL AND {owner_absent}"
            ),
            &[&now_ms],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let dead: Vec<i64> = {
        let mut since = absent_since.lock().unwrap_or_else(|e| e.into_inner());
        since.retain(|owner, _| absent.contains(owner));
        let now = Instant::now();
        absent
            .iter()
            .filter(|owner| now.duration_since(*since.entry(**owner).or_insert(now)) >= GRACE)
            .copied()
            .collect()
    };
    if dead.is_empty() {
        return Ok(0);
    }
    // The lock is checked again in the same statement: an owner that came back since
    // keeps its claims.
    Ok(tx
        .execute(
            &format!(
                "UPDATE deliveries AS d SET lease_until = $1, claimed_by = NULL
                 WHERE d.state = 'in_flight' AND d.lease_until > $1
                   AND d.claimed_by = ANY($2::bigint[]) AND {owner_absent}"
            ),
            &[&now_ms, &dead],
        )
        .await?)
}
