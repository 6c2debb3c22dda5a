//! Recording attempts: a delivery moves to retrying, delivered or dead, falls due again
//! at its retry time (which the worker sleeps until), and only the claim that made an
//! attempt may move it on. Each attempt is kept with the response it got.

use std::sync::Arc;

use super::fixtures::{LEASE, attempt, claim, dests, event, event_on};
use crate::store::{AfterAttempt, Store};

pub async fn attempts_move_deliveries_to_retrying_delivered_or_dead(store: Arc<dyn Store>) {
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
}

pub async fn a_late_attempt_does_not_undo_a_newer_claim(store: Arc<dyn Store>) {
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
}

pub async fn attempts_are_kept_with_their_responses_in_order(store: Arc<dyn Store>) {
    let t0 = 1_000_000;
    store.insert_event(event("s", "k", t0, 1)).await.unwrap();
    let first = store.claim_deliveries(claim(t0)).await.unwrap();
    let id = first[0].id.clone();
    store
        .record_attempt(attempt(
            &first[0],
            t0,
            Some(503),
            AfterAttempt::RetryAt(t0 + 1_000),
        ))
        .await
        .unwrap();
    let retrying = store.get_delivery(&id).await.unwrap().unwrap();
    assert_eq!(
        (retrying.state.as_str(), retrying.attempts),
        ("retrying", 1)
    );
    assert_eq!(retrying.next_attempt_at_ms, t0 + 1_000);
    assert_eq!(retrying.last_error.as_deref(), Some("HTTP 503"));

    let second = store.claim_deliveries(claim(t0 + 1_000)).await.unwrap();
    store
        .record_attempt(attempt(
            &second[0],
            t0 + 1_000,
            Some(200),
            AfterAttempt::Delivered,
        ))
        .await
        .unwrap();
    let delivered = store.get_delivery(&id).await.unwrap().unwrap();
    assert_eq!(
        (delivered.state.as_str(), delivered.attempts),
        ("delivered", 2)
    );
    let log: Vec<_> = delivered
        .attempt_log
        .iter()
        .map(|a| {
            (
                a.number,
                a.started_at_ms,
                a.duration_ms,
                a.status,
                a.error.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        log,
        [
            (1, t0, 12, Some(503), Some("HTTP 503")),
            (2, t0 + 1_000, 12, Some(200), None),
        ]
    );
    for a in &delivered.attempt_log {
        assert_eq!(
            a.response_headers,
            [("content-type".to_owned(), b"text/plain".to_vec())]
        );
        assert_eq!(a.response_body, b"nope");
    }
    assert!(
        store
            .get_delivery(&crate::id::new(crate::id::DELIVERY))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn the_next_due_time_is_the_earliest_due_or_lease_end_strictly_after(
    store: Arc<dyn Store>,
) {
    let both = ["d".to_owned(), "d2".to_owned()];
    assert_eq!(
        store.next_due_ms(&both, 0).await.unwrap(),
        None,
        "nothing stored"
    );
    store.insert_event(event("s", "a", 1_000, 1)).await.unwrap();
    store
        .insert_event(event_on("s", "b", 3_000, 1, &[("r2", "d2")]))
        .await
        .unwrap();

    assert_eq!(store.next_due_ms(&both, 0).await.unwrap(), Some(1_000));
    assert_eq!(store.next_due_ms(&both, 1_000).await.unwrap(), Some(3_000));
    assert_eq!(store.next_due_ms(&both, 3_000).await.unwrap(), None);
    assert_eq!(
        store.next_due_ms(&["d2".to_owned()], 0).await.unwrap(),
        Some(3_000)
    );
    assert_eq!(store.next_due_ms(&[], 0).await.unwrap(), None);

    // Claimed: its lease end is when it could fall due again.
    let claimed = store.claim_deliveries(claim(1_000)).await.unwrap();
    assert_eq!(
        store.next_due_ms(&dests(), 1_000).await.unwrap(),
        Some(1_000 + LEASE)
    );
    assert_eq!(store.next_due_ms(&both, 1_000).await.unwrap(), Some(3_000));
    // Failed: its retry time. Finished: never.
    store
        .record_attempt(attempt(
            &claimed[0],
            1_000,
            Some(500),
            AfterAttempt::RetryAt(5_000),
        ))
        .await
        .unwrap();
    assert_eq!(
        store.next_due_ms(&dests(), 1_000).await.unwrap(),
        Some(5_000)
    );
    let again = store.claim_deliveries(claim(5_000)).await.unwrap();
    store
        .record_attempt(attempt(
            &again[0],
            5_000,
            Some(200),
            AfterAttempt::Delivered,
        ))
        .await
        .unwrap();
    assert_eq!(store.next_due_ms(&dests(), 0).await.unwrap(), None);
}
