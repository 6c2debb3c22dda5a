//! PostgreSQL schema and its migrations, versioned in `forebay_schema`.
//!
//! [`migrate`] runs at every start inside one transaction holding an advisory lock on
//! the schema's name, so any number of processes may start at once: the first applies
//! what is missing, the others wait for its commit and then find nothing to do. Each
//! entry of [`MIGRATIONS`] runs once, in order; never edit a released entry, append a
//! new one.
//!
//! Times are `bigint` milliseconds since the Unix epoch, like SQLite's. `position`
//! columns (`bigserial`) give receive order; see [`super::write_events`] for when their
//! order is also commit order, and [`super::read`] for the live stream's order.

use deadpool_postgres::Client;

use crate::store::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite store's migrations 1–5 built, in one step.
    r#"
    CREATE TABLE events (
        id           text PRIMARY KEY,
        position     bigserial NOT NULL UNIQUE,    -- receive (= commit) order
        source       text NOT NULL,
        received_at  bigint NOT NULL,
        method       text NOT NULL,
        path         text NOT NULL,
        query        text,
        headers      bytea NOT NULL,               -- wire form: name: value CRLF ...
        body         bytea NOT NULL,               -- raw bytes as received
        remote_addr  text,
        dedup_key    text NOT NULL,
        duplicates   bigint NOT NULL DEFAULT 0
    );
    CREATE INDEX events_by_dedup_key ON events (source, dedup_key, received_at);
    CREATE INDEX events_by_source ON events (source, id);

    CREATE TABLE duplicates (
        id           text PRIMARY KEY,
        event_id     text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        received_at  bigint NOT NULL,
        headers      bytea NOT NULL,
        remote_addr  text
    );
    CREATE INDEX duplicates_by_event ON duplicates (event_id);

    CREATE TABLE deliveries (
        id               text PRIMARY KEY,
        position         bigserial NOT NULL,       -- receive order (unprepared first-in)
        event_id         text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        route            text NOT NULL,
        destination      text NOT NULL,
        state            text NOT NULL,            -- pending, in_flight, retrying, delivered, dead, filtered, discarded, superseded
        attempts         bigint NOT NULL DEFAULT 0,
        next_attempt_at  bigint NOT NULL,
        lease_until      bigint,
        created_at       bigint NOT NULL,
        updated_at       bigint NOT NULL,
        last_error       text,
        prepared         boolean NOT NULL DEFAULT true,
        part             bigint,
        payload          bytea,
        ordering_key     text,
        seq              bigint,                   -- the position of the delivery (or its split parent)
        replay_id        text
    );
    CREATE INDEX deliveries_by_event ON deliveries (event_id);
    CREATE INDEX deliveries_claimable ON deliveries (destination, next_attempt_at)
        WHERE state IN ('pending', 'retrying');
    CREATE INDEX deliveries_leased ON deliveries (destination, lease_until)
        WHERE state = 'in_flight';
    CREATE INDEX deliveries_unprepared ON deliveries (position)
        WHERE NOT prepared AND state = 'pending';
    CREATE INDEX deliveries_unprepared_by_route ON deliveries (route, position)
        WHERE NOT prepared AND state = 'pending';
    CREATE INDEX deliveries_by_key ON deliveries (route, ordering_key, seq)
        WHERE ordering_key IS NOT NULL AND state IN ('pending', 'in_flight', 'retrying');
    CREATE INDEX deliveries_by_replay ON deliveries (replay_id, state) WHERE replay_id IS NOT NULL;
    CREATE INDEX deliveries_by_state ON deliveries (state, id);

    CREATE TABLE attempts (
        id                text PRIMARY KEY,
        delivery_id       text NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        number            bigint NOT NULL,
        started_at        bigint NOT NULL,
        duration_ms       bigint NOT NULL,
        status            bigint,
        error             text,
        response_headers  bytea NOT NULL,
        response_body     bytea NOT NULL
    );
    CREATE INDEX attempts_by_delivery ON attempts (delivery_id, number);

    CREATE TABLE rejected (
        id           text PRIMARY KEY,
        source       text NOT NULL,
        received_at  bigint NOT NULL,
        method       text NOT NULL,
        path         text NOT NULL,
        query        text,
        headers      bytea NOT NULL,
        body         bytea NOT NULL,
        body_size    bigint NOT NULL,
        remote_addr  text,
        reason       text NOT NULL
    );
    CREATE INDEX rejected_by_source ON rejected (source, id);

    CREATE TABLE paused (
        kind       text NOT NULL,
        name       text NOT NULL,
        paused_at  bigint NOT NULL,
        PRIMARY KEY (kind, name)
    );

    CREATE TABLE replays (
        id           text PRIMARY KEY,
        state        text NOT NULL,
        filter       text NOT NULL,
        destination  text,
        rate         text,
        cursor       text,
        scanned      bigint NOT NULL DEFAULT 0,
        matched      bigint NOT NULL DEFAULT 0,
        queued       bigint NOT NULL DEFAULT 0,
        created_at   bigint NOT NULL,
        updated_at   bigint NOT NULL,
        finished_at  bigint,
        error        text
    );
    "#,
    // 2: token buckets of the cluster-wide rate limits, one row per limited destination.
    r#"
    CREATE TABLE rate_buckets (
        destination  text PRIMARY KEY,
        tokens       float8 NOT NULL,
        updated_at   bigint NOT NULL
    );
    "#,
    // 3: who holds each claim (a presence key, see `presence.rs`), so the maintenance
    // leader can end a dead process's leases at once.
    r#"
    ALTER TABLE deliveries ADD COLUMN claimed_by bigint;
    "#,
    // 4: ingest groups of several processes commit side by side (see `write_events.rs`):
    // dedup through a row per (source, dedup key) holding its latest event, keyed by
    // an 8-byte hash of the two (a narrow index: see `key_hash.rs`), and
    // the live stream in (inserting transaction, position) order. Events stored before
    // have `txid` 0: they stand before every later one, in position order as before.
    // The full-key index of events served only the dedup lookup (a search by dedup key
    // scans, as on SQLite): every event wrote a random page of it. The foreign keys
    // checked every delivery and attempt row with a query of their own (half the cost
    // of inserting a delivery); retention deletes the children of a purged event itself.
    r#"
    -- Processes of the previous version still running keep no dedup keys: inserts wait
    -- for this migration, and its notes ask for every process to be stopped first.
    LOCK TABLE events IN EXCLUSIVE MODE;
    CREATE TABLE dedup_keys (
        hash         bigint PRIMARY KEY,           -- key_hash::dedup_hash(source, dedup_key)
        source       text NOT NULL,
        dedup_key    text NOT NULL,
        event_id     text NOT NULL,                -- the latest event with this key
        received_at  bigint NOT NULL               -- ... and when it was received
    );
    INSERT INTO dedup_keys (hash, source, dedup_key, event_id, received_at)
        SELECT DISTINCT ON (hash) hash, source, dedup_key, id, received_at
        FROM (SELECT ('x' || left(encode(sha256(convert_to(source, 'UTF8') || '\x00'::bytea
                                                || convert_to(dedup_key, 'UTF8')), 'hex'),
                                  16))::bit(64)::bigint AS hash,
                     source, dedup_key, id, received_at
              FROM events) AS e
        ORDER BY hash, received_at DESC;
    ALTER TABLE events ADD COLUMN txid bigint NOT NULL DEFAULT 0;
    ALTER TABLE events ALTER COLUMN txid SET DEFAULT pg_current_xact_id()::text::bigint;
    ALTER TABLE events DROP CONSTRAINT events_position_key;
    CREATE INDEX events_in_commit_order ON events (txid, position);
    DROP INDEX events_by_dedup_key;
    ALTER TABLE deliveries DROP CONSTRAINT deliveries_event_id_fkey;
    ALTER TABLE duplicates DROP CONSTRAINT duplicates_event_id_fkey;
    ALTER TABLE attempts DROP CONSTRAINT attempts_delivery_id_fkey;
    "#,
    // 5: the dashboard's activity counters (see `store::activity`), per 10-second slot,
    // so a window reads its counters, not its rows; each process adds its own tally
    // every few seconds. The last 25 hours of events and attempts are counted from
    // their rows (which attempts left a delivery retrying or dead is not; the counters
    // keep it from now on).
    r#"
    CREATE TABLE activity (
        slot   bigint NOT NULL,                   -- ms since the Unix epoch / 10,000
        what   text NOT NULL,                     -- event, attempt, failed, delivered, ...
        name   text NOT NULL,                     -- the source (events) or destination
        count  bigint NOT NULL,
        PRIMARY KEY (slot, what, name)
    );
    INSERT INTO activity (slot, what, name, count)
        SELECT received_at / 10000, 'event', source, count(*) FROM events
        WHERE id >= 'evt_' || lpad(to_hex(((extract(epoch FROM now()) - 90000) * 1000)::bigint), 12, '0')
        GROUP BY 1, 3;
    INSERT INTO activity (slot, what, name, count)
        SELECT a.started_at / 10000, w.what, d.destination, count(*)
        FROM attempts a JOIN deliveries d ON d.id = a.delivery_id,
             (VALUES ('attempt'), ('failed'), ('delivered')) AS w (what)
        WHERE a.id >= 'att_' || lpad(to_hex(((extract(epoch FROM now()) - 90000) * 1000)::bigint), 12, '0')
          AND (w.what = 'attempt' OR (w.what = 'failed') = (a.error IS NOT NULL))
        GROUP BY 1, 2, 3;
    "#,
    // 6: the keys data has been sealed with (see `store::seal`): a check value per key,
    // so a key changed under the same id is refused at start, and which keys data may
    // still need (a finished rekey retires the others).
    r#"
    CREATE TABLE sealing_keys (
        id           text PRIMARY KEY,
        check_value  bytea NOT NULL,              -- seals a known text; only this key opens it
        added_at     bigint NOT NULL,             -- ms since the Unix epoch
        retired_at   bigint                       -- set once no data is sealed with it
    );
    "#,
    // 7: redaction (a source's `redact`): what was taken out of an event, and the events
    // waiting for their deliveries to succeed before it is.
    r#"
    ALTER TABLE events ADD COLUMN redacted text,            -- JSON array of what was taken out
                       ADD COLUMN redaction_pending boolean NOT NULL DEFAULT false,
                       ADD COLUMN redact_rule text;         -- the rule that waits, as JSON
    CREATE INDEX events_redaction_pending ON events (position) WHERE redaction_pending;
    "#,
    // 8: the cold archive's manifest (see `store::archive`): each object written, and
    // those being written, whose events are still in the store until they are done.
    r#"
    CREATE TABLE archive_objects (
        name         text PRIMARY KEY,            -- under the archive's location
        state        text NOT NULL,               -- uploading, done
        first_id     text NOT NULL,
        last_id      text NOT NULL,
        first_at     bigint NOT NULL,             -- receive time of the first event, ms
        last_at      bigint NOT NULL,
        events       bigint NOT NULL,
        bytes        bigint NOT NULL,             -- the object's size
        sealed_with  text,                        -- the key, when encryption is on
        created_at   bigint NOT NULL
    );
    "#,
    // 9: why a route or destination was paused, when forebay paused it (a route whose
    // expressions kept running past their time limit); NULL when an operator did.
    r#"
    ALTER TABLE paused ADD COLUMN reason text;
    "#,
    // 10: a route's priority, kept with each delivery, and the due deliveries above the
    // default priority by level (see `claim`). The default level has no entries in it,
    // so routes without a priority cost ingest nothing more. A debounced route's key,
    // and its deliveries by key (state `superseded` is new).
    r#"
    ALTER TABLE deliveries ADD COLUMN priority smallint NOT NULL DEFAULT 0;
    CREATE INDEX deliveries_claimable_by_priority ON deliveries (destination, priority, next_attempt_at)
        WHERE state IN ('pending', 'retrying') AND priority > 0;
    ALTER TABLE deliveries ADD COLUMN debounce_key text;
    CREATE INDEX deliveries_by_debounce_key ON deliveries (route, debounce_key, event_id)
        WHERE debounce_key IS NOT NULL;
    "#,
];

/// The schema version this binary writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Creates `schema` if asked to, and brings it up to [`VERSION`], under an advisory
/// lock so that concurrent starts apply each migration once.
pub async fn migrate(client: &mut Client, schema: Option<&str>) -> Result<(), StoreError> {
    migrate_to(client, schema, VERSION).await
}

/// [`migrate`], stopping at version `target` (tests build older schemas with it).
pub(super) async fn migrate_to(
    client: &mut Client,
    schema: Option<&str>,
    target: i64,
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    // Keyed by the schema's name: processes on other schemas of the database do not wait.
    let name = schema.unwrap_or("");
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('forebay/migrate/' || $1::text))",
        &[&name],
    )
    .await?;
    if let Some(schema) = schema {
        // `valid_schema_name` has checked it: it needs no quoting.
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await?;
    }
    tx.batch_execute("CREATE TABLE IF NOT EXISTS forebay_schema (version bigint NOT NULL)")
        .await?;
    let found: i64 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM forebay_schema", &[])
        .await?
        .get(0);
    if found > VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: VERSION,
        });
    }
    for sql in MIGRATIONS.iter().take(target as usize).skip(found as usize) {
        tx.batch_execute(sql).await?;
    }
    if found < target {
        tx.execute("DELETE FROM forebay_schema", &[]).await?;
        tx.execute(
            "INSERT INTO forebay_schema (version) VALUES ($1)",
            &[&target],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The schema version found in the database.
pub async fn version(client: &Client) -> Result<i64, StoreError> {
    Ok(client
        .query_one("SELECT coalesce(max(version), 0) FROM forebay_schema", &[])
        .await?
        .get(0))
}
