//! SQLite schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! Each entry of [`MIGRATIONS`] runs once, in order, inside one transaction with the
//! version bump; never edit a released entry, append a new one.

use rusqlite::Connection;

use crate::store::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: events with their deliveries, duplicates and rejected requests.
    r#"
    CREATE TABLE events (
        id           TEXT PRIMARY KEY,
        source       TEXT NOT NULL,
        received_at  INTEGER NOT NULL,          -- ms since the Unix epoch
        method       TEXT NOT NULL,
        path         TEXT NOT NULL,
        query        TEXT,
        headers      BLOB NOT NULL,             -- wire form: name: value CRLF ...
        body         BLOB NOT NULL,             -- raw bytes as received
        remote_addr  TEXT,
        dedup_key    TEXT NOT NULL,
        duplicates   INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX events_by_dedup_key ON events (source, dedup_key, received_at);
    CREATE INDEX events_by_source ON events (source, id);

    CREATE TABLE duplicates (
        id           TEXT PRIMARY KEY,
        event_id     TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        received_at  INTEGER NOT NULL,
        headers      BLOB NOT NULL,
        remote_addr  TEXT
    ) STRICT;
    CREATE INDEX duplicates_by_event ON duplicates (event_id);

    CREATE TABLE deliveries (
        id               TEXT PRIMARY KEY,
        event_id         TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        route            TEXT NOT NULL,
        destination      TEXT NOT NULL,
        state            TEXT NOT NULL,         -- pending, in_flight, retrying, delivered, dead, filtered (and later discarded, superseded)
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,      -- ms; when it may be claimed
        lease_until      INTEGER,               -- ms; set while in_flight
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        last_error       TEXT
    ) STRICT;
    CREATE INDEX deliveries_by_event ON deliveries (event_id);

    CREATE TABLE rejected (
        id           TEXT PRIMARY KEY,
        source       TEXT NOT NULL,
        received_at  INTEGER NOT NULL,
        method       TEXT NOT NULL,
        path         TEXT NOT NULL,
        query        TEXT,
        headers      BLOB NOT NULL,
        body         BLOB NOT NULL,             -- cut to storage.rejected_body_limit
        body_size    INTEGER NOT NULL,          -- as received
        remote_addr  TEXT,
        reason       TEXT NOT NULL
    ) STRICT;
    CREATE INDEX rejected_by_source ON rejected (source, id);
    "#,
    // 2: attempts, and indexes for claiming due deliveries and expired leases.
    r#"
    CREATE TABLE attempts (
        id                TEXT PRIMARY KEY,
        delivery_id       TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        number            INTEGER NOT NULL,       -- 1 for the first attempt
        started_at        INTEGER NOT NULL,       -- ms
        duration_ms       INTEGER NOT NULL,
        status            INTEGER,                -- response status, when one came
        error             TEXT,
        response_headers  BLOB NOT NULL,
        response_body     BLOB NOT NULL           -- capped at 4 KiB
    ) STRICT;
    CREATE INDEX attempts_by_delivery ON attempts (delivery_id, number);
    CREATE INDEX deliveries_claimable ON deliveries (destination, next_attempt_at)
        WHERE state IN ('pending', 'retrying');
    CREATE INDEX deliveries_leased ON deliveries (lease_until)
        WHERE state = 'in_flight';
    "#,
    // 3: paused routes and destinations (kept across restarts).
    r#"
    CREATE TABLE paused (
        kind       TEXT NOT NULL,                 -- route or destination
        name       TEXT NOT NULL,
        paused_at  INTEGER NOT NULL,
        PRIMARY KEY (kind, name)
    ) STRICT;
    "#,
    // 4: filters, transforms and ordering keys. A delivery of a route with any of them
    // waits `prepared = 0` until the engine has run them; a split transform's outputs
    // become parts 1..n (each its own delivery, `part` set) with their bodies in
    // `payload`; `seq` keeps receive order across the parts of one event.
    r#"
    ALTER TABLE deliveries ADD COLUMN prepared INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE deliveries ADD COLUMN part INTEGER;
    ALTER TABLE deliveries ADD COLUMN payload BLOB;
    ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
    ALTER TABLE deliveries ADD COLUMN seq INTEGER;
    CREATE INDEX deliveries_unprepared ON deliveries (prepared) WHERE prepared = 0 AND state = 'pending';
    CREATE INDEX deliveries_by_key ON deliveries (route, ordering_key, seq)
        WHERE ordering_key IS NOT NULL AND state IN ('pending', 'in_flight', 'retrying');
    "#,
    // 5: replay jobs, and the deliveries they queue.
    r#"
    CREATE TABLE replays (
        id           TEXT PRIMARY KEY,
        state        TEXT NOT NULL,               -- running, done, cancelled, failed
        filter       TEXT NOT NULL,               -- the search filter, JSON
        destination  TEXT,                        -- one destination instead of the routes
        rate         TEXT,                        -- events queued per period, e.g. 50/s
        cursor       TEXT,                        -- the last event looked at
        scanned      INTEGER NOT NULL DEFAULT 0,
        matched      INTEGER NOT NULL DEFAULT 0,
        queued       INTEGER NOT NULL DEFAULT 0,  -- deliveries queued
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL,
        finished_at  INTEGER,
        error        TEXT
    ) STRICT;
    ALTER TABLE deliveries ADD COLUMN replay_id TEXT;
    CREATE INDEX deliveries_by_replay ON deliveries (replay_id, state) WHERE replay_id IS NOT NULL;
    "#,
    // 6: dedup through a narrow table of key hashes (see `dedup.rs`) instead of an index
    // of the full key, whose random pages were most of what a commit wrote. The rows of
    // earlier events are added by `dedup::backfill` in the same transaction.
    r#"
    ALTER TABLE events ADD COLUMN dedup_hash INTEGER;   -- dedup::hash(source, dedup_key)
    CREATE TABLE dedup (
        hash   INTEGER NOT NULL,                  -- dedup::hash(source, dedup_key)
        event  INTEGER NOT NULL,                  -- events.rowid
        PRIMARY KEY (hash, event)
    ) STRICT, WITHOUT ROWID;
    CREATE TRIGGER events_leave_dedup AFTER DELETE ON events BEGIN
        DELETE FROM dedup WHERE hash = old.dedup_hash AND event = old.rowid;
    END;
    DROP INDEX events_by_dedup_key;
    "#,
    // 7: the dead letters by route and destination, so counting them (the dashboard,
    // /metrics) reads the dead-letter queue, not every delivery ever made.
    r#"
    CREATE INDEX deliveries_dead ON deliveries (route, destination) WHERE state = 'dead';
    "#,
    // 8: new dedup entries are appended to `dedup_recent` and merged into `dedup` in
    // sorted batches, one slice of the hash space at a time (see `recent_dedup.rs`);
    // `upto` is the last `seq` of its slice that `dedup` holds, and `dedup_gone` the
    // purged events a slice's next merge must leave out.
    r#"
    CREATE TABLE dedup_recent (
        seq    INTEGER PRIMARY KEY,               -- given by the writer, never reused
        event  INTEGER NOT NULL,                  -- events.rowid
        hash   INTEGER NOT NULL                   -- dedup::hash(source, dedup_key)
    ) STRICT;
    CREATE TABLE dedup_merged (
        slice  INTEGER PRIMARY KEY,               -- the hash's top 8 bits
        upto   INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE dedup_gone (
        slice  INTEGER NOT NULL,
        event  INTEGER NOT NULL,
        hash   INTEGER NOT NULL,
        PRIMARY KEY (slice, event, hash)
    ) STRICT, WITHOUT ROWID;
    DROP TRIGGER events_leave_dedup;
    CREATE TRIGGER events_leave_dedup AFTER DELETE ON events BEGIN
        INSERT OR IGNORE INTO dedup_gone (slice, event, hash)
            SELECT (old.dedup_hash >> 56) & 255, old.rowid, old.dedup_hash
            WHERE old.dedup_hash IS NOT NULL AND NOT EXISTS
                (SELECT 1 FROM dedup WHERE hash = old.dedup_hash AND event = old.rowid);
        DELETE FROM dedup WHERE hash = old.dedup_hash AND event = old.rowid;
    END;
    "#,
    // 9: the dashboard's activity counters (see `store::activity`), per 10-second slot,
    // so a window reads its counters, not its rows. The last 25 hours of events and
    // attempts are counted from their rows (which attempts left a delivery retrying or
    // dead is not; the counters keep it from now on).
    r#"
    CREATE TABLE activity (
        slot   INTEGER NOT NULL,                  -- ms since the Unix epoch / 10,000
        what   TEXT NOT NULL,                     -- event, attempt, failed, delivered, ...
        name   TEXT NOT NULL,                     -- the source (events) or destination
        count  INTEGER NOT NULL,
        PRIMARY KEY (slot, what, name)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO activity (slot, what, name, count)
        SELECT received_at / 10000, 'event', source, count(*) FROM events
        WHERE id >= 'evt_' || printf('%012x', (unixepoch() - 90000) * 1000)
        GROUP BY 1, 3;
    INSERT INTO activity (slot, what, name, count)
        SELECT slot, what, destination, count(*) FROM (
            SELECT a.started_at / 10000 AS slot, d.destination AS destination,
                   a.error IS NOT NULL AS failed
            FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
            WHERE a.id >= 'att_' || printf('%012x', (unixepoch() - 90000) * 1000)
        ), (SELECT 'attempt' AS what UNION ALL SELECT 'failed' UNION ALL SELECT 'delivered')
        WHERE what = 'attempt' OR (what = 'failed') = (failed = 1)
        GROUP BY slot, what, destination;
    "#,
    // 10: the keys data has been sealed with (see `store::seal`): a check value per key,
    // so a key changed under the same id is refused at start, and which keys data may
    // still need (a finished rekey retires the others).
    r#"
    CREATE TABLE sealing_keys (
        id           TEXT PRIMARY KEY,
        check_value  BLOB NOT NULL,               -- seals a known text; only this key opens it
        added_at     INTEGER NOT NULL,            -- ms since the Unix epoch
        retired_at   INTEGER                      -- set once no data is sealed with it
    ) STRICT;
    "#,
    // 11: redaction (a source's `redact`): what was taken out of an event, and the events
    // waiting for their deliveries to succeed before it is.
    r#"
    ALTER TABLE events ADD COLUMN redacted TEXT;            -- JSON array of what was taken out
    ALTER TABLE events ADD COLUMN redaction_pending INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN redact_rule TEXT;         -- the rule that waits, as JSON
    CREATE INDEX events_redaction_pending ON events (redaction_pending)
        WHERE redaction_pending = 1;
    "#,
    // 12: the cold archive's manifest (see `store::archive`): each object written, and
    // those being written, whose events are still in the store until they are done.
    r#"
    CREATE TABLE archive_objects (
        name         TEXT PRIMARY KEY,            -- under the archive's location
        state        TEXT NOT NULL,               -- uploading, done
        first_id     TEXT NOT NULL,
        last_id      TEXT NOT NULL,
        first_at     INTEGER NOT NULL,            -- receive time of the first event, ms
        last_at      INTEGER NOT NULL,
        events       INTEGER NOT NULL,
        bytes        INTEGER NOT NULL,            -- the object's size
        sealed_with  TEXT,                        -- the key, when encryption is on
        created_at   INTEGER NOT NULL
    ) STRICT;
    "#,
    // 13: why a route or destination was paused, when forebay paused it (a route whose
    // expressions kept running past their time limit); NULL when an operator did.
    r#"
    ALTER TABLE paused ADD COLUMN reason TEXT;
    "#,
    // 14: a route's priority, kept with each delivery, and the due deliveries above the
    // default priority by level (see `write_deliveries::claim`). The default level has
    // no entries in it, so routes without a priority cost ingest nothing more. A
    // debounced route's key, and its deliveries by key (state `superseded` is new).
    r#"
    ALTER TABLE deliveries ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX deliveries_claimable_by_priority ON deliveries (destination, priority, next_attempt_at)
        WHERE state IN ('pending', 'retrying') AND priority > 0;
    ALTER TABLE deliveries ADD COLUMN debounce_key TEXT;
    CREATE INDEX deliveries_by_debounce_key ON deliveries (route, debounce_key, event_id)
        WHERE debounce_key IS NOT NULL;
    "#,
];

/// Data changes SQL alone cannot make, by the version whose migration they complete;
/// each runs in that migration's transaction, after its SQL.
fn backfill(version: usize, conn: &Connection) -> rusqlite::Result<()> {
    match version {
        6 => super::dedup::backfill(conn),
        _ => Ok(()),
    }
}

/// The schema version this binary writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, VERSION)
}

/// Brings the database up to `target` (tests build databases of earlier versions).
pub(super) fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StoreError> {
    let found = version(conn)?;
    if found > VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: VERSION,
        });
    }
    let upto = usize::try_from(target).unwrap_or(0);
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(upto)
        .skip(found as usize)
    {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        backfill(i + 1, &tx)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

pub fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}
