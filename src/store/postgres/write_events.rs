//! The writes of ingest on PostgreSQL: a whole group of events (with their deliveries
//! and duplicates) and rejected requests in one transaction, as multi-row inserts
//! (`unnest` of arrays), pipelined on one connection.
//!
//! **Dedup and order across processes.** A group that inserts events first takes
//! [`ingest_lock`], one transaction-scoped advisory lock per schema, and holds it to
//! its COMMIT. So group transactions of every process run one after another:
//! - the dedup check (the latest event with the same source and key, within the window)
//!   sees every event committed before it, and no other process can insert the same key
//!   between the check and the commit. A unique constraint cannot say this (a key may be
//!   stored again once its window has passed), and a lock per key would cost a lock per
//!   event; one lock per group costs one per group.
//! - `position` values (from `bigserial` sequences) are drawn under the lock, so
//!   position order is commit order. A follower of `events_after_position` that has read
//!   position `p` will never later see a commit below `p`. (Without the lock, a sequence
//!   value drawn earlier can commit later, and the stream would skip it.)
//!
//! The price: the cluster's ingest commits are serial, one group per commit latency, as
//! with SQLite's single writer. Group commit keeps that from being one event per commit.

use std::collections::HashMap;

use deadpool_postgres::Transaction;

use crate::id;
use crate::store::{Inserted, NewEvent, NewRejected};

/// The SQL of the ingest lock: every transaction that inserts events or deliveries takes
/// it first (ingest groups and replay steps), so positions are committed in order.
pub(super) const INGEST_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '/forebay/ingest'))";

/// Takes the ingest lock for the rest of the transaction.
pub(super) async fn ingest_lock(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    let stmt = tx.prepare_cached(INGEST_LOCK).await?;
    tx.execute(&stmt, &[]).await?;
    Ok(())
}

/// Inserts `events` and `rejected` in the open transaction, and sends NOTIFY on
/// `channel` when there are events; returns one outcome per event, in order.
///
/// The ingest lock serializes every process's groups, so its hold time is the cluster's
/// ingest capacity: what follows it is pipelined. The dedup lookup goes out right behind
/// the lock (the server runs it once the lock is granted, with a snapshot taken then, so
/// it sees every earlier group), and the inserts go out together with the NOTIFY: the
/// lock is held for two round trips and COMMIT.
pub(super) async fn insert_group(
    tx: &Transaction<'_>,
    events: &[&NewEvent],
    rejected: &[&NewRejected],
    channel: &str,
) -> Result<Vec<Inserted>, tokio_postgres::Error> {
    let mut outcomes = Vec::with_capacity(events.len());
    if !events.is_empty() {
        // Both prepared first, so that they are sent in this order.
        let lock = tx.prepare_cached(INGEST_LOCK).await?;
        let lookup = tx.prepare_cached(LATEST_OF_KEYS).await?;
        let (_, latest) =
            tokio::try_join!(tx.execute(&lock, &[]), latest_of_keys(tx, &lookup, events))?;
        outcomes = decide(events, latest);
        let notify = tx.prepare_cached(super::cluster::NOTIFY).await?;
        let notify_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&channel];
        tokio::try_join!(
            write_events(tx, events, &outcomes),
            tx.execute(&notify, &notify_params)
        )?;
    }
    if !rejected.is_empty() {
        write_rejected(tx, rejected).await?;
    }
    Ok(outcomes)
}

/// The latest stored event (id, received_at) of each (source, dedup key) of `$1`, `$2`.
const LATEST_OF_KEYS: &str =
    "SELECT DISTINCT ON (e.source, e.dedup_key) e.source, e.dedup_key, e.id, e.received_at
     FROM events AS e
     JOIN (SELECT DISTINCT * FROM unnest($1::text[], $2::text[])) AS k (source, dedup_key)
       ON e.source = k.source AND e.dedup_key = k.dedup_key
     ORDER BY e.source, e.dedup_key, e.received_at DESC";

type Key = (String, String);

/// The latest stored event (id, received_at) for each (source, dedup key) in `events`.
async fn latest_of_keys(
    tx: &Transaction<'_>,
    stmt: &tokio_postgres::Statement,
    events: &[&NewEvent],
) -> Result<HashMap<Key, (String, i64)>, tokio_postgres::Error> {
    let mut sources = Vec::with_capacity(events.len());
    let mut keys = Vec::with_capacity(events.len());
    for e in events {
        sources.push(e.source.as_str());
        keys.push(e.dedup_key.as_str());
    }
    let rows = tx.query(stmt, &[&sources, &keys]).await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect())
}

/// New or duplicate, for each event in order: the latest event with its key decides,
/// counting the group's own earlier events.
fn decide(events: &[&NewEvent], mut latest: HashMap<Key, (String, i64)>) -> Vec<Inserted> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let key = (e.source.clone(), e.dedup_key.clone());
        match latest.get(&key) {
            Some((id, at)) if *at >= e.dedup_since_ms => out.push(Inserted::Duplicate {
                original_id: id.clone(),
            }),
            Some((_, at)) if *at > e.received_at_ms => {
                // An older request arriving after a newer stored one outside its window:
                // new, but the newer one stays "latest".
                out.push(Inserted::New { id: e.id.clone() });
            }
            _ => {
                latest.insert(key, (e.id.clone(), e.received_at_ms));
                out.push(Inserted::New { id: e.id.clone() });
            }
        }
    }
    out
}

async fn write_events(
    tx: &Transaction<'_>,
    events: &[&NewEvent],
    outcomes: &[Inserted],
) -> Result<(), tokio_postgres::Error> {
    // Events.
    let mut ids = Vec::new();
    let mut sources = Vec::new();
    let mut received = Vec::new();
    let mut methods = Vec::new();
    let mut paths = Vec::new();
    let mut queries: Vec<Option<&str>> = Vec::new();
    let mut headers: Vec<&[u8]> = Vec::new();
    let mut bodies: Vec<&[u8]> = Vec::new();
    let mut remotes: Vec<Option<&str>> = Vec::new();
    let mut keys = Vec::new();
    // Deliveries.
    let mut d_ids = Vec::new();
    let mut d_events = Vec::new();
    let mut d_routes = Vec::new();
    let mut d_dests = Vec::new();
    let mut d_at = Vec::new();
    let mut d_prepared = Vec::new();
    // Duplicates.
    let mut dup_ids = Vec::new();
    let mut dup_of: Vec<&str> = Vec::new();
    let mut dup_at = Vec::new();
    let mut dup_headers: Vec<&[u8]> = Vec::new();
    let mut dup_remotes: Vec<Option<&str>> = Vec::new();
    for (e, outcome) in events.iter().zip(outcomes) {
        match outcome {
            Inserted::New { .. } => {
                ids.push(e.id.as_str());
                sources.push(e.source.as_str());
                received.push(e.received_at_ms);
                methods.push(e.method.as_str());
                paths.push(e.path.as_str());
                queries.push(e.query.as_deref());
                headers.push(&e.headers[..]);
                bodies.push(&e.body[..]);
                remotes.push(e.remote_addr.as_deref());
                keys.push(e.dedup_key.as_str());
                for d in &e.deliveries {
                    d_ids.push(d.id.as_str());
                    d_events.push(e.id.as_str());
                    d_routes.push(d.route.as_str());
                    d_dests.push(d.destination.as_str());
                    d_at.push(e.received_at_ms);
                    d_prepared.push(!d.needs_preparing);
                }
            }
            Inserted::Duplicate { original_id } => {
                dup_ids.push(id::new(id::DUPLICATE));
                dup_of.push(original_id.as_str());
                dup_at.push(e.received_at_ms);
                dup_headers.push(&e.headers[..]);
                dup_remotes.push(e.remote_addr.as_deref());
            }
        }
    }
    let insert_events = tx
        .prepare_cached(
            "INSERT INTO events (id, source, received_at, method, path, query, headers, body,
                                 remote_addr, dedup_key)
             SELECT id, source, received_at, method, path, query, headers, body, remote_addr,
                    dedup_key
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                         $6::text[], $7::bytea[], $8::bytea[], $9::text[], $10::text[])
                  WITH ORDINALITY
                  AS t (id, source, received_at, method, path, query, headers, body,
                        remote_addr, dedup_key, n)
             ORDER BY n",
        )
        .await?;
    let insert_deliveries = tx
        .prepare_cached(
            "INSERT INTO deliveries (id, event_id, route, destination, state, next_attempt_at,
                                     created_at, updated_at, prepared)
             SELECT id, event_id, route, destination, 'pending', at, at, at, prepared
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                         $6::boolean[])
                  WITH ORDINALITY AS t (id, event_id, route, destination, at, prepared, n)
             ORDER BY n",
        )
        .await?;
    let insert_duplicates = tx
        .prepare_cached(
            "WITH d AS (
                 INSERT INTO duplicates (id, event_id, received_at, headers, remote_addr)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[],
                                      $5::text[])
                 RETURNING event_id)
             UPDATE events SET duplicates = events.duplicates + c.n
             FROM (SELECT event_id, count(*) AS n FROM d GROUP BY event_id) AS c
             WHERE events.id = c.event_id",
        )
        .await?;
    // Pipelined: sent back to back on the connection, answered in order.
    let events_done = async {
        if ids.is_empty() {
            return Ok(0);
        }
        tx.execute(
            &insert_events,
            &[
                &ids, &sources, &received, &methods, &paths, &queries, &headers, &bodies, &remotes,
                &keys,
            ],
        )
        .await
    };
    let deliveries_done = async {
        if d_ids.is_empty() {
            return Ok(0);
        }
        tx.execute(
            &insert_deliveries,
            &[&d_ids, &d_events, &d_routes, &d_dests, &d_at, &d_prepared],
        )
        .await
    };
    let duplicates_done = async {
        if dup_ids.is_empty() {
            return Ok(0);
        }
        tx.execute(
            &insert_duplicates,
            &[&dup_ids, &dup_of, &dup_at, &dup_headers, &dup_remotes],
        )
        .await
    };
    let (a, b, c) = tokio::join!(events_done, deliveries_done, duplicates_done);
    a?;
    b?;
    c?;
    Ok(())
}

async fn write_rejected(
    tx: &Transaction<'_>,
    rejected: &[&NewRejected],
) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<&str> = rejected.iter().map(|r| r.id.as_str()).collect();
    let sources: Vec<&str> = rejected.iter().map(|r| r.source.as_str()).collect();
    let received: Vec<i64> = rejected.iter().map(|r| r.received_at_ms).collect();
    let methods: Vec<&str> = rejected.iter().map(|r| r.method.as_str()).collect();
    let paths: Vec<&str> = rejected.iter().map(|r| r.path.as_str()).collect();
    let queries: Vec<Option<&str>> = rejected.iter().map(|r| r.query.as_deref()).collect();
    let headers: Vec<&[u8]> = rejected.iter().map(|r| &r.headers[..]).collect();
    let bodies: Vec<&[u8]> = rejected.iter().map(|r| &r.body[..]).collect();
    let sizes: Vec<i64> = rejected.iter().map(|r| r.body_size as i64).collect();
    let remotes: Vec<Option<&str>> = rejected.iter().map(|r| r.remote_addr.as_deref()).collect();
    let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO rejected (id, source, received_at, method, path, query, headers, body,
                                   body_size, remote_addr, reason)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                                  $6::text[], $7::bytea[], $8::bytea[], $9::bigint[],
                                  $10::text[], $11::text[])",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &ids, &sources, &received, &methods, &paths, &queries, &headers, &bodies, &sizes,
            &remotes, &reasons,
        ],
    )
    .await?;
    Ok(())
}
