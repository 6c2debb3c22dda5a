//! Claiming due deliveries: per destination, oldest due first, up to a limit, skipping
//! paused routes, and held under a lease until it ends.

use std::sync::Arc;

use super::fixtures::{LEASE, claim, dests, event};
use crate::store::{AfterAttempt, Claim, Inserted, Pausable, Paused, Store};

pub async fn claims_carry_the_event_and_hold_until_the_lease_ends(store: Arc<dyn Store>) {
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
}

pub async fn claims_respect_the_limit_and_due_order(store: Arc<dyn Store>) {
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
}

pub async fn claims_and_due_times_are_per_destination(store: Arc<dyn Store>) {
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
}

pub async fn paused_routes_are_skipped_and_pauses_are_kept(store: Arc<dyn Store>) {
    store.insert_event(event("s", "k", 9_000, 1)).await.unwrap();
    let skipping = Claim {
        skip_routes: vec!["r".to_owned()],
        ..claim(9_000)
    };
    assert!(store.claim_deliveries(skipping).await.unwrap().is_empty());
    assert_eq!(store.claim_deliveries(claim(9_000)).await.unwrap().len(), 1);

    store
        .set_paused(Pausable::Route, "r", true, Some("timed out"), 1)
        .await
        .unwrap();
    store
        .set_paused(Pausable::Destination, "d", true, None, 1)
        .await
        .unwrap();
    store
        .set_paused(Pausable::Destination, "d", true, None, 2)
        .await
        .unwrap(); // twice is once
    store
        .set_paused(Pausable::Destination, "d", false, None, 3)
        .await
        .unwrap();
    store
        .set_paused(Pausable::Destination, "e", true, None, 4)
        .await
        .unwrap();
    let paused = |kind, name: &str, reason: Option<&str>| Paused {
        kind,
        name: name.to_owned(),
        reason: reason.map(str::to_owned),
    };
    assert_eq!(
        store.paused().await.unwrap(),
        [
            paused(Pausable::Destination, "e", None),
            paused(Pausable::Route, "r", Some("timed out")),
        ]
    );
    // Pausing again replaces the reason: an operator's pause has none.
    store
        .set_paused(Pausable::Route, "r", true, None, 5)
        .await
        .unwrap();
    assert_eq!(
        store.paused().await.unwrap()[1],
        paused(Pausable::Route, "r", None)
    );
}

/// An event whose one delivery (route `r` to `d`) has the route's `delay` and
/// `priority`.
fn ranked(key: &str, at: i64, delay_ms: i64, priority: u8) -> crate::store::NewEvent {
    let mut e = event("s", key, at, 1);
    e.deliveries[0].delay_ms = delay_ms;
    e.deliveries[0].priority = priority;
    e
}

pub async fn a_delay_sets_the_first_due_time_and_priority_overtakes_by_minutes(
    store: Arc<dyn Store>,
) {
    let t0 = 10_000_000;
    let minute = crate::store::PRIORITY_STEP_MS;
    // Due at t0 (priority 0); at t0 + 5 min with priority 9 (ranked 4 min before t0);
    // at t0 + 12 min with priority 3 (ranked t0 + 9 min); at t0 + 19 min with priority
    // 9 (ranked t0 + 10 min: overtaking is bounded, so it comes after the one of 3).
    let mut ids = Vec::new();
    for (key, delay, priority) in [
        ("plain", 0, 0),
        ("urgent", 5 * minute, 9),
        ("later", 12 * minute, 3),
        ("much-later", 19 * minute, 9),
    ] {
        let e = ranked(key, t0, delay, priority);
        ids.push((key, e.deliveries[0].id.clone()));
        store.insert_event(e).await.unwrap();
    }
    // The delay holds: before its due time a delivery is not claimed, and the next due
    // time after the plain one is the delayed one's.
    let first = store.claim_deliveries(claim(t0)).await.unwrap();
    assert_eq!(super::fixtures::ids(&first), vec![ids[0].1.clone()]);
    store
        .record_attempt(super::fixtures::attempt(
            &first[0],
            t0,
            Some(200),
            AfterAttempt::Delivered,
        ))
        .await
        .unwrap();
    assert_eq!(
        store.next_due_ms(&dests(), t0).await.unwrap(),
        Some(t0 + 5 * minute)
    );
    assert!(
        store
            .claim_deliveries(claim(t0 + 5 * minute - 1))
            .await
            .unwrap()
            .is_empty()
    );

    // All due, claimed one at a time: by rank, not by due time.
    for (key, delay, priority) in [("plain-2", 0, 0), ("plain-3", 0, 0)] {
        let e = ranked(key, t0, delay, priority);
        ids.push((key, e.deliveries[0].id.clone()));
        store.insert_event(e).await.unwrap();
    }
    let now = t0 + 20 * minute;
    let mut order = Vec::new();
    loop {
        let one = Claim {
            limit: 1,
            ..claim(now)
        };
        let got = store.claim_deliveries(one).await.unwrap();
        let Some(d) = got.first() else { break };
        let key = ids.iter().find(|(_, id)| *id == d.id).map(|(k, _)| *k);
        order.push(key.expect("a delivery of this check"));
    }
    assert_eq!(
        order,
        vec!["urgent", "plain-2", "plain-3", "later", "much-later"]
    );
}

pub async fn a_batch_sees_its_due_deliveries_and_expired_leases_and_claims_its_route_only(
    store: Arc<dyn Store>,
) {
    let t0 = 20_000_000;
    for (i, route) in ["r", "r", "r", "other"].iter().enumerate() {
        let e = super::fixtures::event_on("s", &format!("k{i}"), t0 + i as i64, 1, &[(route, "d")]);
        store.insert_event(e).await.unwrap();
    }
    let due = store.batch_due("d", "r", t0 + 10, 100).await.unwrap();
    assert_eq!(
        due,
        crate::store::BatchDue {
            count: 3,
            oldest_due_ms: Some(t0),
            retry: false
        }
    );
    assert_eq!(
        store.batch_due("d", "r", t0 + 10, 2).await.unwrap().count,
        2,
        "capped"
    );
    assert_eq!(
        store.batch_due("d", "r", t0 - 1, 100).await.unwrap().count,
        0
    );

    let only = Claim {
        only_route: Some("r".into()),
        ..claim(t0 + 10)
    };
    let claimed = store.claim_deliveries(only.clone()).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|d| d.route == "r"));
    // In flight: nothing due; once the lease has run out (its sender died), they are
    // due again at once, as a retry.
    assert_eq!(
        store.batch_due("d", "r", t0 + 20, 100).await.unwrap().count,
        0
    );
    let expired = store
        .batch_due("d", "r", t0 + 10 + LEASE, 100)
        .await
        .unwrap();
    assert_eq!((expired.count, expired.retry), (3, true));
    let again = Claim {
        now_ms: t0 + 10 + LEASE,
        ..only
    };
    assert_eq!(store.claim_deliveries(again).await.unwrap().len(), 3);
}
