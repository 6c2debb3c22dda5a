//! What the store keeps: new events with their deliveries, rejected requests, and the
//! read models the admin API serves.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::ingest::verify::Verified;

/// An event ready to commit: only a [`Verified`] request can become one.
#[derive(Clone)]
pub struct NewEvent {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Headers in wire form ([`super::headers`]), exactly as received.
    pub headers: Vec<u8>,
    pub body: Bytes,
    pub remote_addr: Option<String>,
    pub dedup_key: String,
    /// A stored event with the same source and dedup key received at or after this
    /// instant makes this one a duplicate.
    pub dedup_since_ms: i64,
    /// One pending delivery per route, committed in the same transaction.
    pub deliveries: Vec<NewDelivery>,
    /// Held until the store is done with the body, then dropped: ingest's memory budget
    /// counts a body until it has left the writer's queue, not just until the sender
    /// hears back (a sender answered 503 on timeout leaves its body queued).
    pub body_guard: Option<Arc<dyn Any + Send + Sync>>,
    /// What the source's `redact` rule took out of `headers` and `body` (`header:NAME`
    /// and JSON pointers); empty when nothing was.
    pub redacted: Vec<String>,
    /// The rule that applies once every delivery has succeeded (`when = "delivered"`),
    /// kept with the event as JSON, so that whichever process redacts it later applies
    /// the rule the event came in under.
    pub pending_rule: Option<String>,
    /// The headers a duplicate of this request keeps, when they differ from `headers`
    /// (redacted at once, since a duplicate is never delivered).
    pub duplicate_headers: Option<Vec<u8>>,
}

impl fmt::Debug for NewEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewEvent")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("received_at_ms", &self.received_at_ms)
            .field("dedup_key", &self.dedup_key)
            .field("body_len", &self.body.len())
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

/// A pending delivery of a new event on one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub id: String,
    pub route: String,
    pub destination: String,
    /// The route has a filter, transform or ordering key: the delivery waits until the
    /// engine has run them.
    pub needs_preparing: bool,
    /// The route has an ordering key: its deliveries must be committed in receive order
    /// (on PostgreSQL such a group commits alone, see `postgres::write_events`).
    pub ordered: bool,
    /// The route's `delay`: the first attempt is due this long after the event arrived.
    pub delay_ms: i64,
    /// The route's `priority`, 0 to 9 (see [`crate::store::PRIORITY_STEP_MS`]).
    pub priority: u8,
}

/// Where an event stands in the live stream (commit order): later commits stand
/// higher. `txn` orders commits where several can be open at once (PostgreSQL's
/// transaction id; always 0 on SQLite, whose one writer commits in `seq` order), `seq`
/// orders events within one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamPosition {
    pub txn: i64,
    pub seq: i64,
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
        Self::with_guard(verified, id, dedup_key, dedup_window_ms, deliveries, None)
    }

    /// [`NewEvent::new`] with a guard held until the store is done with the body.
    pub fn with_guard(
        verified: Verified,
        id: String,
        dedup_key: String,
        dedup_window_ms: i64,
        deliveries: Vec<NewDelivery>,
        body_guard: Option<Arc<dyn Any + Send + Sync>>,
    ) -> Self {
        let req = verified.into_inner();
        Self {
            id,
            headers: super::headers::encode(&req.headers),
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
            body_guard,
            redacted: Vec::new(),
            pending_rule: None,
            duplicate_headers: None,
        }
    }

    /// The headers a duplicate of this request keeps.
    pub fn headers_for_duplicate(&self) -> &[u8] {
        self.duplicate_headers.as_deref().unwrap_or(&self.headers)
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
    /// Headers in wire form ([`super::headers`]).
    pub headers: Vec<u8>,
    /// The body, cut to the configured limit: rejected requests are evidence, not events,
    /// and must not let an unauthenticated sender fill the disk.
    pub body: Bytes,
    /// The body's size as received, before any cut.
    pub body_size: usize,
    pub remote_addr: Option<String>,
    pub reason: String,
}

impl NewRejected {
    pub fn new(
        req: crate::ingest::request::Unverified,
        id: String,
        reason: String,
        body_limit: usize,
    ) -> Self {
        let body_size = req.body.len();
        Self {
            id,
            headers: super::headers::encode(&req.headers),
            source: req.source,
            received_at_ms: req.received_at_ms,
            method: req.method.to_string(),
            path: req.path,
            query: req.query,
            // A copy, so the cut keeps only the kept bytes alive, not the whole body.
            body: Bytes::copy_from_slice(&req.body[..body_size.min(body_limit)]),
            body_size,
            remote_addr: req.remote_addr.map(|a| a.to_string()),
            reason,
        }
    }
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

/// What was received, as stored: the part events and rejected requests share.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header name and raw value, in the order received.
    pub headers: Vec<(String, Vec<u8>)>,
    /// `None` in listings, which leave bodies out. A rejected request's body may be cut.
    pub body: Option<Vec<u8>>,
    /// Size as received.
    pub body_size: i64,
    pub remote_addr: Option<String>,
}

/// A stored event, as the admin API shows it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub request: StoredRequest,
    pub dedup_key: String,
    pub duplicates: i64,
    /// What the source's `redact` rule took out (`header:NAME`, JSON pointers).
    pub redacted: Vec<String>,
    /// The rule applies once every delivery has succeeded; until then the event is whole.
    pub redaction_pending: bool,
    pub deliveries: Vec<DeliverySummary>,
}

impl StoredEvent {
    /// What filters, transforms and search predicates see of this event (an empty body
    /// when it was listed without bodies).
    pub fn to_input(&self) -> super::EventInput {
        let r = &self.request;
        super::EventInput {
            id: r.id.clone(),
            source: r.source.clone(),
            received_at_ms: r.received_at_ms,
            method: r.method.clone(),
            path: r.path.clone(),
            query: r.query.clone(),
            headers: r.headers.clone(),
            body: r.body.clone().unwrap_or_default(),
        }
    }
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

/// A stored request that failed verification.
#[derive(Debug, Clone)]
pub struct StoredRejected {
    pub request: StoredRequest,
    pub reason: String,
}

/// Which page of events (or rejected requests, which use `source`, `limit` and
/// `cursor` only) to list.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub source: Option<String>,
    /// Received at or after this instant (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Received before this instant.
    pub until_ms: Option<i64>,
    /// Events with at least one delivery in this state.
    pub status: Option<String>,
    pub dedup_key: Option<String>,
    /// Oldest first (else newest first).
    pub oldest_first: bool,
    /// Include bodies (listings leave them out otherwise).
    pub with_bodies: bool,
    pub limit: usize,
    /// The previous page's last id: only ids past it in the listing's order.
    pub cursor: Option<String>,
}
