//! The writes of the delivery engine on PostgreSQL: claims under leases, attempts,
//! preparation results, retries, pauses and the dead-letter actions. Each runs in its
//! own transaction on a pooled connection.
//!
//! **Claims across processes.** A claim first takes a transaction-scoped advisory lock
//! on its destination, so claims of one destination (from any process) run one at a
//! time: the ordering-key check ("no earlier delivery of this route and key is
//! unfinished") is then decided on a state no concurrent claim is changing. Candidate
//! rows are still picked `FOR UPDATE SKIP LOCKED` in a CTE, so a claim never waits on a
//! row an attempt is being recorded on. Claims of different destinations do not wait
//! on each other.

use deadpool_postgres::Transaction;

use super::{cluster, parse_headers};
use crate::id;
use crate::store::{
    AfterAttempt, AttemptRecord, Claim, ClaimedDelivery, ClusterLimit, DeadAction, DeadFilter,
    Pausable, Preparation, Prepared, RetryNow, StoreError,
};

/// Serializes claims of one destination across the cluster, until the transaction ends.
async fn destination_lock(tx: &Transaction<'_>, destination: &str) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '/forebay/claim/' || $1::text))",
        )
        .await?;
    tx.execute(&stmt, &[&destination]).await?;
    Ok(())
}

/// The claim's two candidate sets, in turn: expired leases first (their workers died;
/// they are the oldest work), then due deliveries, oldest due first. A keyed delivery
/// waits while an earlier one of its route and key is unfinished, and while an earlier
/// delivery of its route is not yet prepared (its key is not known yet; with several
/// processes preparing, a later delivery can be prepared first).
const CANDIDATES: [&str; 2] = [
    "SELECT id FROM deliveries
     WHERE state = 'in_flight' AND lease_until <= $2 AND destination = $4
       AND route <> ALL($5::text[])
     ORDER BY lease_until LIMIT $3
     FOR UPDATE SKIP LOCKED",
    "SELECT id FROM deliveries AS d
     WHERE destination = $4 AND state IN ('pending', 'retrying') AND next_attempt_at <= $2
       AND prepared AND route <> ALL($5::text[])
       AND (ordering_key IS NULL OR (
            NOT EXISTS (
                SELECT 1 FROM deliveries AS e
                WHERE e.route = d.route AND e.ordering_key = d.ordering_key
                  AND e.state IN ('pending', 'in_flight', 'retrying')
                  AND (e.seq < d.seq OR (e.seq = d.seq AND e.part < d.part)))
            AND NOT EXISTS (
                SELECT 1 FROM deliveries AS u
                WHERE u.route = d.route AND NOT u.prepared AND u.state = 'pending'
                  AND u.position < d.seq)))
     ORDER BY next_attempt_at, position LIMIT $3
     FOR UPDATE SKIP LOCKED",
];

/// Claims up to `claim.limit` deliveries, fewer if the destination's cluster-wide
/// `limit` says so; also returns when the rate limit allows the next start, if it held
/// this claim back.
///
/// Each claimed row records `owner`, this process's presence key while it holds one
/// (see [`super::presence`]), so that the maintenance leader can end the leases of a
/// process that died without waiting for them to run out.
pub(super) async fn claim(
    tx: &Transaction<'_>,
    claim: &Claim,
    limit: Option<&ClusterLimit>,
    owner: Option<i64>,
) -> Result<(Vec<ClaimedDelivery>, Option<std::time::Duration>), StoreError> {
    destination_lock(tx, &claim.destination).await?;
    let (allowed, retry_in) = cluster::claim_allowance(tx, claim, limit).await?;
    let lease_until = claim.now_ms.saturating_add(claim.lease_ms);
    let mut claimed = Vec::new();
    for candidates in CANDIDATES {
        let left = allowed.saturating_sub(claimed.len());
        if left == 0 {
            break;
        }
        let sql = format!(
            "WITH picked AS ({candidates}),
                  claimed AS (
                      UPDATE deliveries AS d
                      SET state = 'in_flight', lease_until = $1, updated_at = $2, claimed_by = $6
                      FROM picked WHERE d.id = picked.id
                      RETURNING d.id, d.event_id, d.route, d.destination, d.attempts,
                                d.payload, d.part, d.replay_id, d.next_attempt_at, d.position)
             SELECT c.id, c.event_id, c.route, c.destination, c.attempts, c.payload, c.part,
                    c.replay_id, e.source, e.received_at, e.headers, e.body
             FROM claimed AS c JOIN events AS e ON e.id = c.event_id
             ORDER BY c.next_attempt_at, c.position"
        );
        let stmt = tx.prepare_cached(&sql).await?;
        let rows = tx
            .query(
                &stmt,
                &[
                    &lease_until,
                    &claim.now_ms,
                    &(left as i64),
                    &claim.destination,
                    &claim.skip_routes,
                    &owner,
                ],
            )
            .await?;
        for r in rows {
            let id: String = r.get(0);
            let headers: Vec<u8> = r.get(10);
            match parse_headers(&headers) {
                Ok(headers) => claimed.push(ClaimedDelivery {
                    id,
                    event_id: r.get(1),
                    route: r.get(2),
                    destination: r.get(3),
                    attempt: r.get::<_, i64>(4) + 1,
                    lease_until_ms: lease_until,
                    source: r.get(8),
                    received_at_ms: r.get(9),
                    headers,
                    body: r.get(11),
                    payload: r.get(5),
                    part: r.get(6),
                    replay_id: r.get(7),
                }),
                // A damaged event must not fail every claim of its destination: its
                // delivery goes dead with the reason, and the others go on.
                Err(e) => {
                    let stmt = tx
                        .prepare_cached(
                            "UPDATE deliveries SET state = 'dead', lease_until = NULL,
                                    last_error = $2, updated_at = $3
                             WHERE id = $1",
                        )
                        .await?;
                    tx.execute(
                        &stmt,
                        &[
                            &id,
                            &format!("the event cannot be read: {e}"),
                            &claim.now_ms,
                        ],
                    )
                    .await?;
                }
            }
        }
    }
    if limit.is_some_and(|l| l.rate.is_some()) && !claimed.is_empty() {
        cluster::spend_tokens(tx, &claim.destination, claimed.len()).await?;
    }
    Ok((claimed, retry_in))
}

/// Writes what the filters, transforms and ordering keys made of a batch. `seq` is the
/// delivery's own position (receive order), and the parts of a split share their
/// parent's, ordered by part number.
pub(super) async fn prepare(
    tx: &Transaction<'_>,
    batch: &[Prepared],
    now_ms: i64,
) -> Result<(), StoreError> {
    let update = tx
        .prepare_cached(
            "UPDATE deliveries
             SET prepared = $2, state = $3, payload = $4, part = $5, ordering_key = $6,
                 seq = position, last_error = $7, updated_at = $8
             WHERE id = $1 AND NOT prepared AND state = 'pending'
             RETURNING event_id, route, destination, seq",
        )
        .await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO deliveries (id, event_id, route, destination, state, next_attempt_at,
                                     created_at, updated_at, prepared, part, payload,
                                     ordering_key, seq)
             VALUES ($1, $2, $3, $4, 'pending', $5, $5, $5, true, $6, $7, $8, $9)",
        )
        .await?;
    // Several processes may prepare the same oldest deliveries at once. Each locks the
    // rows of its batch first, in one statement and one order, skipping rows another
    // preparer holds (it prepares them): no deadlock, and no delivery prepared twice.
    let ids: Vec<&str> = batch.iter().map(|p| p.delivery_id.as_str()).collect();
    let lock = tx
        .prepare_cached(
            "SELECT id FROM deliveries WHERE id = ANY($1) AND NOT prepared AND state = 'pending'
             ORDER BY id FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let mine: std::collections::HashSet<String> = tx
        .query(&lock, &[&ids])
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    for p in batch.iter().filter(|p| mine.contains(&p.delivery_id)) {
        let (state, payload, part, error): (&str, Option<&[u8]>, Option<i64>, Option<&str>) =
            match &p.outcome {
                Preparation::Raw => ("pending", None, None, None),
                Preparation::Bodies(bodies) if bodies.len() == 1 => {
                    ("pending", Some(&bodies[0][..]), None, None)
                }
                Preparation::Bodies(bodies) if bodies.len() > 1 => {
                    ("pending", Some(&bodies[0][..]), Some(1), None)
                }
                Preparation::Filtered | Preparation::Bodies(_) => ("filtered", None, None, None),
                Preparation::Failed(error) => ("dead", None, None, Some(error.as_str())),
            };
        // A failed preparation stays unprepared, so a retry from the dead-letter queue
        // runs the (perhaps corrected) expressions again.
        let prepared = !matches!(p.outcome, Preparation::Failed(_));
        let parent = tx
            .query_opt(
                &update,
                &[
                    &p.delivery_id,
                    &prepared,
                    &state,
                    &payload,
                    &part,
                    &p.ordering_key,
                    &error,
                    &now_ms,
                ],
            )
            .await?;
        // Gone or changed meanwhile (discarded, or prepared by another process).
        let (Some(parent), Preparation::Bodies(bodies)) = (parent, &p.outcome) else {
            continue;
        };
        let (event_id, route, destination, seq): (String, String, String, i64) =
            (parent.get(0), parent.get(1), parent.get(2), parent.get(3));
        for (i, body) in bodies.iter().enumerate().skip(1) {
            tx.execute(
                &insert,
                &[
                    &id::new(id::DELIVERY),
                    &event_id,
                    &route,
                    &destination,
                    &now_ms,
                    &(i as i64 + 1),
                    &&body[..],
                    &p.ordering_key,
                    &seq,
                ],
            )
            .await?;
        }
    }
    Ok(())
}

pub(super) async fn record_attempt(
    tx: &Transaction<'_>,
    a: &AttemptRecord,
) -> Result<(), StoreError> {
    let number = tx
        .prepare_cached("SELECT attempts + 1 FROM deliveries WHERE id = $1 FOR UPDATE")
        .await?;
    let Some(number) = tx.query_opt(&number, &[&a.delivery_id]).await? else {
        return Err(StoreError::Corrupt(format!(
            "an attempt for delivery {} which is not stored",
            a.delivery_id
        )));
    };
    let number: i64 = number.get(0);
    let insert = tx
        .prepare_cached(
            "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, status,
                                   error, response_headers, response_body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?;
    let status = a.status.map(i64::from);
    tx.execute(
        &insert,
        &[
            &a.id,
            &a.delivery_id,
            &number,
            &a.started_at_ms,
            &a.duration_ms,
            &status,
            &a.error,
            &a.response_headers,
            &a.response_body,
        ],
    )
    .await?;
    let next_attempt_at = match a.then {
        AfterAttempt::RetryAt(at) => Some(at),
        AfterAttempt::Delivered | AfterAttempt::Dead => None,
    };
    // Only the claim that made the attempt moves the delivery on: if its lease expired
    // and the delivery was claimed again, the newer claim (another lease) owns its state.
    let update = tx
        .prepare_cached(
            "UPDATE deliveries
             SET attempts = attempts + 1, state = $2, lease_until = NULL,
                 next_attempt_at = coalesce($3, next_attempt_at),
                 updated_at = $4, last_error = $5
             WHERE id = $1 AND state = 'in_flight' AND lease_until = $6",
        )
        .await?;
    tx.execute(
        &update,
        &[
            &a.delivery_id,
            &a.then.state(),
            &next_attempt_at,
            &a.started_at_ms.saturating_add(a.duration_ms),
            &a.error,
            &a.lease_until_ms,
        ],
    )
    .await?;
    Ok(())
}

/// Makes a delivery due now, unless it is being sent.
pub(super) async fn retry_now(
    tx: &Transaction<'_>,
    id: &str,
    now_ms: i64,
) -> Result<RetryNow, StoreError> {
    let state = tx
        .query_opt(
            "SELECT state FROM deliveries WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .map(|r| r.get::<_, String>(0));
    match state.as_deref() {
        None => Ok(RetryNow::NotFound),
        Some("in_flight") => Ok(RetryNow::InFlight),
        Some("delivered" | "filtered" | "discarded") => Ok(RetryNow::Finished),
        Some(_) => {
            tx.execute(
                "UPDATE deliveries
                 SET state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END,
                     next_attempt_at = $2, updated_at = $2
                 WHERE id = $1",
                &[&id, &now_ms],
            )
            .await?;
            Ok(RetryNow::Scheduled)
        }
    }
}

pub(super) async fn set_paused(
    tx: &Transaction<'_>,
    kind: Pausable,
    name: &str,
    paused: bool,
    now_ms: i64,
) -> Result<(), StoreError> {
    if paused {
        tx.execute(
            "INSERT INTO paused (kind, name, paused_at) VALUES ($1, $2, $3)
             ON CONFLICT (kind, name) DO NOTHING",
            &[&kind.as_str(), &name, &now_ms],
        )
        .await?;
    } else {
        tx.execute(
            "DELETE FROM paused WHERE kind = $1 AND name = $2",
            &[&kind.as_str(), &name],
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn act_on_dead(
    tx: &Transaction<'_>,
    filter: &DeadFilter,
    action: &DeadAction,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let set = match action {
        // Never tried (it died being prepared): pending again, so it is prepared anew.
        DeadAction::Retry => {
            "state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END, next_attempt_at = $1"
        }
        DeadAction::Discard => "state = 'discarded'",
    };
    let sql = format!(
        "UPDATE deliveries SET {set}, updated_at = $1
         WHERE state = 'dead' AND ($2::text IS NULL OR route = $2)
           AND ($3::text IS NULL OR destination = $3) AND ($4::text IS NULL OR id = $4)"
    );
    let n = tx
        .execute(
            &sql,
            &[&now_ms, &filter.route, &filter.destination, &filter.id],
        )
        .await?;
    Ok(n as usize)
}
