//! The cold archive on PostgreSQL: choosing the next events and the manifest's steps
//! (see [`crate::store::archive`]). A `Finish` locks its events before it deletes them,
//! as retention does, so a replay queueing a delivery meanwhile is never undone.

use deadpool_postgres::{Client, Transaction};
use tokio_postgres::Row;

use crate::store::StoreError;
use crate::store::archive::{ArchiveObject, ArchiveStep, COLUMNS, archivable_ids_sql, list_sql};

pub(super) async fn archivable_ids(
    client: &Client,
    before_ms: i64,
    after: &str,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let stmt = client
        .prepare_cached(&archivable_ids_sql('$', "TRUE"))
        .await?;
    let bound = crate::store::retention::id_bound(crate::id::EVENT, before_ms);
    Ok(client
        .query(&stmt, &[&before_ms, &after, &(limit as i64), &bound])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

pub(super) async fn step(
    tx: &Transaction<'_>,
    step: &ArchiveStep,
) -> Result<Option<usize>, StoreError> {
    match step {
        ArchiveStep::Begin(o) => {
            let stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO archive_objects ({COLUMNS})
                     VALUES ($1, 'uploading', $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .await?;
            tx.execute(
                &stmt,
                &[
                    &o.name,
                    &o.first_id,
                    &o.last_id,
                    &o.first_at_ms,
                    &o.last_at_ms,
                    &o.events,
                    &o.bytes,
                    &o.sealed_with,
                    &o.created_at_ms,
                ],
            )
            .await?;
            Ok(Some(0))
        }
        ArchiveStep::Finish { name, ids } => {
            let done = tx
                .execute(
                    "UPDATE archive_objects SET state = 'done'
                     WHERE name = $1 AND state = 'uploading'",
                    &[name],
                )
                .await?;
            if done == 0 {
                return Ok(None);
            }
            let locked: Vec<String> = tx
                .query(
                    "SELECT id FROM events WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
                    &[ids],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            Ok(Some(super::purge::delete_events(tx, &locked).await?.count))
        }
        ArchiveStep::Abandon(name) => {
            let abandoned = tx
                .execute(
                    "UPDATE archive_objects SET state = 'abandoned'
                     WHERE name = $1 AND state = 'uploading'",
                    &[name],
                )
                .await?;
            Ok((abandoned > 0).then_some(0))
        }
        ArchiveStep::Forget(name) => {
            tx.execute("DELETE FROM archive_objects WHERE name = $1", &[name])
                .await?;
            Ok(Some(0))
        }
    }
}

pub(super) async fn list(
    client: &Client,
    state: &str,
    before: Option<&str>,
    limit: usize,
) -> Result<Vec<ArchiveObject>, StoreError> {
    let stmt = client.prepare_cached(&list_sql('$')).await?;
    Ok(client
        .query(&stmt, &[&state, &before, &(limit as i64)])
        .await?
        .iter()
        .map(object_row)
        .collect())
}

fn object_row(r: &Row) -> ArchiveObject {
    ArchiveObject {
        name: r.get(0),
        state: r.get(1),
        first_id: r.get(2),
        last_id: r.get(3),
        first_at_ms: r.get(4),
        last_at_ms: r.get(5),
        events: r.get(6),
        bytes: r.get(7),
        sealed_with: r.get(8),
        created_at_ms: r.get(9),
    }
}
