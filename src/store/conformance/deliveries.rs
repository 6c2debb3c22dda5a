//! Deliveries as the admin API lists them: newest first, by state, route and
//! destination, a page at a time, without attempts or payloads.

use std::sync::Arc;

use super::fixtures::{claim_to, event_on};
use crate::store::{DeliveryQuery, Store};

async fn listed(store: &dyn Store, query: DeliveryQuery) -> Vec<String> {
    let found = store.list_deliveries(query).await.unwrap();
    assert!(
        found
            .iter()
            .all(|d| d.attempt_log.is_empty() && d.payload.is_none())
    );
    found.into_iter().map(|d| d.id).collect()
}

pub async fn deliveries_are_listed_newest_first_by_state_route_and_destination(
    store: Arc<dyn Store>,
) {
    // Three events, each with a delivery r1→d1 and one r2→d2.
    let mut newest_first = Vec::new();
    let mut on_r1 = Vec::new();
    for i in 0..3 {
        let e = event_on(
            "s",
            &format!("k{i}"),
            1_000 + i,
            1,
            &[("r1", "d1"), ("r2", "d2")],
        );
        newest_first.extend(e.deliveries.iter().map(|d| d.id.clone()));
        on_r1.push(e.deliveries[0].id.clone());
        store.insert_event(e).await.unwrap();
    }
    newest_first.reverse();
    on_r1.reverse();
    let on_r2: Vec<String> = newest_first
        .iter()
        .filter(|id| !on_r1.contains(id))
        .cloned()
        .collect();
    let query = |limit: usize| DeliveryQuery {
        limit,
        ..Default::default()
    };

    assert_eq!(listed(&*store, query(10)).await, newest_first);
    let r1 = DeliveryQuery {
        route: Some("r1".into()),
        ..query(10)
    };
    assert_eq!(listed(&*store, r1.clone()).await, on_r1);
    let d2 = DeliveryQuery {
        destination: Some("d2".into()),
        ..query(10)
    };
    assert_eq!(listed(&*store, d2).await, on_r2);

    store.claim_deliveries(claim_to("d1", 2_000)).await.unwrap();
    let in_flight = DeliveryQuery {
        state: Some("in_flight".into()),
        ..query(10)
    };
    assert_eq!(listed(&*store, in_flight).await, on_r1);
    let r1_pending = DeliveryQuery {
        state: Some("pending".into()),
        ..r1.clone()
    };
    assert!(listed(&*store, r1_pending).await.is_empty());

    // A page at a time: each strictly older than the last id seen.
    let first = DeliveryQuery {
        limit: 2,
        ..r1.clone()
    };
    assert_eq!(listed(&*store, first).await, on_r1[..2]);
    let rest = DeliveryQuery {
        limit: 2,
        before: Some(on_r1[1].clone()),
        ..r1
    };
    assert_eq!(listed(&*store, rest).await, on_r1[2..]);
}
