//! Claims on PostgreSQL: due deliveries of one destination taken under a lease, many at a
//! time, in one statement.
//!
//! **Across processes.** A claim of a destination with a cluster-wide cap, a rate, or a
//! route with an ordering key first takes a transaction-scoped advisory lock on its
//! destination, so claims of one destination (from any process) run one at a time: the
//! ordering-key check ("no earlier delivery of this route and key is unfinished") and the
//! count of live leases for `max_concurrency` are then decided on a state no concurrent
//! claim is changing. Candidate rows are still picked `FOR UPDATE SKIP LOCKED`, so a
//! claim never waits on a row an attempt is being recorded on, and that alone keeps two
//! claims from taking one delivery: a destination with none of those limits is claimed
//! without the lock, by every process at once. Claims of different destinations never
//! wait on each other.
//!
//! **Plans.** Claims are planned once per connection, along the indexes
//! ([`BEGIN_INDEX_PLANS`]).
//!
//! **Round trips.** Without a rate limit a claim is one round trip whatever its size:
//! `BEGIN`, the lock, the claiming statement and `COMMIT` go out pipelined. The
//! concurrency cap is computed inside the statement. A rate limit needs its token bucket
//! read before the claim and spent after it, so those claims take a few more.

use deadpool_postgres::Client;
use tokio_postgres::Row;

use super::cluster;
use super::pool::BEGIN_INDEX_PLANS;
use crate::store::headers::decode_stored;
use crate::store::seal::Sealer;
use crate::store::{Claim, ClaimedDelivery, ClusterLimit, StoreError};

/// Serializes claims of one destination across the cluster, until the transaction ends.
const LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '/forebay/claim/' || $1::text))";

/// Claims up to `$3` deliveries of destination `$4` for a lease until `$1` at `$2`,
/// skipping routes `$5` (and all but route `$8` when it is not NULL), owned by presence
/// key `$6`, with at most `$7` live leases of the destination in all (none when NULL).
///
/// Expired leases come first (their workers died; they are the oldest work), then due
/// deliveries in claim rank order: oldest due first, each priority level counting as
/// [`crate::store::PRIORITY_STEP_MS`] of waiting. The oldest due of every priority come
/// from `deliveries_claimable`, and those of each level above 0 from
/// `deliveries_claimable_by_priority`: the best by rank are always among them, and each
/// is an index range scan. A keyed delivery waits while an earlier one of its route and
/// key is unfinished, and while an earlier delivery of its route is not yet prepared
/// (its key is not known yet; with several processes preparing, a later delivery can be
/// prepared first).
static CLAIM: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let due = |level: Option<u8>| {
        let (name, priority) = match level {
            None => ("due".to_owned(), String::new()),
            Some(p) => (
                format!("due_{p}"),
                format!("AND priority > 0 AND priority = {p}"),
            ),
        };
        format!(
            "{name} AS (
    SELECT id, 1 AS pass, {rank} AS due, position AS pos FROM deliveries AS d
    WHERE destination = $4 AND state IN ('pending', 'retrying') AND next_attempt_at <= $2
      {priority}
      AND prepared AND route <> ALL($5::text[]) AND ($8::text IS NULL OR route = $8)
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
    ORDER BY next_attempt_at, position LIMIT (SELECT n FROM allowed)
    FOR UPDATE SKIP LOCKED)",
            rank = crate::store::delivery::claim_rank_sql(),
        )
    };
    let levels: Vec<Option<u8>> = std::iter::once(None)
        .chain((1..crate::store::PRIORITY_LEVELS).map(Some))
        .collect();
    let ctes: Vec<String> = levels.iter().map(|l| due(*l)).collect();
    let picks: Vec<String> = levels
        .iter()
        .map(|l| match l {
            None => "SELECT * FROM due".to_owned(),
            Some(p) => format!("SELECT * FROM due_{p}"),
        })
        .collect();
    // UNION, not UNION ALL: a delivery above priority 0 can come from two arms.
    format!(
        "
WITH allowed AS (
    SELECT CASE WHEN $7::int8 IS NULL THEN $3::int8
                ELSE greatest(0, least($3::int8, $7::int8 - (
                    SELECT count(*) FROM deliveries
                    WHERE destination = $4 AND state = 'in_flight' AND lease_until > $2)))
           END AS n),
expired AS (
    SELECT id, 0 AS pass, lease_until AS due, 0::int8 AS pos FROM deliveries
    WHERE state = 'in_flight' AND lease_until <= $2 AND destination = $4
      AND route <> ALL($5::text[]) AND ($8::text IS NULL OR route = $8)
    ORDER BY lease_until LIMIT (SELECT n FROM allowed)
    FOR UPDATE SKIP LOCKED),
{ctes},
picked AS (
    SELECT * FROM expired UNION {picks}
    ORDER BY pass, due, pos LIMIT (SELECT n FROM allowed)),
claimed AS (
    UPDATE deliveries AS d
    SET state = 'in_flight', lease_until = $1, updated_at = $2, claimed_by = $6
    FROM picked WHERE d.id = picked.id
    RETURNING d.id, d.event_id, d.route, d.destination, d.attempts, d.payload, d.part,
              d.replay_id, d.ordering_key, picked.pass, picked.due, picked.pos)
SELECT c.id, c.event_id, c.route, c.destination, c.attempts, c.payload, c.part,
       c.replay_id, e.source, e.received_at, e.headers, e.body, c.ordering_key
FROM claimed AS c JOIN events AS e ON e.id = c.event_id
ORDER BY c.pass, c.due, c.pos",
        ctes = ctes.join(",\n"),
        picks = picks.join(" UNION "),
    )
});

/// Claims up to `claim.limit` deliveries, fewer if the destination's cluster-wide
/// `limit` says so; also returns when the rate limit allows the next start, if it held
/// this claim back.
///
/// Each claimed row records `owner`, this process's presence key while it holds one
/// (see [`super::presence`]), so that the maintenance leader can end the leases of a
/// process that died without waiting for them to run out.
pub(super) async fn claim(
    client: &Client,
    sealer: &Sealer,
    claim: &Claim,
    limit: Option<&ClusterLimit>,
    owner: Option<i64>,
) -> Result<(Vec<ClaimedDelivery>, Option<std::time::Duration>), StoreError> {
    let lease_until = claim.now_ms.saturating_add(claim.lease_ms);
    let (rows, retry_in) = transact(client, claim, limit, owner, lease_until).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = r.get(0);
        let event_id: String = r.get(1);
        let route: String = r.get(2);
        let part: Option<i64> = r.get(6);
        let opened = sealer
            .open_request(&event_id, r.get(10), Some(r.get(11)))
            .and_then(|(headers, body)| {
                let payload = sealer.open_payload(&event_id, &route, part, r.get(5))?;
                Ok((headers, body.unwrap_or_default(), payload))
            })
            .map_err(StoreError::from)
            .and_then(|(headers, body, payload)| Ok((decode_stored(&headers)?, body, payload)));
        match opened {
            Ok((headers, body, payload)) => out.push(ClaimedDelivery {
                id,
                event_id,
                route,
                destination: r.get(3),
                attempt: r.get::<_, i64>(4) + 1,
                lease_until_ms: lease_until,
                source: r.get(8),
                received_at_ms: r.get(9),
                headers,
                body,
                payload,
                part,
                replay_id: r.get(7),
                ordering_key: r.get(12),
            }),
            // A damaged event must not fail every claim of its destination: its delivery
            // goes dead with the reason (if this claim still holds it), the others go on.
            // The claim has committed: if this fails, the delivery waits out its lease
            // and comes here again, and the good ones are still sent now.
            // Sealed with a key this process lacks (another process has a newer key
            // while the keys are being rolled out): not damage. The claim is left to run
            // out, and whoever claims it next (perhaps a process with the key) sends it.
            Err(StoreError::Sealed(e)) if e.is_unknown_key() => {
                crate::throttled!(warn, delivery = %id, error = %e, "cannot open a claimed delivery's event with this process's keys; it is claimed again when its lease ends (give every process the same keys)");
            }
            Err(e) => {
                if let Err(failed) = mark_dead(client, &id, &e, claim.now_ms, lease_until).await {
                    tracing::warn!(delivery = %id, error = %crate::error_chain::Chain(&failed), "cannot set aside a delivery whose event is damaged");
                }
            }
        }
    }
    Ok((out, retry_in))
}

/// Sends a claimed delivery whose event cannot be read to the dead letters, with the
/// reason, if this claim still holds it.
async fn mark_dead(
    client: &Client,
    id: &str,
    damage: &StoreError,
    now_ms: i64,
    lease_until: i64,
) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(
            "UPDATE deliveries SET state = 'dead', lease_until = NULL,
                    last_error = $2, updated_at = $3
             WHERE id = $1 AND state = 'in_flight' AND lease_until = $4",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &id,
                &format!("the event cannot be read: {damage}"),
                &now_ms,
                &lease_until,
            ],
        )
        .await?;
    Ok(())
}

/// The claim's transaction: its rows, and the rate's wait when it held the claim back.
async fn transact(
    client: &Client,
    claim: &Claim,
    limit: Option<&ClusterLimit>,
    owner: Option<i64>,
    lease_until: i64,
) -> Result<(Vec<Row>, Option<std::time::Duration>), StoreError> {
    let lock = client.prepare_cached(LOCK).await?;
    let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&claim.destination];
    let pick = client.prepare_cached(&CLAIM).await?;
    let max_in_flight = limit.and_then(|l| l.max_in_flight).map(i64::from);
    let pick_rows = |n: i64| {
        let pick = &pick;
        async move {
            client
                .query(
                    pick,
                    &[
                        &lease_until,
                        &claim.now_ms,
                        &n,
                        &claim.destination,
                        &claim.skip_routes,
                        &owner,
                        &max_in_flight,
                        &claim.only_route,
                    ],
                )
                .await
        }
    };
    // Nothing to decide across claims (no cap, rate or order, as the engine that joined
    // the cluster said): `SKIP LOCKED` alone keeps two claims from taking one delivery,
    // and claims of every process run side by side instead of one at a time.
    let unconstrained =
        limit.is_some_and(|l| !l.ordered && l.max_in_flight.is_none() && l.rate.is_none());
    let locked = async {
        if !unconstrained {
            client.execute(&lock, &lock_params).await?;
        }
        Ok(())
    };
    let (rows, retry_in) = match limit.and_then(|l| l.rate) {
        // Everything the claim does is in its one statement, so COMMIT can follow it in
        // the same flight: if the statement fails, the transaction is aborted and COMMIT
        // ends it without effect. The destination's lock is then held for the server's
        // work alone, not for a round trip to this process.
        None => {
            let (_, _, rows, _) = tokio::try_join!(
                client.batch_execute(BEGIN_INDEX_PLANS),
                locked,
                pick_rows(claim.limit as i64),
                client.batch_execute("COMMIT"),
            )?;
            return Ok((rows, None));
        }
        // The bucket is read under the lock, before the claim, and spent after it.
        Some((count, per_ms)) => {
            let (_, _) = tokio::try_join!(client.batch_execute(BEGIN_INDEX_PLANS), locked)?;
            let (allowed, retry_in) = cluster::rate_allowance(client, claim, count, per_ms).await?;
            let rows = if allowed > 0 {
                pick_rows(allowed as i64).await?
            } else {
                Vec::new()
            };
            if !rows.is_empty() {
                cluster::spend_tokens(client, &claim.destination, rows.len()).await?;
            }
            (rows, retry_in)
        }
    };
    client.batch_execute("COMMIT").await?;
    Ok((rows, retry_in))
}
