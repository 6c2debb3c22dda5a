//! `forebay rekey` on the embedded store: reading a batch of sealed blobs (on a read
//! connection) and writing back the resealed ones (in the writer's group transaction).

use rusqlite::{Connection, params};

use crate::store::StoreError;
use crate::store::rekey::{self, Resealed, Retired, SealedRow, SealedTable};
use crate::store::seal::Sealer;

/// Up to `limit` rows of `table` with ids after `after`, in id order.
pub(super) fn batch(
    conn: &Connection,
    table: SealedTable,
    after: &str,
    limit: usize,
) -> Result<Vec<SealedRow>, StoreError> {
    let sql = table.select_batch(|n| format!("?{n}"), ["BLOB", "TEXT", "INTEGER"]);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![after, limit as i64, rekey::BATCH_BYTES], |r| {
        Ok(SealedRow {
            id: r.get(0)?,
            first: r.get(1)?,
            second: r.get(2)?,
            event_id: r.get(3)?,
            route: r.get(4)?,
            part: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Rewrites each row whose first blob is still the one read; returns how many were.
pub(super) fn write(
    conn: &Connection,
    table: SealedTable,
    rows: &[Resealed],
) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(&table.update_row(|n| format!("?{n}")))?;
    let mut changed = 0;
    for r in rows {
        changed += match (&r.second, &r.read_second) {
            (Some(second), Some(read_second)) => {
                stmt.execute(params![r.id, r.read, r.first, second, read_second])?
            }
            _ => stmt.execute(params![r.id, r.read, r.first])?,
        };
    }
    Ok(changed)
}

/// The recorded keys, but `active`, split by whether some row is still sealed with
/// them (read on a read connection: the embedded store's one process seals only with
/// its active key, so no row under another key appears before they are retired).
pub(super) fn retirable(conn: &Connection, active: Option<&str>) -> Result<Retired, StoreError> {
    let candidates: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM sealing_keys
             WHERE retired_at IS NULL AND (?1 IS NULL OR id <> ?1) ORDER BY id",
        )?
        .query_map(params![active], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Retired::default();
    for id in candidates {
        let prefix = Sealer::prefix_of(&id);
        let mut used = false;
        for table in SealedTable::ALL {
            used |= conn
                .prepare_cached(&table.names_key(|n| format!("?{n}")))?
                .query_row(params![prefix.len() as i64, prefix], |r| {
                    r.get::<_, bool>(0)
                })?;
        }
        used |= conn
            .prepare_cached(&crate::store::archive::names_key_sql('?'))?
            .query_row(params![id], |r| r.get::<_, bool>(0))?;
        if used {
            out.still_used.push(id);
        } else {
            out.retired.push(id);
        }
    }
    Ok(out)
}

/// Records the keys `ids` as retired.
pub(super) fn retire_keys(conn: &Connection, ids: &[String], now_ms: i64) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE sealing_keys SET retired_at = ?2 WHERE id = ?1 AND retired_at IS NULL",
    )?;
    for id in ids {
        stmt.execute(params![id, now_ms])?;
    }
    Ok(())
}

/// How many rows of `table` a rekey looks at.
pub(super) fn count(conn: &Connection, table: SealedTable) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached(&table.count())?
        .query_row([], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}
