//! The writes of the delivery engine: claiming due deliveries under a lease, and
//! recording attempts. They run inside the writer's group transaction, so a claim is
//! atomic with respect to every other write (one writer, no double claims).

use rusqlite::{Connection, OptionalExtension, params};

use super::parse_headers;
use crate::store::{
    AfterAttempt, AttemptRecord, Claim, ClaimedDelivery, DeadAction, DeadFilter, Pausable, RetryNow,
};

/// Claims expired leases first (their workers died; they are the oldest work), then
/// deliveries whose time has come, oldest due first.
pub(super) fn claim(conn: &Connection, claim: &Claim) -> rusqlite::Result<Vec<ClaimedDelivery>> {
    let lease_until = claim.now_ms.saturating_add(claim.lease_ms);
    let skip_routes = serde_json::to_string(&claim.skip_routes).unwrap_or_else(|_| "[]".into());
    let mut claimed = Vec::new();
    for candidates in [
        "SELECT id FROM deliveries
         WHERE state = 'in_flight' AND lease_until <= ?2 AND destination = ?4
           AND route NOT IN (SELECT value FROM json_each(?5))
         ORDER BY lease_until LIMIT ?3",
        "SELECT id FROM deliveries
         WHERE destination = ?4 AND state IN ('pending', 'retrying') AND next_attempt_at <= ?2
           AND route NOT IN (SELECT value FROM json_each(?5))
         ORDER BY next_attempt_at LIMIT ?3",
    ] {
        let left = claim.limit.saturating_sub(claimed.len());
        if left == 0 {
            break;
        }
        let sql = format!(
            "UPDATE deliveries SET state = 'in_flight', lease_until = ?1, updated_at = ?2
             WHERE id IN ({candidates})
             RETURNING id, event_id, route, destination, attempts"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                lease_until,
                claim.now_ms,
                left as i64,
                claim.destination,
                skip_routes
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )?;
        for row in rows {
            let (id, event_id, route, destination, attempts) = row?;
            claimed.push(with_event(
                conn,
                id,
                event_id,
                route,
                destination,
                attempts + 1,
                lease_until,
            )?);
        }
    }
    Ok(claimed)
}

fn with_event(
    conn: &Connection,
    id: String,
    event_id: String,
    route: String,
    destination: String,
    attempt: i64,
    lease_until: i64,
) -> rusqlite::Result<ClaimedDelivery> {
    let (source, received_at_ms, headers, body): (String, i64, Vec<u8>, Vec<u8>) = conn
        .prepare_cached("SELECT source, received_at, headers, body FROM events WHERE id = ?1")?
        .query_row(params![event_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
    let headers = parse_headers(&headers).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Blob,
            e.to_string().into(),
        )
    })?;
    Ok(ClaimedDelivery {
        id,
        event_id,
        route,
        destination,
        attempt,
        lease_until_ms: lease_until,
        source,
        received_at_ms,
        headers,
        body,
    })
}

pub(super) fn record_attempt(conn: &Connection, a: &AttemptRecord) -> rusqlite::Result<()> {
    let number: i64 = conn
        .prepare_cached("SELECT attempts + 1 FROM deliveries WHERE id = ?1")?
        .query_row(params![a.delivery_id], |r| r.get(0))?;
    conn.prepare_cached(
        "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, status, error,
                               response_headers, response_body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        a.id,
        a.delivery_id,
        number,
        a.started_at_ms,
        a.duration_ms,
        a.status,
        a.error,
        a.response_headers,
        a.response_body
    ])?;
    let next_attempt_at = match a.then {
        AfterAttempt::RetryAt(at) => Some(at),
        AfterAttempt::Delivered | AfterAttempt::Dead => None,
    };
    // Only the claim that made the attempt moves the delivery on: if its lease expired
    // and the delivery was claimed again, the newer claim (another lease) owns its state.
    conn.prepare_cached(
        "UPDATE deliveries
         SET attempts = attempts + 1, state = ?2, lease_until = NULL,
             next_attempt_at = coalesce(?3, next_attempt_at),
             updated_at = ?4, last_error = ?5
         WHERE id = ?1 AND state = 'in_flight' AND lease_until = ?6",
    )?
    .execute(params![
        a.delivery_id,
        a.then.state(),
        next_attempt_at,
        a.started_at_ms.saturating_add(a.duration_ms),
        a.error,
        a.lease_until_ms
    ])?;
    Ok(())
}

/// Makes a delivery due now, unless it is being sent.
pub(super) fn retry_now(conn: &Connection, id: &str, now_ms: i64) -> rusqlite::Result<RetryNow> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM deliveries WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()?;
    match state.as_deref() {
        None => Ok(RetryNow::NotFound),
        Some("in_flight") => Ok(RetryNow::InFlight),
        Some("delivered" | "filtered" | "discarded") => Ok(RetryNow::Finished),
        Some(_) => {
            conn.prepare_cached(
                "UPDATE deliveries
                 SET state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END,
                     next_attempt_at = ?2, updated_at = ?2
                 WHERE id = ?1",
            )?
            .execute(params![id, now_ms])?;
            Ok(RetryNow::Scheduled)
        }
    }
}

pub(super) fn set_paused(
    conn: &Connection,
    kind: Pausable,
    name: &str,
    paused: bool,
    now_ms: i64,
) -> rusqlite::Result<()> {
    if paused {
        conn.prepare_cached(
            "INSERT INTO paused (kind, name, paused_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (kind, name) DO NOTHING",
        )?
        .execute(params![kind.as_str(), name, now_ms])?;
    } else {
        conn.prepare_cached("DELETE FROM paused WHERE kind = ?1 AND name = ?2")?
            .execute(params![kind.as_str(), name])?;
    }
    Ok(())
}

pub(super) fn act_on_dead(
    conn: &Connection,
    filter: &DeadFilter,
    action: &DeadAction,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    let set = match action {
        DeadAction::Retry => "state = 'retrying', next_attempt_at = ?1",
        DeadAction::Discard => "state = 'discarded'",
    };
    let sql = format!(
        "UPDATE deliveries SET {set}, updated_at = ?1
         WHERE state = 'dead' AND (?2 IS NULL OR route = ?2) AND (?3 IS NULL OR destination = ?3)
           AND (?4 IS NULL OR id = ?4)"
    );
    conn.prepare_cached(&sql)?
        .execute(params![now_ms, filter.route, filter.destination, filter.id])
}
