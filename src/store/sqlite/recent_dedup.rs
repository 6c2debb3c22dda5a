//! The newest dedup entries: appended to `dedup_recent`, held in memory, and merged into
//! `dedup` in sorted batches rather than one random page per event.
//!
//! `dedup` is ordered by key hash, so every event inserted into it lands on a random
//! page, and that page is written to the WAL at commit and copied again at checkpoint:
//! a quarter of what ingest could do went into those writes. Here a new event's entry
//! goes to `dedup_recent` instead, keyed by an ever-growing sequence number, so a group
//! of events fills one page there, and to a map in memory that lookups read beside
//! `dedup`. Once more than `merge_at` entries are held, each group commit also merges
//! one of [`SLICES`] hash ranges into `dedup`, sorted: the range's pages each take many
//! entries at once, and the slice's watermark (`dedup_merged.upto`) moves in the same
//! transaction. `dedup_recent` keeps only rows some slice has not merged yet.
//!
//! The invariant, per slice `s` of the hash space: an entry with `seq <= upto[s]` is in
//! `dedup` (unless its event was purged first); one with `seq > upto[s]` is in
//! `dedup_recent` and in memory. A restart rebuilds the memory from `dedup_recent`.
//! Memory is bounded by `merge_at` plus what arrives while a full round of slices is
//! merged, 50 to 85 bytes an entry as the maps and lists grow (they keep their peak).
//!
//! Memory follows the transaction it belongs to: entries recorded in a group that rolls
//! back are taken out again, and a merge leaves memory only once its commit returned.

use std::collections::{HashMap, VecDeque};

use rusqlite::{Connection, params};

/// Hash ranges merged one at a time (by the hash's top 8 bits).
pub(super) const SLICES: usize = 256;

/// Entries held before merging starts: a few MiB, and large enough that a merge puts
/// many entries on each page of its range until `dedup` holds tens of millions.
pub const MERGE_AT: usize = 1 << 17;

pub(super) const RECORD_SQL: &str =
    "INSERT INTO dedup_recent (seq, event, hash) VALUES (?1, ?2, ?3)";
/// An entry whose event was purged before the merge is left out. Reading `events` for
/// every entry would read a page of event bodies each (most of a merge's time when
/// tried); `dedup_gone` names the purged ones, and only for those is `events` asked
/// whether a newer event took the same rowid with the same key.
pub(super) const MERGE_SQL: &str = "INSERT OR IGNORE INTO dedup (hash, event)
     SELECT ?1, ?2
     WHERE NOT EXISTS (SELECT 1 FROM dedup_gone WHERE slice = ?3 AND event = ?2 AND hash = ?1)
        OR EXISTS (SELECT 1 FROM events WHERE rowid = ?2 AND dedup_hash = ?1)";
/// After a merge, no entry of the slice is waiting any more, so neither is its list of
/// purged events needed.
const FORGET_GONE_SQL: &str = "DELETE FROM dedup_gone WHERE slice = ?1";
const WATERMARK_SQL: &str = "INSERT INTO dedup_merged (slice, upto) VALUES (?1, ?2)
     ON CONFLICT (slice) DO UPDATE SET upto = excluded.upto";
const TRIM_SQL: &str = "DELETE FROM dedup_recent WHERE seq <= ?1";

#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: i64,
    event: i64,
    seq: i64,
}

/// The merge a group transaction carries, applied to memory once it commits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Merge {
    slice: usize,
    upto: i64,
}

#[derive(Debug)]
pub(super) struct RecentDedup {
    /// Newest event rowid per hash.
    newest: HashMap<i64, i64>,
    /// Older rowids of a hash that is held more than once (a key repeated after its
    /// window, or two keys sharing a hash), oldest first: merges release the oldest
    /// first, so a long run of one key costs a pop from the front each.
    older: HashMap<i64, VecDeque<i64>>,
    /// Per slice, in sequence order.
    slices: Vec<Vec<Entry>>,
    /// Per slice: the last sequence number merged into `dedup`.
    upto: Vec<i64>,
    next_seq: i64,
    held: usize,
    next_slice: usize,
    merge_at: usize,
    /// (hash, event) of the entries recorded in the open transaction, taken out again
    /// if it rolls back.
    undo: Vec<(i64, i64)>,
}

fn slice_of(hash: i64) -> usize {
    (hash as u64 >> 56) as usize
}

impl RecentDedup {
    /// Rebuilds the memory from `dedup_recent` and the slices' watermarks.
    pub(super) fn load(conn: &Connection, merge_at: usize) -> rusqlite::Result<Self> {
        let mut upto = vec![0_i64; SLICES];
        let mut marks = conn.prepare("SELECT slice, upto FROM dedup_merged")?;
        let mut rows = marks.query([])?;
        while let Some(row) = rows.next()? {
            let slice: i64 = row.get(0)?;
            if let Some(mark) = usize::try_from(slice).ok().and_then(|s| upto.get_mut(s)) {
                *mark = row.get(1)?;
            }
        }
        let floor = upto.iter().copied().min().unwrap_or(0);
        let last: i64 =
            conn.query_row("SELECT coalesce(max(seq), 0) FROM dedup_recent", [], |r| {
                r.get(0)
            })?;
        // Merging goes on from the slice merged longest ago, not from slice 0 each start.
        let next_slice = (0..SLICES).min_by_key(|s| upto[*s]).unwrap_or(0);
        let mut recent = Self {
            newest: HashMap::new(),
            older: HashMap::new(),
            slices: vec![Vec::new(); SLICES],
            next_seq: last.max(upto.iter().copied().max().unwrap_or(0)) + 1,
            upto,
            held: 0,
            next_slice,
            merge_at,
            undo: Vec::new(),
        };
        let mut read =
            conn.prepare("SELECT seq, event, hash FROM dedup_recent WHERE seq > ?1 ORDER BY seq")?;
        let mut rows = read.query(params![floor])?;
        while let Some(row) = rows.next()? {
            let entry = Entry {
                seq: row.get(0)?,
                event: row.get(1)?,
                hash: row.get(2)?,
            };
            if entry.seq > recent.upto[slice_of(entry.hash)] {
                recent.hold(entry);
            }
        }
        Ok(recent)
    }

    /// Entries held in memory.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// The event rowids held for `hash`, newest last.
    pub(super) fn candidates(&self, hash: i64) -> impl Iterator<Item = i64> + '_ {
        let older = self.older.get(&hash).into_iter().flatten().copied();
        older.chain(self.newest.get(&hash).copied())
    }

    /// Makes the event at `rowid` findable by `hash`, inside the open transaction.
    pub(super) fn record(
        &mut self,
        conn: &Connection,
        hash: i64,
        rowid: i64,
    ) -> rusqlite::Result<()> {
        let seq = self.next_seq;
        conn.prepare_cached(RECORD_SQL)?
            .execute(params![seq, rowid, hash])?;
        self.next_seq += 1;
        let entry = Entry {
            hash,
            event: rowid,
            seq,
        };
        self.hold(entry);
        self.undo.push((hash, rowid));
        Ok(())
    }

    fn hold(&mut self, entry: Entry) {
        if let Some(previous) = self.newest.insert(entry.hash, entry.event) {
            self.older
                .entry(entry.hash)
                .or_default()
                .push_back(previous);
        }
        self.slices[slice_of(entry.hash)].push(entry);
        self.held += 1;
    }

    /// Forgets `event` under `hash` (after its merge, or its transaction's rollback).
    fn release(&mut self, hash: i64, event: i64) {
        self.held -= 1;
        if self.newest.get(&hash) == Some(&event) {
            match self.older.get_mut(&hash).and_then(VecDeque::pop_back) {
                Some(previous) => {
                    self.newest.insert(hash, previous);
                }
                None => {
                    self.newest.remove(&hash);
                }
            }
        } else if let Some(older) = self.older.get_mut(&hash) {
            // Exactly one occurrence: a reused rowid may be held twice under one hash.
            if let Some(at) = older.iter().position(|e| *e == event) {
                older.remove(at);
            }
        }
        if self.older.get(&hash).is_some_and(VecDeque::is_empty) {
            self.older.remove(&hash);
        }
    }

    /// A new transaction begins: nothing recorded yet to take back.
    pub(super) fn begin(&mut self) {
        self.undo.clear();
    }

    /// The transaction committed: what it recorded stays, and its merge leaves memory.
    pub(super) fn committed(&mut self, merge: Option<Merge>) {
        self.undo.clear();
        let Some(Merge { slice, upto }) = merge else {
            return;
        };
        let entries = &mut self.slices[slice];
        let merged = entries.partition_point(|e| e.seq <= upto);
        let gone: Vec<Entry> = entries.drain(..merged).collect();
        for e in gone {
            self.release(e.hash, e.event);
        }
        self.upto[slice] = upto;
        self.next_slice = (slice + 1) % SLICES;
    }

    /// The transaction rolled back: what it recorded is taken out again, newest first.
    pub(super) fn rolled_back(&mut self) {
        while let Some((hash, event)) = self.undo.pop() {
            self.slices[slice_of(hash)].pop();
            self.release(hash, event);
        }
    }

    /// Merges the next slice into `dedup` inside the open transaction, when more than
    /// `merge_at` entries are held; [`Self::committed`] then lets them go.
    pub(super) fn merge_if_due(&self, conn: &Connection) -> rusqlite::Result<Option<Merge>> {
        if self.held <= self.merge_at {
            return Ok(None);
        }
        let slice = self.next_slice;
        // Everything recorded so far is committed (the transaction has only begun).
        let upto = self.next_seq - 1;
        let mut entries: Vec<(i64, i64)> = self.slices[slice]
            .iter()
            .map(|e| (e.hash, e.event))
            .collect();
        // In key order, so each page of `dedup` is visited once.
        entries.sort_unstable();
        let mut insert = conn.prepare_cached(MERGE_SQL)?;
        for (hash, event) in entries {
            insert.execute(params![hash, event, slice as i64])?;
        }
        conn.prepare_cached(FORGET_GONE_SQL)?
            .execute(params![slice as i64])?;
        conn.prepare_cached(WATERMARK_SQL)?
            .execute(params![slice as i64, upto])?;
        let floor_before = self.upto.iter().copied().min().unwrap_or(0);
        let floor_after = self
            .upto
            .iter()
            .enumerate()
            .map(|(s, mark)| if s == slice { upto } else { *mark })
            .min()
            .unwrap_or(0);
        if floor_after > floor_before {
            conn.prepare_cached(TRIM_SQL)?
                .execute(params![floor_after])?;
        }
        Ok(Some(Merge { slice, upto }))
    }
}
