//! Replay jobs in SQLite: the writes run inside the writer's group transaction (so a
//! step's deliveries and its progress commit together), the reads on the read pool.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::{ReplayStep, ReplayWrite, StoreError, StoredReplay};

pub(super) fn write(conn: &Connection, w: &ReplayWrite) -> rusqlite::Result<Option<bool>> {
    match w {
        ReplayWrite::Create(r) => {
            conn.prepare_cached(
                "INSERT INTO replays (id, state, filter, destination, rate, created_at, updated_at)
                 VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?5)",
            )?
            .execute(params![
                r.id,
                r.filter,
                r.destination,
                r.rate,
                r.created_at_ms
            ])?;
            Ok(Some(true))
        }
        ReplayWrite::Advance(step) => advance(conn, step),
        ReplayWrite::Cancel { id, now_ms } => {
            let state: Option<String> = conn
                .prepare_cached("SELECT state FROM replays WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()?;
            let Some(state) = state else {
                return Ok(None);
            };
            // What is being sent finishes; what waits is set aside, also after the job
            // has queued everything (`done`) but before it was all sent.
            let discarded = conn
                .prepare_cached(
                    "UPDATE deliveries SET state = 'discarded', updated_at = ?2
                     WHERE replay_id = ?1 AND state IN ('pending', 'retrying')",
                )?
                .execute(params![id, now_ms])?;
            if state == "running" || (state == "done" && discarded > 0) {
                conn.prepare_cached(
                    "UPDATE replays SET state = 'cancelled', updated_at = ?2,
                            finished_at = coalesce(finished_at, ?2)
                     WHERE id = ?1",
                )?
                .execute(params![id, now_ms])?;
            }
            Ok(Some(false))
        }
    }
}

fn advance(conn: &Connection, step: &ReplayStep) -> rusqlite::Result<Option<bool>> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM replays WHERE id = ?1")?
        .query_row(params![step.replay_id], |r| r.get(0))
        .optional()?;
    match state.as_deref() {
        None => return Ok(None),
        Some("running") => {}
        Some(_) => return Ok(Some(false)),
    }
    // An event retention removed since the step read it is skipped, not an error that
    // fails the job.
    let mut insert = conn.prepare_cached(
        "INSERT INTO deliveries (id, event_id, route, destination, state, next_attempt_at,
                                 created_at, updated_at, prepared, replay_id, priority)
         SELECT ?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5, ?6, ?7, ?8
         WHERE EXISTS (SELECT 1 FROM events WHERE id = ?2)",
    )?;
    let mut queued = 0i64;
    for d in &step.deliveries {
        queued += insert.execute(params![
            d.id,
            d.event_id,
            d.route,
            d.destination,
            step.now_ms,
            !d.needs_preparing,
            step.replay_id,
            d.priority
        ])? as i64;
    }
    let (state, error) = match &step.finish {
        Some((state, error)) => (*state, error.as_deref()),
        None => ("running", None),
    };
    conn.prepare_cached(
        "UPDATE replays
         SET cursor = coalesce(?2, cursor), scanned = scanned + ?3, matched = matched + ?4,
             queued = queued + ?5, state = ?6, error = ?7, updated_at = ?8,
             finished_at = CASE WHEN ?6 = 'running' THEN NULL ELSE ?8 END
         WHERE id = ?1",
    )?
    .execute(params![
        step.replay_id,
        step.cursor,
        step.scanned,
        step.matched,
        queued,
        state,
        error,
        step.now_ms
    ])?;
    Ok(Some(state == "running"))
}

const COLUMNS: &str = "id, state, filter, destination, rate, cursor, scanned, matched, queued, \
     created_at, updated_at, finished_at, error";

fn row(r: &Row<'_>) -> rusqlite::Result<StoredReplay> {
    Ok(StoredReplay {
        id: r.get(0)?,
        state: r.get(1)?,
        filter: r.get(2)?,
        destination: r.get(3)?,
        rate: r.get(4)?,
        cursor: r.get(5)?,
        scanned: r.get(6)?,
        matched: r.get(7)?,
        queued: r.get(8)?,
        created_at_ms: r.get(9)?,
        updated_at_ms: r.get(10)?,
        finished_at_ms: r.get(11)?,
        error: r.get(12)?,
        deliveries: Vec::new(),
    })
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<StoredReplay>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM replays WHERE id = ?1");
    let Some(mut replay) = conn
        .prepare_cached(&sql)?
        .query_row(params![id], row)
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT state, count(*) FROM deliveries WHERE replay_id = ?1
         GROUP BY state ORDER BY state",
    )?;
    let counts = stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    replay.deliveries = counts.collect::<Result<_, _>>()?;
    Ok(Some(replay))
}

pub(super) fn list(
    conn: &Connection,
    running_only: bool,
    limit: usize,
) -> Result<Vec<StoredReplay>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM replays WHERE (?1 = 0 OR state = 'running')
         ORDER BY id DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![running_only, limit as i64], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
