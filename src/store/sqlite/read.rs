//! Queries on the read-only connections.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::parse_headers;
use crate::store::{DeliverySummary, EventQuery, StoreError, StoredEvent, StoredRejected};

const EVENT_COLUMNS: &str = "id, source, received_at, method, path, query, headers, \
     length(body), remote_addr, dedup_key, duplicates";

pub(super) fn get_event(conn: &Connection, id: &str) -> Result<Option<StoredEvent>, StoreError> {
    let sql = format!("SELECT {EVENT_COLUMNS}, body FROM events WHERE id = ?1");
    let event = conn
        .prepare_cached(&sql)?
        .query_row(params![id], |r| {
            let (mut e, headers) = event_row(r)?;
            e.body = Some(r.get(11)?);
            Ok((e, headers))
        })
        .optional()?;
    let Some(row) = event else {
        return Ok(None);
    };
    complete(conn, row).map(Some)
}

pub(super) fn list_events(
    conn: &Connection,
    q: &EventQuery,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR id < ?2)
         ORDER BY id DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![q.source, q.before, q.limit as i64], event_row)?;
    let mut events = Vec::new();
    for row in rows {
        events.push(complete(conn, row?)?);
    }
    Ok(events)
}

pub(super) fn list_rejected(
    conn: &Connection,
    q: &EventQuery,
) -> Result<Vec<StoredRejected>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, source, received_at, method, path, query, headers, body, remote_addr, reason
         FROM rejected
         WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR id < ?2)
         ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![q.source, q.before, q.limit as i64], |r| {
        Ok((
            StoredRejected {
                id: r.get(0)?,
                source: r.get(1)?,
                received_at_ms: r.get(2)?,
                method: r.get(3)?,
                path: r.get(4)?,
                query: r.get(5)?,
                headers: Vec::new(),
                body: r.get(7)?,
                remote_addr: r.get(8)?,
                reason: r.get(9)?,
            },
            r.get::<_, String>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (mut rej, headers) = row?;
        rej.headers = parse_headers(&headers)?;
        out.push(rej);
    }
    Ok(out)
}

/// Reads the columns of [`EVENT_COLUMNS`], with the headers still as JSON text: they are
/// parsed in [`complete`], where a decoding error can be a [`StoreError`].
fn event_row(r: &Row<'_>) -> rusqlite::Result<(StoredEvent, String)> {
    let event = StoredEvent {
        id: r.get(0)?,
        source: r.get(1)?,
        received_at_ms: r.get(2)?,
        method: r.get(3)?,
        path: r.get(4)?,
        query: r.get(5)?,
        headers: Vec::new(),
        body: None,
        body_size: r.get(7)?,
        remote_addr: r.get(8)?,
        dedup_key: r.get(9)?,
        duplicates: r.get(10)?,
        deliveries: Vec::new(),
    };
    Ok((event, r.get(6)?))
}

/// Adds parsed headers and the deliveries to a row from [`event_row`].
fn complete(
    conn: &Connection,
    (mut event, headers): (StoredEvent, String),
) -> Result<StoredEvent, StoreError> {
    event.headers = parse_headers(&headers)?;
    event.deliveries = deliveries_of(conn, &event.id)?;
    Ok(event)
}

fn deliveries_of(conn: &Connection, event_id: &str) -> Result<Vec<DeliverySummary>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, route, destination, state, attempts FROM deliveries
         WHERE event_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![event_id], |r| {
        Ok(DeliverySummary {
            id: r.get(0)?,
            route: r.get(1)?,
            destination: r.get(2)?,
            state: r.get(3)?,
            attempts: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
