//! Recording attempts: a delivery moves to retrying, delivered or dead, falls due again
//! at its retry time (which the worker sleeps until), and only the claim that made an
//! attempt may move it on. Each attempt is kept with the response it got.

use std::sync::Arc;

use super::fixtures::{LEASE, attempt, claim, dests, event, event_on, state_of};
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

/// Many sends finishing at once: every record is answered only once it is stored, each
/// moves its own delivery, and a claim that never reported (its process died between
/// claim and record) is claimed again when its lease ends, as its first attempt.
pub async fn attempts_reported_together_are_each_recorded_and_move_their_delivery(
    store: Arc<dyn Store>,
) {
    const N: usize = 120;
    let t0 = 4_000_000;
    for i in 0..N {
        store
            .insert_event(event("s", &format!("k{i}"), t0, 1))
            .await
            .unwrap();
    }
    let mut claimed = Vec::new();
    while claimed.len() < N {
        let mut c = claim(t0);
        c.limit = 50;
        let got = store.claim_deliveries(c).await.unwrap();
        assert!(!got.is_empty(), "all {N} are due");
        claimed.extend(got);
    }
    // A fifth never report; the others report all at once.
    let outcome = |i: usize| match i % 3 {
        0 => AfterAttempt::Delivered,
        1 => AfterAttempt::RetryAt(t0 + 10_000 + i as i64),
        _ => AfterAttempt::Dead,
    };
    let mut reports = tokio::task::JoinSet::new();
    for (i, d) in claimed.iter().enumerate().filter(|(i, _)| i % 5 != 4) {
        let record = attempt(d, t0, Some(if i % 3 == 0 { 200 } else { 503 }), outcome(i));
        let store = store.clone();
        reports.spawn(async move { store.record_attempt(record).await });
    }
    while let Some(done) = reports.join_next().await {
        done.unwrap().unwrap();
    }
    for (i, d) in claimed.iter().enumerate() {
        let stored = store.get_delivery(&d.id).await.unwrap().unwrap();
        if i % 5 == 4 {
            assert_eq!((stored.state.as_str(), stored.attempts), ("in_flight", 0));
            assert!(stored.attempt_log.is_empty());
            continue;
        }
        assert_eq!(
            (stored.state.as_str(), stored.attempts),
            (outcome(i).state(), 1),
            "delivery {i}"
        );
        assert_eq!(stored.attempt_log.len(), 1);
        assert_eq!(stored.attempt_log[0].number, 1);
        if let AfterAttempt::RetryAt(at) = outcome(i) {
            assert_eq!(stored.next_attempt_at_ms, at);
        }
    }
    assert_eq!(
        store.next_due_ms(&dests(), t0).await.unwrap(),
        Some(t0 + 10_001),
        "the earliest retry (a lease ends later)"
    );
    // The unreported claims come back when their leases end, still at their first try.
    let mut again = claim(t0 + LEASE);
    again.limit = N;
    let again = store.claim_deliveries(again).await.unwrap();
    let unreported: Vec<_> = claimed
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 == 4 || outcome(*i).state() == "retrying")
        .map(|(_, d)| d.id.clone())
        .collect();
    let mut expected = unreported;
    expected.sort();
    assert_eq!(super::fixtures::ids(&again), expected);
    assert!(
        again
            .iter()
            .filter(|d| claimed.iter().position(|c| c.id == d.id).unwrap() % 5 == 4)
            .all(|d| d.attempt == 1)
    );
}

/// A slow claim's late report and the newer claim's report arriving together: both are
/// kept, and only the newer claim moves the delivery.
pub async fn a_late_report_racing_the_newer_claims_report_is_kept_but_does_not_decide(
    store: Arc<dyn Store>,
) {
    let t0 = 5_000_000;
    store.insert_event(event("s", "k", t0, 1)).await.unwrap();
    let first = store.claim_deliveries(claim(t0)).await.unwrap();
    let second = store.claim_deliveries(claim(t0 + LEASE)).await.unwrap();
    assert_eq!(first[0].id, second[0].id);
    let late = attempt(&first[0], t0, Some(500), AfterAttempt::Dead);
    let newer = attempt(&second[0], t0 + LEASE, Some(200), AfterAttempt::Delivered);
    let (a, b) = tokio::join!(store.record_attempt(late), store.record_attempt(newer));
    a.unwrap();
    b.unwrap();
    let stored = store.get_delivery(&first[0].id).await.unwrap().unwrap();
    assert_eq!(stored.state, "delivered");
    assert_eq!(stored.attempt_log.len(), 2, "both attempts are kept");
}

/// A record sent again (its first answer was lost, though it landed) changes nothing:
/// one attempt, the delivery as the first record left it.
pub async fn an_attempt_recorded_twice_counts_once(store: Arc<dyn Store>) {
    let t0 = 9_000_000;
    store.insert_event(event("s", "k", t0, 1)).await.unwrap();
    let claimed = store.claim_deliveries(claim(t0)).await.unwrap();
    let record = attempt(
        &claimed[0],
        t0,
        Some(503),
        AfterAttempt::RetryAt(t0 + 5_000),
    );
    store.record_attempt(record.clone()).await.unwrap();
    store.record_attempt(record).await.unwrap();
    assert_eq!(
        state_of(&*store, &claimed[0].id).await,
        ("retrying".to_owned(), 1)
    );
    let d = store.get_delivery(&claimed[0].id).await.unwrap().unwrap();
    assert_eq!(d.attempt_log.len(), 1);
    assert_eq!(
        store.next_due_ms(&dests(), t0).await.unwrap(),
        Some(t0 + 5_000)
    );
}
