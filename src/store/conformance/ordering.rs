//! Ordering keys: one delivery per route and key out at a time, in receive order (then
//! part order); a retrying head holds its key, a finished one (delivered, dead) lets it
//! move on.

use std::sync::Arc;

use super::fixtures::{attempt, claim, event_on, ids, prepared, waiting};
use crate::store::{AfterAttempt, Preparation, Store};

pub async fn one_delivery_per_ordering_key_is_out_at_a_time_in_receive_order(
    store: Arc<dyn Store>,
) {
    // k1 k2 j1 k3, received in that order.
    for (i, name) in ["k1", "k2", "j1", "k3"].iter().enumerate() {
        store
            .insert_event(waiting(name, 1_000 + i as i64))
            .await
            .unwrap();
    }
    let waiting = store.unprepared(10, &[]).await.unwrap();
    let keys = ["k", "k", "j", "k"];
    store
        .prepare(
            waiting
                .iter()
                .zip(keys)
                .map(|(u, key)| prepared(u, Some(key), Preparation::Raw))
                .collect(),
            2_000,
        )
        .await
        .unwrap();
    let id_of = |i: usize| waiting[i].id.clone();

    // The head of each key, and nothing behind them.
    let first = store.claim_deliveries(claim(2_000)).await.unwrap();
    let mut expected = vec![id_of(0), id_of(2)];
    expected.sort();
    assert_eq!(ids(&first), expected);
    assert!(
        store
            .claim_deliveries(claim(2_000))
            .await
            .unwrap()
            .is_empty()
    );

    // k1 fails and waits for its retry: k2 stays behind it, even though k2 is due.
    let k1 = first.iter().find(|d| d.id == id_of(0)).unwrap();
    store
        .record_attempt(attempt(k1, 2_001, Some(503), AfterAttempt::RetryAt(10_000)))
        .await
        .unwrap();
    assert!(
        store
            .claim_deliveries(claim(3_000))
            .await
            .unwrap()
            .is_empty()
    );
    // Its retry comes first; once delivered, k2 is next, then k3.
    let retry = store.claim_deliveries(claim(10_000)).await.unwrap();
    assert_eq!(ids(&retry), vec![id_of(0)]);
    store
        .record_attempt(attempt(
            &retry[0],
            10_001,
            Some(200),
            AfterAttempt::Delivered,
        ))
        .await
        .unwrap();
    let k2 = store.claim_deliveries(claim(10_002)).await.unwrap();
    assert_eq!(ids(&k2), vec![id_of(1)]);
    // A dead head lets its key move on.
    store
        .record_attempt(attempt(&k2[0], 10_003, Some(410), AfterAttempt::Dead))
        .await
        .unwrap();
    let k3 = store.claim_deliveries(claim(10_004)).await.unwrap();
    assert_eq!(ids(&k3), vec![id_of(3)]);
}

pub async fn the_parts_of_an_ordered_split_go_one_at_a_time_in_part_order(store: Arc<dyn Store>) {
    store.insert_event(waiting("split", 1_000)).await.unwrap();
    store.insert_event(waiting("after", 1_001)).await.unwrap();
    let waiting = store.unprepared(10, &[]).await.unwrap();
    let bodies = vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()];
    store
        .prepare(
            vec![
                prepared(&waiting[0], Some("k"), Preparation::Bodies(bodies)),
                prepared(&waiting[1], Some("k"), Preparation::Raw),
            ],
            2_000,
        )
        .await
        .unwrap();

    // Part 1, then 2 (which dies: the key moves on), then 3, then the next event.
    let mut at = 2_000;
    let mut sent = Vec::new();
    for then in [
        AfterAttempt::Delivered,
        AfterAttempt::Dead,
        AfterAttempt::Delivered,
        AfterAttempt::Delivered,
    ] {
        let claimed = store.claim_deliveries(claim(at)).await.unwrap();
        assert_eq!(claimed.len(), 1, "one at a time, at {at}");
        let d = &claimed[0];
        sent.push((d.event_id.clone(), d.part));
        store
            .record_attempt(attempt(d, at, Some(200), then))
            .await
            .unwrap();
        at += 1;
    }
    let split = waiting[0].event.id.clone();
    assert_eq!(
        sent,
        [
            (split.clone(), Some(1)),
            (split.clone(), Some(2)),
            (split, Some(3)),
            (waiting[1].event.id.clone(), None),
        ]
    );
    assert!(store.claim_deliveries(claim(at)).await.unwrap().is_empty());
}

pub async fn ordering_keys_hold_per_route(store: Arc<dyn Store>) {
    for (i, key) in ["first", "second"].iter().enumerate() {
        let mut e = event_on("s", key, 1_000 + i as i64, 1, &[("r1", "d"), ("r2", "d")]);
        for d in &mut e.deliveries {
            d.needs_preparing = true;
            d.ordered = true;
        }
        store.insert_event(e).await.unwrap();
    }
    let waiting = store.unprepared(10, &[]).await.unwrap();
    assert_eq!(waiting.len(), 4);
    store
        .prepare(
            waiting
                .iter()
                .map(|u| prepared(u, Some("same"), Preparation::Raw))
                .collect(),
            2_000,
        )
        .await
        .unwrap();
    let on = |route: &str, key: &str| {
        waiting
            .iter()
            .find(|u| u.route == route && u.event.body == format!("body of {key}").as_bytes())
            .unwrap()
            .id
            .clone()
    };

    // The same key on two routes: each route has its own head out.
    let heads = store.claim_deliveries(claim(2_000)).await.unwrap();
    let mut expected = vec![on("r1", "first"), on("r2", "first")];
    expected.sort();
    assert_eq!(ids(&heads), expected);
    // r1's head is delivered: r1 moves on, r2 still waits for its own head.
    let r1 = heads.iter().find(|d| d.route == "r1").unwrap();
    store
        .record_attempt(attempt(r1, 2_001, Some(200), AfterAttempt::Delivered))
        .await
        .unwrap();
    let next = store.claim_deliveries(claim(2_002)).await.unwrap();
    assert_eq!(ids(&next), [on("r1", "second")]);
}
