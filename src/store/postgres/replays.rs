//! Replay jobs on PostgreSQL: a step's deliveries and its progress commit together.

use deadpool_postgres::{Client, Transaction};
use tokio_postgres::Row;

use super::write_events::ingest_lock;
use crate::store::{ReplayStep, ReplayWrite, StoreError, StoredReplay};

pub(super) async fn write(
    tx: &Transaction<'_>,
    w: &ReplayWrite,
) -> Result<Option<bool>, StoreError> {
    match w {
        ReplayWrite::Create(r) => {
            tx.execute(
                "INSERT INTO replays (id, state, filter, destination, rate, created_at, updated_at)
                 VALUES ($1, 'running', $2, $3, $4, $5, $5)",
                &[&r.id, &r.filter, &r.destination, &r.rate, &r.created_at_ms],
            )
            .await?;
            Ok(Some(true))
        }
        ReplayWrite::Advance(step) => advance(tx, step).await,
        ReplayWrite::Cancel { id, now_ms } => {
            let Some(state) = tx
                .query_opt("SELECT state FROM replays WHERE id = $1 FOR UPDATE", &[id])
                .await?
                .map(|r| r.get::<_, String>(0))
            else {
                return Ok(None);
            };
            // What is being sent finishes; what waits is set aside, also after the job
            // has queued everything (`done`) but before it was all sent.
            let discarded = tx
                .execute(
                    "UPDATE deliveries SET state = 'discarded', updated_at = $2
                     WHERE replay_id = $1 AND state IN ('pending', 'retrying')",
                    &[id, now_ms],
                )
                .await?;
            if state == "running" || (state == "done" && discarded > 0) {
                tx.execute(
                    "UPDATE replays SET state = 'cancelled', updated_at = $2,
                            finished_at = coalesce(finished_at, $2)
                     WHERE id = $1",
                    &[id, now_ms],
                )
                .await?;
            }
            Ok(Some(false))
        }
    }
}

async fn advance(tx: &Transaction<'_>, step: &ReplayStep) -> Result<Option<bool>, StoreError> {
    let state = tx
        .query_opt(
            "SELECT state FROM replays WHERE id = $1 FOR UPDATE",
            &[&step.replay_id],
        )
        .await?
        .map(|r| r.get::<_, String>(0));
    match state.as_deref() {
        None => return Ok(None),
        Some("running") => {}
        Some(_) => return Ok(Some(false)),
    }
    let mut queued = 0i64;
    if !step.deliveries.is_empty() {
        // Deliveries draw positions, and may be on ordered routes: under the ingest lock
        // taken exclusively, as an ordered ingest group takes it, so that positions
        // drawn here commit in order with every ingest group's.
        ingest_lock(tx).await?;
        // An event retention removed since the step read it is skipped, not an error
        // that fails the job. The key-share lock keeps the rest from going meanwhile
        // (retention locks events before it deletes them).
        let event_ids: Vec<&str> = step
            .deliveries
            .iter()
            .map(|d| d.event_id.as_str())
            .collect();
        let present: Vec<String> = tx
            .query(
                "SELECT id FROM events WHERE id = ANY($1::text[]) FOR KEY SHARE",
                &[&event_ids],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let insert = tx
            .prepare_cached(
                "INSERT INTO deliveries (id, event_id, route, destination, state,
                                         next_attempt_at, created_at, updated_at, prepared,
                                         replay_id, priority)
                 VALUES ($1, $2, $3, $4, 'pending', $5, $5, $5, $6, $7, $8)",
            )
            .await?;
        for d in step
            .deliveries
            .iter()
            .filter(|d| present.contains(&d.event_id))
        {
            tx.execute(
                &insert,
                &[
                    &d.id,
                    &d.event_id,
                    &d.route,
                    &d.destination,
                    &step.now_ms,
                    &!d.needs_preparing,
                    &step.replay_id,
                    &i16::from(d.priority),
                ],
            )
            .await?;
            queued += 1;
        }
    }
    let (state, error) = match &step.finish {
        Some((state, error)) => (*state, error.as_deref()),
        None => ("running", None),
    };
    tx.execute(
        "UPDATE replays
         SET cursor = coalesce($2, cursor), scanned = scanned + $3, matched = matched + $4,
             queued = queued + $5, state = $6::text, error = $7, updated_at = $8::bigint,
             finished_at = CASE WHEN $6::text = 'running' THEN NULL ELSE $8::bigint END
         WHERE id = $1",
        &[
            &step.replay_id,
            &step.cursor,
            &step.scanned,
            &step.matched,
            &queued,
            &state,
            &error,
            &step.now_ms,
        ],
    )
    .await?;
    Ok(Some(state == "running"))
}

const COLUMNS: &str = "id, state, filter, destination, rate, cursor, scanned, matched, queued, \
     created_at, updated_at, finished_at, error";

fn row(r: &Row) -> StoredReplay {
    StoredReplay {
        id: r.get(0),
        state: r.get(1),
        filter: r.get(2),
        destination: r.get(3),
        rate: r.get(4),
        cursor: r.get(5),
        scanned: r.get(6),
        matched: r.get(7),
        queued: r.get(8),
        created_at_ms: r.get(9),
        updated_at_ms: r.get(10),
        finished_at_ms: r.get(11),
        error: r.get(12),
        deliveries: Vec::new(),
    }
}

pub(super) async fn get(c: &Client, id: &str) -> Result<Option<StoredReplay>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM replays WHERE id = $1");
    let Some(r) = c.query_opt(&sql, &[&id]).await? else {
        return Ok(None);
    };
    let mut replay = row(&r);
    replay.deliveries = c
        .query(
            "SELECT state, count(*) FROM deliveries WHERE replay_id = $1
             GROUP BY state ORDER BY state",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Some(replay))
}

pub(super) async fn list(
    c: &Client,
    running_only: bool,
    limit: usize,
) -> Result<Vec<StoredReplay>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM replays WHERE (NOT $1 OR state = 'running')
         ORDER BY id DESC LIMIT $2"
    );
    Ok(c.query(&sql, &[&running_only, &(limit as i64)])
        .await?
        .iter()
        .map(row)
        .collect())
}
