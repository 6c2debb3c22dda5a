//! Ingest's writes: an event is stored as received with its pending deliveries, or
//! recorded as a duplicate of an earlier one within its dedup window, also when the
//! repeats arrive at once.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};

use super::fixtures::{HOUR_MS, event, event_on, insert, request};
use crate::id;
use crate::ingest::verify::Verifier;
use crate::store::{DeliverySummary, EventQuery, Inserted, NewDelivery, NewEvent, Store, headers};

pub async fn dedup_holds_within_the_window_and_ends_after_it(store: Arc<dyn Store>) {
    let window = 24 * HOUR_MS;
    let t0 = 1_700_000_000_000;

    let first = store
        .insert_event(event("s", "k", t0, window))
        .await
        .unwrap();
    let Inserted::New { id: first_id } = first else {
        panic!("first is new")
    };
    // Inside the window, up to its last millisecond: duplicates of the first.
    for at in [t0 + 1, t0 + window] {
        let r = store
            .insert_event(event("s", "k", at, window))
            .await
            .unwrap();
        assert_eq!(
            r,
            Inserted::Duplicate {
                original_id: first_id.clone()
            }
        );
    }
    // Another source, or another key: new.
    assert!(matches!(
        store
            .insert_event(event("other", "k", t0 + 2, window))
            .await
            .unwrap(),
        Inserted::New { .. }
    ));
    assert!(matches!(
        store
            .insert_event(event("s", "k2", t0 + 2, window))
            .await
            .unwrap(),
        Inserted::New { .. }
    ));
    // Past the window: a new event, which later repeats are duplicates of.
    let later = store
        .insert_event(event("s", "k", t0 + window + 1, window))
        .await
        .unwrap();
    let Inserted::New { id: later_id } = later else {
        panic!("past the window is new")
    };
    let r = store
        .insert_event(event("s", "k", t0 + window + 2, window))
        .await
        .unwrap();
    assert_eq!(
        r,
        Inserted::Duplicate {
            original_id: later_id
        }
    );

    let stored = store.get_event(&first_id).await.unwrap().unwrap();
    assert_eq!(stored.duplicates, 2);
    assert_eq!(stored.deliveries.len(), 1, "repeats add no deliveries");
}

pub async fn concurrent_writers_are_all_answered_and_all_stored(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..500 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .insert_event(event("s", &format!("k{i}"), 1_000 + i, HOUR_MS))
                .await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Inserted::New { id } => ids.push(id),
            other => panic!("unexpected {other:?}"),
        }
    }
    let listed = store
        .list_events(EventQuery {
            source: Some("s".into()),
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 500);
    ids.sort();
    let mut listed_ids: Vec<String> = listed.into_iter().map(|e| e.request.id).collect();
    listed_ids.sort();
    assert_eq!(ids, listed_ids);
}

/// A sender retrying a request many times at once (or several senders of the same
/// event) must still make one event: the dedup check and the insert are one step.
pub async fn concurrent_repeats_of_one_request_make_one_event(store: Arc<dyn Store>) {
    const REPEATS: usize = 50;
    let mut tasks = Vec::new();
    for i in 0..REPEATS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .insert_event(event("s", "same", 5_000 + i as i64, HOUR_MS))
                .await
        }));
    }
    let mut new = Vec::new();
    let mut originals = Vec::new();
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Inserted::New { id } => new.push(id),
            Inserted::Duplicate { original_id } => originals.push(original_id),
        }
    }
    assert_eq!(new.len(), 1, "exactly one of the repeats is new");
    assert!(
        originals.iter().all(|o| *o == new[0]),
        "every other repeat names it"
    );
    let stored = store.get_event(&new[0]).await.unwrap().unwrap();
    assert_eq!(stored.duplicates, REPEATS as i64 - 1);
    assert_eq!(stored.deliveries.len(), 1);
    let listed = store
        .list_events(EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

pub async fn an_event_is_stored_as_received_with_one_pending_delivery_per_route(
    store: Arc<dyn Store>,
) {
    let mut req = request("github", "k", 42_000);
    req.method = Method::PUT;
    req.path = "/in/github/push".into();
    req.query = Some("a=1&b=%20".into());
    req.remote_addr = Some("192.0.2.7:4711".parse().unwrap());
    // Bytes, not text: a body that is not UTF-8 and a header value that is not either,
    // with a repeated header whose order matters.
    let body = Bytes::from_static(b"\x00\xff{\"not\": \"utf-8\"}\r\n");
    req.body = body.clone();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.append("x-seen", HeaderValue::from_static("first"));
    headers.append("x-seen", HeaderValue::from_static("second"));
    headers.insert("x-raw", HeaderValue::from_bytes(b"caf\xe9").unwrap());
    req.headers = headers;
    let routes = [("to-ci", "ci"), ("to-chat", "chat")];
    let new = NewEvent::new(
        Verifier::None.verify(req).unwrap(),
        id::new(id::EVENT),
        "delivery-123".into(),
        HOUR_MS,
        routes
            .iter()
            .map(|(route, destination)| NewDelivery {
                id: id::new(id::DELIVERY),
                route: (*route).into(),
                destination: (*destination).into(),
                needs_preparing: false,
                ordered: false,
                delay_ms: 0,
                priority: 0,
            })
            .collect(),
    );
    let sent_headers = headers::decode(&new.headers).unwrap();
    let mut expected_deliveries: Vec<DeliverySummary> = new
        .deliveries
        .iter()
        .map(|d| DeliverySummary {
            id: d.id.clone(),
            route: d.route.clone(),
            destination: d.destination.clone(),
            state: "pending".into(),
            attempts: 0,
        })
        .collect();
    expected_deliveries.sort_by(|a, b| a.id.cmp(&b.id));
    let id = insert(&*store, new).await;

    let stored = store.get_event(&id).await.unwrap().unwrap();
    let r = &stored.request;
    assert_eq!(r.id, id);
    assert_eq!(r.source, "github");
    assert_eq!(r.received_at_ms, 42_000);
    assert_eq!(r.method, "PUT");
    assert_eq!(r.path, "/in/github/push");
    assert_eq!(r.query.as_deref(), Some("a=1&b=%20"));
    assert_eq!(r.remote_addr.as_deref(), Some("192.0.2.7:4711"));
    assert_eq!(r.headers, sent_headers, "headers byte for byte, in order");
    assert_eq!(r.body.as_deref(), Some(&body[..]));
    assert_eq!(r.body_size, body.len() as i64);
    assert_eq!(stored.dedup_key, "delivery-123");
    assert_eq!(stored.duplicates, 0);
    let mut deliveries = stored.deliveries.clone();
    deliveries.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(deliveries, expected_deliveries);

    assert!(
        store
            .get_event(&id::new(id::EVENT))
            .await
            .unwrap()
            .is_none()
    );
    // An event without routes is stored all the same (it is searchable and replayable).
    let lonely = insert(&*store, event_on("s", "none", 43_000, 1, &[])).await;
    let stored = store.get_event(&lonely).await.unwrap().unwrap();
    assert!(stored.deliveries.is_empty());
}
