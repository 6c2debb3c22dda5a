//! The activity counters on SQLite (see `store::activity`): added to by the writer,
//! read a window at a time.

use rusqlite::{Connection, params};

use crate::store::StoreError;
use crate::store::activity::{ActivityCount, Counted};

/// Adds `counts` to the counters and trims the slots before `trim_before`.
pub(super) fn add(
    conn: &Connection,
    counts: &[ActivityCount],
    trim_before: i64,
) -> rusqlite::Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO activity (slot, what, name, count) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (slot, what, name) DO UPDATE SET count = count + excluded.count",
    )?;
    for c in counts {
        upsert.execute(params![c.slot, c.what.as_str(), c.name, c.count])?;
    }
    conn.prepare_cached("DELETE FROM activity WHERE slot < ?1")?
        .execute(params![trim_before])?;
    Ok(())
}

/// The counters of the slots `[first, end)`.
pub(super) fn counts(
    conn: &Connection,
    first: i64,
    end: i64,
) -> Result<Vec<ActivityCount>, StoreError> {
    let mut read = conn.prepare_cached(
        "SELECT slot, what, name, count FROM activity WHERE slot >= ?1 AND slot < ?2",
    )?;
    let rows = read.query_map(params![first, end], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut counts = Vec::new();
    for row in rows {
        let (slot, what, name, count) = row?;
        // A kind this binary does not know (written by a newer one) is left out.
        if let Some(what) = Counted::parse(&what) {
            counts.push(ActivityCount {
                slot,
                what,
                name,
                count,
            });
        }
    }
    Ok(counts)
}
