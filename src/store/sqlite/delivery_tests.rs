//! Claiming and attempts against a real SQLite file, with time passed in explicitly.

use super::tests::{event, open};
use crate::id;
use crate::store::{
    AfterAttempt, AttemptRecord, Claim, ClaimedDelivery, Inserted, Pausable, Store,
};

const LEASE: i64 = 60_000;

fn claim(now_ms: i64) -> Claim {
    Claim {
        destination: "d".to_owned(),
        skip_routes: Vec::new(),
        now_ms,
        lease_ms: LEASE,
        limit: 10,
    }
}

fn dests() -> Vec<String> {
    vec!["d".to_owned()]
}

fn attempt(d: &ClaimedDelivery, at: i64, status: Option<u16>, then: AfterAttempt) -> AttemptRecord {
    AttemptRecord {
        id: id::new(id::ATTEMPT),
        delivery_id: d.id.clone(),
        lease_until_ms: d.lease_until_ms,
        started_at_ms: at,
        duration_ms: 12,
        status,
        error: status.filter(|s| *s >= 300).map(|s| format!("HTTP {s}")),
        response_headers: b"content-type: text/plain\r\n".to_vec(),
        response_body: b"nope".to_vec(),
        then,
    }
}

#[tokio::test]
async fn claims_carry_the_event_and_hold_until_the_lease_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let t0 = 1_000_000;
    let Inserted::New { id: event_id } = store.insert_event(event("s", "k", t0, 1)).await.unwrap()
    else {
        panic!("new")
    };
    assert_eq!(store.next_due_ms(&dests(), t0 - 1).await.unwrap(), Some(t0));

    // Not due before it was received.
    assert!(
        store
            .claim_deliveries(claim(t0 - 1))
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = store.claim_deliveries(claim(t0)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let d = &claimed[0];
    assert_eq!((d.event_id.as_str(), d.attempt), (event_id.as_str(), 1));
    assert_eq!((d.route.as_str(), d.destination.as_str()), ("r", "d"));
    assert_eq!(d.body, b"body of k");
    assert_eq!(d.source, "s");

    // Held: nobody else gets it while the lease runs; the lease end is the next due time.
    assert!(
        store
            .claim_deliveries(claim(t0 + LEASE - 1))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.next_due_ms(&dests(), t0).await.unwrap(),
        Some(t0 + LEASE)
    );
    // The worker died: after the lease it is claimed again, as the same attempt.
    let again = store.claim_deliveries(claim(t0 + LEASE)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.as_str(), again[0].attempt), (d.id.as_str(), 1));
    store.close().await;
}

#[tokio::test]
async fn attempts_move_deliveries_to_retrying_delivered_or_dead() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let t0 = 2_000_000;
    for key in ["a", "b"] {
        store.insert_event(event("s", key, t0, 1)).await.unwrap();
    }
    let claimed = store.claim_deliveries(claim(t0)).await.unwrap();
    let (a, b) = (&claimed[0], &claimed[1]);

    // a fails and retries in 5 s; b gives up.
    store
        .record_attempt(attempt(a, t0, Some(503), AfterAttempt::RetryAt(t0 + 5_000)))
        .await
        .unwrap();
    store
        .record_attempt(attempt(b, t0, Some(410), AfterAttempt::Dead))
        .await
        .unwrap();
    assert_eq!(
        store.next_due_ms(&dests(), t0).await.unwrap(),
        Some(t0 + 5_000)
    );
    assert!(
        store
            .claim_deliveries(claim(t0 + 4_999))
            .await
            .unwrap()
            .is_empty()
    );
    let retry = store.claim_deliveries(claim(t0 + 5_000)).await.unwrap();
    assert_eq!(retry.len(), 1, "the dead one is never claimed again");
    assert_eq!((retry[0].id.as_str(), retry[0].attempt), (a.id.as_str(), 2));

    store
        .record_attempt(attempt(
            &retry[0],
            t0 + 5_000,
            Some(200),
            AfterAttempt::Delivered,
        ))
        .await
        .unwrap();
    assert_eq!(store.next_due_ms(&dests(), 0).await.unwrap(), None);
    assert!(
        store
            .claim_deliveries(claim(i64::MAX / 2))
            .await
            .unwrap()
            .is_empty()
    );

    let event = store
        .get_event(&claimed[0].event_id)
        .await
        .unwrap()
        .unwrap();
    let d = &event.deliveries[0];
    assert_eq!((d.state.as_str(), d.attempts), ("delivered", 2));
    let event = store
        .get_event(&claimed[1].event_id)
        .await
        .unwrap()
        .unwrap();
    let d = &event.deliveries[0];
    assert_eq!((d.state.as_str(), d.attempts), ("dead", 1));
    store.close().await;
}

#[tokio::test]
async fn a_late_attempt_does_not_undo_a_newer_claim() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let t0 = 3_000_000;
    store.insert_event(event("s", "k", t0, 1)).await.unwrap();
    let first = store.claim_deliveries(claim(t0)).await.unwrap();
    // The lease expires and another claim takes it over…
    let second = store.claim_deliveries(claim(t0 + LEASE)).await.unwrap();
    assert_eq!(first[0].id, second[0].id);
    // …the first (slow) attempt reports a failure while the second is under way: it is
    // recorded, but the delivery stays with the second claim, whose success then counts.
    store
        .record_attempt(attempt(
            &first[0],
            t0,
            Some(500),
            AfterAttempt::RetryAt(t0 + LEASE + 1),
        ))
        .await
        .unwrap();
    let event = store.get_event(&first[0].event_id).await.unwrap().unwrap();
    assert_eq!(event.deliveries[0].state, "in_flight");
    store
        .record_attempt(attempt(
            &second[0],
            t0 + LEASE,
            Some(200),
            AfterAttempt::Delivered,
        ))
        .await
        .unwrap();
    let event = store.get_event(&first[0].event_id).await.unwrap().unwrap();
    assert_eq!(event.deliveries[0].state, "delivered");
    assert!(
        store
            .claim_deliveries(claim(i64::MAX / 2))
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
}

#[tokio::test]
async fn claims_respect_the_limit_and_due_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..25 {
        store
            .insert_event(event("s", &format!("k{i}"), 4_000_000 + i, 1))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    loop {
        let batch = store.claim_deliveries(claim(5_000_000)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 10);
        seen.extend(batch.into_iter().map(|d| d.received_at_ms));
    }
    let expected: Vec<i64> = (0..25).map(|i| 4_000_000 + i).collect();
    assert_eq!(seen, expected, "oldest due first, each once");
    store.close().await;
}

#[tokio::test]
async fn claims_and_due_times_are_per_destination() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.insert_event(event("s", "k", 7_000, 1)).await.unwrap();
    let other = Claim {
        destination: "elsewhere".to_owned(),
        ..claim(8_000)
    };
    assert!(store.claim_deliveries(other).await.unwrap().is_empty());
    assert_eq!(
        store
            .next_due_ms(&["elsewhere".to_owned()], 0)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.next_due_ms(&dests(), 0).await.unwrap(), Some(7_000));
    store.close().await;
}

#[tokio::test]
async fn paused_routes_are_skipped_and_pauses_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.insert_event(event("s", "k", 9_000, 1)).await.unwrap();
    let skipping = Claim {
        skip_routes: vec!["r".to_owned()],
        ..claim(9_000)
    };
    assert!(store.claim_deliveries(skipping).await.unwrap().is_empty());
    assert_eq!(store.claim_deliveries(claim(9_000)).await.unwrap().len(), 1);

    store
        .set_paused(Pausable::Route, "r", true, 1)
        .await
        .unwrap();
    store
        .set_paused(Pausable::Destination, "d", true, 1)
        .await
        .unwrap();
    store
        .set_paused(Pausable::Destination, "d", true, 2)
        .await
        .unwrap(); // twice is once
    store
        .set_paused(Pausable::Destination, "d", false, 3)
        .await
        .unwrap();
    assert_eq!(
        store.paused().await.unwrap(),
        [(Pausable::Route, "r".to_owned())]
    );
    store.close().await;
}
