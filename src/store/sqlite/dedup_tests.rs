//! Dedup through the hash table (`dedup.rs`): a database from before it still finds its
//! old events after the upgrade, a shared hash never makes a distinct event a duplicate,
//! and purged events leave the table.

use std::time::Duration;

use rusqlite::{Connection, StatementStatus, params};

use super::tests::open;
use super::{SqliteOptions, SqliteStore, configure_writer, dedup, schema, write_events};
use crate::id;
use crate::store::conformance::fixtures::{HOUR_MS, event, purge_events_before};
use crate::store::{EventQuery, Inserted, Store};

const T0: i64 = 1_700_000_000_000;

/// Stores an event the way schema version 5 did, with one pending delivery.
fn insert_v5_event(conn: &Connection, source: &str, key: &str, at: i64) -> String {
    let event_id = id::new_at(id::EVENT, at);
    conn.execute(
        "INSERT INTO events (id, source, received_at, method, path, headers, body, dedup_key)
         VALUES (?1, ?2, ?3, 'POST', ?4, x'782d613a20310d0a', ?5, ?6)",
        params![
            event_id,
            source,
            at,
            format!("/in/{source}"),
            format!("body of {key}").into_bytes(),
            key
        ],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO deliveries (id, event_id, route, destination, state, next_attempt_at,
                                 created_at, updated_at)
         VALUES (?1, ?2, 'r', 'd', 'pending', ?3, ?3, ?3)",
        params![id::new_at(id::DELIVERY, at), event_id, at],
    )
    .unwrap();
    event_id
}

#[tokio::test]
async fn a_version_5_database_keeps_its_events_and_their_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut conn = Connection::open(&path).unwrap();
    schema::migrate_to(&mut conn, 5).unwrap();
    let first = insert_v5_event(&conn, "s", "k1", T0);
    let second = insert_v5_event(&conn, "s", "k2", T0 + 1);
    let other_source = insert_v5_event(&conn, "t", "k1", T0 + 2);
    // A repeat of the first, recorded before the upgrade.
    conn.execute(
        "INSERT INTO duplicates (id, event_id, received_at, headers) VALUES (?1, ?2, ?3, x'')",
        params![id::new_at(id::DUPLICATE, T0 + 3), first, T0 + 3],
    )
    .unwrap();
    conn.execute(
        "UPDATE events SET duplicates = 1 WHERE id = ?1",
        params![first],
    )
    .unwrap();
    drop(conn);

    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    store.ready().await.unwrap();
    let stored = store.get_event(&first).await.unwrap().unwrap();
    assert_eq!(stored.dedup_key, "k1");
    assert_eq!(stored.duplicates, 1);
    assert_eq!(stored.request.body.as_deref(), Some(&b"body of k1"[..]));
    assert_eq!(
        stored.request.headers,
        vec![("x-a".to_owned(), b"1".to_vec())]
    );
    assert_eq!(stored.deliveries.len(), 1);
    assert_eq!(stored.deliveries[0].state, "pending");

    // Old events are found by their keys, each within its own source.
    let repeat = store
        .insert_event(event("s", "k1", T0 + 10, HOUR_MS))
        .await
        .unwrap();
    assert_eq!(repeat, Inserted::Duplicate { original_id: first });
    let repeat = store
        .insert_event(event("t", "k1", T0 + 11, HOUR_MS))
        .await
        .unwrap();
    assert_eq!(
        repeat,
        Inserted::Duplicate {
            original_id: other_source
        }
    );
    let fresh = event("s", "k3", T0 + 12, HOUR_MS);
    assert_eq!(
        store.insert_event(fresh.clone()).await.unwrap(),
        Inserted::New { id: fresh.id }
    );
    let listed = store
        .list_events(EventQuery {
            dedup_key: Some("k2".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].request.id, second);
    store.close().await;
}

#[tokio::test]
async fn a_shared_hash_never_makes_a_distinct_event_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = event("s", "a", T0, HOUR_MS);
    store.insert_event(a.clone()).await.unwrap();
    // Make "b" hash like "a" did: point b's hash at a's row, as a collision would.
    let raw = Connection::open(dir.path().join("t.db")).unwrap();
    raw.execute(
        "INSERT INTO dedup (hash, event) SELECT ?1, rowid FROM events WHERE id = ?2",
        params![dedup::hash("s", "b"), a.id],
    )
    .unwrap();
    drop(raw);
    let b = event("s", "b", T0 + 1, HOUR_MS);
    assert_eq!(
        store.insert_event(b.clone()).await.unwrap(),
        Inserted::New { id: b.id }
    );
    store.close().await;
}

#[tokio::test]
async fn purged_events_leave_the_dedup_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let gone = event("s", "k", T0, HOUR_MS);
    store.insert_event(gone.clone()).await.unwrap();
    let raw = Connection::open(dir.path().join("t.db")).unwrap();
    raw.execute("UPDATE deliveries SET state = 'delivered'", [])
        .unwrap();
    // Past now: the fixture's ids are made now, and a purge bounds ids by the cutoff too.
    let purge = purge_events_before("s", crate::clock::now_ms() + HOUR_MS);
    assert_eq!(store.purge(&purge).await.unwrap().events, 1);
    let left: i64 = raw
        .query_row("SELECT count(*) FROM dedup", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
    // Its key is free again (the window is long enough to have found it otherwise).
    let again = event("s", "k", T0 + 1, HOUR_MS);
    assert_eq!(
        store.insert_event(again.clone()).await.unwrap(),
        Inserted::New { id: again.id }
    );
    store.close().await;
}

#[test]
fn the_dedup_statements_are_compiled_once() {
    // A statement SQLite re-prepares on every use costs more than the rest of the insert
    // together; a join of `dedup` and `events` did exactly that.
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
    configure_writer(&conn, Duration::from_secs(1)).unwrap();
    schema::migrate(&mut conn).unwrap();
    let mut duplicates = 0;
    for i in 0..40 {
        // Every key twice: the second time is a duplicate found through the hash.
        let e = event("s", &format!("k{}", i % 20), T0 + i, HOUR_MS);
        if let Inserted::Duplicate { .. } = write_events::insert_event(&conn, &e).unwrap() {
            duplicates += 1;
        }
    }
    assert_eq!(duplicates, 20);
    for sql in [dedup::CANDIDATES_SQL, dedup::CONFIRM_SQL, dedup::RECORD_SQL] {
        let stmt = conn.prepare_cached(sql).unwrap();
        assert!(
            stmt.get_status(StatementStatus::Run) >= 20,
            "{sql} never ran"
        );
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "{sql}");
    }
}
