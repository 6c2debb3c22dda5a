//! The size cap on SQLite: usage from the file's page counts, eviction run by the writer,
//! and incremental vacuum, which hands free pages at the end of the file back to the
//! file system. Files made by this version are created with `auto_vacuum = INCREMENTAL`
//! ([`prepare_new_file`]); SQLite can turn it on only before the first table exists, so
//! an older file keeps its size and reuses its free pages instead.

use rusqlite::{Connection, params};

use crate::store::capacity::{
    Evict, Evicted, Reclaimed, Usage, evict_rejected_sql, evictable_events_sql,
};

/// Never the newest event: SQLite hands a new row the largest rowid so far plus one, so
/// deleting the newest would give the next event the same rowid, and the stream
/// positions built on rowids (`read.rs`) would repeat. Eviction and the archive keep it
/// (they may reach the newest events); retention's cutoffs are days, not seconds.
pub(super) const KEEP_NEWEST: &str = "rowid < (SELECT max(rowid) FROM events)";

/// SQLite's code for `auto_vacuum = INCREMENTAL`.
const INCREMENTAL: i64 = 2;

/// On a file with no schema yet, turns on incremental vacuum (it must come before the
/// first table).
pub(super) fn prepare_new_file(conn: &Connection) -> rusqlite::Result<()> {
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    if tables == 0 {
        conn.pragma_update(None, "auto_vacuum", INCREMENTAL)?;
    }
    Ok(())
}

/// Pages in use and pages in the file, by their size.
pub(super) fn usage(conn: &Connection) -> rusqlite::Result<Usage> {
    let pragma = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0));
    let page_size = pragma("page_size")?.max(0) as u64;
    let pages = pragma("page_count")?.max(0) as u64;
    let free = pragma("freelist_count")?.max(0) as u64;
    Ok(Usage {
        used: pages.saturating_sub(free) * page_size,
        allocated: pages * page_size,
    })
}

/// One pass of eviction, in the writer's transaction. Deliveries, attempts and
/// duplicates go with their event (`ON DELETE CASCADE`), its dedup entry by trigger.
pub(super) fn evict(conn: &Connection, evict: &Evict) -> rusqlite::Result<Evicted> {
    let limit = evict.limit as i64;
    let mut events = conn.prepare_cached(&format!(
        "DELETE FROM events WHERE id IN ({}) AND {KEEP_NEWEST} RETURNING id, received_at",
        evictable_events_sql('?')
    ))?;
    let gone = events
        .query_map(params![evict.after, limit], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let up_to = gone.iter().map(|(_, at)| *at).max().unwrap_or(i64::MAX);
    let rejected = conn
        .prepare_cached(&evict_rejected_sql('?'))?
        .execute(params![up_to, limit])?;
    Ok(Evicted {
        events: gone.len(),
        rejected,
        last: gone.into_iter().map(|(id, _)| id).max(),
    })
}

/// Moves up to `max_bytes` of free pages to the end of the file and cuts them off (they
/// leave the file at the next checkpoint). Nothing on a file without incremental vacuum.
pub(super) fn reclaim(conn: &Connection, max_bytes: u64) -> rusqlite::Result<Reclaimed> {
    let pragma = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0));
    if pragma("auto_vacuum")? != INCREMENTAL {
        return Ok(Reclaimed::default());
    }
    let page_size = pragma("page_size")?.max(512) as u64;
    let free = pragma("freelist_count")?.max(0) as u64;
    let pages = (max_bytes / page_size).min(free);
    if pages > 0 {
        // The pragma frees one page per step: run it to the end.
        let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
    }
    Ok(Reclaimed {
        bytes: pages * page_size,
        more: free > pages,
    })
}
