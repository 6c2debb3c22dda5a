//! What an operator does to deliveries: retry one now, and retry or discard dead ones
//! in bulk (the dead-letter queue), attempts kept.

use std::collections::HashMap;
use std::sync::Arc;

use super::fixtures::{attempt, claim, claim_to, event, event_on, insert, state_of};
use crate::id;
use crate::store::{AfterAttempt, DeadAction, DeadFilter, RetryNow, Store};

pub async fn retry_now_makes_waiting_or_dead_deliveries_due_and_leaves_others(
    store: Arc<dyn Store>,
) {
    assert_eq!(
        store
            .retry_delivery(&id::new(id::DELIVERY), 1)
            .await
            .unwrap(),
        RetryNow::NotFound
    );
    for key in ["retrying", "dead", "delivered", "in_flight", "discarded"] {
        store.insert_event(event("s", key, 1_000, 1)).await.unwrap();
    }
    let claimed = store.claim_deliveries(claim(1_000)).await.unwrap();
    let mut by_key = HashMap::new();
    for d in &claimed {
        let key = String::from_utf8(d.body.clone()).unwrap();
        by_key.insert(key.trim_start_matches("body of ").to_owned(), d.clone());
    }
    for (key, then) in [
        ("retrying", AfterAttempt::RetryAt(100_000)),
        ("dead", AfterAttempt::Dead),
        ("delivered", AfterAttempt::Delivered),
        ("discarded", AfterAttempt::Dead),
    ] {
        store
            .record_attempt(attempt(&by_key[key], 1_000, Some(500), then))
            .await
            .unwrap();
    }
    let id_of = |key: &str| by_key[key].id.clone();
    let discarded = DeadFilter {
        id: Some(id_of("discarded")),
        ..Default::default()
    };
    store
        .act_on_dead(discarded, DeadAction::Discard, 1_500)
        .await
        .unwrap();
    // Never attempted, due later than it is asked for.
    let pending = event("s", "pending", 50_000, 1);
    let pending_id = pending.deliveries[0].id.clone();
    insert(&*store, pending).await;

    for (id, expected) in [
        (id_of("retrying"), RetryNow::Scheduled),
        (id_of("dead"), RetryNow::Scheduled),
        (pending_id.clone(), RetryNow::Scheduled),
        (id_of("delivered"), RetryNow::Finished),
        (id_of("discarded"), RetryNow::Finished),
        (id_of("in_flight"), RetryNow::InFlight),
    ] {
        assert_eq!(store.retry_delivery(&id, 2_000).await.unwrap(), expected);
    }
    assert_eq!(
        state_of(&*store, &id_of("dead")).await,
        ("retrying".into(), 1),
        "a retried dead delivery keeps its attempts"
    );
    assert_eq!(state_of(&*store, &pending_id).await, ("pending".into(), 0));
    assert_eq!(state_of(&*store, &id_of("delivered")).await.0, "delivered");
    assert_eq!(state_of(&*store, &id_of("discarded")).await.0, "discarded");

    // Due now: not at their retry time, nor at their receive time.
    let due = store.claim_deliveries(claim(2_000)).await.unwrap();
    let mut seen: Vec<(String, i64)> = due.iter().map(|d| (d.id.clone(), d.attempt)).collect();
    seen.sort();
    let mut expected = vec![(id_of("retrying"), 2), (id_of("dead"), 2), (pending_id, 1)];
    expected.sort();
    assert_eq!(seen, expected);
}

pub async fn dead_letters_are_retried_or_discarded_by_route_destination_or_id(
    store: Arc<dyn Store>,
) {
    // Four dead deliveries on every mix of route and destination, and a delivered one.
    let places = [("r1", "d1"), ("r1", "d2"), ("r2", "d2"), ("r2", "d1")];
    let mut ids = Vec::new();
    for (i, place) in places.iter().enumerate() {
        let e = event_on("s", &format!("k{i}"), 1_000, 1, &[*place]);
        ids.push(e.deliveries[0].id.clone());
        store.insert_event(e).await.unwrap();
    }
    let delivered = event_on("s", "ok", 1_000, 1, &[("r1", "d1")]);
    let delivered_id = delivered.deliveries[0].id.clone();
    store.insert_event(delivered).await.unwrap();
    let mut claimed = store.claim_deliveries(claim_to("d1", 1_000)).await.unwrap();
    claimed.extend(store.claim_deliveries(claim_to("d2", 1_000)).await.unwrap());
    assert_eq!(claimed.len(), 5);
    for d in &claimed {
        let then = if d.id == delivered_id {
            AfterAttempt::Delivered
        } else {
            AfterAttempt::Dead
        };
        store
            .record_attempt(attempt(d, 1_000, Some(410), then))
            .await
            .unwrap();
    }

    let act = |filter: DeadFilter, action: DeadAction| {
        let store = store.clone();
        async move { store.act_on_dead(filter, action, 2_000).await.unwrap() }
    };
    let on_route = DeadFilter {
        route: Some("r1".into()),
        ..Default::default()
    };
    assert_eq!(act(on_route, DeadAction::Retry).await, 2);
    let to_destination = DeadFilter {
        destination: Some("d2".into()),
        ..Default::default()
    };
    assert_eq!(
        act(to_destination, DeadAction::Discard).await,
        1,
        "r1→d2 is no longer dead"
    );
    let one = DeadFilter {
        id: Some(ids[3].clone()),
        ..Default::default()
    };
    assert_eq!(act(one, DeadAction::Retry).await, 1);
    assert_eq!(
        act(DeadFilter::default(), DeadAction::Retry).await,
        0,
        "none left"
    );

    for (id, state) in [
        (&ids[0], "retrying"),
        (&ids[1], "retrying"),
        (&ids[2], "discarded"),
        (&ids[3], "retrying"),
        (&delivered_id, "delivered"),
    ] {
        assert_eq!(state_of(&*store, id).await.0, state, "{id}");
    }
    // The retried ones are due now, as their second attempt; the discarded one never.
    let mut due = store.claim_deliveries(claim_to("d1", 2_000)).await.unwrap();
    due.extend(store.claim_deliveries(claim_to("d2", 2_000)).await.unwrap());
    let mut seen: Vec<(String, i64)> = due.iter().map(|d| (d.id.clone(), d.attempt)).collect();
    seen.sort();
    let mut expected = vec![
        (ids[0].clone(), 2),
        (ids[1].clone(), 2),
        (ids[3].clone(), 2),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(
        store.retry_delivery(&ids[2], 3_000).await.unwrap(),
        RetryNow::Finished
    );

    // They die again; a filter of neither kind takes every dead delivery.
    for d in &due {
        store
            .record_attempt(attempt(d, 2_000, Some(410), AfterAttempt::Dead))
            .await
            .unwrap();
    }
    assert_eq!(act(DeadFilter::default(), DeadAction::Discard).await, 3);
}
