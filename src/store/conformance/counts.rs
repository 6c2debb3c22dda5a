//! Delivery counts per route, destination and state, open and dead ones: the backlog,
//! the dead-letter size and the metrics are read from them.

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
    let waiting = store.unprepared(10, &[]).await.unwrap();
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
                .map(|(u, outcome)| prepared(u, None, outcome))
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
            count("a", "d1", "in_flight", 1),
            count("a", "d1", "retrying", 1),
            count("b", "d2", "pending", 1),
        ],
        "open and dead deliveries only: the delivered and filtered ones are not read"
    );
    let backlog: u64 = counts
        .iter()
        .filter(|c| c.is_backlog())
        .map(|c| c.count)
        .sum();
    assert_eq!(backlog, 3);
}

/// The dashboard's last hour: events per source in time buckets, what the attempts led
/// to, attempts per destination with their failures; older ones left out. The same
/// before and after the tally is written to the store, and after it is written twice.
pub async fn activity_counts_the_window_only(store: Arc<dyn Store>) {
    use crate::store::activity::{DestinationActivity, Window};
    let now = crate::clock::now_ms();
    let window = Window::aligned(now, 3_600_000, 12);
    // Two hours ago: outside the window.
    let mut old = event_on("old", "k-old", now - 2 * 3_600_000, 1, &[("a", "d1")]);
    old.id = crate::id::new_at(crate::id::EVENT, old.received_at_ms);
    old.deliveries[0].id = crate::id::new_at(crate::id::DELIVERY, old.received_at_ms);
    store.insert_event(old).await.unwrap();
    for (i, (source, ago_ms)) in [("s", 1_000), ("s", 2_000), ("t", 40 * 60_000)]
        .into_iter()
        .enumerate()
    {
        let at = now - ago_ms;
        let mut e = event_on(source, &format!("k{i}"), at, 1, &[("a", "d1")]);
        e.id = crate::id::new_at(crate::id::EVENT, at);
        store.insert_event(e).await.unwrap();
    }
    let claimed = store.claim_deliveries(claim_to("d1", now)).await.unwrap();
    assert_eq!(claimed.len(), 4);
    for (d, status) in claimed.iter().zip([Some(200), Some(500)]) {
        let then = if status == Some(200) {
            AfterAttempt::Delivered
        } else {
            AfterAttempt::RetryAt(now + 60_000)
        };
        store
            .record_attempt(attempt(d, now, status, then))
            .await
            .unwrap();
    }

    let before = store.activity(window).await.unwrap();
    store.flush_activity().await.unwrap();
    let activity = store.activity(window).await.unwrap();
    assert_eq!(activity, before, "written counts are read once");
    store.flush_activity().await.unwrap();
    assert_eq!(store.activity(window).await.unwrap(), before);
    let sources: Vec<(&str, u64, Option<usize>)> = activity
        .sources
        .iter()
        .map(|s| {
            let last = s.per_bucket.iter().rposition(|n| *n > 0);
            (s.source.as_str(), s.per_bucket.iter().sum(), last)
        })
        .collect();
    assert_eq!(sources, [("s", 2, Some(11)), ("t", 1, Some(3))]);
    assert_eq!(
        activity.deliveries,
        [("delivered".to_owned(), 1), ("retrying".to_owned(), 1)]
    );
    assert_eq!(
        activity.destinations,
        [DestinationActivity {
            destination: "d1".into(),
            attempts: 2,
            failed: 1
        }]
    );
}
