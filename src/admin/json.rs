//! JSON shapes of the admin API.

use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::store::{DeliverySummary, StoredDelivery, StoredEvent, StoredRejected, StoredRequest};

#[derive(Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What was received: the fields events and rejected requests share.
#[derive(Serialize)]
pub struct RequestJson {
    pub id: String,
    pub source: String,
    pub received_at: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Map<String, Value>,
    pub remote_addr: Option<String>,
    /// Size as received (a rejected request's stored body may be cut).
    pub body_size: i64,
    #[serde(flatten)]
    pub body: Option<BodyJson>,
}

#[derive(Serialize)]
pub struct EventJson {
    #[serde(flatten)]
    pub request: RequestJson,
    pub dedup_key: String,
    pub duplicates: i64,
    /// What the source's `redact` rule took out (`header:NAME`, JSON pointers).
    pub redacted: Vec<String>,
    /// The rule waits for every delivery to succeed; the event is whole until then.
    pub redaction_pending: bool,
    pub deliveries: Vec<DeliveryJson>,
}

/// `body` when the bytes are UTF-8 text, else `body_base64`.
#[derive(Serialize)]
pub enum BodyJson {
    #[serde(rename = "body")]
    Text(String),
    #[serde(rename = "body_base64")]
    Base64(String),
}

#[derive(Serialize)]
pub struct DeliveryJson {
    pub id: String,
    pub route: String,
    pub destination: String,
    pub state: String,
    pub attempts: i64,
}

#[derive(Serialize)]
pub struct RejectedJson {
    #[serde(flatten)]
    pub request: RequestJson,
    pub reason: String,
}

impl From<StoredRequest> for RequestJson {
    fn from(r: StoredRequest) -> Self {
        Self {
            received_at: crate::clock::rfc3339(r.received_at_ms),
            headers: crate::store::headers::to_json(&r.headers),
            body: r.body.map(body_json),
            id: r.id,
            source: r.source,
            method: r.method,
            path: r.path,
            query: r.query,
            remote_addr: r.remote_addr,
            body_size: r.body_size,
        }
    }
}

impl From<StoredEvent> for EventJson {
    fn from(e: StoredEvent) -> Self {
        Self {
            request: e.request.into(),
            dedup_key: e.dedup_key,
            duplicates: e.duplicates,
            redacted: e.redacted,
            redaction_pending: e.redaction_pending,
            deliveries: e.deliveries.into_iter().map(DeliveryJson::from).collect(),
        }
    }
}

impl From<DeliverySummary> for DeliveryJson {
    fn from(d: DeliverySummary) -> Self {
        Self {
            id: d.id,
            route: d.route,
            destination: d.destination,
            state: d.state,
            attempts: d.attempts,
        }
    }
}

impl From<StoredRejected> for RejectedJson {
    fn from(r: StoredRejected) -> Self {
        Self {
            request: r.request.into(),
            reason: r.reason,
        }
    }
}

fn body_json(bytes: Vec<u8>) -> BodyJson {
    match String::from_utf8(bytes) {
        Ok(text) => BodyJson::Text(text),
        Err(e) => BodyJson::Base64(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
    }
}

/// A delivery; `attempt_log` is filled when one delivery is shown.
#[derive(Serialize)]
pub struct DeliveryDetailJson {
    pub id: String,
    pub event_id: String,
    pub route: String,
    pub destination: String,
    /// The `webhook-id` sent: the event id, with `.n` for the n-th part of a split.
    pub webhook_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub created_at: String,
    pub updated_at: String,
    pub last_error: Option<String>,
    /// The body a transform made (shown with one delivery); absent when the event's
    /// raw body is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<BodyJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempt_log: Vec<AttemptJson>,
}

#[derive(Serialize)]
pub struct AttemptJson {
    pub id: String,
    pub number: i64,
    pub started_at: String,
    pub duration_ms: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub response_headers: Map<String, Value>,
    /// The response body (or command output), cut at 4 KiB.
    #[serde(flatten)]
    pub response_body: BodyJson,
}

impl From<StoredDelivery> for DeliveryDetailJson {
    fn from(d: StoredDelivery) -> Self {
        Self {
            next_attempt_at: crate::clock::rfc3339(d.next_attempt_at_ms),
            created_at: crate::clock::rfc3339(d.created_at_ms),
            updated_at: crate::clock::rfc3339(d.updated_at_ms),
            attempt_log: d
                .attempt_log
                .into_iter()
                .map(|a| AttemptJson {
                    started_at: crate::clock::rfc3339(a.started_at_ms),
                    response_headers: crate::store::headers::to_json(&a.response_headers),
                    response_body: body_json(a.response_body),
                    id: a.id,
                    number: a.number,
                    duration_ms: a.duration_ms,
                    status: a.status,
                    error: a.error,
                })
                .collect(),
            webhook_id: match d.part {
                Some(n) => format!("{}.{n}", d.event_id),
                None => d.event_id.clone(),
            },
            part: d.part,
            ordering_key: d.ordering_key,
            payload: d.payload.map(body_json),
            id: d.id,
            event_id: d.event_id,
            route: d.route,
            destination: d.destination,
            state: d.state,
            attempts: d.attempts,
            last_error: d.last_error,
        }
    }
}
