//! Retention on PostgreSQL: the bounded `DELETE`s of [`crate::store::retention`] in one
//! transaction, run by the process that leads maintenance (see [`super::presence`]);
//! events in two steps, so that a replay queueing a delivery meanwhile is never undone
//! ([`purge_events`]).
//! Deliveries, attempts and duplicates of a purged event go with it, deleted here (the
//! schema has no foreign keys: checking one cost a query per inserted row), and so does
//! its dedup key if it was the key's latest event.

use deadpool_postgres::Transaction;

use crate::store::StoreError;
use crate::store::key_hash::dedup_hash_sql;
use crate::store::retention::{
    Kind, NO_WAITING_DELIVERY, Purge, Purged, SOURCE_TABLES, delete_replays_sql,
    distinct_sources_sql, id_bound,
};

/// One pass of `purge`: at most `purge.limit` rows of each kind.
pub(super) async fn purge(tx: &Transaction<'_>, purge: &Purge) -> Result<Purged, StoreError> {
    let mut stored: Vec<String> = Vec::new();
    for table in SOURCE_TABLES {
        for row in tx.query(&distinct_sources_sql(table), &[]).await? {
            let source: String = row.get(0);
            if !stored.contains(&source) {
                stored.push(source);
            }
        }
    }
    let mut purged = Purged::default();
    for (source, cutoffs) in purge.scopes(&stored) {
        for kind in Kind::ALL {
            let Some(cutoff) = kind.cutoff(&cutoffs) else {
                continue;
            };
            let room = purge.limit.saturating_sub(*kind.tally(&mut purged)) as i64;
            let bound = id_bound(kind.id_prefix(), cutoff);
            match kind {
                Kind::Events => {
                    purged.events += purge_events(tx, source, &bound, cutoff, room).await?;
                }
                Kind::Attempts => {
                    let after = purge.attempts_after.get(source).map_or("", String::as_str);
                    let stmt = tx.prepare_cached(&kind.delete_sql('$')).await?;
                    let ids: Vec<String> = tx
                        .query(&stmt, &[&source, &bound, &cutoff, &room, &after])
                        .await?
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    purged.attempts += ids.len();
                    if let Some(last) = ids.into_iter().max() {
                        purged.attempts_upto.insert(source.to_owned(), last);
                    }
                }
                Kind::Rejected => {
                    let stmt = tx.prepare_cached(&kind.delete_sql('$')).await?;
                    purged.rejected += tx
                        .execute(&stmt, &[&source, &bound, &cutoff, &room])
                        .await? as usize;
                }
            }
        }
    }
    if let Some(cutoff) = purge.others.events {
        let stmt = tx.prepare_cached(&delete_replays_sql('$')).await?;
        purged.replays = tx.execute(&stmt, &[&cutoff, &(purge.limit as i64)]).await? as usize;
    }
    Ok(purged)
}

/// Events in two statements, because under READ COMMITTED one `DELETE` would judge
/// "no waiting delivery" on a snapshot taken before a replay, committing meanwhile,
/// queued a delivery for the event; the delete would then take that delivery with it.
/// So: lock the old events first (a replay's insert needs a key-share lock on its
/// event, so from here on it waits), then delete those that still have no waiting
/// delivery, on a fresh snapshot that sees every replay committed before the lock.
async fn purge_events(
    tx: &Transaction<'_>,
    source: &str,
    bound: &str,
    cutoff: i64,
    room: i64,
) -> Result<usize, StoreError> {
    let lock = tx
        .prepare_cached(&format!(
            "SELECT e.id FROM events AS e
             WHERE e.source = $1 AND e.id < $2 AND e.received_at < $3 AND {NO_WAITING_DELIVERY}
             ORDER BY e.id LIMIT $4
             FOR UPDATE SKIP LOCKED"
        ))
        .await?;
    let ids: Vec<String> = tx
        .query(&lock, &[&source, &bound, &cutoff, &room])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(delete_events(tx, &ids).await?.count)
}

/// What [`delete_events`] removed.
pub(super) struct Deleted {
    pub count: usize,
    /// The newest removed event's receive time.
    pub newest_at: Option<i64>,
}

/// Deletes the events of `ids` (locked by the caller) that still have no waiting
/// delivery, with everything that hangs off them: their deliveries and their attempts,
/// their duplicates, and their dedup key if it was the key's latest event (a repeat
/// arriving later is then new, as on a store that never had the event).
pub(super) async fn delete_events(
    tx: &Transaction<'_>,
    ids: &[String],
) -> Result<Deleted, StoreError> {
    if ids.is_empty() {
        return Ok(Deleted {
            count: 0,
            newest_at: None,
        });
    }
    let delete = tx
        .prepare_cached(&format!(
            "WITH gone AS (
                 DELETE FROM events AS e WHERE e.id = ANY($1::text[]) AND {NO_WAITING_DELIVERY}
                 RETURNING e.source, e.dedup_key, e.id, e.received_at),
             gone_deliveries AS (
                 DELETE FROM deliveries AS d USING gone WHERE d.event_id = gone.id
                 RETURNING d.id),
             gone_attempts AS (
                 DELETE FROM attempts AS a USING gone_deliveries AS d
                 WHERE a.delivery_id = d.id),
             gone_duplicates AS (
                 DELETE FROM duplicates AS u USING gone WHERE u.event_id = gone.id),
             gone_keys AS (
                 DELETE FROM dedup_keys AS k USING gone
                 WHERE k.hash = {} AND k.event_id = gone.id)
             SELECT count(*), max(received_at) FROM gone",
            dedup_hash_sql("gone.source", "gone.dedup_key")
        ))
        .await?;
    let row = tx.query_one(&delete, &[&ids]).await?;
    Ok(Deleted {
        count: row.get::<_, i64>(0) as usize,
        newest_at: row.get(1),
    })
}
