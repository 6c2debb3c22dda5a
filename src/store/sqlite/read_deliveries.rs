//! Delivery queries on the read-only connections.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::headers::decode_stored;
use crate::store::seal::Sealer;
use crate::store::{
    DeliveryCount, DeliveryQuery, EventInput, StoreError, StoredAttempt, StoredDelivery, Unprepared,
};

const COLUMNS: &str = "id, event_id, route, destination, state, attempts, next_attempt_at, \
     created_at, updated_at, last_error, part, ordering_key";

pub(super) fn list(
    conn: &Connection,
    q: &DeliveryQuery,
) -> Result<Vec<StoredDelivery>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deliveries
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR route = ?2)
           AND (?3 IS NULL OR destination = ?3) AND (?4 IS NULL OR id < ?4)
         ORDER BY id DESC LIMIT ?5"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![q.state, q.route, q.destination, q.before, q.limit as i64],
        delivery_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn get(
    conn: &Connection,
    sealer: &Sealer,
    id: &str,
) -> Result<Option<StoredDelivery>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1");
    let Some(mut delivery) = conn
        .prepare_cached(&sql)?
        .query_row(params![id], delivery_row)
        .optional()?
    else {
        return Ok(None);
    };
    let payload = conn
        .prepare_cached("SELECT payload FROM deliveries WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))?;
    delivery.payload =
        sealer.open_payload(&delivery.event_id, &delivery.route, delivery.part, payload)?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, number, started_at, duration_ms, status, error, response_headers,
                response_body
         FROM attempts WHERE delivery_id = ?1 ORDER BY number, started_at",
    )?;
    let rows = stmt.query_map(params![id], |r| {
        Ok((
            StoredAttempt {
                id: r.get(0)?,
                number: r.get(1)?,
                started_at_ms: r.get(2)?,
                duration_ms: r.get(3)?,
                status: r.get(4)?,
                error: r.get(5)?,
                response_headers: Vec::new(),
                response_body: Vec::new(),
            },
            r.get::<_, Vec<u8>>(6)?,
            r.get::<_, Vec<u8>>(7)?,
        ))
    })?;
    for row in rows {
        let (mut attempt, headers, body) = row?;
        let (headers, body) = sealer.open_response(&attempt.id, headers, body)?;
        attempt.response_headers = decode_stored(&headers)?;
        attempt.response_body = body;
        delivery.attempt_log.push(attempt);
    }
    Ok(Some(delivery))
}

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<StoredDelivery> {
    Ok(StoredDelivery {
        id: r.get(0)?,
        event_id: r.get(1)?,
        route: r.get(2)?,
        destination: r.get(3)?,
        state: r.get(4)?,
        attempts: r.get(5)?,
        next_attempt_at_ms: r.get(6)?,
        created_at_ms: r.get(7)?,
        updated_at_ms: r.get(8)?,
        last_error: r.get(9)?,
        part: r.get(10)?,
        ordering_key: r.get(11)?,
        payload: None,
        attempt_log: Vec::new(),
    })
}

/// The oldest unprepared deliveries, in receive order (rowid), with their events; none of
/// `skip_routes`.
pub(super) fn unprepared(
    conn: &Connection,
    sealer: &Sealer,
    limit: usize,
    skip_routes: &[String],
) -> Result<Vec<Unprepared>, StoreError> {
    let skip_routes = serde_json::to_string(skip_routes).unwrap_or_else(|_| "[]".into());
    let mut stmt = conn.prepare_cached(
        "SELECT d.id, d.route, e.id, e.source, e.received_at, e.method, e.path, e.query,
                e.headers, e.body
         FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
         WHERE d.prepared = 0 AND d.state = 'pending'
           AND d.route NOT IN (SELECT value FROM json_each(?2))
         ORDER BY d.rowid LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit as i64, skip_routes], |r| {
        Ok((
            Unprepared {
                id: r.get(0)?,
                route: r.get(1)?,
                event: EventInput {
                    id: r.get(2)?,
                    source: r.get(3)?,
                    received_at_ms: r.get(4)?,
                    method: r.get(5)?,
                    path: r.get(6)?,
                    query: r.get(7)?,
                    headers: Vec::new(),
                    body: r.get(9)?,
                },
                unreadable: None,
            },
            r.get::<_, Vec<u8>>(8)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (u, headers) = row?;
        out.extend(u.opened(sealer, headers));
    }
    Ok(out)
}

/// Open and dead deliveries per route, destination and state: each state read through
/// the partial index that holds just it, so the cost follows the backlog and the
/// dead-letter queue, never the deliveries made (`INDEXED BY` makes a plan that would
/// scan the table an error instead).
pub(super) fn counts(conn: &Connection) -> Result<Vec<DeliveryCount>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT route, destination, state, count(*) FROM deliveries INDEXED BY deliveries_claimable
           WHERE state IN ('pending', 'retrying') GROUP BY route, destination, state
         UNION ALL
         SELECT route, destination, 'in_flight', count(*) FROM deliveries INDEXED BY deliveries_leased
           WHERE state = 'in_flight' GROUP BY route, destination
         UNION ALL
         SELECT route, destination, 'dead', count(*) FROM deliveries INDEXED BY deliveries_dead
           WHERE state = 'dead' GROUP BY route, destination
         ORDER BY 1, 2, 3",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(DeliveryCount {
            route: r.get(0)?,
            destination: r.get(1)?,
            state: r.get(2)?,
            count: r.get::<_, i64>(3)?.max(0) as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
