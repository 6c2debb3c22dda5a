//! Finding an earlier event by its dedup key, through a narrow table of key hashes.
//!
//! Dedup keys are random as often as not (a body's SHA-256, a provider's event id), so
//! each new event lands on a random page of whatever indexes its key. An index of the
//! full key (`source, dedup_key, received_at`: about 90 bytes an entry) made every new
//! event dirty one of tens of thousands of pages, read it from disk when it had left the
//! cache, write it to the WAL at commit and copy it again at checkpoint. `dedup` holds 16
//! bytes an entry instead: the first 8 bytes of SHA-256(source, NUL, key) and the event's
//! rowid. Its pages hold five times the entries, so far more of it stays in memory, and
//! the table a checkpoint copies is a fifth of the size. Each new event still dirties one
//! random page of it: exact dedup needs a lookup structure ordered by key.
//!
//! A hash says only "maybe": every lookup compares the stored event's real source and key,
//! so two keys that share a hash never make a distinct event a duplicate.
//!
//! Entries point at `events.rowid`, which stays stable because forebay never runs
//! `VACUUM` (the event positions of `read.rs` count on it too). A purged event takes its
//! entry with it (trigger `events_leave_dedup`, which finds the entry by the hash kept in
//! `events.dedup_hash`).
//!
//! New events do not write here directly: their entries wait in `dedup_recent` and in
//! memory until they are merged in sorted batches (`recent_dedup.rs`), and lookups read
//! both.

use rusqlite::{Connection, OptionalExtension, params};

use super::recent_dedup::RecentDedup;

pub(super) use crate::store::key_hash::dedup_hash as hash;

/// Rows of `dedup` with a given hash (usually none; one for a repeat).
pub(super) const CANDIDATES_SQL: &str = "SELECT event FROM dedup WHERE hash = ?1";
/// The event at a candidate row, if its real source and key are the ones looked for.
pub(super) const CONFIRM_SQL: &str = "SELECT id, received_at FROM events
     WHERE rowid = ?1 AND source = ?2 AND dedup_key = ?3";

/// The latest event of `source` with dedup key `key`: its id and when it was received.
///
/// Two plain statements rather than one join: SQLite marks the join's parameters as
/// plan-changing, and rusqlite clears a cached statement's bindings after each use,
/// which then makes SQLite compile the statement again on every execution (that was a
/// third of the writer's time). A test pins that neither is ever re-prepared.
pub(super) fn latest(
    conn: &Connection,
    recent: &RecentDedup,
    hash: i64,
    source: &str,
    key: &str,
) -> rusqlite::Result<Option<(String, i64)>> {
    let mut candidates = conn.prepare_cached(CANDIDATES_SQL)?;
    let mut rowids = candidates
        .query_map(params![hash], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    rowids.extend(recent.candidates(hash));
    if rowids.is_empty() {
        return Ok(None);
    }
    // There is at most one row per key and window, so the latest is picked here rather
    // than with `ORDER BY … LIMIT 1`, which also made SQLite re-prepare every time.
    let mut confirm = conn.prepare_cached(CONFIRM_SQL)?;
    let mut latest: Option<(String, i64)> = None;
    for rowid in rowids {
        let found = confirm
            .query_row(params![rowid, source, key], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?;
        if let Some((id, received_at)) = found
            && latest.as_ref().is_none_or(|(_, at)| received_at > *at)
        {
            latest = Some((id, received_at));
        }
    }
    Ok(latest)
}

/// Fills `events.dedup_hash` and `dedup` for the events stored before the table existed
/// (schema version 6), in rowid order so the inserts walk the tables once.
pub(super) fn backfill(conn: &Connection) -> rusqlite::Result<()> {
    let mut read = conn.prepare("SELECT rowid, source, dedup_key FROM events ORDER BY rowid")?;
    let mut set = conn.prepare("UPDATE events SET dedup_hash = ?2 WHERE rowid = ?1")?;
    let mut record = conn.prepare("INSERT INTO dedup (hash, event) VALUES (?1, ?2)")?;
    let mut rows = read.query([])?;
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        let source: String = row.get(1)?;
        let key: String = row.get(2)?;
        let hash = hash(&source, &key);
        set.execute(params![rowid, hash])?;
        record.execute(params![hash, rowid])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_separates_source_from_key() {
        // Without the NUL, ("ab", "c") and ("a", "bc") would hash the same text.
        assert_ne!(hash("ab", "c"), hash("a", "bc"));
        assert_eq!(hash("s", "k"), hash("s", "k"));
    }
}
