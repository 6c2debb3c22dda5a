//! Dedup through the hash table (`dedup.rs`): a database from before it still finds its
//! old events after the upgrade, a shared hash never makes a distinct event a duplicate,
//! and purged events leave the table; the newest entries, held in memory and merged in
//! batches (`recent_dedup.rs`), are found before and after their merge, across restarts,
//! and leave memory with a rolled-back transaction.

use std::time::Duration;

use rusqlite::{Connection, StatementStatus, params};

use super::recent_dedup::{self, RecentDedup};
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

/// Marks every delivery delivered and purges source `s`'s one event.
async fn purge_the_one_event_of_s(store: &SqliteStore, raw: &Connection) {
    raw.execute("UPDATE deliveries SET state = 'delivered'", [])
        .unwrap();
    // Past now: the fixture's ids are made now, and a purge bounds ids by the cutoff too.
    let mut purge = purge_events_before("s", crate::clock::now_ms() + HOUR_MS);
    purge.others = Default::default(); // other sources' events stay
    assert_eq!(store.purge(&purge).await.unwrap().events, 1);
}

#[tokio::test]
async fn purged_events_leave_the_dedup_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let gone = event("s", "k", T0, HOUR_MS);
    store.insert_event(gone.clone()).await.unwrap();
    let raw = Connection::open(dir.path().join("t.db")).unwrap();
    purge_the_one_event_of_s(&store, &raw).await;
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
    // Merging from the first entry on, so the merge's statements run too.
    let mut recent = RecentDedup::load(&conn, 0).unwrap();
    let mut duplicates = 0;
    for i in 0..600 {
        // Every key twice: the second time is a duplicate found through the hash.
        let e = event("s", &format!("k{}", i % 300), T0 + i, HOUR_MS);
        let merge = recent.merge_if_due(&conn).unwrap();
        if let Inserted::Duplicate { .. } =
            write_events::insert_event(&conn, &mut recent, &e).unwrap()
        {
            duplicates += 1;
        }
        recent.committed(merge);
    }
    assert_eq!(duplicates, 300);
    for sql in [
        dedup::CANDIDATES_SQL,
        dedup::CONFIRM_SQL,
        recent_dedup::RECORD_SQL,
        recent_dedup::MERGE_SQL,
    ] {
        let stmt = conn.prepare_cached(sql).unwrap();
        assert!(
            stmt.get_status(StatementStatus::Run) >= 20,
            "{sql} never ran"
        );
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "{sql}");
    }
}

/// Opens the store at `dir` merging once more than `merge_at` entries are held.
fn open_merging_at(dir: &tempfile::TempDir, merge_at: usize) -> std::sync::Arc<SqliteStore> {
    let options = SqliteOptions {
        dedup_merge_at: merge_at,
        ..SqliteOptions::default()
    };
    SqliteStore::open(&dir.path().join("t.db"), options).unwrap()
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn keys_are_found_before_and_after_their_merge_and_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..600).map(|i| format!("key-{i}")).collect();
    let mut originals = Vec::new();
    // Held in memory only (nothing is due for merging), then a restart.
    let store = open_merging_at(&dir, usize::MAX);
    for (i, key) in keys.iter().enumerate() {
        let e = event("s", key, T0 + i as i64, HOUR_MS);
        originals.push(e.id.clone());
        store.insert_event(e).await.unwrap();
    }
    store.close().await;
    let raw = Connection::open(dir.path().join("t.db")).unwrap();
    assert_eq!(count(&raw, "SELECT count(*) FROM dedup"), 0);
    assert_eq!(count(&raw, "SELECT count(*) FROM dedup_recent"), 600);

    // Merging a slice with every commit: each repeat is found wherever its entry is.
    let store = open_merging_at(&dir, 0);
    for (i, key) in keys.iter().enumerate() {
        let repeat = event("s", key, T0 + 1_000 + i as i64, HOUR_MS);
        assert_eq!(
            store.insert_event(repeat).await.unwrap(),
            Inserted::Duplicate {
                original_id: originals[i].clone()
            },
            "{key}"
        );
    }
    store.close().await;
    // 600 commits went round all 256 slices: every entry is in `dedup`, and
    // `dedup_recent` keeps only what a slice has not merged since.
    assert_eq!(count(&raw, "SELECT count(*) FROM dedup"), 600);
    assert_eq!(count(&raw, "SELECT count(*) FROM dedup_merged"), 256);
    assert_eq!(count(&raw, "SELECT count(*) FROM dedup_recent"), 0);

    // After another restart, from `dedup` alone; a new key is still new.
    let store = open_merging_at(&dir, usize::MAX);
    let repeat = event("s", &keys[7], T0 + 5_000, HOUR_MS);
    assert_eq!(
        store.insert_event(repeat).await.unwrap(),
        Inserted::Duplicate {
            original_id: originals[7].clone()
        }
    );
    let fresh = event("s", "key-new", T0 + 5_001, HOUR_MS);
    assert_eq!(
        store.insert_event(fresh.clone()).await.unwrap(),
        Inserted::New { id: fresh.id }
    );
    store.close().await;
}

#[tokio::test]
async fn a_merge_leaves_out_events_purged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_merging_at(&dir, usize::MAX);
    let gone = event("s", "k", T0, HOUR_MS);
    store.insert_event(gone.clone()).await.unwrap();
    let raw = Connection::open(dir.path().join("t.db")).unwrap();
    purge_the_one_event_of_s(&store, &raw).await;
    store.close().await;
    // Merge everything: the purged event's entry does not reach `dedup`.
    let store = open_merging_at(&dir, 0);
    for i in 0..300 {
        let e = event("t", &format!("other-{i}"), T0 + i, HOUR_MS);
        store.insert_event(e).await.unwrap();
    }
    store.close().await;
    assert_eq!(
        count(
            &raw,
            "SELECT count(*) FROM dedup WHERE event NOT IN (SELECT rowid FROM events)"
        ),
        0
    );
    // Every other entry is either merged or still waiting in its slice.
    let waiting = count(
        &raw,
        "SELECT count(*) FROM dedup_recent AS r
         LEFT JOIN dedup_merged AS m ON m.slice = ((r.hash >> 56) & 255)
         WHERE r.seq > coalesce(m.upto, 0) AND r.event IN (SELECT rowid FROM events)",
    );
    assert!(waiting < 300, "some slices merged");
    assert_eq!(count(&raw, "SELECT count(*) FROM dedup") + waiting, 300);
}

#[test]
fn a_rolled_back_transaction_takes_its_entries_out_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
    configure_writer(&conn, Duration::from_secs(1)).unwrap();
    schema::migrate(&mut conn).unwrap();
    let mut recent = RecentDedup::load(&conn, usize::MAX).unwrap();
    let kept = event("s", "kept", T0, HOUR_MS);
    recent.begin();
    write_events::insert_event(&conn, &mut recent, &kept).unwrap();
    recent.committed(None);

    let tx = conn.unchecked_transaction().unwrap();
    recent.begin();
    let lost = event("s", "lost", T0 + 1, HOUR_MS);
    write_events::insert_event(&tx, &mut recent, &lost).unwrap();
    // The same key again in the same transaction: a duplicate of the first.
    let again = event("s", "lost", T0 + 2, HOUR_MS);
    assert!(matches!(
        write_events::insert_event(&tx, &mut recent, &again).unwrap(),
        Inserted::Duplicate { .. }
    ));
    assert_eq!(recent.held(), 2);
    tx.rollback().unwrap();
    recent.rolled_back();
    assert_eq!(recent.held(), 1);
    assert_eq!(recent.candidates(dedup::hash("s", "lost")).count(), 0);
    assert_eq!(recent.candidates(dedup::hash("s", "kept")).count(), 1);
    // What memory holds is what a restart finds.
    let reloaded = RecentDedup::load(&conn, usize::MAX).unwrap();
    assert_eq!(reloaded.held(), 1);
    assert_eq!(reloaded.candidates(dedup::hash("s", "kept")).count(), 1);
}

#[test]
fn a_key_held_twice_keeps_both_events_until_each_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
    configure_writer(&conn, Duration::from_secs(1)).unwrap();
    schema::migrate(&mut conn).unwrap();
    let mut recent = RecentDedup::load(&conn, usize::MAX).unwrap();
    // A window of 1 ms: the second event with the key is new, not a duplicate.
    let first = event("s", "k", T0, 1);
    let second = event("s", "k", T0 + 10, 1);
    recent.begin();
    write_events::insert_event(&conn, &mut recent, &first).unwrap();
    recent.committed(None);
    let tx = conn.unchecked_transaction().unwrap();
    recent.begin();
    assert!(matches!(
        write_events::insert_event(&tx, &mut recent, &second).unwrap(),
        Inserted::New { .. }
    ));
    assert_eq!(recent.candidates(dedup::hash("s", "k")).count(), 2);
    tx.rollback().unwrap();
    recent.rolled_back();
    assert_eq!(
        recent
            .candidates(dedup::hash("s", "k"))
            .collect::<Vec<_>>()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_purged_events_rowid_taken_by_the_same_key_is_still_merged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_merging_at(&dir, usize::MAX);
    let gone = event("s", "k", T0, HOUR_MS);
    store.insert_event(gone.clone()).await.unwrap();
    let raw = Connection::open(dir.path().join("t.db")).unwrap();
    let rowid = count(&raw, "SELECT rowid FROM events");
    purge_the_one_event_of_s(&store, &raw).await;
    // The table is empty again, so SQLite gives the next event the same rowid.
    let back = event("s", "k", T0 + 10, HOUR_MS);
    store.insert_event(back.clone()).await.unwrap();
    assert_eq!(count(&raw, "SELECT rowid FROM events"), rowid);
    store.close().await;
    // Merge every slice: the new event's entry goes in, the purged one's does not.
    let store = open_merging_at(&dir, 0);
    for i in 0..300 {
        let e = event("t", &format!("other-{i}"), T0 + 20 + i, HOUR_MS);
        store.insert_event(e).await.unwrap();
    }
    let repeat = event("s", "k", T0 + 400, HOUR_MS);
    assert_eq!(
        store.insert_event(repeat).await.unwrap(),
        Inserted::Duplicate {
            original_id: back.id.clone()
        }
    );
    store.close().await;
    assert_eq!(
        count(
            &raw,
            &format!("SELECT count(*) FROM dedup WHERE event = {rowid}")
        ),
        1
    );
}

#[tokio::test]
async fn a_failing_merge_costs_no_write_and_no_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_merging_at(&dir, 0);
    store.ready().await.unwrap();
    // Every merge now fails when it moves its slice's watermark.
    let raw = Connection::open(dir.path().join("t.db")).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER merges_fail BEFORE INSERT ON dedup_merged
             BEGIN SELECT RAISE(ABORT, 'no merging in this test'); END;",
    )
    .unwrap();
    let mut originals = Vec::new();
    for i in 0..20 {
        // One write per group: the group commits without the merge, not 503.
        let e = event("s", &format!("k{i}"), T0 + i, HOUR_MS);
        originals.push(e.id.clone());
        assert_eq!(
            store.insert_event(e.clone()).await.unwrap(),
            Inserted::New { id: e.id }
        );
    }
    for (i, original) in originals.iter().enumerate() {
        let repeat = event("s", &format!("k{i}"), T0 + 100 + i as i64, HOUR_MS);
        assert_eq!(
            store.insert_event(repeat).await.unwrap(),
            Inserted::Duplicate {
                original_id: original.clone()
            }
        );
    }
    store.close().await;
    assert_eq!(count(&raw, "SELECT count(*) FROM dedup_merged"), 0);
    assert_eq!(count(&raw, "SELECT count(*) FROM dedup_recent"), 20);
}

#[tokio::test]
async fn a_merged_events_purge_leaves_nothing_for_later_merges() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_merging_at(&dir, 0);
    store
        .insert_event(event("s", "k", T0, HOUR_MS))
        .await
        .unwrap();
    for i in 0..300 {
        let e = event("t", &format!("other-{i}"), T0 + 1 + i, HOUR_MS);
        store.insert_event(e).await.unwrap();
    }
    let raw = Connection::open(dir.path().join("t.db")).unwrap();
    let merged =
        "SELECT count(*) FROM dedup d JOIN events e ON e.rowid = d.event WHERE e.source = 's'";
    assert_eq!(count(&raw, merged), 1, "a round of merges took it in");
    purge_the_one_event_of_s(&store, &raw).await;
    store.close().await;
    assert_eq!(count(&raw, "SELECT count(*) FROM dedup_gone"), 0);
    assert_eq!(
        count(
            &raw,
            "SELECT count(*) FROM dedup WHERE event NOT IN (SELECT rowid FROM events)"
        ),
        0
    );
}
