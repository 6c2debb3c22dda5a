//! Queries on the read-only connections.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use crate::store::event_filter::{self, Param};
use crate::store::headers::decode_stored;
use crate::store::seal::Sealer;
use crate::store::{
    DeliverySummary, EventQuery, StoreError, StoredEvent, StoredRejected, StoredRequest,
    StreamPosition,
};

/// The request columns both tables share, in [`request_row`]'s order; `{size}` is how the
/// table knows the body's size as received.
const REQUEST_COLUMNS: &str =
    "id, source, received_at, method, path, query, headers, {size}, remote_addr";
/// Columns after the shared ones start here.
const EXTRA: usize = 9;
/// An event's body, when read, comes after its own columns (`event_columns`).
const EVENT_BODY: usize = EXTRA + 4;

fn event_columns() -> String {
    format!(
        "{}, dedup_key, duplicates, redacted, redaction_pending",
        REQUEST_COLUMNS.replace("{size}", "length(body)")
    )
}

fn rejected_columns() -> String {
    format!("{}, reason", REQUEST_COLUMNS.replace("{size}", "body_size"))
}

pub(super) fn get_event(
    conn: &Connection,
    sealer: &Sealer,
    id: &str,
) -> Result<Option<StoredEvent>, StoreError> {
    let sql = format!("SELECT {}, body FROM events WHERE id = ?1", event_columns());
    let row = conn
        .prepare_cached(&sql)?
        .query_row(params![id], |r| event_row(r, Some(EVENT_BODY)))
        .optional()?;
    row.map(|row| complete_event(conn, sealer, row)).transpose()
}

pub(super) fn list_events(
    conn: &Connection,
    sealer: &Sealer,
    q: &EventQuery,
) -> Result<Vec<StoredEvent>, StoreError> {
    let body = if q.with_bodies { ", body" } else { "" };
    let list = event_filter::event_list(q, |n| format!("?{n}"));
    let sql = format!(
        "SELECT {}{body} FROM events {} ORDER BY id {} LIMIT {}",
        event_columns(),
        list.clause,
        list.order,
        list.limit
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let body_at = q.with_bodies.then_some(EVENT_BODY);
    let values = list.params.into_iter().map(|p| match p {
        Param::Text(text) => Value::Text(text),
        Param::Int(n) => Value::Integer(n),
    });
    let rows = stmt.query_map(params_from_iter(values), |r| event_row(r, body_at))?;
    let mut events = Vec::new();
    for row in rows {
        events.push(complete_event(conn, sealer, row?)?);
    }
    Ok(events)
}

// Commit order is the rowid: the one writer gives each new row the largest rowid so far.
// (Eviction and the archive never delete the newest event, nor does retention unless
// nothing arrived for its whole period, so no rowid is handed out twice in practice; and
// forebay never runs VACUUM, which could renumber them.)

/// The stream position of rowid `seq` (one writer: `txn` is always 0).
fn at(seq: i64) -> StreamPosition {
    StreamPosition { txn: 0, seq }
}

pub(super) fn event_position(
    conn: &Connection,
    id: &str,
) -> Result<Option<StreamPosition>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT rowid FROM events WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()?
        .map(at))
}

pub(super) fn last_event_position(conn: &Connection) -> Result<StreamPosition, StoreError> {
    Ok(at(conn
        .prepare_cached("SELECT coalesce(max(rowid), 0) FROM events")?
        .query_row([], |r| r.get(0))?))
}

pub(super) fn events_after_position(
    conn: &Connection,
    sealer: &Sealer,
    position: StreamPosition,
    source: Option<&str>,
    limit: usize,
) -> Result<Vec<(StreamPosition, StoredEvent)>, StoreError> {
    let position = position.seq;
    let sql = format!(
        "SELECT {}, body, rowid FROM events
         WHERE rowid > ?1 AND (?2 IS NULL OR source = ?2)
         ORDER BY rowid LIMIT ?3",
        event_columns()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![position, source, limit as i64], |r| {
        Ok((
            r.get::<_, i64>(EVENT_BODY + 1)?,
            event_row(r, Some(EVENT_BODY))?,
        ))
    })?;
    let mut events = Vec::new();
    for row in rows {
        let (position, row) = row?;
        events.push((at(position), complete_event(conn, sealer, row)?));
    }
    Ok(events)
}

pub(super) fn list_rejected(
    conn: &Connection,
    sealer: &Sealer,
    q: &EventQuery,
) -> Result<Vec<StoredRejected>, StoreError> {
    let sql = format!(
        "SELECT {} FROM rejected
         WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR id < ?2)
         ORDER BY id DESC LIMIT ?3",
        rejected_columns()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![q.source, q.cursor, q.limit as i64], |r| {
        rejected_row(r, None)
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(complete_rejected(sealer, row?)?);
    }
    Ok(out)
}

pub(super) fn get_rejected(
    conn: &Connection,
    sealer: &Sealer,
    id: &str,
) -> Result<Option<StoredRejected>, StoreError> {
    let sql = format!(
        "SELECT {}, body FROM rejected WHERE id = ?1",
        rejected_columns()
    );
    let row = conn
        .prepare_cached(&sql)?
        .query_row(params![id], |r| rejected_row(r, Some(EXTRA + 1)))
        .optional()?;
    row.map(|row| complete_rejected(sealer, row)).transpose()
}

/// Reads [`REQUEST_COLUMNS`] (and the body, when `body_at` names its column). Headers
/// stay encoded here and are decoded in `complete_*`, where a decoding error can be a
/// [`StoreError`].
fn request_row(r: &Row<'_>, body_at: Option<usize>) -> rusqlite::Result<(StoredRequest, Vec<u8>)> {
    let request = StoredRequest {
        id: r.get(0)?,
        source: r.get(1)?,
        received_at_ms: r.get(2)?,
        method: r.get(3)?,
        path: r.get(4)?,
        query: r.get(5)?,
        headers: Vec::new(),
        body: body_at.map(|i| r.get(i)).transpose()?,
        body_size: r.get(7)?,
        remote_addr: r.get(8)?,
    };
    Ok((request, r.get(6)?))
}

type Encoded<T> = (T, Vec<u8>);

fn event_row(r: &Row<'_>, body_at: Option<usize>) -> rusqlite::Result<Encoded<StoredEvent>> {
    let (request, headers) = request_row(r, body_at)?;
    let event = StoredEvent {
        request,
        dedup_key: r.get(EXTRA)?,
        duplicates: r.get(EXTRA + 1)?,
        redacted: crate::store::redaction::fields_from_column(r.get(EXTRA + 2)?),
        redaction_pending: r.get(EXTRA + 3)?,
        deliveries: Vec::new(),
    };
    Ok((event, headers))
}

fn rejected_row(r: &Row<'_>, body_at: Option<usize>) -> rusqlite::Result<Encoded<StoredRejected>> {
    let (request, headers) = request_row(r, body_at)?;
    let rejected = StoredRejected {
        request,
        reason: r.get(EXTRA)?,
    };
    Ok((rejected, headers))
}

/// Opens a row from [`event_row`] and adds its decoded headers and deliveries.
fn complete_event(
    conn: &Connection,
    sealer: &Sealer,
    (mut event, headers): Encoded<StoredEvent>,
) -> Result<StoredEvent, StoreError> {
    let headers = sealer.open_stored_request(&mut event.request, headers, true)?;
    event.request.headers = decode_stored(&headers)?;
    event.deliveries = deliveries_of(conn, &event.request.id)?;
    Ok(event)
}

fn complete_rejected(
    sealer: &Sealer,
    (mut rejected, headers): Encoded<StoredRejected>,
) -> Result<StoredRejected, StoreError> {
    let headers = sealer.open_stored_request(&mut rejected.request, headers, false)?;
    rejected.request.headers = decode_stored(&headers)?;
    Ok(rejected)
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
