//! The SQLite store against a real file: dedup windows under controlled receive times,
//! group commit under concurrency, isolation of a failing write, schema versions.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method};

use super::{SqliteOptions, SqliteStore};
use crate::id;
use crate::ingest::request::Unverified;
use crate::ingest::verify::Verifier;
use crate::store::{EventQuery, Inserted, NewDelivery, NewEvent, Store, StoreError};

const HOUR_MS: i64 = 3_600_000;

pub(super) fn event(source: &str, key: &str, received_at_ms: i64, window_ms: i64) -> NewEvent {
    let request = Unverified {
        source: source.to_owned(),
        method: Method::POST,
        path: format!("/in/{source}"),
        query: None,
        headers: HeaderMap::new(),
        body: Bytes::from(format!("body of {key}")),
        remote_addr: None,
        received_at_ms,
    };
    let verified = Verifier::None.verify(request).expect("none accepts all");
    NewEvent::new(
        verified,
        id::new(id::EVENT),
        key.to_owned(),
        window_ms,
        vec![NewDelivery {
            id: id::new(id::DELIVERY),
            route: "r".into(),
            destination: "d".into(),
            needs_preparing: false,
        }],
    )
}

pub(super) fn open(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).expect("open")
}

#[tokio::test]
async fn dedup_holds_within_the_window_and_ends_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let window = 24 * HOUR_MS;
    let t0 = 1_700_000_000_000;

    let first = store
        .insert_event(event("s", "k", t0, window))
        .await
        .unwrap();
    let Inserted::New { id: first_id } = first else {
        panic!("first is new")
    };
    // Inside the window, up to its last millisecond: duplicates of the first.
    for at in [t0 + 1, t0 + window] {
        let r = store
            .insert_event(event("s", "k", at, window))
            .await
            .unwrap();
        assert_eq!(
            r,
            Inserted::Duplicate {
                original_id: first_id.clone()
            }
        );
    }
    // Another source, or another key: new.
    assert!(matches!(
        store
            .insert_event(event("other", "k", t0 + 2, window))
            .await
            .unwrap(),
        Inserted::New { .. }
    ));
    assert!(matches!(
        store
            .insert_event(event("s", "k2", t0 + 2, window))
            .await
            .unwrap(),
        Inserted::New { .. }
    ));
    // Past the window: a new event, which later repeats are duplicates of.
    let later = store
        .insert_event(event("s", "k", t0 + window + 1, window))
        .await
        .unwrap();
    let Inserted::New { id: later_id } = later else {
        panic!("past the window is new")
    };
    let r = store
        .insert_event(event("s", "k", t0 + window + 2, window))
        .await
        .unwrap();
    assert_eq!(
        r,
        Inserted::Duplicate {
            original_id: later_id
        }
    );

    let stored = store.get_event(&first_id).await.unwrap().unwrap();
    assert_eq!(stored.duplicates, 2);
    assert_eq!(stored.deliveries.len(), 1, "repeats add no deliveries");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_all_answered_and_all_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut tasks = Vec::new();
    for i in 0..500 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .insert_event(event("s", &format!("k{i}"), 1_000 + i, HOUR_MS))
                .await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Inserted::New { id } => ids.push(id),
            other => panic!("unexpected {other:?}"),
        }
    }
    let listed = store
        .list_events(EventQuery {
            source: Some("s".into()),
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 500);
    ids.sort();
    let mut listed_ids: Vec<String> = listed.into_iter().map(|e| e.request.id).collect();
    listed_ids.sort();
    assert_eq!(ids, listed_ids);
    store.close().await;
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
async fn closed_store_refuses_writes_and_a_newer_schema_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.ready().await.unwrap();
    store.close().await;
    let r = store.insert_event(event("s", "k", 1, HOUR_MS)).await;
    assert!(matches!(r, Err(StoreError::Closed)), "{r:?}");
    assert!(store.ready().await.is_err());

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
