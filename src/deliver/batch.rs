//! A route's `batch`: its due deliveries sent many to a call, as one JSON array.
//!
//! Each event keeps its own delivery (its state, attempts and dead letter are per
//! event); a batch exists only while it is sent. The worker asks the store what is due
//! for the route ([`crate::store::Store::batch_due`]) and claims a batch when it is
//! [`ready`]: full, its oldest waited `max_wait`, or a retry among it. [`assemble`]
//! cuts what was claimed into calls under `max_events` and `max_bytes`; each call goes
//! out as a delivery of its own ([`as_delivery`]) whose body is [`body`], and every
//! member records the call's outcome as its attempt. Members that fail together are
//! due again together (one retry time for the call), so a retry resends the same batch
//! with the same `webhook-id` unless new events joined it.

use std::ops::Range;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::BatchConfig;
use crate::store::{BatchDue, ClaimedDelivery};

/// A batching route of a destination.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRoute {
    pub route: String,
    pub config: BatchConfig,
}

impl BatchRoute {
    pub fn max_wait_ms(&self) -> i64 {
        self.config.max_wait.as_millis_i64()
    }
}

/// The batching routes of `config`, by destination.
pub fn batches_of(config: &crate::config::Config) -> super::worker::Batches {
    let mut out = super::worker::Batches::new();
    for route in &config.routes {
        if let Some(batch) = route.config.batch {
            out.entry(route.destination.clone())
                .or_default()
                .push(BatchRoute {
                    route: route.name.clone(),
                    config: batch,
                });
        }
    }
    out
}

/// Whether a route's due deliveries make a batch now, later, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    Now,
    /// The oldest will have waited `max_wait` at this instant (ms).
    At(i64),
    Nothing,
}

/// A batch goes when it is full, when its oldest event has waited `max_wait` since it
/// fell due, or when it holds a retry (which has waited already).
pub fn ready(due: &BatchDue, route: &BatchRoute, now_ms: i64) -> Ready {
    let Some(oldest) = due.oldest_due_ms else {
        return Ready::Nothing;
    };
    let closes = oldest.saturating_add(route.max_wait_ms());
    if due.count >= route.config.max_events || due.retry || closes <= now_ms {
        Ready::Now
    } else {
        Ready::At(closes)
    }
}

/// Cuts `sizes` (each member's element, in claim order) into calls of at most
/// `max_events` members and `max_bytes` of array ([`call_bytes`]); a member too large
/// for `max_bytes` alone goes in a call of its own. Every member is in exactly one call,
/// in order.
pub fn assemble(sizes: &[usize], max_events: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let max_events = max_events.max(1);
    let mut calls = Vec::new();
    let mut start = 0;
    // The array so far: `[`, then each element with the `,` or `]` after it.
    let mut bytes = 1usize;
    for (i, size) in sizes.iter().enumerate() {
        let members = i - start;
        let with = bytes.saturating_add(size.saturating_add(1));
        if members > 0 && (members >= max_events || with > max_bytes) {
            calls.push(start..i);
            start = i;
            bytes = 1;
        }
        bytes = bytes.saturating_add(size.saturating_add(1));
    }
    if start < sizes.len() {
        calls.push(start..sizes.len());
    }
    calls
}

/// One member as an element of the array: its ids, source and receive time, and its
/// body: a transform's output, else the raw body as JSON when it parses, else as text.
pub fn element(d: &ClaimedDelivery) -> Vec<u8> {
    let body = match &d.payload {
        Some(payload) => serde_json::from_slice(payload).unwrap_or(Value::Null),
        None => serde_json::from_slice(&d.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&d.body).into_owned())),
    };
    serde_json::to_vec(&json!({
        "webhook_id": d.webhook_id(),
        "event_id": d.event_id,
        "source": d.source,
        "received_at": crate::clock::rfc3339(d.received_at_ms),
        "body": body,
    }))
    .unwrap_or_default()
}

/// The size of the array [`body`] makes of elements of `sizes`.
pub fn call_bytes(sizes: &[usize]) -> usize {
    sizes.iter().map(|s| s + 1).sum::<usize>() + 1 + usize::from(sizes.is_empty())
}

/// The JSON array of `elements`.
pub fn body(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(elements.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, e) in elements.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.push(b']');
    out
}

/// The call's `webhook-id`: the same for the same members, so a batch sent again is
/// recognised as a repeat.
pub fn batch_id(members: &[ClaimedDelivery]) -> String {
    let mut hash = Sha256::new();
    for d in members {
        hash.update(d.id.as_bytes());
        hash.update(b"\n");
    }
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("bat_{hex}")
}

/// The call as a delivery the destination kinds can send: the batch id as its id and
/// `webhook-id`, the array as its (JSON) payload, the highest attempt number of its
/// members, no headers passed on from any one event.
pub fn as_delivery(members: &[ClaimedDelivery], payload: Vec<u8>) -> Option<ClaimedDelivery> {
    let first = members.first()?;
    let id = batch_id(members);
    Some(ClaimedDelivery {
        id: id.clone(),
        event_id: id,
        route: first.route.clone(),
        destination: first.destination.clone(),
        attempt: members.iter().map(|d| d.attempt).max().unwrap_or(1),
        lease_until_ms: members.iter().map(|d| d.lease_until_ms).min().unwrap_or(0),
        source: first.source.clone(),
        received_at_ms: first.received_at_ms,
        headers: Vec::new(),
        body: Vec::new(),
        payload: Some(payload),
        part: None,
        replay_id: None,
        ordering_key: None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn route(max_events: usize, max_wait_ms: u64) -> BatchRoute {
        BatchRoute {
            route: "r".into(),
            config: BatchConfig {
                max_events,
                max_wait: crate::config::Span(std::time::Duration::from_millis(max_wait_ms)),
                max_bytes: crate::config::Size::mib(1),
            },
        }
    }

    #[test]
    fn a_batch_goes_full_or_after_its_wait_or_as_a_retry() {
        let r = route(10, 2_000);
        let due = |count, oldest, retry| BatchDue {
            count,
            oldest_due_ms: oldest,
            retry,
        };
        assert_eq!(ready(&due(0, None, false), &r, 5_000), Ready::Nothing);
        assert_eq!(
            ready(&due(3, Some(4_000), false), &r, 5_000),
            Ready::At(6_000)
        );
        assert_eq!(ready(&due(3, Some(4_000), false), &r, 6_000), Ready::Now);
        assert_eq!(ready(&due(10, Some(4_900), false), &r, 5_000), Ready::Now);
        assert_eq!(ready(&due(1, Some(4_900), true), &r, 5_000), Ready::Now);
    }

    #[test]
    fn the_array_holds_each_member_with_its_ids_and_body() {
        let member = |id: &str, body: &[u8], payload: Option<&[u8]>| ClaimedDelivery {
            id: id.into(),
            event_id: format!("evt_{id}"),
            route: "r".into(),
            destination: "d".into(),
            attempt: 1,
            lease_until_ms: 9,
            source: "shop".into(),
            received_at_ms: 1_700_000_000_000,
            headers: Vec::new(),
            body: body.to_vec(),
            payload: payload.map(<[u8]>::to_vec),
            part: None,
            replay_id: None,
            ordering_key: None,
        };
        let members = [
            member("a", br#"{"n":1}"#, None),
            member("b", b"plain text", None),
            member("c", b"raw", Some(br#"{"t":true}"#)),
        ];
        let elements: Vec<Vec<u8>> = members.iter().map(element).collect();
        let array: Value = serde_json::from_slice(&body(&elements)).unwrap();
        assert_eq!(array[0]["body"], json!({"n": 1}));
        assert_eq!(array[0]["webhook_id"], "evt_a");
        assert_eq!(array[0]["received_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(array[1]["body"], "plain text");
        assert_eq!(array[2]["body"], json!({"t": true}));
        let call = as_delivery(&members, body(&elements)).unwrap();
        assert!(call.webhook_id().starts_with("bat_"));
        assert_eq!(
            call.webhook_id(),
            batch_id(&members),
            "stable for the same members"
        );
        assert_ne!(call.webhook_id(), batch_id(&members[..2]));
        assert_eq!(call.content_type().as_deref(), Some("application/json"));
    }

    proptest! {
        /// Every member is in exactly one call, in order; no call is empty, over
        /// `max_events`, or over `max_bytes` unless it is one member alone.
        #[test]
        fn calls_cover_every_member_once_within_the_limits(
            sizes in proptest::collection::vec(0usize..3_000, 0..300),
            max_events in 1usize..50,
            max_bytes in 1usize..10_000,
        ) {
            let calls = assemble(&sizes, max_events, max_bytes);
            let mut next = 0;
            for call in &calls {
                prop_assert_eq!(call.start, next);
                prop_assert!(!call.is_empty());
                prop_assert!(call.len() <= max_events);
                let bytes = call_bytes(&sizes[call.clone()]);
                prop_assert!(bytes <= max_bytes || call.len() == 1);
                let elements: Vec<Vec<u8>> =
                    sizes[call.clone()].iter().map(|n| vec![b'1'; *n]).collect();
                prop_assert_eq!(body(&elements).len(), bytes);
                next = call.end;
            }
            prop_assert_eq!(next, sizes.len());
        }

        /// Calls are as full as the limits allow: the next member would not have fit.
        #[test]
        fn calls_are_cut_only_where_a_limit_says_so(
            sizes in proptest::collection::vec(0usize..3_000, 1..300),
            max_events in 1usize..50,
            max_bytes in 1usize..10_000,
        ) {
            let calls = assemble(&sizes, max_events, max_bytes);
            for pair in calls.windows(2) {
                let (call, next) = (&pair[0], &pair[1]);
                let bytes = call_bytes(&sizes[call.clone()]);
                prop_assert!(
                    call.len() == max_events || bytes + sizes[next.start] + 1 > max_bytes
                );
            }
        }
    }
}
