//! What only the SQLite store does, against a real file: group commit and its
//! fallbacks, the bounded queue, durable pragmas, WAL bounds, one owner per file, schema
//! versions, and damaged rows. What every backend does is in
//! [`crate::store::conformance`].

use std::sync::Arc;

use bytes::Bytes;

use super::{SqliteOptions, SqliteStore};
use crate::store::conformance::fixtures::{HOUR_MS, claim, event};
use crate::store::{DeliveryQuery, Inserted, Store, StoreError};

pub(super) fn open(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).expect("open")
}

#[tokio::test]
async fn a_failing_write_does_not_spoil_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = event("s", "a", 1, HOUR_MS);
    let mut clash = event("s", "b", 2, HOUR_MS);
    clash.id = a.id.clone(); // same primary key: this insert must fail on its own
    let c = event("s", "c", 3, HOUR_MS);
    let (ra, rb, rc) = tokio::join!(
        store.insert_event(a.clone()),
        store.insert_event(clash),
        store.insert_event(c.clone())
    );
    assert_eq!(ra.unwrap(), Inserted::New { id: a.id.clone() });
    assert!(matches!(rb, Err(StoreError::Commit(_))), "{rb:?}");
    assert_eq!(rc.unwrap(), Inserted::New { id: c.id.clone() });
    let stored = store.get_event(&a.id).await.unwrap().unwrap();
    assert_eq!(stored.request.body.as_deref(), Some(&b"body of a"[..]));
    assert_eq!(stored.deliveries.len(), 1);
    store.close().await;
}

#[tokio::test]
async fn a_newer_schema_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    open(&dir).close().await;

    let conn = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    match SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()) {
        Err(e @ StoreError::SchemaTooNew { found: 99, .. }) => {
            assert!(e.to_string().contains("upgrade forebay"))
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened a database from the future"),
    }
}

#[tokio::test]
async fn a_full_queue_is_an_overload_not_a_wait() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        queue_depth: 1,
        max_batch: 1,
        busy_timeout: std::time::Duration::from_millis(100),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&dir.path().join("t.db"), options).unwrap();
    // Hold the write lock from another connection so the writer stalls on its first group.
    let blocker = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut pending = Vec::new();
    let mut overloaded = 0;
    for i in 0..20 {
        let store = store.clone();
        let r = tokio::spawn(async move {
            store
                .insert_event(event("s", &format!("k{i}"), i, HOUR_MS))
                .await
        });
        pending.push(r);
    }
    for p in pending {
        if let Err(StoreError::Overloaded(1)) = p.await.unwrap() {
            overloaded += 1;
        }
    }
    assert!(overloaded > 0, "a queue of one must shed load");
    blocker.execute_batch("ROLLBACK").unwrap();
    store.close().await;
}

#[test]
fn the_write_connection_is_durable() {
    // SIGKILL tests cannot tell a missing fsync from a present one; this pins the settings
    // that make a commit survive power loss.
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("p.db")).unwrap();
    super::configure_writer(&conn, std::time::Duration::from_secs(1)).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    let sync: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "synchronous must be FULL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_short_under_steady_load() {
    // A small rewind limit so that a few megabytes of steady writes must rewind it.
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        wal_rewind_frames: 256,
        ..SqliteOptions::default()
    };
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path, options).unwrap();
    let wal = dir.path().join("t.db-wal");
    let mut largest = 0;
    // 16 writers keep the queue busy for 4,000 events of ~1 KiB each (≈ 4 MiB of rows,
    // far more in WAL frames), so groups follow each other without a pause.
    for round in 0..20 {
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            let mut e = event("s", &format!("r{round}-{i}"), 1, HOUR_MS);
            e.body = Bytes::from(vec![b'x'; 1024]);
            tasks.push(tokio::spawn(async move { store.insert_event(e).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    // 256 frames of 4 KiB is 1 MiB; allow a group's worth of slack beyond it.
    assert!(largest < 3 * 1024 * 1024, "WAL grew to {largest} bytes");
    store.close().await;
}

#[tokio::test]
async fn one_process_owns_the_file_and_inherits_orphaned_leases() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    match SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()) {
        Err(e @ StoreError::InUse(_)) => assert!(e.to_string().contains("another forebay process")),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("two owners of one file"),
    }
    // A delivery is claimed (leased for an hour) when the process stops.
    store
        .insert_event(event("s", "k", 1_000, HOUR_MS))
        .await
        .unwrap();
    let claim = crate::store::Claim {
        destination: "d".to_owned(),
        skip_routes: Vec::new(),
        only_route: None,
        now_ms: 1_000,
        lease_ms: HOUR_MS,
        limit: 10,
    };
    assert_eq!(
        store.claim_deliveries(claim.clone()).await.unwrap().len(),
        1
    );
    store.close().await;

    // The next owner sends it again at once, not an hour later.
    let store = open(&dir);
    let claimed = store
        .claim_deliveries(crate::store::Claim {
            now_ms: 2_000,
            ..claim
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempt, 1);
    store.close().await;
}

#[tokio::test]
async fn a_delivery_whose_event_cannot_be_read_goes_dead_without_blocking_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let Inserted::New { id: damaged } =
        store.insert_event(event("s", "a", 1_000, 1)).await.unwrap()
    else {
        panic!("new")
    };
    store.insert_event(event("s", "b", 1_001, 1)).await.unwrap();
    // Headers that do not decode (no CRLF): what a damaged file would hold.
    let raw = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    raw.execute(
        "UPDATE events SET headers = x'6e6f2d63726c66' WHERE id = ?1",
        [&damaged],
    )
    .unwrap();
    drop(raw);

    let claimed = store.claim_deliveries(claim(2_000)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_ne!(claimed[0].event_id, damaged);
    let event = store.get_event(&damaged).await;
    // The event itself does not decode either; its delivery is dead with the reason.
    assert!(event.is_err());
    let dead = store
        .list_deliveries(DeliveryQuery {
            state: Some("dead".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("the event cannot be read")
    );
    store.close().await;
}

/// Upgrading to schema 9 counts the last 25 hours of events and attempts from their
/// rows, so the overview does not start empty.
#[tokio::test]
async fn the_activity_counters_begin_with_the_last_days_rows() {
    use crate::store::conformance::fixtures::{
        check_the_activity_backfill, rows_for_the_activity_backfill,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = rows_for_the_activity_backfill(&*store).await;
    store.close().await;
    drop(store);
    // As a database of version 8 had it: no counters (nor what later versions added), so
    // that opening it runs versions 9 to the last on a database with data.
    let conn = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    conn.execute_batch(
        "DROP TABLE activity; DROP TABLE sealing_keys; DROP TABLE archive_objects;
         DROP INDEX events_redaction_pending;
         ALTER TABLE events DROP COLUMN redacted;
         ALTER TABLE events DROP COLUMN redaction_pending;
         ALTER TABLE events DROP COLUMN redact_rule;
         ALTER TABLE paused DROP COLUMN reason;
         DROP INDEX deliveries_claimable_by_priority;
         DROP INDEX deliveries_by_debounce_key;
         ALTER TABLE deliveries DROP COLUMN priority;
         ALTER TABLE deliveries DROP COLUMN debounce_key;
         PRAGMA user_version = 8;",
    )
    .unwrap();
    drop(conn);

    let store = open(&dir);
    check_the_activity_backfill(&*store, now).await;
    store.close().await;
}

/// Whether `needle` is anywhere in the database's files (the database, its WAL).
fn on_disk(dir: &tempfile::TempDir, needle: &[u8]) -> bool {
    ["t.db", "t.db-wal"].iter().any(|name| {
        std::fs::read(dir.path().join(name))
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    })
}

#[tokio::test]
async fn sealed_bodies_and_headers_are_not_on_disk_in_the_clear() {
    for sealed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions {
            keys: if sealed {
                crate::store::conformance::sealing::suite_keys()
            } else {
                crate::store::seal::Keys::default()
            },
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(&dir.path().join("t.db"), options).unwrap();
        crate::store::conformance::sealing::store_marked(&*store).await;
        store.close().await;
        // The control run shows the search would find them in the clear.
        for marker in crate::store::conformance::sealing::MARKERS {
            assert_eq!(
                on_disk(&dir, marker),
                !sealed,
                "sealed: {sealed}, marker {:?}",
                String::from_utf8_lossy(marker)
            );
        }
    }
}

#[tokio::test]
async fn a_damaged_sealed_event_is_set_aside_and_the_others_are_prepared() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        keys: crate::store::conformance::sealing::suite_keys(),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&dir.path().join("t.db"), options).unwrap();
    let damaged = crate::store::conformance::fixtures::waiting("damaged", 1);
    let fine = crate::store::conformance::fixtures::waiting("fine", 2);
    let (damaged_id, fine_id) = (damaged.id.clone(), fine.id.clone());
    store.insert_event(damaged).await.unwrap();
    store.insert_event(fine).await.unwrap();
    // Flip the last byte of the damaged event's sealed body (its tag).
    let raw = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    let mut body: Vec<u8> = raw
        .query_row(
            "SELECT body FROM events WHERE id = ?1",
            [&damaged_id],
            |r| r.get(0),
        )
        .unwrap();
    *body.last_mut().unwrap() ^= 1;
    raw.execute(
        "UPDATE events SET body = ?2 WHERE id = ?1",
        rusqlite::params![damaged_id, body],
    )
    .unwrap();
    drop(raw);
    let waiting = store.unprepared(10, &[]).await.unwrap();
    assert_eq!(waiting.len(), 2);
    let by_event = |id: &str| waiting.iter().find(|u| u.event.id == id).unwrap();
    let reason = by_event(&damaged_id).unreadable.as_deref().unwrap();
    assert!(
        reason.contains("the request body of evt_") && reason.contains("does not open"),
        "{reason}"
    );
    assert_eq!(by_event(&fine_id).unreadable, None);
    assert_eq!(by_event(&fine_id).event.body, b"body of fine");
    store.close().await;
}

#[tokio::test]
async fn eviction_keeps_the_newest_event_so_no_stream_position_is_handed_out_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let done = |key: &str, at: i64| {
        let mut e = event("s", key, at, HOUR_MS);
        e.deliveries.clear(); // nothing waits for it
        e
    };
    let (a, b) = (done("a", 1), done("b", 2));
    for e in [a.clone(), b.clone()] {
        store.insert_event(e).await.unwrap();
    }
    let b_at = store.event_position(&b.id).await.unwrap().unwrap();
    let evict = crate::store::capacity::Evict {
        limit: 10,
        after: String::new(),
    };
    let pass = store.evict(&evict).await.unwrap();
    assert_eq!(pass.events, 1, "the older one only");
    assert!(store.get_event(&a.id).await.unwrap().is_none());
    assert!(store.get_event(&b.id).await.unwrap().is_some());
    let c = done("c", 3);
    store.insert_event(c.clone()).await.unwrap();
    let c_at = store.event_position(&c.id).await.unwrap().unwrap();
    assert!(c_at > b_at, "{c_at:?} after {b_at:?}");
    // A file made now gives freed pages back.
    let conn = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    let mode: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 2, "incremental");
    store.reclaim(1 << 20).await.unwrap();
    store.close().await;
}

#[test]
fn the_claims_are_compiled_once() {
    // SQLite compiles a statement again when a bound value that shaped its plan changes,
    // and rusqlite clears the bindings after each use: the claims (ten index scans in a
    // union) were compiled anew on every claim, about a third of delivery's cost, until
    // the write connection asked for stable plans.
    use rusqlite::{Connection, StatementStatus};

    use super::recent_dedup::RecentDedup;
    use super::{configure_writer, schema, write_deliveries, write_events};
    use crate::store::seal::{Keys, Sealer};

    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
    configure_writer(&conn, std::time::Duration::from_secs(1)).unwrap();
    schema::migrate(&mut conn).unwrap();
    let mut recent = RecentDedup::load(&conn, 1000).unwrap();
    for i in 0..20 {
        let e = event("s", &format!("k{i}"), 1_000 + i, HOUR_MS);
        write_events::insert_event(&conn, &mut recent, &e).unwrap();
    }
    let sealer = Sealer::new(&Keys::default());
    let mut claimed = 0;
    for i in 0..40 {
        // One at a time, at a later time each: both queries run every time, with other
        // values bound.
        let mut next = claim(2_000 + i);
        next.limit = 1;
        claimed += write_deliveries::claim(&conn, &sealer, &next)
            .unwrap()
            .len();
    }
    assert_eq!(claimed, 20);
    for candidates in [write_deliveries::EXPIRED, &write_deliveries::DUE[..]] {
        let stmt = conn
            .prepare_cached(&write_deliveries::claim_sql(candidates))
            .unwrap();
        assert!(stmt.get_status(StatementStatus::Run) >= 10, "{candidates}");
        assert_eq!(
            stmt.get_status(StatementStatus::RePrepare),
            0,
            "{candidates}"
        );
    }
}
