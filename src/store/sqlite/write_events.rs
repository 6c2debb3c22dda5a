//! The writes of ingest: an event with its deliveries (or a duplicate of an earlier
//! event), and a rejected request. They run inside the writer's group transaction.

use rusqlite::{Connection, params};

use super::dedup;
use super::recent_dedup::RecentDedup;
use crate::id;
use crate::store::{Inserted, NewEvent, NewRejected};

pub(super) fn insert_event(
    conn: &Connection,
    recent: &mut RecentDedup,
    e: &NewEvent,
) -> rusqlite::Result<Inserted> {
    // The latest event with this key decides: an earlier one is either outside the
    // window too, or this latest one would have been its duplicate.
    let hash = dedup::hash(&e.source, &e.dedup_key);
    let latest = dedup::latest(conn, recent, hash, &e.source, &e.dedup_key)?;
    let original = latest
        .filter(|(_, received_at)| *received_at >= e.dedup_since_ms)
        .map(|(id, _)| id);
    if let Some(original_id) = original {
        conn.prepare_cached("UPDATE events SET duplicates = duplicates + 1 WHERE id = ?1")?
            .execute(params![original_id])?;
        conn.prepare_cached(
            "INSERT INTO duplicates (id, event_id, received_at, headers, remote_addr)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            id::retag(&e.id, id::DUPLICATE),
            original_id,
            e.received_at_ms,
            e.headers_for_duplicate(),
            e.remote_addr
        ])?;
        return Ok(Inserted::Duplicate { original_id });
    }
    conn.prepare_cached(
        "INSERT INTO events (id, source, received_at, method, path, query, headers, body,
                             remote_addr, dedup_key, dedup_hash, redacted, redaction_pending,
                             redact_rule)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        e.id,
        e.source,
        e.received_at_ms,
        e.method,
        e.path,
        e.query,
        e.headers,
        &e.body[..],
        e.remote_addr,
        e.dedup_key,
        hash,
        crate::store::redaction::fields_column(&e.redacted),
        e.pending_rule.is_some(),
        e.pending_rule
    ])?;
    recent.record(conn, hash, conn.last_insert_rowid())?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO deliveries (id, event_id, route, destination, state, next_attempt_at,
                                 created_at, updated_at, prepared, priority)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5 + ?7, ?5, ?5, ?6, ?8)",
    )?;
    for d in &e.deliveries {
        insert.execute(params![
            d.id,
            e.id,
            d.route,
            d.destination,
            e.received_at_ms,
            !d.needs_preparing,
            d.delay_ms,
            d.priority
        ])?;
    }
    Ok(Inserted::New { id: e.id.clone() })
}

pub(super) fn insert_rejected(conn: &Connection, r: &NewRejected) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO rejected (id, source, received_at, method, path, query, headers, body,
                               body_size, remote_addr, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        r.id,
        r.source,
        r.received_at_ms,
        r.method,
        r.path,
        r.query,
        r.headers,
        &r.body[..],
        r.body_size as i64,
        r.remote_addr,
        r.reason
    ])?;
    Ok(())
}
