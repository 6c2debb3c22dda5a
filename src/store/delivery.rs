//! What the delivery engine asks of the store: claim due deliveries under a lease, and
//! record each attempt with the delivery's next state.

/// Which deliveries to claim, and for how long.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Claims are per destination, so each destination's limits decide how many.
    pub destination: String,
    /// Routes whose deliveries stay where they are (paused).
    pub skip_routes: Vec<String>,
    /// The engine's clock, ms since the Unix epoch (a test may pass its own).
    pub now_ms: i64,
    /// How long the claim holds; past it the delivery is claimable again (the worker is
    /// presumed dead).
    pub lease_ms: i64,
    /// Most deliveries to claim at once.
    pub limit: usize,
}

/// A claimed delivery with what is needed to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: String,
    pub event_id: String,
    pub route: String,
    pub destination: String,
    /// The number of the attempt about to be made (1 for the first).
    pub attempt: i64,
    /// The claim's lease end: it identifies this claim when the attempt is recorded.
    pub lease_until_ms: i64,
    pub source: String,
    pub received_at_ms: i64,
    /// The event's headers, name and raw value.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// One attempt's result, and where the delivery goes next.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub id: String,
    pub delivery_id: String,
    /// The lease of the claim that made this attempt ([`ClaimedDelivery::lease_until_ms`]).
    pub lease_until_ms: i64,
    pub started_at_ms: i64,
    pub duration_ms: i64,
    /// The response status, when a response came.
    pub status: Option<u16>,
    /// What went wrong, when it did (timeout, connection refused, non-2xx…).
    pub error: Option<String>,
    /// Response headers in wire form, and the body capped at [`RESPONSE_CAPTURE`].
    pub response_headers: Vec<u8>,
    pub response_body: Vec<u8>,
    pub then: AfterAttempt,
}

/// Most response body bytes kept per attempt.
pub const RESPONSE_CAPTURE: usize = 4096;

/// A delivery's state after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    /// Try again at this instant (ms since the Unix epoch).
    RetryAt(i64),
    /// Attempts exhausted, or a status the destination gives up on.
    Dead,
}

impl AfterAttempt {
    pub(crate) fn state(self) -> &'static str {
        match self {
            AfterAttempt::Delivered => "delivered",
            AfterAttempt::RetryAt(_) => "retrying",
            AfterAttempt::Dead => "dead",
        }
    }
}

/// Which page of deliveries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub state: Option<String>,
    pub route: Option<String>,
    pub destination: Option<String>,
    pub limit: usize,
    /// Only ids strictly older than this one.
    pub before: Option<String>,
}

/// A delivery as the admin API shows it.
#[derive(Debug, Clone)]
pub struct StoredDelivery {
    pub id: String,
    pub event_id: String,
    pub route: String,
    pub destination: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_error: Option<String>,
    /// Filled when one delivery is shown; empty in listings.
    pub attempt_log: Vec<StoredAttempt>,
}

/// One recorded attempt.
#[derive(Debug, Clone)]
pub struct StoredAttempt {
    pub id: String,
    pub number: i64,
    pub started_at_ms: i64,
    pub duration_ms: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub response_headers: Vec<(String, Vec<u8>)>,
    pub response_body: Vec<u8>,
}

/// What asking to retry a delivery came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryNow {
    /// Due now (it was pending, retrying or dead).
    Scheduled,
    /// It is being sent right now; nothing to do.
    InFlight,
    /// It was delivered, filtered or discarded: there is nothing to retry.
    Finished,
    /// No such delivery.
    NotFound,
}

/// What can be paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pausable {
    Route,
    Destination,
}

impl Pausable {
    pub fn as_str(self) -> &'static str {
        match self {
            Pausable::Route => "route",
            Pausable::Destination => "destination",
        }
    }
}

/// Which dead deliveries a bulk action applies to (all, when both are `None`).
#[derive(Debug, Clone, Default)]
pub struct DeadFilter {
    pub route: Option<String>,
    pub destination: Option<String>,
    /// One delivery.
    pub id: Option<String>,
}

/// A bulk action on the dead-letter queue.
#[derive(Debug, Clone)]
pub enum DeadAction {
    /// Due again now, attempts kept.
    Retry,
    /// Set aside for good: state `discarded`, kept for the record.
    Discard,
}
