//! The writes of ingest on PostgreSQL: a whole group of events (with their deliveries
//! and duplicates) and rejected requests in one transaction, as multi-row inserts
//! (`unnest` of arrays), pipelined on one connection.
//!
//! **Several processes at once.** Groups of different processes commit side by side;
//! what stays exact across them:
//! - **Dedup.** `dedup_keys` holds one row per (source, dedup key): its latest event,
//!   keyed by an 8-byte hash of the two (`key_hash.rs`: a narrow index, of which each
//!   new key dirties a small share). A group first upserts the rows of its keys in hash
//!   order ([`CLAIM_KEYS`]): a key new to the store gets the group's event, a known one
//!   comes back as it is, and either way the row stays locked to COMMIT. A second group
//!   with the same key waits on that row, not on every other group, and then sees what
//!   the first committed. Whether an event is a duplicate (its key's latest event is
//!   within the window) is decided here, and a key whose latest event changed is
//!   written back before COMMIT. Hash order keeps two groups from locking each other's
//!   rows in opposite orders. A row found under another key's hash (a collision) is
//!   left alone: that key is judged against its own group only, so a collision can miss
//!   a repeat, never make a distinct event a duplicate.
//! - **Receive order of ordered routes.** A delivery's `position` (from a `bigserial`)
//!   is its place in its route's order, and a route with an ordering key may send one
//!   only once nothing earlier of its key is pending. So a group with a delivery on such
//!   a route takes the ingest lock ([`INGEST_LOCK`]) exclusively, held to COMMIT, and
//!   every other group takes it shared: an ordered group runs alone, after every group
//!   that drew lower positions has committed and before any that draws higher ones. The
//!   others run side by side.
//! - **The live stream** reads in (transaction, position) order, not position order
//!   alone (see `read.rs`), so a group that draws lower positions and commits later is
//!   never skipped.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Transaction;

use crate::id;
use crate::store::key_hash;
use crate::store::{Inserted, NewEvent, NewRejected};

/// The ingest lock, exclusive: a transaction whose deliveries' positions must be drawn
/// in commit order (an ordered route's, a replay's) takes it first.
pub(super) const INGEST_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '/forebay/ingest'))";

/// The ingest lock, shared: what every other ingest group takes, so that it waits only
/// for an ordered group.
const INGEST_LOCK_SHARED: &str =
    "SELECT pg_advisory_xact_lock_shared(hashtext(current_schema() || '/forebay/ingest'))";

/// Takes the ingest lock exclusively for the rest of the transaction.
pub(super) async fn ingest_lock(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    let stmt = tx.prepare_cached(INGEST_LOCK).await?;
    tx.execute(&stmt, &[]).await?;
    Ok(())
}

/// Inserts `events` and `rejected` in the open transaction, and sends NOTIFY on
/// `channel` when there are events; returns one outcome per event, in order.
///
/// Two round trips before COMMIT: the lock and the key upsert, then (once the outcomes
/// are known) the inserts, the keys written back and the NOTIFY.
pub(super) async fn insert_group(
    tx: &Transaction<'_>,
    events: &[&NewEvent],
    rejected: &[&NewRejected],
    channel: &str,
) -> Result<Vec<Inserted>, tokio_postgres::Error> {
    let mut outcomes = Vec::with_capacity(events.len());
    if !events.is_empty() {
        let ordered = events
            .iter()
            .any(|e| e.deliveries.iter().any(|d| d.ordered));
        // Both prepared first, so that they are sent in this order.
        let lock = tx
            .prepare_cached(if ordered {
                INGEST_LOCK
            } else {
                INGEST_LOCK_SHARED
            })
            .await?;
        let claim = tx.prepare_cached(CLAIM_KEYS).await?;
        let keys = GroupKeys::of(events);
        // Pipelined, and checked in the order sent: when one statement fails, the ones
        // behind it fail only with "transaction is aborted", and the first says why.
        let (locked, claimed) =
            tokio::join!(tx.execute(&lock, &[]), keys.claim(tx, &claim, events));
        locked?;
        let claimed = claimed?;
        let (decided, latest) = decide(events, claimed.stored);
        outcomes = decided;
        // Only a row whose key's latest event is no longer what it holds is written (a
        // repeat after its window, or a later event of a new key in the same group).
        let changed: Vec<(i64, &(String, i64))> = latest
            .iter()
            .filter(|(key, now)| claimed.held.get(*key).is_some_and(|row| row != *now))
            .map(|(key, now)| (keys.hash_of[key], now))
            .collect();
        let notify = tx.prepare_cached(super::cluster::NOTIFY).await?;
        let notify_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&channel];
        let (written, written_back, notified) = tokio::join!(
            write_events(tx, events, &outcomes),
            write_back_keys(tx, &changed),
            tx.execute(&notify, &notify_params)
        );
        written?;
        written_back?;
        notified?;
    }
    if !rejected.is_empty() {
        write_rejected(tx, rejected).await?;
    }
    Ok(outcomes)
}

/// Upserts one row per hash of `$1` (source `$2`, key `$3`, event `$4` received at
/// `$5`) in hash order, leaving a known one as it is (an update of no indexed column,
/// so the row is locked cheaply): returns each hash's row, locked to COMMIT.
const CLAIM_KEYS: &str =
    "INSERT INTO dedup_keys AS k (hash, source, dedup_key, event_id, received_at)
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[])
     ORDER BY 1
     ON CONFLICT (hash) DO UPDATE SET event_id = k.event_id
     RETURNING k.hash, k.source, k.dedup_key, k.event_id, k.received_at";

type Key = (String, String);

/// The keys of a group: the hash of each, and the first event of each hash.
struct GroupKeys {
    hash_of: HashMap<Key, i64>,
    /// The first event of each hash (its index in the group) and the hash, in order.
    firsts: Vec<(usize, i64)>,
}

/// What claiming a group's keys found.
struct Claimed {
    /// The latest event (id, received_at) stored before this group, for each key that
    /// had one.
    stored: HashMap<Key, (String, i64)>,
    /// What each row this group holds names now (stored, or this group's first event of
    /// a new key). A key missing here shares its hash with the key that holds the row
    /// (a collision): its events are judged against the group alone and the row is left
    /// as it is.
    held: HashMap<Key, (String, i64)>,
}

impl GroupKeys {
    fn of(events: &[&NewEvent]) -> Self {
        let mut hash_of = HashMap::with_capacity(events.len());
        let mut hashes = HashSet::with_capacity(events.len());
        let mut firsts = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let key = (e.source.clone(), e.dedup_key.clone());
            if hash_of.contains_key(&key) {
                continue;
            }
            let hash = key_hash::dedup_hash(&e.source, &e.dedup_key);
            hash_of.insert(key, hash);
            // A second key of the same hash in one group cannot be upserted twice in
            // one statement: it is not claimed (see `Claimed::held`).
            if hashes.insert(hash) {
                firsts.push((i, hash));
            }
        }
        GroupKeys { hash_of, firsts }
    }

    /// Claims the row of each hash (a new one gets the first event of its key) and
    /// returns what was stored before and what the rows hold now.
    async fn claim(
        &self,
        tx: &Transaction<'_>,
        stmt: &tokio_postgres::Statement,
        events: &[&NewEvent],
    ) -> Result<Claimed, tokio_postgres::Error> {
        let n = self.firsts.len();
        let (mut hashes, mut sources, mut keys, mut ids, mut received) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for &(i, hash) in &self.firsts {
            let e = events[i];
            hashes.push(hash);
            sources.push(e.source.as_str());
            keys.push(e.dedup_key.as_str());
            ids.push(e.id.as_str());
            received.push(e.received_at_ms);
        }
        let ours: HashSet<&str> = ids.iter().copied().collect();
        let rows = tx
            .query(stmt, &[&hashes, &sources, &keys, &ids, &received])
            .await?;
        let mut claimed = Claimed {
            stored: HashMap::new(),
            held: HashMap::with_capacity(rows.len()),
        };
        for r in rows {
            let key: Key = (r.get(1), r.get(2));
            let row: (String, i64) = (r.get(3), r.get(4));
            if !self.hash_of.contains_key(&key) {
                continue; // another key's row under one of this group's hashes
            }
            if !ours.contains(row.0.as_str()) {
                claimed.stored.insert(key.clone(), row.clone());
            }
            claimed.held.insert(key, row);
        }
        Ok(claimed)
    }
}

/// Points the rows of the hashes in `changed` at their key's new latest event.
async fn write_back_keys(
    tx: &Transaction<'_>,
    changed: &[(i64, &(String, i64))],
) -> Result<u64, tokio_postgres::Error> {
    if changed.is_empty() {
        return Ok(0);
    }
    let hashes: Vec<i64> = changed.iter().map(|(h, _)| *h).collect();
    let ids: Vec<&str> = changed.iter().map(|(_, v)| v.0.as_str()).collect();
    let received: Vec<i64> = changed.iter().map(|(_, v)| v.1).collect();
    let stmt = tx
        .prepare_cached(
            "UPDATE dedup_keys AS k SET event_id = c.event_id, received_at = c.received_at
             FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS c (hash, event_id, received_at)
             WHERE k.hash = c.hash",
        )
        .await?;
    tx.execute(&stmt, &[&hashes, &ids, &received]).await
}

/// New or duplicate, for each event in order: the latest event with its key decides,
/// counting the group's own earlier events. Also returns each key's latest event after
/// the group.
fn decide(
    events: &[&NewEvent],
    mut latest: HashMap<Key, (String, i64)>,
) -> (Vec<Inserted>, HashMap<Key, (String, i64)>) {
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
    (out, latest)
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
    let mut redacted: Vec<Option<String>> = Vec::new();
    let mut pending = Vec::new();
    let mut rules: Vec<Option<&str>> = Vec::new();
    // Deliveries.
    let mut d_ids = Vec::new();
    let mut d_events = Vec::new();
    let mut d_routes = Vec::new();
    let mut d_dests = Vec::new();
    let mut d_at = Vec::new();
    let mut d_prepared = Vec::new();
    let mut d_due: Vec<i64> = Vec::new();
    let mut d_priority: Vec<i16> = Vec::new();
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
                redacted.push(crate::store::redaction::fields_column(&e.redacted));
                pending.push(e.pending_rule.is_some());
                rules.push(e.pending_rule.as_deref());
                for d in &e.deliveries {
                    d_ids.push(d.id.as_str());
                    d_events.push(e.id.as_str());
                    d_routes.push(d.route.as_str());
                    d_dests.push(d.destination.as_str());
                    d_at.push(e.received_at_ms);
                    d_due.push(e.received_at_ms.saturating_add(d.delay_ms));
                    d_prepared.push(!d.needs_preparing);
                    d_priority.push(i16::from(d.priority));
                }
            }
            Inserted::Duplicate { original_id } => {
                dup_ids.push(id::retag(&e.id, id::DUPLICATE));
                dup_of.push(original_id.as_str());
                dup_at.push(e.received_at_ms);
                dup_headers.push(e.headers_for_duplicate());
                dup_remotes.push(e.remote_addr.as_deref());
            }
        }
    }
    let insert_events = tx
        .prepare_cached(
            "INSERT INTO events (id, source, received_at, method, path, query, headers, body,
                                 remote_addr, dedup_key, redacted, redaction_pending,
                                 redact_rule)
             SELECT id, source, received_at, method, path, query, headers, body, remote_addr,
                    dedup_key, redacted, redaction_pending, redact_rule
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                         $6::text[], $7::bytea[], $8::bytea[], $9::text[], $10::text[],
                         $11::text[], $12::boolean[], $13::text[])
                  WITH ORDINALITY
                  AS t (id, source, received_at, method, path, query, headers, body,
                        remote_addr, dedup_key, redacted, redaction_pending, redact_rule, n)
             ORDER BY n",
        )
        .await?;
    let insert_deliveries = tx
        .prepare_cached(
            "INSERT INTO deliveries (id, event_id, route, destination, state, next_attempt_at,
                                     created_at, updated_at, prepared, priority)
             SELECT id, event_id, route, destination, 'pending', due, at, at, prepared,
                    priority
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                         $6::boolean[], $7::bigint[], $8::smallint[])
                  WITH ORDINALITY
                  AS t (id, event_id, route, destination, at, prepared, due, priority, n)
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
                &keys, &redacted, &pending, &rules,
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
            &[
                &d_ids,
                &d_events,
                &d_routes,
                &d_dests,
                &d_at,
                &d_prepared,
                &d_due,
                &d_priority,
            ],
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
