//! Commit positions, which the live event stream follows: each new event stands higher
//! than every event committed before it, whatever its id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fixtures::{HOUR_MS, event, insert};
use crate::id;
use crate::store::{Inserted, Store, StoredEvent, StreamPosition};

/// What a follower at `from` reads, once at least `n` events show or ten seconds have
/// passed. On PostgreSQL an event shows only once every older transaction of the server
/// has ended, and other checks run their transactions beside this one.
async fn read_after(
    store: &dyn Store,
    from: StreamPosition,
    source: Option<&str>,
    limit: usize,
    n: usize,
) -> Vec<(StreamPosition, StoredEvent)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let read = store
            .events_after_position(from, source.map(str::to_owned), limit)
            .await
            .unwrap();
        if read.len() >= n || Instant::now() > deadline {
            return read;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn positions_rise_with_each_commit_and_a_follower_reads_after_one(store: Arc<dyn Store>) {
    let start = store.last_event_position().await.unwrap();
    assert!(
        store
            .events_after_position(start, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "empty"
    );
    assert_eq!(
        store.event_position(&id::new(id::EVENT)).await.unwrap(),
        None
    );

    let mut ids = Vec::new();
    for (i, source) in ["a", "b", "a", "b"].iter().enumerate() {
        ids.push(
            insert(
                &*store,
                event(source, &format!("k{i}"), 1_000 + i as i64, HOUR_MS),
            )
            .await,
        );
    }
    // From the start: everything, in commit order, with bodies and positions.
    let all = read_after(&*store, start, None, 10, 4).await;
    // Positions are asked for only once the events show: until then an event stands at
    // the horizon (on PostgreSQL, while an older transaction of the server, another
    // check's say, is still open), not at a place of its own.
    let mut positions = Vec::new();
    for id in &ids {
        positions.push(store.event_position(id).await.unwrap().expect("stored"));
    }
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "later commits stand higher: {positions:?}"
    );
    assert!(positions[0] > start);
    let seen: Vec<(StreamPosition, &str)> = all
        .iter()
        .map(|(p, e)| (*p, e.request.id.as_str()))
        .collect();
    let expected: Vec<(StreamPosition, &str)> = positions
        .iter()
        .copied()
        .zip(ids.iter().map(String::as_str))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(all[2].1.request.body.as_deref(), Some(&b"body of k2"[..]));
    assert_eq!(all[2].1.deliveries.len(), 1);

    // A duplicate is no new event: nothing shows.
    let repeat = store
        .insert_event(event("a", "k0", 1_010, HOUR_MS))
        .await
        .unwrap();
    assert!(matches!(repeat, Inserted::Duplicate { .. }));

    // After one: strictly after, up to the limit.
    let after = store
        .events_after_position(positions[0], None, 2)
        .await
        .unwrap();
    let seen: Vec<StreamPosition> = after.iter().map(|(p, _)| *p).collect();
    assert_eq!(seen, [positions[1], positions[2]]);
    // One source only.
    let of_a = store
        .events_after_position(positions[0], Some("a".into()), 10)
        .await
        .unwrap();
    let seen: Vec<&str> = of_a.iter().map(|(_, e)| e.request.id.as_str()).collect();
    assert_eq!(seen, [ids[2].as_str()]);
    // Caught up.
    assert!(
        store
            .events_after_position(positions[3], None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A follower that starts now sees what commits from now on, and only that.
    let now = store.last_event_position().await.unwrap();
    let next = insert(&*store, event("b", "k4", 1_004, HOUR_MS)).await;
    let later = read_after(&*store, now, None, 10, 1).await;
    let seen: Vec<&str> = later.iter().map(|(_, e)| e.request.id.as_str()).collect();
    assert_eq!(seen, [next.as_str()]);
}

/// Ids are made when a request arrives, but requests commit in whatever order they
/// finish: a follower reading by position must still see the one that committed later.
pub async fn commit_order_not_id_order_decides_positions(store: Arc<dyn Store>) {
    let earlier_id = event("s", "made-first", 1_000, HOUR_MS);
    let later_id = event("s", "made-second", 1_001, HOUR_MS);
    assert!(earlier_id.id < later_id.id);
    let (first_made, second_made) = (earlier_id.id.clone(), later_id.id.clone());

    let start = store.last_event_position().await.unwrap();
    insert(&*store, later_id).await;
    // Its own position, once it shows (until then it stands at the horizon).
    read_after(&*store, start, None, 10, 1).await;
    let seen_so_far = store.event_position(&second_made).await.unwrap().unwrap();
    insert(&*store, earlier_id).await;

    let after = read_after(&*store, seen_so_far, None, 10, 1).await;
    let ids: Vec<&str> = after.iter().map(|(_, e)| e.request.id.as_str()).collect();
    assert_eq!(
        ids,
        [first_made.as_str()],
        "the later commit is not skipped"
    );
    let first = store.event_position(&second_made).await.unwrap().unwrap();
    let second = store.event_position(&first_made).await.unwrap().unwrap();
    assert!(first < second);
}
