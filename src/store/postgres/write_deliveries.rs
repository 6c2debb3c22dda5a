//! The writes of the delivery engine on PostgreSQL besides claims ([`super::claim`]):
//! attempts (in groups, see [`super::attempt_writer`]), preparation results, retries,
//! pauses and the dead-letter actions. Each runs in its own transaction on a pooled
//! connection.

use deadpool_postgres::Transaction;

use crate::id;
use crate::store::{
    AfterAttempt, AttemptRecord, DeadAction, DeadFilter, Pausable, Preparation, Prepared, RetryNow,
    StoreError,
};

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
                 seq = position, last_error = $7, updated_at = $8,
                 next_attempt_at = coalesce($9, next_attempt_at), debounce_key = $10
             WHERE id = $1 AND NOT prepared AND state = 'pending'
             RETURNING event_id, route, destination, seq, next_attempt_at, priority,
                       last_error",
        )
        .await?;
    // The parts are due when their parent is, at its priority, and debounce with it.
    let insert = tx
        .prepare_cached(
            "INSERT INTO deliveries (id, event_id, route, destination, state, next_attempt_at,
                                     created_at, updated_at, prepared, part, payload,
                                     ordering_key, seq, priority, debounce_key, last_error)
             VALUES ($1, $2, $3, $4, $12, $10, $5, $5, true, $6, $7, $8, $9, $11, $13, $14)",
        )
        .await?;
    // Debouncing reads the route's deliveries with a key, then changes them: keys are
    // locked for the transaction (in one order, so two preparers cannot deadlock), so a
    // preparer in another process cannot decide on the same key at the same time.
    let mut keys: Vec<String> = batch
        .iter()
        .filter_map(|p| Some(format!("{}/{}", p.route, p.debounce_key.as_ref()?)))
        .collect();
    if !keys.is_empty() {
        keys.sort();
        keys.dedup();
        tx.execute(
            "SELECT pg_advisory_xact_lock(h) FROM (
                 SELECT DISTINCT hashtext(current_schema() || '/forebay/debounce/' || k) AS h
                 FROM unnest($1::text[]) AS k ORDER BY h) AS locks",
            &[&keys],
        )
        .await?;
    }
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
                    &p.deliver_at_ms,
                    &p.debounce_key.as_ref().filter(|_| state == "pending"),
                ],
            )
            .await?;
        // Gone or changed meanwhile (discarded, or prepared by another process).
        let Some(parent) = parent else {
            continue;
        };
        let (event_id, route, destination, seq): (String, String, String, i64) =
            (parent.get(0), parent.get(1), parent.get(2), parent.get(3));
        let (due, priority): (i64, i16) = (parent.get(4), parent.get(5));
        let mut last_error: Option<String> = parent.get(6);
        let parts_state = match (&p.debounce_key, state) {
            (Some(key), "pending") => {
                let (state, why) =
                    debounce(tx, &p.delivery_id, &event_id, &route, key, now_ms).await?;
                last_error = why.or(last_error);
                state
            }
            _ => "pending",
        };
        let Preparation::Bodies(bodies) = &p.outcome else {
            continue;
        };
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
                    &due,
                    &priority,
                    &parts_state,
                    &p.debounce_key,
                    &last_error,
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// Debounces delivery `id` of `route` (its event `event_id`), just prepared with `key`,
/// under the key's lock, as SQLite's `debounce` does: by event id (receive time), a
/// later event's delivery waiting or being sent supersedes this one, else this one
/// supersedes the waiting ones of earlier events. Returns the state its parts take, and
/// why when superseded.
async fn debounce(
    tx: &Transaction<'_>,
    id: &str,
    event_id: &str,
    route: &str,
    key: &str,
    now_ms: i64,
) -> Result<(&'static str, Option<String>), StoreError> {
    // Event ids compare as bytes (`C`), whatever the database's collation.
    let later = tx
        .query_opt(
            "SELECT event_id FROM deliveries
             WHERE route = $1 AND debounce_key = $2 AND event_id > $3 COLLATE \"C\"
               AND state IN ('pending', 'in_flight', 'retrying')
             ORDER BY event_id COLLATE \"C\" LIMIT 1",
            &[&route, &key, &event_id],
        )
        .await?;
    match later {
        Some(later) => {
            let why = crate::store::delivery::superseded_by(&later.get::<_, String>(0));
            tx.execute(
                "UPDATE deliveries SET state = 'superseded', last_error = $2, updated_at = $3
                 WHERE id = $1",
                &[&id, &why, &now_ms],
            )
            .await?;
            Ok(("superseded", Some(why)))
        }
        None => {
            let why = crate::store::delivery::superseded_by(event_id);
            tx.execute(
                "UPDATE deliveries SET state = 'superseded', last_error = $4, updated_at = $5
                 WHERE route = $1 AND debounce_key = $2 AND event_id < $3 COLLATE \"C\"
                   AND state IN ('pending', 'retrying')",
                &[&route, &key, &event_id, &why, &now_ms],
            )
            .await?;
            Ok(("pending", None))
        }
    }
}

/// Records a batch of attempts in one transaction of two round trips whatever its size:
/// `BEGIN` (planned along the indexes, [`super::pool::BEGIN_INDEX_PLANS`]), the attempts' insert (numbered from the delivery's count, and only for
/// deliveries still stored), the deliveries' update and the NOTIFY go out pipelined, and
/// `COMMIT` only once all of them succeeded. On any error the transaction is rolled back
/// before the connection goes back to the pool.
///
/// Returns, per record and in order, whether it was written: `false` for an attempt of
/// a delivery that is no longer stored. The batch holds at most one record per delivery
/// (the group committer sees to it).
pub(super) async fn record_attempts(
    client: &deadpool_postgres::Client,
    batch: &[&AttemptRecord],
    channel: &str,
) -> Result<Vec<bool>, tokio_postgres::Error> {
    // In delivery id order, the same in every process's batch: the update takes its rows
    // in the order of its input, so two batches cannot wait on each other in a circle.
    let unsorted = batch;
    let mut sorted = batch.to_vec();
    sorted.sort_by(|a, b| a.delivery_id.cmp(&b.delivery_id));
    let batch = &sorted[..];
    let column =
        |f: &dyn Fn(&AttemptRecord) -> i64| batch.iter().map(|a| f(a)).collect::<Vec<i64>>();
    let attempt_ids: Vec<&str> = batch.iter().map(|a| a.id.as_str()).collect();
    let delivery_ids: Vec<&str> = batch.iter().map(|a| a.delivery_id.as_str()).collect();
    let started = column(&|a| a.started_at_ms);
    let durations = column(&|a| a.duration_ms);
    let statuses: Vec<Option<i64>> = batch.iter().map(|a| a.status.map(i64::from)).collect();
    let errors: Vec<Option<&str>> = batch.iter().map(|a| a.error.as_deref()).collect();
    let headers: Vec<&[u8]> = batch.iter().map(|a| &a.response_headers[..]).collect();
    let bodies: Vec<&[u8]> = batch.iter().map(|a| &a.response_body[..]).collect();
    let states: Vec<&str> = batch.iter().map(|a| a.then.state()).collect();
    let next_at: Vec<Option<i64>> = batch
        .iter()
        .map(|a| match a.then {
            AfterAttempt::RetryAt(at) => Some(at),
            AfterAttempt::Delivered | AfterAttempt::Dead => None,
        })
        .collect();
    let finished = column(&|a| a.started_at_ms.saturating_add(a.duration_ms));
    let leases = column(&|a| a.lease_until_ms);

    // An attempt is numbered one past the delivery's count of attempts. A late report
    // of an expired claim does not add to that count (below), as it never did. A record
    // sent again after its first COMMIT landed unanswered finds its row (kept as it was)
    // and its delivery already moved on (the update below needs the old lease).
    let insert = client
        .prepare_cached(
            "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, status,
                                   error, response_headers, response_body)
             SELECT u.id, u.delivery_id, d.attempts + 1, u.started_at, u.duration_ms,
                    u.status, u.error, u.response_headers, u.response_body
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[],
                         $6::text[], $7::bytea[], $8::bytea[])
                  AS u (id, delivery_id, started_at, duration_ms, status, error,
                        response_headers, response_body)
             JOIN deliveries AS d ON d.id = u.delivery_id
             ON CONFLICT (id) DO UPDATE SET id = excluded.id
             RETURNING delivery_id",
        )
        .await?;
    // Only the claim that made the attempt moves the delivery on: if its lease expired
    // and the delivery was claimed again, the newer claim (another lease) owns its state.
    // The state and lease are compared as expressions (`|| ''`, `+ 0`) so that the plan
    // finds each row by id rather than walking the index of leases, which is long with
    // the entries of rows that were in flight a moment ago.
    let update = client
        .prepare_cached(
            "UPDATE deliveries AS d
             SET attempts = d.attempts + 1, state = u.state, lease_until = NULL,
                 next_attempt_at = coalesce(u.next_at, d.next_attempt_at),
                 updated_at = u.finished, last_error = u.error
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[],
                         $6::int8[]) AS u (id, state, next_at, finished, error, lease)
             WHERE d.id = u.id AND d.state || '' = 'in_flight' AND d.lease_until + 0 = u.lease",
        )
        .await?;
    let notify = client.prepare_cached(super::cluster::NOTIFY).await?;
    let insert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
        &attempt_ids,
        &delivery_ids,
        &started,
        &durations,
        &statuses,
        &errors,
        &headers,
        &bodies,
    ];
    let update_params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &delivery_ids,
        &states,
        &next_at,
        &finished,
        &errors,
        &leases,
    ];
    let notify_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&channel];
    // Checked in the order sent: the first failure says why, the ones behind it only
    // that the transaction is aborted.
    let (began, inserted, updated, notified) = tokio::join!(
        client.batch_execute(super::pool::BEGIN_INDEX_PLANS),
        client.query(&insert, &insert_params),
        client.execute(&update, &update_params),
        client.execute(&notify, &notify_params),
    );
    began?;
    let inserted = inserted?;
    updated?;
    notified?;
    client.batch_execute("COMMIT").await?;
    let stored: std::collections::HashSet<String> =
        inserted.into_iter().map(|r| r.get(0)).collect();
    Ok(unsorted
        .iter()
        .map(|a| stored.contains(&a.delivery_id))
        .collect())
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
    reason: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    if paused {
        tx.execute(
            "INSERT INTO paused (kind, name, paused_at, reason) VALUES ($1, $2, $3, $4)
             ON CONFLICT (kind, name) DO UPDATE SET reason = excluded.reason",
            &[&kind.as_str(), &name, &now_ms, &reason],
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
