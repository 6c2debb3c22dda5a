//! Preparing deliveries (filters, transforms, ordering keys) and claiming them in key
//! order, against a real SQLite file with time passed in explicitly.

use super::tests::{event, open};
use crate::id;
use crate::store::{
    AfterAttempt, AttemptRecord, Claim, ClaimedDelivery, DeadAction, DeadFilter, Inserted,
    NewEvent, Preparation, Prepared, Store,
};

fn claim(now_ms: i64) -> Claim {
    Claim {
        destination: "d".to_owned(),
        skip_routes: Vec::new(),
        now_ms,
        lease_ms: 60_000,
        limit: 10,
    }
}

/// An event whose one delivery waits to be prepared.
fn waiting(key: &str, at: i64) -> NewEvent {
    let mut e = event("s", key, at, 1);
    e.deliveries[0].needs_preparing = true;
    e
}

fn done(d: &ClaimedDelivery, at: i64, then: AfterAttempt) -> AttemptRecord {
    AttemptRecord {
        id: id::new(id::ATTEMPT),
        delivery_id: d.id.clone(),
        lease_until_ms: d.lease_until_ms,
        started_at_ms: at,
        duration_ms: 1,
        status: Some(200),
        error: None,
        response_headers: Vec::new(),
        response_body: Vec::new(),
        then,
    }
}

fn prepared(id: &str, key: Option<&str>, outcome: Preparation) -> Prepared {
    Prepared {
        delivery_id: id.to_owned(),
        ordering_key: key.map(str::to_owned),
        outcome,
    }
}

#[tokio::test]
async fn waiting_deliveries_are_not_claimed_until_prepared_and_a_split_makes_parts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
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

    let waiting = store.unprepared(10).await.unwrap();
    let order: Vec<&str> = waiting.iter().map(|u| u.event.id.as_str()).collect();
    assert_eq!(order, events.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(waiting[0].event.body, b"body of split");
    assert_eq!(waiting[0].event.source, "s");

    store
        .prepare(
            vec![
                prepared(
                    &waiting[0].id,
                    None,
                    Preparation::Bodies(vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]),
                ),
                prepared(&waiting[1].id, None, Preparation::Filtered),
                prepared(
                    &waiting[2].id,
                    None,
                    Preparation::Failed("transform: boom".into()),
                ),
            ],
            6_000,
        )
        .await
        .unwrap();
    assert!(store.unprepared(10).await.unwrap().is_empty());

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
    let again = store.unprepared(10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, waiting[2].id);
    store.close().await;
}

#[tokio::test]
async fn one_delivery_per_ordering_key_is_out_at_a_time_in_receive_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // k1 k2 j1 k3, received in that order.
    for (i, name) in ["k1", "k2", "j1", "k3"].iter().enumerate() {
        store
            .insert_event(waiting(name, 1_000 + i as i64))
            .await
            .unwrap();
    }
    let waiting = store.unprepared(10).await.unwrap();
    let keys = ["k", "k", "j", "k"];
    store
        .prepare(
            waiting
                .iter()
                .zip(keys)
                .map(|(u, key)| prepared(&u.id, Some(key), Preparation::Raw))
                .collect(),
            2_000,
        )
        .await
        .unwrap();
    let id_of = |i: usize| waiting[i].id.clone();
    let claimed_ids = |c: &[ClaimedDelivery]| {
        let mut ids: Vec<String> = c.iter().map(|d| d.id.clone()).collect();
        ids.sort();
        ids
    };

    // The head of each key, and nothing behind them.
    let first = store.claim_deliveries(claim(2_000)).await.unwrap();
    let mut expected = vec![id_of(0), id_of(2)];
    expected.sort();
    assert_eq!(claimed_ids(&first), expected);
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
        .record_attempt(done(k1, 2_001, AfterAttempt::RetryAt(10_000)))
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
    assert_eq!(claimed_ids(&retry), vec![id_of(0)]);
    store
        .record_attempt(done(&retry[0], 10_001, AfterAttempt::Delivered))
        .await
        .unwrap();
    let k2 = store.claim_deliveries(claim(10_002)).await.unwrap();
    assert_eq!(claimed_ids(&k2), vec![id_of(1)]);
    // A dead head lets its key move on.
    store
        .record_attempt(done(&k2[0], 10_003, AfterAttempt::Dead))
        .await
        .unwrap();
    let k3 = store.claim_deliveries(claim(10_004)).await.unwrap();
    assert_eq!(claimed_ids(&k3), vec![id_of(3)]);
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
        .list_deliveries(crate::store::DeliveryQuery {
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
