//! Preparing: deliveries of routes with a filter, transform or ordering key wait
//! unprepared (never claimed) until the preparer writes what the expressions made of
//! them: a payload, parts of a split, filtered, or dead with the error.

use std::sync::Arc;

use super::fixtures::{claim, event, insert, prepared, state_of, waiting};
use crate::id;
use crate::store::{
    DeadAction, DeadFilter, DeliveryQuery, Inserted, NewReplay, Preparation, ReplayDelivery,
    ReplayStep, ReplayWrite, Store,
};

pub async fn waiting_deliveries_are_not_claimed_until_prepared_and_a_split_makes_parts(
    store: Arc<dyn Store>,
) {
    let mut events = Vec::new();
    for (i, key) in ["split", "filtered", "failed"].iter().enumerate() {
        let Inserted::New { id } = store
            .insert_event(waiting(key, 1_000 + i as i64))
            .await
            .unwrap()
        else {
            panic!("new");
        };
        events.push(id);
    }
    assert!(
        store
            .claim_deliveries(claim(5_000))
            .await
            .unwrap()
            .is_empty()
    );

    let waiting = store.unprepared(10, &[]).await.unwrap();
    let order: Vec<&str> = waiting.iter().map(|u| u.event.id.as_str()).collect();
    assert_eq!(order, events.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(waiting[0].event.body, b"body of split");
    // A paused route's deliveries wait unprepared; the others' are not held up.
    let skipped = ["r".to_owned()];
    assert!(store.unprepared(10, &skipped).await.unwrap().is_empty());
    let other = ["x".to_owned()];
    assert_eq!(store.unprepared(10, &other).await.unwrap().len(), 3);
    assert_eq!(waiting[0].event.source, "s");

    store
        .prepare(
            vec![
                prepared(
                    &waiting[0],
                    None,
                    Preparation::Bodies(vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]),
                ),
                prepared(&waiting[1], None, Preparation::Filtered),
                prepared(
                    &waiting[2],
                    None,
                    Preparation::Failed("transform: boom".into()),
                ),
            ],
            6_000,
        )
        .await
        .unwrap();
    assert!(store.unprepared(10, &[]).await.unwrap().is_empty());

    let mut parts = store.claim_deliveries(claim(6_000)).await.unwrap();
    parts.sort_by_key(|d| d.part);
    let seen: Vec<(String, Vec<u8>)> = parts
        .iter()
        .map(|d| (d.webhook_id(), d.outgoing_body().to_vec()))
        .collect();
    let split = &events[0];
    assert_eq!(
        seen,
        vec![
            (format!("{split}.1"), b"1".to_vec()),
            (format!("{split}.2"), b"2".to_vec()),
            (format!("{split}.3"), b"3".to_vec()),
        ]
    );
    assert_eq!(
        parts[0].id, waiting[0].id,
        "the first part keeps the delivery"
    );

    let filtered = store.get_delivery(&waiting[1].id).await.unwrap().unwrap();
    assert_eq!(filtered.state, "filtered");
    let failed = store.get_delivery(&waiting[2].id).await.unwrap().unwrap();
    assert_eq!(failed.state, "dead");
    assert_eq!(failed.last_error.as_deref(), Some("transform: boom"));

    // Retried from the dead-letter queue, it is prepared again (the expression may have
    // been fixed meanwhile).
    let retried = store
        .act_on_dead(DeadFilter::default(), DeadAction::Retry, 7_000)
        .await
        .unwrap();
    assert_eq!(retried, 1);
    let again = store.unprepared(10, &[]).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, waiting[2].id);

    // Prepared this time, it goes with its body, and the old error is gone.
    let fixed = Preparation::Bodies(vec![b"fixed".to_vec()]);
    store
        .prepare(vec![prepared(&again[0], None, fixed)], 7_001)
        .await
        .unwrap();
    let ready = store.get_delivery(&waiting[2].id).await.unwrap().unwrap();
    assert_eq!((ready.state.as_str(), ready.last_error), ("pending", None));
    let sent = store.claim_deliveries(claim(8_000)).await.unwrap();
    let sent = sent
        .iter()
        .find(|d| d.id == waiting[2].id)
        .expect("claimed");
    assert_eq!(sent.payload.as_deref(), Some(&b"fixed"[..]));
}

pub async fn one_body_replaces_the_payload_raw_sends_the_event_none_filters(store: Arc<dyn Store>) {
    for (i, key) in ["transformed", "raw", "no-output"].iter().enumerate() {
        store
            .insert_event(waiting(key, 1_000 + i as i64))
            .await
            .unwrap();
    }
    // Oldest first, up to the limit.
    let first_two = store.unprepared(2, &[]).await.unwrap();
    assert_eq!(first_two.len(), 2);
    assert_eq!(first_two[0].event.body, b"body of transformed");
    assert_eq!(first_two[1].event.body, b"body of raw");
    assert_eq!(first_two[0].route, "r");
    let waiting = store.unprepared(10, &[]).await.unwrap();
    store
        .prepare(
            vec![
                prepared(
                    &waiting[0],
                    None,
                    Preparation::Bodies(vec![br#"{"x":1}"#.to_vec()]),
                ),
                prepared(&waiting[1], Some("k"), Preparation::Raw),
                prepared(&waiting[2], None, Preparation::Bodies(Vec::new())),
            ],
            2_000,
        )
        .await
        .unwrap();

    let claimed = store.claim_deliveries(claim(2_000)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let transformed = claimed.iter().find(|d| d.id == waiting[0].id).unwrap();
    assert_eq!(transformed.payload.as_deref(), Some(&br#"{"x":1}"#[..]));
    assert_eq!(transformed.part, None, "one output is no split");
    assert_eq!(transformed.webhook_id(), waiting[0].event.id);
    assert_eq!(
        transformed.body, b"body of transformed",
        "the event comes along"
    );
    let raw = claimed.iter().find(|d| d.id == waiting[1].id).unwrap();
    assert_eq!(raw.payload, None);
    assert_eq!(raw.outgoing_body(), b"body of raw");
    assert_eq!(
        raw.ordering_key.as_deref(),
        Some("k"),
        "the claim carries it"
    );
    assert_eq!(transformed.ordering_key, None);

    let shown = store.get_delivery(&waiting[0].id).await.unwrap().unwrap();
    assert_eq!(shown.payload.as_deref(), Some(&br#"{"x":1}"#[..]));
    assert_eq!((shown.part, shown.ordering_key), (None, None));
    let shown = store.get_delivery(&waiting[1].id).await.unwrap().unwrap();
    assert_eq!(shown.ordering_key.as_deref(), Some("k"));
    assert_eq!(shown.payload, None);
    let shown = store.get_delivery(&waiting[2].id).await.unwrap().unwrap();
    assert_eq!(shown.state, "filtered");
    assert!(store.unprepared(10, &[]).await.unwrap().is_empty());
}

/// The preparer reads a batch, runs the expressions, then writes: meanwhile the
/// delivery may have been set aside (its replay cancelled), or prepared already.
pub async fn a_delivery_set_aside_while_waiting_is_left_alone_by_prepare(store: Arc<dyn Store>) {
    let event_id = insert(&*store, event("s", "k", 1_000, 1)).await;
    let replay = id::new(id::REPLAY);
    store
        .write_replay(ReplayWrite::Create(NewReplay {
            id: replay.clone(),
            filter: "{}".into(),
            destination: None,
            rate: None,
            created_at_ms: 2_000,
        }))
        .await
        .unwrap();
    let replayed = id::new(id::DELIVERY);
    store
        .write_replay(ReplayWrite::Advance(ReplayStep {
            replay_id: replay.clone(),
            cursor: Some(event_id.clone()),
            scanned: 1,
            matched: 1,
            deliveries: vec![ReplayDelivery {
                id: replayed.clone(),
                event_id,
                route: "with-transform".into(),
                destination: "d".into(),
                needs_preparing: true,
                priority: 0,
            }],
            now_ms: 2_000,
            finish: None,
        }))
        .await
        .unwrap();
    let queued = store.unprepared(10, &[]).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].id, replayed);

    store
        .write_replay(ReplayWrite::Cancel {
            id: replay,
            now_ms: 3_000,
        })
        .await
        .unwrap();
    assert!(store.unprepared(10, &[]).await.unwrap().is_empty());
    store
        .prepare(
            vec![prepared(
                &queued[0],
                None,
                Preparation::Bodies(vec![b"1".to_vec(), b"2".to_vec()]),
            )],
            4_000,
        )
        .await
        .unwrap();
    assert_eq!(state_of(&*store, &replayed).await, ("discarded".into(), 0));
    let all = store
        .list_deliveries(DeliveryQuery {
            route: Some("with-transform".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "no parts were added");

    // Prepared once, a second write for the same delivery changes nothing.
    let once = {
        store.insert_event(waiting("twice", 5_000)).await.unwrap();
        store.unprepared(10, &[]).await.unwrap().remove(0)
    };
    store
        .prepare(vec![prepared(&once, None, Preparation::Raw)], 6_000)
        .await
        .unwrap();
    store
        .prepare(vec![prepared(&once, None, Preparation::Filtered)], 6_001)
        .await
        .unwrap();
    assert_eq!(state_of(&*store, &once.id).await, ("pending".into(), 0));
}

/// A prepared delivery with a debounce key, due at `due`.
fn debounced(
    waiting: &crate::store::Unprepared,
    key: &str,
    due: i64,
    outcome: Preparation,
) -> crate::store::Prepared {
    crate::store::Prepared {
        debounce_key: Some(key.to_owned()),
        deliver_at_ms: Some(due),
        ..prepared(waiting, None, outcome)
    }
}

pub async fn a_later_delivery_with_the_debounce_key_supersedes_the_waiting_ones(
    store: Arc<dyn Store>,
) {
    let mut events = Vec::new();
    for (i, name) in ["a1", "b1", "a2", "a3", "a4"].iter().enumerate() {
        events.push(insert(store.as_ref(), waiting(name, 1_000 + i as i64)).await);
    }
    let waiting = store.unprepared(10, &[]).await.unwrap();
    // a1 and b1 first: different keys, both wait out their window.
    store
        .prepare(
            vec![
                debounced(&waiting[0], "a", 6_000, Preparation::Raw),
                debounced(&waiting[1], "b", 6_001, Preparation::Raw),
            ],
            2_000,
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_deliveries(claim(5_999))
            .await
            .unwrap()
            .is_empty(),
        "held for the window"
    );
    // a2 (split in two) supersedes a1; then a4 is prepared before a3 (two preparers on
    // PostgreSQL can do that): a4 supersedes a2's parts, and a3, older than a4, is
    // superseded as it is prepared.
    store
        .prepare(
            vec![debounced(
                &waiting[2],
                "a",
                6_002,
                Preparation::Bodies(vec![b"1".to_vec(), b"2".to_vec()]),
            )],
            2_100,
        )
        .await
        .unwrap();
    assert_eq!(
        state_of(store.as_ref(), &waiting[0].id).await.0,
        "superseded"
    );
    store
        .prepare(
            vec![debounced(&waiting[4], "a", 6_004, Preparation::Raw)],
            2_200,
        )
        .await
        .unwrap();
    store
        .prepare(
            vec![debounced(&waiting[3], "a", 6_003, Preparation::Raw)],
            2_300,
        )
        .await
        .unwrap();
    for (i, expected) in [
        (0, "superseded"),
        (1, "pending"),
        (2, "superseded"),
        (3, "superseded"),
        (4, "pending"),
    ] {
        assert_eq!(
            state_of(store.as_ref(), &waiting[i].id).await.0,
            expected,
            "{}",
            ["a1", "b1", "a2", "a3", "a4"][i]
        );
    }
    let shown = store
        .list_deliveries(DeliveryQuery {
            state: Some("superseded".into()),
            limit: 10,
            ..DeliveryQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(shown.len(), 4, "a1, a2 with its part 2, a3");
    let by = |i: usize| crate::store::delivery::superseded_by(&events[i]);
    for d in &shown {
        let expected = if d.event_id == events[0] {
            by(2)
        } else {
            by(4)
        };
        assert_eq!(
            d.last_error.as_deref(),
            Some(expected.as_str()),
            "{}",
            d.event_id
        );
    }

    // What is left goes when due: b1, then a4, each with its own body.
    let claimed = store.claim_deliveries(claim(6_004)).await.unwrap();
    let mut sent: Vec<&str> = claimed.iter().map(|d| d.event_id.as_str()).collect();
    sent.sort();
    let mut expected = vec![events[1].as_str(), events[4].as_str()];
    expected.sort();
    assert_eq!(sent, expected);
    // A superseded delivery can still be sent by hand.
    assert_eq!(
        store.retry_delivery(&waiting[0].id, 7_000).await.unwrap(),
        crate::store::RetryNow::Scheduled
    );
    let again = store.claim_deliveries(claim(7_000)).await.unwrap();
    assert_eq!(super::fixtures::ids(&again), vec![waiting[0].id.clone()]);
}
