//! Delivery queries on the read-only connections.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::parse_headers;
use crate::store::{DeliveryQuery, StoreError, StoredAttempt, StoredDelivery};

const COLUMNS: &str = "id, event_id, route, destination, state, attempts, next_attempt_at, \
     created_at, updated_at, last_error";

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

pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<StoredDelivery>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1");
    let Some(mut delivery) = conn
        .prepare_cached(&sql)?
        .query_row(params![id], delivery_row)
        .optional()?
    else {
        return Ok(None);
    };
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
                response_body: r.get(7)?,
            },
            r.get::<_, Vec<u8>>(6)?,
        ))
    })?;
    for row in rows {
        let (mut attempt, headers) = row?;
        attempt.response_headers = parse_headers(&headers)?;
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
        attempt_log: Vec::new(),
    })
}
