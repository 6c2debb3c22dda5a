//! Event and rejected-request queries on PostgreSQL.

use deadpool_postgres::Client;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::store::event_filter::{self, Param};
use crate::store::headers::decode_stored;
use crate::store::seal::Sealer;
use crate::store::{
    DeliverySummary, EventQuery, StoreError, StoredEvent, StoredRejected, StoredRequest,
    StreamPosition,
};

/// The request columns both tables share, in [`request_row`]'s order.
const REQUEST_COLUMNS: &str =
    "id, source, received_at, method, path, query, headers, {size}, remote_addr";
/// Columns after the shared ones start here.
const EXTRA: usize = 9;
/// An event's body, when read, comes after its own columns (`event_columns`).
const EVENT_BODY: usize = EXTRA + 4;

fn event_columns() -> String {
    format!(
        "{}, dedup_key, duplicates, redacted, redaction_pending",
        REQUEST_COLUMNS.replace("{size}", "octet_length(body)::bigint")
    )
}

fn rejected_columns() -> String {
    format!("{}, reason", REQUEST_COLUMNS.replace("{size}", "body_size"))
}

pub(super) async fn get_event(
    c: &Client,
    sealer: &Sealer,
    id: &str,
) -> Result<Option<StoredEvent>, StoreError> {
    let sql = format!("SELECT {}, body FROM events WHERE id = $1", event_columns());
    let stmt = c.prepare_cached(&sql).await?;
    match c.query_opt(&stmt, &[&id]).await? {
        Some(r) => Ok(Some(
            complete_event(c, event_row(&r, sealer, Some(EVENT_BODY))?).await?,
        )),
        None => Ok(None),
    }
}

pub(super) async fn list_events(
    c: &Client,
    sealer: &Sealer,
    q: &EventQuery,
) -> Result<Vec<StoredEvent>, StoreError> {
    let body = if q.with_bodies { ", body" } else { "" };
    let list = event_filter::event_list(q, |n| format!("${n}"));
    let sql = format!(
        "SELECT {}{body} FROM events {} ORDER BY id {} LIMIT {}",
        event_columns(),
        list.clause,
        list.order,
        list.limit
    );
    let stmt = c.prepare_cached(&sql).await?;
    let values: Vec<&(dyn ToSql + Sync)> = list
        .params
        .iter()
        .map(|p| match p {
            Param::Text(text) => text as &(dyn ToSql + Sync),
            Param::Int(n) => n,
        })
        .collect();
    let rows = c.query(&stmt, &values).await?;
    let body_at = q.with_bodies.then_some(EVENT_BODY);
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        events.push(complete_event(c, event_row(r, sealer, body_at)?).await?);
    }
    Ok(events)
}

// Stream positions are (`txid`, `position`): the inserting transaction's id, then the
// `bigserial` drawn for the row. Ingest groups of several processes commit side by side,
// so neither alone is commit order: a group can draw lower positions, or get a lower
// transaction id, and commit after another. But every event a follower reads is older
// than the oldest transaction still open (`txid` below the snapshot's xmin), and every
// transaction that commits later has a `txid` at or above that xmin: so in (`txid`,
// `position`) order nothing that commits later lands behind what was read.

/// The oldest transaction id still open, as of this statement: every event with a
/// lower `txid` has committed (or never will).
const HORIZON: &str = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

pub(super) async fn event_position(
    c: &Client,
    id: &str,
) -> Result<Option<StreamPosition>, StoreError> {
    // An event the stream has not given yet (its transaction is at or past the horizon:
    // an id found by search, say) stands no higher than the horizon: a transaction
    // still open below its own may yet commit events, and resuming after the event
    // itself would skip them. From the horizon they come, and the event again.
    let stmt = c
        .prepare_cached(&format!(
            "SELECT CASE WHEN txid < h THEN txid ELSE h END,
                    CASE WHEN txid < h THEN position ELSE 0 END
             FROM events, (SELECT {HORIZON} AS h) AS horizon
             WHERE id = $1"
        ))
        .await?;
    Ok(c.query_opt(&stmt, &[&id]).await?.map(|r| StreamPosition {
        txn: r.get(0),
        seq: r.get(1),
    }))
}

/// The horizon itself: what commits from now on stands after it (as may a few events of
/// transactions that were open a moment ago and have just committed).
pub(super) async fn last_event_position(c: &Client) -> Result<StreamPosition, StoreError> {
    let stmt = c.prepare_cached(&format!("SELECT {HORIZON}")).await?;
    Ok(StreamPosition {
        txn: c.query_one(&stmt, &[]).await?.get(0),
        seq: 0,
    })
}

pub(super) async fn events_after_position(
    c: &Client,
    sealer: &Sealer,
    position: StreamPosition,
    source: Option<&str>,
    limit: usize,
) -> Result<Vec<(StreamPosition, StoredEvent)>, StoreError> {
    let sql = format!(
        "SELECT {}, body, txid, position FROM events
         WHERE (txid, position) > ($1, $2) AND txid < {HORIZON}
           AND ($3::text IS NULL OR source = $3)
         ORDER BY txid, position LIMIT $4",
        event_columns()
    );
    let stmt = c.prepare_cached(&sql).await?;
    let rows = c
        .query(
            &stmt,
            &[&position.txn, &position.seq, &source, &(limit as i64)],
        )
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        let position = StreamPosition {
            txn: r.get(EVENT_BODY + 1),
            seq: r.get(EVENT_BODY + 2),
        };
        events.push((
            position,
            complete_event(c, event_row(r, sealer, Some(EVENT_BODY))?).await?,
        ));
    }
    Ok(events)
}

pub(super) async fn list_rejected(
    c: &Client,
    sealer: &Sealer,
    q: &EventQuery,
) -> Result<Vec<StoredRejected>, StoreError> {
    let sql = format!(
        "SELECT {} FROM rejected
         WHERE ($1::text IS NULL OR source = $1) AND ($2::text IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
        rejected_columns()
    );
    let stmt = c.prepare_cached(&sql).await?;
    let rows = c
        .query(&stmt, &[&q.source, &q.cursor, &(q.limit as i64)])
        .await?;
    rows.iter().map(|r| rejected_row(r, sealer, None)).collect()
}

pub(super) async fn get_rejected(
    c: &Client,
    sealer: &Sealer,
    id: &str,
) -> Result<Option<StoredRejected>, StoreError> {
    let sql = format!(
        "SELECT {}, body FROM rejected WHERE id = $1",
        rejected_columns()
    );
    let stmt = c.prepare_cached(&sql).await?;
    c.query_opt(&stmt, &[&id])
        .await?
        .map(|r| rejected_row(&r, sealer, Some(EXTRA + 1)))
        .transpose()
}

/// Reads and opens the request columns; `length_read` when `body_size` is the stored
/// body's length (events), not a column of its own (rejected requests).
fn request_row(
    r: &Row,
    sealer: &Sealer,
    body_at: Option<usize>,
    length_read: bool,
) -> Result<StoredRequest, StoreError> {
    let mut request = StoredRequest {
        id: r.try_get(0)?,
        source: r.try_get(1)?,
        received_at_ms: r.try_get(2)?,
        method: r.try_get(3)?,
        path: r.try_get(4)?,
        query: r.try_get(5)?,
        headers: Vec::new(),
        body: body_at.map(|i| r.try_get(i)).transpose()?,
        body_size: r.try_get(7)?,
        remote_addr: r.try_get(8)?,
    };
    let headers = sealer.open_stored_request(&mut request, r.try_get(6)?, length_read)?;
    request.headers = decode_stored(&headers)?;
    Ok(request)
}

fn event_row(r: &Row, sealer: &Sealer, body_at: Option<usize>) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        request: request_row(r, sealer, body_at, true)?,
        dedup_key: r.try_get(EXTRA)?,
        duplicates: r.try_get(EXTRA + 1)?,
        redacted: crate::store::redaction::fields_from_column(r.try_get(EXTRA + 2)?),
        redaction_pending: r.try_get(EXTRA + 3)?,
        deliveries: Vec::new(),
    })
}

fn rejected_row(
    r: &Row,
    sealer: &Sealer,
    body_at: Option<usize>,
) -> Result<StoredRejected, StoreError> {
    Ok(StoredRejected {
        request: request_row(r, sealer, body_at, false)?,
        reason: r.try_get(EXTRA)?,
    })
}

async fn complete_event(c: &Client, mut event: StoredEvent) -> Result<StoredEvent, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT id, route, destination, state, attempts FROM deliveries
             WHERE event_id = $1 ORDER BY id",
        )
        .await?;
    event.deliveries = c
        .query(&stmt, &[&event.request.id])
        .await?
        .iter()
        .map(|r| DeliverySummary {
            id: r.get(0),
            route: r.get(1),
            destination: r.get(2),
            state: r.get(3),
            attempts: r.get(4),
        })
        .collect();
    Ok(event)
}
