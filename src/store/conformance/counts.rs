//! Delivery counts per route, destination and state: the backlog, the dead-letter size
//! and the metrics are read from them.

use std::sync::Arc;

use super::fixtures::{attempt, claim_to, event_on, prepared};
use crate::store::{AfterAttempt, DeliveryCount, Preparation, Store};

pub async fn delivery_counts_are_per_route_destination_and_state(store: Arc<dyn Store>) {
    assert!(store.delivery_counts().await.unwrap().is_empty());
    for i in 0..4 {
        let mut e = event_on(
            "s",
            &format!("k{i}"),
            1_000 + i,
            1,
            &[("a", "d1"), ("b", "d2")],
        );
        // Route b has a filter.
        e.deliveries[1].needs_preparing = true;
        store.insert_event(e).await.unwrap();
    }
    // On a→d1: one delivered, one dead, one retrying, one in flight.
    let claimed = store.claim_deliveries(claim_to("d1", 2_000)).await.unwrap();
    assert_eq!(claimed.len(), 4);
    for (d, then) in claimed.iter().zip([
        AfterAttempt::Delivered,
        AfterAttempt::Dead,
        AfterAttempt::RetryAt(9_000),
    ]) {
        store
            .record_attempt(attempt(d, 2_000, Some(500), then))
            .await
            .unwrap();
    }
    // On b→d2: the filter lets one through and filters three.
    let waiting = store.unprepared(10).await.unwrap();
    assert_eq!(waiting.len(), 4);
    let outcomes = [
        Preparation::Raw,
        Preparation::Filtered,
        Preparation::Filtered,
        Preparation::Filtered,
    ];
    store
        .prepare(
            waiting
                .iter()
                .zip(outcomes)
                .map(|(u, outcome)| prepared(&u.id, None, outcome))
                .collect(),
            2_000,
        )
        .await
        .unwrap();

    let mut counts = store.delivery_counts().await.unwrap();
    counts.sort_by(|x, y| (&x.route, &x.state).cmp(&(&y.route, &y.state)));
    let count = |route: &str, destination: &str, state: &str, count: u64| DeliveryCount {
        route: route.into(),
        destination: destination.into(),
        state: state.into(),
        count,
    };
    assert_eq!(
        counts,
        [
            count("a", "d1", "dead", 1),
            count("a", "d1", "delivered", 1),
            count("a", "d1", "in_flight", 1),
            count("a", "d1", "retrying", 1),
            count("b", "d2", "filtered", 3),
            count("b", "d2", "pending", 1),
        ]
    );
    let backlog: u64 = counts
        .iter()
        .filter(|c| c.is_backlog())
        .map(|c| c.count)
        .sum();
    assert_eq!(backlog, 3);
}
