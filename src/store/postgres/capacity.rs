//! The size cap on PostgreSQL. A table's files do not shrink when rows are deleted:
//! the space of dead rows is reused once (auto)vacuum has passed. So usage is the size
//! of forebay's tables and indexes less what in them is free or dead, which the
//! `pgstattuple` extension's `pgstattuple_approx` reads from the visibility and free
//! space maps (scanning only pages not known all-visible). That scan is kept for
//! [`FREE_SPACE_FOR`]; growth since is counted as used.
//!
//! Eviction locks then deletes, as retention does ([`super::purge::delete_events`]);
//! reclaiming is a plain `VACUUM` of the tables eviction touches, so their dead rows'
//! space is reused at once rather than when autovacuum's thresholds are crossed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::{Client, Transaction};

use crate::store::StoreError;
use crate::store::capacity::{Evict, Evicted, Usage, evict_rejected_sql, evictable_events_sql};

/// forebay's tables (the schema may hold others, which are not ours to count).
const TABLES: [&str; 13] = [
    "events",
    "duplicates",
    "deliveries",
    "attempts",
    "rejected",
    "paused",
    "replays",
    "rate_buckets",
    "dedup_keys",
    "activity",
    "sealing_keys",
    "forebay_schema",
    "archive_objects",
];

/// The tables eviction deletes from, which `reclaim` vacuums.
const EVICTED_FROM: &str = "events, deliveries, attempts, duplicates, dedup_keys, rejected";

/// How long a free-space scan stands for.
const FREE_SPACE_FOR: Duration = Duration::from_secs(10);

/// The last free-space scan: when, and how many bytes were free or dead.
#[derive(Default)]
pub(super) struct FreeSpace(Mutex<Option<(Instant, u64)>>);

impl FreeSpace {
    fn fresh(&self) -> Option<u64> {
        let last = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        last.filter(|(at, _)| at.elapsed() < FREE_SPACE_FOR)
            .map(|(_, free)| free)
    }

    fn set(&self, free: u64) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), free));
    }

    /// After eviction or a vacuum: the next look scans again.
    pub(super) fn forget(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The schema `pgstattuple` is installed in, installing it if it is not (into `public`,
/// under a lock so that processes starting together do not race); an error naming the
/// fix when this role may not.
async fn extension_schema(client: &Client) -> Result<String, StoreError> {
    let find = "SELECT n.nspname FROM pg_extension AS e
                JOIN pg_namespace AS n ON n.oid = e.extnamespace
                WHERE e.extname = 'pgstattuple'";
    if let Some(row) = client.query_opt(find, &[]).await? {
        return Ok(row.get(0));
    }
    let install = "SELECT pg_advisory_xact_lock(hashtext('forebay pgstattuple'));
                   CREATE EXTENSION IF NOT EXISTS pgstattuple SCHEMA public;";
    let installed = async {
        client.batch_execute("BEGIN").await?;
        client.batch_execute(install).await?;
        client.batch_execute("COMMIT").await
    }
    .await;
    if let Err(e) = installed {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(StoreError::Setup(format!(
            "storage.max_size on PostgreSQL reads free space with the pgstattuple extension, which is not installed and this role cannot install it ({}); run `CREATE EXTENSION pgstattuple;` in this database as a superuser (and `GRANT pg_stat_scan_tables TO` forebay's role if it is not one), or remove storage.max_size",
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned())
        )));
    }
    Ok("public".to_owned())
}

/// The size of forebay's tables (with their TOAST tables and indexes), less what the
/// last free-space scan found free or dead.
pub(super) async fn usage(client: &Client, free_space: &FreeSpace) -> Result<Usage, StoreError> {
    let tables: Vec<&str> = TABLES.to_vec();
    let allocated = allocated(client).await?;
    let free = match free_space.fresh() {
        Some(free) => free,
        None => {
            let schema = extension_schema(client).await?;
            // The heap and the TOAST table of each; indexes count whole.
            let free: i64 = client
                .query_one(
                    &format!(
                        "SELECT coalesce(sum(s.approx_free_space + s.dead_tuple_len), 0)::int8
                         FROM pg_class AS c,
                              LATERAL (SELECT c.oid AS rel UNION ALL
                                       SELECT c.reltoastrelid WHERE c.reltoastrelid <> 0) AS r,
                              LATERAL \"{schema}\".pgstattuple_approx(r.rel) AS s
                         WHERE c.relkind = 'r' AND c.relname = ANY($1)
                           AND c.relnamespace = current_schema()::regnamespace"
                    ),
                    &[&tables],
                )
                .await
                .map_err(|e| match e.code() {
                    Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
                        StoreError::Setup(format!(
                            "storage.max_size on PostgreSQL reads free space with pgstattuple_approx, which this role may not run ({}); run `GRANT pg_stat_scan_tables TO` forebay's role as a superuser, or remove storage.max_size",
                            e.as_db_error().map_or("permission denied", |d| d.message())
                        ))
                    }
                    _ => StoreError::from(e),
                })?
                .get(0);
            let free = free.max(0) as u64;
            free_space.set(free);
            free
        }
    };
    Ok(Usage {
        used: allocated.saturating_sub(free),
        allocated,
    })
}

/// One pass of eviction: the oldest events nothing waits for, locked (skipping those a
/// replay or another process holds), then deleted with what hangs off them; then the
/// rejected requests of their time.
pub(super) async fn evict(tx: &Transaction<'_>, evict: &Evict) -> Result<Evicted, StoreError> {
    let limit = evict.limit as i64;
    let lock = tx
        .prepare_cached(&format!(
            "{} FOR UPDATE SKIP LOCKED",
            evictable_events_sql('$')
        ))
        .await?;
    let ids: Vec<String> = tx
        .query(&lock, &[&evict.after, &limit])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let deleted = super::purge::delete_events(tx, &ids).await?;
    let up_to = deleted.newest_at.unwrap_or(i64::MAX);
    let stmt = tx.prepare_cached(&evict_rejected_sql('$')).await?;
    let rejected = tx.execute(&stmt, &[&up_to, &limit]).await? as usize;
    Ok(Evicted {
        events: deleted.count,
        rejected,
        last: ids.into_iter().max(),
    })
}

/// `VACUUM` of the tables eviction deletes from: their dead rows' space becomes
/// reusable, and empty pages at their end go back to the file system. Returns how much
/// the tables shrank.
pub(super) async fn reclaim(client: &Client) -> Result<u64, StoreError> {
    let before = allocated(client).await?;
    client
        .batch_execute(&format!("VACUUM {EVICTED_FROM}"))
        .await?;
    Ok(before.saturating_sub(allocated(client).await?))
}

/// The size of forebay's tables in the store's schema, with their TOAST tables and
/// indexes.
async fn allocated(client: &Client) -> Result<u64, StoreError> {
    let size: i64 = client
        .query_one(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8
             FROM pg_class AS c
             WHERE c.relkind = 'r' AND c.relname = ANY($1)
               AND c.relnamespace = current_schema()::regnamespace",
            &[&TABLES.to_vec()],
        )
        .await?
        .get(0);
    Ok(size.max(0) as u64)
}
