//! The writes of the delivery engine: claiming due deliveries under a lease, and
//! recording attempts. They run inside the writer's group transaction, so a claim is
//! atomic with respect to every other write (one writer, no double claims).

use rusqlite::{Connection, OptionalExtension, params};

use crate::id;
use crate::store::headers::decode_stored;
use crate::store::seal::Sealer;
use crate::store::{
    AfterAttempt, AttemptRecord, Claim, ClaimedDelivery, DeadAction, DeadFilter, Pausable,
    Preparation, Prepared, RetryNow,
};

/// Claims expired leases first (their workers died; they are the oldest work), then
/// deliveries whose time has come, in claim rank order (oldest due first, each
/// priority level counting as [`crate::store::PRIORITY_STEP_MS`] of waiting). A
/// delivery with an ordering key waits while an earlier one of its route and key is
/// unfinished (pending, in flight or retrying), so each key has one delivery in flight,
/// in receive order; `dead`, like `delivered`, lets the key move on.
pub(super) fn claim(
    conn: &Connection,
    sealer: &Sealer,
    claim: &Claim,
) -> rusqlite::Result<Vec<ClaimedDelivery>> {
    let lease_until = claim.now_ms.saturating_add(claim.lease_ms);
    let skip_routes = serde_json::to_string(&claim.skip_routes).unwrap_or_else(|_| "[]".into());
    let mut claimed = Vec::new();
    for candidates in [EXPIRED, &DUE[..]] {
        let left = claim.limit.saturating_sub(claimed.len());
        if left == 0 {
            break;
        }
        let mut stmt = conn.prepare_cached(&claim_sql(candidates))?;
        let rows = stmt.query_map(
            params![
                lease_until,
                claim.now_ms,
                left as i64,
                claim.destination,
                skip_routes,
                claim.only_route
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<Vec<u8>>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            },
        )?;
        let rows: Vec<_> = rows.collect::<rusqlite::Result<_>>()?;
        for (id, event_id, route, destination, attempts, payload, part, replay_id, ordering_key) in
            rows
        {
            match with_event(
                conn,
                sealer,
                id.clone(),
                event_id,
                route,
                destination,
                attempts + 1,
                lease_until,
            )
            .and_then(|d| {
                let payload = sealer
                    .open_payload(&d.event_id, &d.route, part, payload)
                    .map_err(unreadable)?;
                Ok(ClaimedDelivery { payload, ..d })
            }) {
                Ok(mut d) => {
                    d.part = part;
                    d.replay_id = replay_id;
                    d.ordering_key = ordering_key;
                    claimed.push(d);
                }
                // A damaged event must not fail every claim of its destination: its
                // delivery goes dead with the reason, and the others go on.
                Err(e) => {
                    conn.prepare_cached(
                        "UPDATE deliveries SET state = 'dead', lease_until = NULL,
                                last_error = ?2, updated_at = ?3
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        format!("the event cannot be read: {e}"),
                        claim.now_ms
                    ])?;
                }
            }
        }
    }
    Ok(claimed)
}

/// The claim of `candidates` (a query of delivery ids): leased to the claimer, returned
/// with what sending them needs.
pub(super) fn claim_sql(candidates: &str) -> String {
    format!(
        "UPDATE deliveries SET state = 'in_flight', lease_until = ?1, updated_at = ?2
         WHERE id IN ({candidates})
         RETURNING id, event_id, route, destination, attempts, payload, part, replay_id,
                   ordering_key"
    )
}

/// In-flight deliveries whose lease has run out, oldest lease first.
pub(super) const EXPIRED: &str = "SELECT id FROM deliveries
     WHERE state = 'in_flight' AND lease_until <= ?2 AND destination = ?4
       AND route NOT IN (SELECT value FROM json_each(?5)) AND (?6 IS NULL OR route = ?6)
     ORDER BY lease_until LIMIT ?3";

/// The due deliveries to claim, best rank first. The oldest due of every priority come
/// from `deliveries_claimable`, and those of each level above 0 from
/// `deliveries_claimable_by_priority` (a partial index only such deliveries enter): the
/// best `?3` by rank are always among these, and each arm is an index range scan.
pub(super) static DUE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let due = |level: Option<u8>| {
        let priority = level
            .map(|p| format!("AND priority > 0 AND priority = {p}"))
            .unwrap_or_default();
        format!(
            "SELECT * FROM (
                 SELECT id, {rank} AS rank, rowid AS pos FROM deliveries
                 WHERE destination = ?4 AND state IN ('pending', 'retrying')
                   AND next_attempt_at <= ?2 {priority}
                   AND prepared = 1
                   AND route NOT IN (SELECT value FROM json_each(?5))
                   AND (?6 IS NULL OR route = ?6)
                   AND (ordering_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM deliveries AS e
                        WHERE e.route = deliveries.route
                          AND e.ordering_key = deliveries.ordering_key
                          AND e.state IN ('pending', 'in_flight', 'retrying')
                          AND (e.seq < deliveries.seq
                               OR (e.seq = deliveries.seq AND e.part < deliveries.part))))
                 ORDER BY next_attempt_at LIMIT ?3)",
            rank = crate::store::delivery::claim_rank_sql(),
        )
    };
    let arms: Vec<String> = std::iter::once(None)
        .chain((1..crate::store::PRIORITY_LEVELS).map(Some))
        .map(due)
        .collect();
    format!(
        "SELECT id FROM ({}) ORDER BY rank, pos LIMIT ?3",
        arms.join(" UNION ")
    )
});

/// A stored event that does not decode or open, as the error a row conversion gives.
fn unreadable(e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Blob, e.to_string().into())
}

#[allow(
    clippy::too_many_arguments,
    reason = "the columns of the claimed row, passed on into the delivery"
)]
fn with_event(
    conn: &Connection,
    sealer: &Sealer,
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
    let (headers, body) = sealer
        .open_request(&event_id, headers, Some(body))
        .map_err(unreadable)?;
    let headers = decode_stored(&headers).map_err(unreadable)?;
    let body = body.unwrap_or_default();
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
        payload: None,
        part: None,
        replay_id: None,
        ordering_key: None,
    })
}

/// The common case: the delivery goes as it was queued, with one body (or the event's
/// own), and no key, delay or debounce to set. Only `prepared` changes of what the
/// indexes hold, so SQLite updates one index entry where the general statement, which
/// sets the state, due time, key and sequence, rewrites the entries of seven. False when
/// the row is not as a first preparation leaves it (then the general statement runs).
fn prepared_as_queued(conn: &Connection, p: &Prepared, now_ms: i64) -> rusqlite::Result<bool> {
    let payload = match &p.outcome {
        Preparation::Raw => None,
        Preparation::Bodies(bodies) if bodies.len() == 1 => Some(&bodies[0][..]),
        _ => return Ok(false),
    };
    if p.ordering_key.is_some() || p.deliver_at_ms.is_some() || p.debounce_key.is_some() {
        return Ok(false);
    }
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries SET prepared = 1, payload = ?2, last_error = NULL, updated_at = ?3
             WHERE id = ?1 AND prepared = 0 AND state = 'pending'
               AND ordering_key IS NULL AND part IS NULL AND debounce_key IS NULL",
        )?
        .execute(params![p.delivery_id, payload, now_ms])?;
    Ok(changed == 1)
}

/// Writes what the filters, transforms and ordering keys made of a batch of deliveries.
/// `seq`, which only orders the deliveries of one ordering key, is the delivery's own
/// rowid (receive order: rowids grow with each commit), and the parts of a split share
/// their parent's, ordered by part number; a delivery that goes as it was queued keeps
/// none, like one that was never prepared.
pub(super) fn prepare(conn: &Connection, batch: &[Prepared], now_ms: i64) -> rusqlite::Result<()> {
    for p in batch {
        if prepared_as_queued(conn, p, now_ms)? {
            continue;
        }
        let (state, payload, part, error) = match &p.outcome {
            Preparation::Raw => ("pending", None, None, None),
            Preparation::Bodies(bodies) if bodies.len() == 1 => {
                ("pending", Some(&bodies[0][..]), None, None)
            }
            Preparation::Bodies(bodies) if bodies.len() > 1 => {
                ("pending", Some(&bodies[0][..]), Some(1), None)
            }
            Preparation::Filtered => ("filtered", None, None, None),
            Preparation::Bodies(_) => ("filtered", None, None, None), // no output
            Preparation::Failed(error) => ("dead", None, None, Some(error.as_str())),
        };
        // A failed preparation stays unprepared, so a retry from the dead-letter queue
        // runs the (perhaps corrected) expressions again.
        let prepared = !matches!(p.outcome, Preparation::Failed(_));
        let parent = conn
            .prepare_cached(
                "UPDATE deliveries
                 SET prepared = ?2, state = ?3, payload = ?4, part = ?5, ordering_key = ?6,
                     seq = rowid, last_error = ?7, updated_at = ?8,
                     next_attempt_at = coalesce(?9, next_attempt_at), debounce_key = ?10
                 WHERE id = ?1 AND prepared = 0 AND state = 'pending'
                 RETURNING event_id, route, destination, seq, next_attempt_at, priority",
            )?
            .query_row(
                params![
                    p.delivery_id,
                    prepared,
                    state,
                    payload,
                    part,
                    p.ordering_key,
                    error,
                    now_ms,
                    p.deliver_at_ms,
                    p.debounce_key.as_ref().filter(|_| state == "pending")
                ],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                },
            )
            .optional()?;
        // Gone or changed meanwhile (discarded, say): nothing to split or debounce.
        let Some((event_id, route, destination, seq, due, priority)) = parent else {
            continue;
        };
        let parts_state = match (&p.debounce_key, state) {
            (Some(key), "pending") => {
                debounce(conn, &p.delivery_id, &event_id, &route, key, now_ms)?
            }
            _ => "pending",
        };
        let Preparation::Bodies(bodies) = &p.outcome else {
            continue;
        };
        // The parts are due when their parent is, at its priority, and debounce with it.
        let mut insert = conn.prepare_cached(
            "INSERT INTO deliveries (id, event_id, route, destination, state, next_attempt_at,
                                     created_at, updated_at, prepared, part, payload,
                                     ordering_key, seq, priority, debounce_key, last_error)
             VALUES (?1, ?2, ?3, ?4, ?12, ?10, ?5, ?5, 1, ?6, ?7, ?8, ?9, ?11, ?13,
                     (SELECT last_error FROM deliveries WHERE id = ?14))",
        )?;
        for (i, body) in bodies.iter().enumerate().skip(1) {
            insert.execute(params![
                id::new(id::DELIVERY),
                event_id,
                route,
                destination,
                now_ms,
                i as i64 + 1,
                &body[..],
                p.ordering_key,
                seq,
                due,
                priority,
                parts_state,
                p.debounce_key,
                p.delivery_id
            ])?;
        }
    }
    Ok(())
}

/// Debounces delivery `id` of `route` (its event `event_id`), just prepared with `key`.
/// Events are ordered by id, which is their receive time: when a later event's delivery
/// of the route with the key is waiting or being sent, this one is superseded;
/// otherwise it supersedes the route's waiting deliveries of the key from earlier
/// events. (By event, not by queue position: a replayed old event never supersedes a
/// newer one, and a later delivery already sent does not stop a replay.) Returns the
/// state its parts take.
fn debounce(
    conn: &Connection,
    id: &str,
    event_id: &str,
    route: &str,
    key: &str,
    now_ms: i64,
) -> rusqlite::Result<&'static str> {
    let later: Option<String> = conn
        .prepare_cached(
            "SELECT event_id FROM deliveries
             WHERE route = ?1 AND debounce_key = ?2 AND event_id > ?3
               AND state IN ('pending', 'in_flight', 'retrying')
             ORDER BY event_id LIMIT 1",
        )?
        .query_row(params![route, key, event_id], |r| r.get(0))
        .optional()?;
    match later {
        Some(later) => {
            conn.prepare_cached(
                "UPDATE deliveries SET state = 'superseded', last_error = ?2, updated_at = ?3
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                crate::store::delivery::superseded_by(&later),
                now_ms
            ])?;
            Ok("superseded")
        }
        None => {
            conn.prepare_cached(
                "UPDATE deliveries SET state = 'superseded', last_error = ?4, updated_at = ?5
                 WHERE route = ?1 AND debounce_key = ?2 AND event_id < ?3
                   AND state IN ('pending', 'retrying')",
            )?
            .execute(params![
                route,
                key,
                event_id,
                crate::store::delivery::superseded_by(event_id),
                now_ms
            ])?;
            Ok("pending")
        }
    }
}

/// Records attempt `a`. Sent again (its first answer lost to a commit timeout while it
/// still committed), it changes nothing: the attempt is kept as it was, and the delivery
/// has already moved on from the lease the update below needs.
pub(super) fn record_attempt(conn: &Connection, a: &AttemptRecord) -> rusqlite::Result<()> {
    let number: i64 = conn
        .prepare_cached("SELECT attempts + 1 FROM deliveries WHERE id = ?1")?
        .query_row(params![a.delivery_id], |r| r.get(0))?;
    conn.prepare_cached(
        "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, status, error,
                               response_headers, response_body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (id) DO NOTHING",
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

/// A pause or resume, as the writer queues it.
#[derive(Debug)]
pub(crate) struct PauseChange {
    pub kind: Pausable,
    pub name: String,
    pub paused: bool,
    pub reason: Option<String>,
    pub now_ms: i64,
}

pub(super) fn set_paused(conn: &Connection, change: &PauseChange) -> rusqlite::Result<()> {
    let kind = change.kind.as_str();
    if change.paused {
        conn.prepare_cached(
            "INSERT INTO paused (kind, name, paused_at, reason) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, name) DO UPDATE SET reason = excluded.reason",
        )?
        .execute(params![kind, change.name, change.now_ms, change.reason])?;
    } else {
        conn.prepare_cached("DELETE FROM paused WHERE kind = ?1 AND name = ?2")?
            .execute(params![kind, change.name])?;
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
        // Never tried (it died being prepared): pending again, so it is prepared anew.
        DeadAction::Retry => {
            "state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END, next_attempt_at = ?1"
        }
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
