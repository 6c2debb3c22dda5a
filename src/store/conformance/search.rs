//! Event search: every filter of [`EventQuery`], both orders, bodies on request, and
//! paging by cursor.
//!
//! Receive times here are near the wall clock, and each id is of its event's receive
//! time, as ingest makes them: a backend may use that to narrow a time range by id.

use std::sync::Arc;

use super::fixtures::{attempt, claim, event, event_on, insert};
use crate::store::{AfterAttempt, EventQuery, NewEvent, Store};

/// `e` with an id of its receive time, as ingest stamps events.
fn stamped(mut e: NewEvent) -> NewEvent {
    e.id = crate::id::new_at(crate::id::EVENT, e.received_at_ms);
    e
}

fn query(limit: usize) -> EventQuery {
    EventQuery {
        limit,
        ..Default::default()
    }
}

async fn listed(store: &dyn Store, q: EventQuery) -> Vec<String> {
    store
        .list_events(q)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.request.id)
        .collect()
}

pub async fn listing_filters_by_source_time_status_and_dedup_key(store: Arc<dyn Store>) {
    let t = crate::clock::now_ms();
    // a has a second delivery, to another destination, that stays pending.
    let a = insert(
        &*store,
        stamped(event_on(
            "stripe",
            "ka",
            t - 3_000,
            1,
            &[("r", "d"), ("r2", "d2")],
        )),
    )
    .await;
    let b = insert(&*store, stamped(event("github", "kb", t - 2_000, 1))).await;
    let c = insert(&*store, stamped(event("stripe", "kc", t - 1_000, 1))).await;
    // The same dedup key as a, past a's window: an event of its own.
    let d = insert(&*store, stamped(event("stripe", "ka", t - 500, 1))).await;
    let (a, b, c, d) = (a.as_str(), b.as_str(), c.as_str(), d.as_str());

    // a delivered, b dead, c retrying, d in flight.
    let claimed = store.claim_deliveries(claim(t)).await.unwrap();
    assert_eq!(claimed.len(), 4);
    let of = |event_id: &str| claimed.iter().find(|c| c.event_id == event_id).unwrap();
    for (id, then) in [
        (a, AfterAttempt::Delivered),
        (b, AfterAttempt::Dead),
        (c, AfterAttempt::RetryAt(t + 60_000)),
    ] {
        store
            .record_attempt(attempt(of(id), t, Some(500), then))
            .await
            .unwrap();
    }

    assert_eq!(
        listed(&*store, query(10)).await,
        [d, c, b, a],
        "newest first"
    );
    let by_source = EventQuery {
        source: Some("stripe".into()),
        ..query(10)
    };
    assert_eq!(listed(&*store, by_source.clone()).await, [d, c, a]);

    // Since is inclusive, until exclusive.
    let since = EventQuery {
        since_ms: Some(t - 2_000),
        ..query(10)
    };
    assert_eq!(listed(&*store, since).await, [d, c, b]);
    let until = EventQuery {
        until_ms: Some(t - 1_000),
        ..query(10)
    };
    assert_eq!(listed(&*store, until).await, [b, a]);
    let between = EventQuery {
        since_ms: Some(t - 2_000),
        until_ms: Some(t - 1_000),
        ..query(10)
    };
    assert_eq!(listed(&*store, between).await, [b]);
    let recent_stripe = EventQuery {
        since_ms: Some(t - 1_000),
        ..by_source
    };
    assert_eq!(listed(&*store, recent_stripe).await, [d, c]);

    // Status: events with at least one delivery in that state.
    for (status, expected) in [
        ("delivered", vec![a]),
        ("pending", vec![a]),
        ("dead", vec![b]),
        ("retrying", vec![c]),
        ("in_flight", vec![d]),
        ("filtered", vec![]),
    ] {
        let q = EventQuery {
            status: Some(status.into()),
            ..query(10)
        };
        assert_eq!(listed(&*store, q).await, expected, "status {status}");
    }

    let by_key = EventQuery {
        dedup_key: Some("ka".into()),
        ..query(10)
    };
    assert_eq!(listed(&*store, by_key).await, [d, a]);
    let nothing = EventQuery {
        dedup_key: Some("ka".into()),
        source: Some("github".into()),
        ..query(10)
    };
    assert!(listed(&*store, nothing).await.is_empty());
}

pub async fn listing_pages_by_cursor_in_either_order_with_or_without_bodies(store: Arc<dyn Store>) {
    let t = crate::clock::now_ms();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(insert(&*store, event("s", &format!("k{i}"), t - 5_000 + i, 1)).await);
    }
    let page = |oldest_first: bool, cursor: Option<&String>| EventQuery {
        oldest_first,
        limit: 2,
        cursor: cursor.cloned(),
        ..Default::default()
    };

    let at = |positions: &[usize]| -> Vec<String> {
        positions.iter().map(|&i| ids[i].clone()).collect()
    };

    // Newest first: each page starts past the previous page's last id.
    assert_eq!(listed(&*store, page(false, None)).await, at(&[4, 3]));
    assert_eq!(
        listed(&*store, page(false, Some(&ids[3]))).await,
        at(&[2, 1])
    );
    assert_eq!(listed(&*store, page(false, Some(&ids[1]))).await, at(&[0]));
    assert!(listed(&*store, page(false, Some(&ids[0]))).await.is_empty());
    // Oldest first, the same way round.
    assert_eq!(listed(&*store, page(true, None)).await, at(&[0, 1]));
    assert_eq!(
        listed(&*store, page(true, Some(&ids[1]))).await,
        at(&[2, 3])
    );
    assert_eq!(listed(&*store, page(true, Some(&ids[3]))).await, at(&[4]));

    // Bodies only on request; sizes and deliveries always.
    let without = store.list_events(query(10)).await.unwrap();
    assert_eq!(without.len(), 5);
    for e in &without {
        assert!(e.request.body.is_none());
        assert_eq!(e.request.body_size, "body of k0".len() as i64);
        assert_eq!(e.deliveries.len(), 1);
        assert_eq!(e.deliveries[0].state, "pending");
    }
    let with = store
        .list_events(EventQuery {
            with_bodies: true,
            ..query(10)
        })
        .await
        .unwrap();
    let bodies: Vec<Vec<u8>> = with
        .into_iter()
        .map(|e| e.request.body.expect("a body"))
        .collect();
    assert_eq!(bodies[0], b"body of k4");
    assert_eq!(bodies[4], b"body of k0");
}
