//! The cold archive on SQLite: choosing the next events (read side) and the manifest's
//! steps, run by the writer (see [`crate::store::archive`]).

use rusqlite::{Connection, Row, params};

use super::capacity::KEEP_NEWEST;
use crate::store::StoreError;
use crate::store::archive::{ArchiveObject, ArchiveStep, COLUMNS, archivable_ids_sql, list_sql};
use crate::store::retention::{NO_WAITING_DELIVERY, id_bound};

/// The ids of the next events to archive (never the newest event: see `KEEP_NEWEST`).
pub(super) fn archivable_ids(
    conn: &Connection,
    before_ms: i64,
    after: &str,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let sql = archivable_ids_sql('?', &format!("e.{KEEP_NEWEST}"));
    let bound = id_bound(crate::id::EVENT, before_ms);
    let ids = conn
        .prepare_cached(&sql)?
        .query_map(params![before_ms, after, limit as i64, bound], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(ids)
}

/// One step, in the writer's transaction; `None` when a `Finish` found its object no
/// longer uploading.
pub(super) fn step(conn: &Connection, step: &ArchiveStep) -> rusqlite::Result<Option<usize>> {
    match step {
        ArchiveStep::Begin(o) => {
            conn.prepare_cached(&format!(
                "INSERT INTO archive_objects ({COLUMNS})
                 VALUES (?1, 'uploading', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                o.name,
                o.first_id,
                o.last_id,
                o.first_at_ms,
                o.last_at_ms,
                o.events,
                o.bytes,
                o.sealed_with,
                o.created_at_ms
            ])?;
            Ok(Some(0))
        }
        ArchiveStep::Finish { name, ids } => {
            let done = conn
                .prepare_cached(
                    "UPDATE archive_objects SET state = 'done'
                     WHERE name = ?1 AND state = 'uploading'",
                )?
                .execute(params![name])?;
            if done == 0 {
                return Ok(None);
            }
            let ids = serde_json::to_string(ids).unwrap_or_default();
            let removed = conn
                .prepare_cached(&format!(
                    "DELETE FROM events AS e
                     WHERE e.id IN (SELECT value FROM json_each(?1)) AND {NO_WAITING_DELIVERY}"
                ))?
                .execute(params![ids])?;
            Ok(Some(removed))
        }
        ArchiveStep::Abandon(name) => {
            let abandoned = conn
                .prepare_cached(
                    "UPDATE archive_objects SET state = 'abandoned'
                     WHERE name = ?1 AND state = 'uploading'",
                )?
                .execute(params![name])?;
            Ok((abandoned > 0).then_some(0))
        }
        ArchiveStep::Forget(name) => {
            conn.prepare_cached("DELETE FROM archive_objects WHERE name = ?1")?
                .execute(params![name])?;
            Ok(Some(0))
        }
    }
}

pub(super) fn list(
    conn: &Connection,
    state: &str,
    before: Option<&str>,
    limit: usize,
) -> Result<Vec<ArchiveObject>, StoreError> {
    let objects = conn
        .prepare_cached(&list_sql('?'))?
        .query_map(params![state, before, limit as i64], object_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(objects)
}

fn object_row(r: &Row<'_>) -> rusqlite::Result<ArchiveObject> {
    Ok(ArchiveObject {
        name: r.get(0)?,
        state: r.get(1)?,
        first_id: r.get(2)?,
        last_id: r.get(3)?,
        first_at_ms: r.get(4)?,
        last_at_ms: r.get(5)?,
        events: r.get(6)?,
        bytes: r.get(7)?,
        sealed_with: r.get(8)?,
        created_at_ms: r.get(9)?,
    })
}
