//! What the store keeps: new events with their deliveries, rejected requests, and the
//! read models the admin API serves.

use bytes::Bytes;

use crate::ingest::verify::Verified;

/// An event ready to commit: only a [`Verified`] request can become one.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header name (lower case) and value, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub remote_addr: Option<String>,
    pub dedup_key: String,
    /// A stored event with the same source and dedup key received at or after this
    /// instant makes this one a duplicate.
    pub dedup_since_ms: i64,
    /// One pending delivery per route, committed in the same transaction.
    pub deliveries: Vec<NewDelivery>,
}

/// A pending delivery of a new event on one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub id: String,
    pub route: String,
    pub destination: String,
}

impl NewEvent {
    /// The event for a verified request.
    pub fn new(
        verified: Verified,
        id: String,
        dedup_key: String,
        dedup_window_ms: i64,
        deliveries: Vec<NewDelivery>,
    ) -> Self {
        let req = verified.into_inner();
        Self {
            id,
            headers: header_pairs(&req.headers),
            dedup_since_ms: req.received_at_ms.saturating_sub(dedup_window_ms),
            source: req.source,
            received_at_ms: req.received_at_ms,
            method: req.method.to_string(),
            path: req.path,
            query: req.query,
            body: req.body,
            remote_addr: req.remote_addr.map(|a| a.to_string()),
            dedup_key,
            deliveries,
        }
    }
}

/// A request that failed verification: kept (briefly) so that nothing is silent.
#[derive(Debug, Clone)]
pub struct NewRejected {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub remote_addr: Option<String>,
    pub reason: String,
}

impl NewRejected {
    pub fn new(req: crate::ingest::request::Unverified, id: String, reason: String) -> Self {
        Self {
            id,
            headers: header_pairs(&req.headers),
            source: req.source,
            received_at_ms: req.received_at_ms,
            method: req.method.to_string(),
            path: req.path,
            query: req.query,
            body: req.body,
            remote_addr: req.remote_addr.map(|a| a.to_string()),
            reason,
        }
    }
}

/// Headers as (name, value) pairs; values that are not UTF-8 are stored lossily.
fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The outcome of committing a [`NewEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored, with its deliveries.
    New { id: String },
    /// A repeat of an event within its dedup window: recorded, nothing new to deliver.
    Duplicate { original_id: String },
}

impl Inserted {
    /// The id the sender is told: the new event's, or the original's for a duplicate.
    pub fn event_id(&self) -> &str {
        match self {
            Inserted::New { id } => id,
            Inserted::Duplicate { original_id } => original_id,
        }
    }
}

/// A stored event, as the admin API shows it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    /// `None` in listings, which leave bodies out.
    pub body: Option<Vec<u8>>,
    pub body_size: i64,
    pub remote_addr: Option<String>,
    pub dedup_key: String,
    pub duplicates: i64,
    pub deliveries: Vec<DeliverySummary>,
}

/// One delivery of an event, without its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySummary {
    pub id: String,
    pub route: String,
    pub destination: String,
    pub state: String,
    pub attempts: i64,
}

/// A stored rejected request.
#[derive(Debug, Clone)]
pub struct StoredRejected {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote_addr: Option<String>,
    pub reason: String,
}

/// Which page of events to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub source: Option<String>,
    pub limit: usize,
    /// Only ids strictly older than this one (the previous page's last id).
    pub before: Option<String>,
}
