//! `forebay rekey` on the shared store: a batch of sealed blobs read, resealed and
//! written back in one transaction.

use deadpool_postgres::Client;

use crate::store::StoreError;
use crate::store::rekey::{self, ResealStep, Retired, SealedRow, SealedTable};
use crate::store::seal::Sealer;

/// Reseals up to `limit` rows of `table` after `after`. Each row is written only if its
/// first blob is still the one read, so another process's rekey, or retention, racing
/// this one changes nothing twice and loses nothing.
pub(super) async fn batch(
    client: &mut Client,
    sealer: &Sealer,
    table: SealedTable,
    after: &str,
    limit: usize,
) -> Result<ResealStep, StoreError> {
    let p = |n: usize| format!("${n}");
    let tx = client.transaction().await?;
    let select = tx
        .prepare_cached(&table.select_batch(p, ["bytea", "text", "bigint"]))
        .await?;
    let rows: Vec<SealedRow> = tx
        .query(&select, &[&after, &(limit as i64), &rekey::BATCH_BYTES])
        .await?
        .iter()
        .map(|r| SealedRow {
            id: r.get(0),
            first: r.get(1),
            second: r.get(2),
            event_id: r.get(3),
            route: r.get(4),
            part: r.get(5),
        })
        .collect();
    let (resealed, mut step) = rekey::reseal_batch(sealer, table, &rows);
    if !resealed.is_empty() {
        let update = tx.prepare_cached(&table.update_row(p)).await?;
        for r in &resealed {
            let changed = match (&r.second, &r.read_second) {
                (Some(second), Some(read_second)) => {
                    tx.execute(&update, &[&r.id, &r.read, &r.first, second, read_second])
                        .await?
                }
                _ => tx.execute(&update, &[&r.id, &r.read, &r.first]).await?,
            };
            step.resealed += changed as usize;
        }
    }
    tx.commit().await?;
    Ok(step)
}

/// Records every key but the active one that no row names as retired, in one
/// transaction with the scans that found them unused.
pub(super) async fn retire_keys(
    client: &mut Client,
    active: Option<&str>,
) -> Result<Retired, StoreError> {
    let tx = client.transaction().await?;
    let candidates: Vec<String> = tx
        .query(
            "SELECT id FROM sealing_keys
             WHERE retired_at IS NULL AND ($1::text IS NULL OR id <> $1) ORDER BY id",
            &[&active],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Retired::default();
    for id in candidates {
        let prefix = Sealer::prefix_of(&id);
        let mut used = false;
        for table in SealedTable::ALL {
            let sql = table.names_key(|n| format!("${n}"));
            used |= tx
                .query_one(&sql, &[&(prefix.len() as i32), &prefix])
                .await?
                .get::<_, bool>(0);
        }
        used |= tx
            .query_one(&crate::store::archive::names_key_sql('$'), &[&id])
            .await?
            .get::<_, bool>(0);
        if used {
            out.still_used.push(id);
        } else {
            tx.execute(
                "UPDATE sealing_keys SET retired_at = $2 WHERE id = $1",
                &[&id, &crate::clock::now_ms()],
            )
            .await?;
            out.retired.push(id);
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// How many rows of `table` a rekey looks at.
pub(super) async fn count(client: &Client, table: SealedTable) -> Result<u64, StoreError> {
    let n: i64 = client.query_one(&table.count(), &[]).await?.get(0);
    Ok(u64::try_from(n).unwrap_or(0))
}
