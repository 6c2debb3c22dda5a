//! What the checks build their data from: requests, events with their deliveries,
//! claims, attempts and preparations, with every instant passed in.

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::id;
use crate::ingest::request::Unverified;
use crate::ingest::verify::Verifier;
use crate::store::retention::{Cutoffs, Purge};
use crate::store::{
    AfterAttempt, AttemptRecord, Claim, ClaimedDelivery, Inserted, NewDelivery, NewEvent,
    Preparation, Prepared, Store, Unprepared,
};

pub const HOUR_MS: i64 = 3_600_000;
/// The lease of every claim made with [`claim`].
pub const LEASE: i64 = 60_000;

/// A request to source `source` whose body is `body of {key}`.
pub fn request(source: &str, key: &str, received_at_ms: i64) -> Unverified {
    Unverified {
        source: source.to_owned(),
        method: Method::POST,
        path: format!("/in/{source}"),
        query: None,
        headers: HeaderMap::new(),
        body: Bytes::from(format!("body of {key}")),
        remote_addr: None,
        received_at_ms,
    }
}

/// An event with dedup key `key` and one delivery, route `r` to destination `d`.
pub fn event(source: &str, key: &str, received_at_ms: i64, window_ms: i64) -> NewEvent {
    event_on(source, key, received_at_ms, window_ms, &[("r", "d")])
}

/// An event with one delivery per (route, destination).
pub fn event_on(
    source: &str,
    key: &str,
    received_at_ms: i64,
    window_ms: i64,
    routes: &[(&str, &str)],
) -> NewEvent {
    let verified = Verifier::None
        .verify(request(source, key, received_at_ms))
        .expect("none accepts all");
    NewEvent::new(
        verified,
        id::new(id::EVENT),
        key.to_owned(),
        window_ms,
        routes
            .iter()
            .map(|(route, destination)| NewDelivery {
                id: id::new(id::DELIVERY),
                route: (*route).to_owned(),
                destination: (*destination).to_owned(),
                needs_preparing: false,
                ordered: false,
                delay_ms: 0,
                priority: 0,
            })
            .collect(),
    )
}

/// An event of source `s` whose one delivery (`r` to `d`) waits to be prepared.
pub fn waiting(key: &str, at: i64) -> NewEvent {
    let mut e = event("s", key, at, 1);
    e.deliveries[0].needs_preparing = true;
    e
}

/// Inserts an event that must be new, and returns its id.
pub async fn insert(store: &dyn Store, event: NewEvent) -> String {
    match store.insert_event(event).await.expect("insert") {
        Inserted::New { id } => id,
        other => panic!("expected a new event, got {other:?}"),
    }
}

/// A retention pass over `source` (and every other source) that removes events received
/// before `events_before_ms`, at most 100 of them.
pub fn purge_events_before(source: &str, events_before_ms: i64) -> Purge {
    let cutoff = Cutoffs {
        events: Some(events_before_ms),
        ..Cutoffs::default()
    };
    Purge {
        sources: vec![(source.to_owned(), cutoff)],
        others: cutoff,
        limit: 100,
        attempts_after: Default::default(),
    }
}

/// Claims up to 10 deliveries to destination `d` for [`LEASE`].
pub fn claim(now_ms: i64) -> Claim {
    claim_to("d", now_ms)
}

pub fn claim_to(destination: &str, now_ms: i64) -> Claim {
    Claim {
        destination: destination.to_owned(),
        skip_routes: Vec::new(),
        only_route: None,
        now_ms,
        lease_ms: LEASE,
        limit: 10,
    }
}

/// The destinations of [`claim`], for `next_due_ms`.
pub fn dests() -> Vec<String> {
    vec!["d".to_owned()]
}

/// An attempt of claimed delivery `d` (a status of 300 or more comes with an error).
pub fn attempt(
    d: &ClaimedDelivery,
    at: i64,
    status: Option<u16>,
    then: AfterAttempt,
) -> AttemptRecord {
    AttemptRecord {
        id: id::new(id::ATTEMPT),
        delivery_id: d.id.clone(),
        destination: d.destination.clone(),
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

pub fn prepared(waiting: &Unprepared, key: Option<&str>, outcome: Preparation) -> Prepared {
    Prepared {
        delivery_id: waiting.id.clone(),
        event_id: waiting.event.id.clone(),
        route: waiting.route.clone(),
        ordering_key: key.map(str::to_owned),
        deliver_at_ms: None,
        debounce_key: None,
        outcome,
    }
}

/// The ids of claimed deliveries, sorted (claims within one batch have no order).
pub fn ids(claimed: &[ClaimedDelivery]) -> Vec<String> {
    let mut ids: Vec<String> = claimed.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    ids
}

/// A delivery's state and attempt count.
pub async fn state_of(store: &dyn Store, delivery_id: &str) -> (String, i64) {
    let d = store
        .get_delivery(delivery_id)
        .await
        .expect("get delivery")
        .expect("the delivery exists");
    (d.state, d.attempts)
}

/// What the schema upgrade that adds the activity counters must count from the rows:
/// an event now and one two days ago, a failed and a delivered attempt. Returns `now`.
pub async fn rows_for_the_activity_backfill(store: &dyn Store) -> i64 {
    let now = crate::clock::now_ms();
    let mut old = event("s", "b", now - 48 * HOUR_MS, HOUR_MS);
    old.id = id::new_at(id::EVENT, old.received_at_ms);
    store
        .insert_event(event("s", "a", now - 1_000, HOUR_MS))
        .await
        .unwrap();
    store.insert_event(old).await.unwrap();
    let claimed = store.claim_deliveries(claim(now)).await.unwrap();
    for (d, status, then) in [
        (&claimed[0], Some(500), AfterAttempt::RetryAt(now + 60_000)),
        (&claimed[1], Some(200), AfterAttempt::Delivered),
    ] {
        store
            .record_attempt(attempt(d, now, status, then))
            .await
            .unwrap();
    }
    now
}

/// Checks what [`rows_for_the_activity_backfill`] left, read back as activity.
pub async fn check_the_activity_backfill(store: &dyn Store, now: i64) {
    let a = store
        .activity(crate::store::activity::Window::aligned(
            now,
            24 * HOUR_MS,
            24,
        ))
        .await
        .unwrap();
    let events: u64 = a.sources[0].per_bucket.iter().sum();
    assert_eq!((a.sources.len(), events), (1, 1), "{a:?}");
    assert_eq!(
        (a.destinations[0].attempts, a.destinations[0].failed),
        (2, 1)
    );
    // Which attempts left a delivery retrying is not in the rows; delivered is.
    assert_eq!(a.deliveries, [("delivered".to_owned(), 1)]);
}

/// An event of `source` received at `at`, whose id is of that time too (as ingest
/// makes them), with one delivery to destination `source`.
pub async fn event_at(store: &dyn Store, source: &str, key: &str, at: i64) -> String {
    let mut event = event_on(source, key, at, 1, &[("r", source)]);
    event.id = id::new_at(id::EVENT, at);
    insert(store, event).await
}

/// Claims the one due delivery to `destination` and records an attempt at `at`
/// leading to `then`; returns the delivery's id.
pub async fn attempt_at(
    store: &dyn Store,
    destination: &str,
    at: i64,
    then: AfterAttempt,
) -> String {
    let claimed = store
        .claim_deliveries(claim_to(destination, at))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "one delivery due to {destination}");
    let mut record = attempt(&claimed[0], at, Some(200), then);
    record.id = id::new_at(id::ATTEMPT, at);
    store.record_attempt(record).await.unwrap();
    claimed[0].id.clone()
}
