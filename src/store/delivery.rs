//! What the delivery engine asks of the store: claim due deliveries under a lease, and
//! record each attempt with the delivery's next state.

/// What one level of a route's `priority` is worth: among due deliveries of a
/// destination, one of priority `p` is claimed as if it had fallen due `p` steps
/// earlier. Higher priorities overtake, and no delivery waits more than
/// `PRIORITY_LEVELS - 1` steps longer than it would in plain due order: nothing starves.
pub const PRIORITY_STEP_MS: i64 = 60_000;

/// Priorities run from 0 (the default) to `PRIORITY_LEVELS - 1`.
pub const PRIORITY_LEVELS: u8 = 10;

/// The claim order of due deliveries as SQL over a row's `next_attempt_at` and
/// `priority` (both backends).
pub(crate) fn claim_rank_sql() -> String {
    format!("next_attempt_at - priority * {PRIORITY_STEP_MS}")
}

/// Why a debounced delivery was superseded: what it says in `last_error`.
pub(crate) fn superseded_by(event_id: &str) -> String {
    format!("superseded by event {event_id}, received later with the same debounce key")
}

/// What waits to go in a route's next batch ([`super::Store::batch_due`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchDue {
    /// Due deliveries, up to the cap asked for.
    pub count: usize,
    /// The earliest due time among them.
    pub oldest_due_ms: Option<i64>,
    /// One of them has been attempted before (a batch that failed, due again).
    pub retry: bool,
}

/// The due deliveries of a route for a batch, as SQL both backends run: `$1`
/// destination, `$2` route, `$3` now, `$4` cap (SQLite numbers them `?n`). Expired leases
/// of the route count as retries (their sender died or could not record), so they go at
/// once: the normal claim, which would take them otherwise, skips batching routes.
pub(crate) const BATCH_DUE: &str = "
    SELECT count(*), min(due), coalesce(max(urgent), 0) FROM (
        SELECT * FROM (
            SELECT next_attempt_at AS due, attempts AS urgent FROM deliveries
            WHERE destination = $1 AND state IN ('pending', 'retrying')
              AND next_attempt_at <= $3 AND route = $2 AND prepared
            ORDER BY next_attempt_at LIMIT $4) AS waiting
        UNION ALL
        SELECT * FROM (
            SELECT lease_until AS due, 1 AS urgent FROM deliveries
            WHERE state = 'in_flight' AND lease_until <= $3 AND destination = $1
              AND route = $2
            LIMIT $4) AS expired) AS due";

/// Which deliveries to claim, and for how long.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Claims are per destination, so each destination's limits decide how many.
    pub destination: String,
    /// Routes whose deliveries stay where they are (paused, or batched).
    pub skip_routes: Vec<String>,
    /// Only this route's deliveries (a batch is claimed route by route).
    pub only_route: Option<String>,
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
    /// The body a transform made for this delivery; `None` sends the event's raw body.
    pub payload: Option<Vec<u8>>,
    /// For the n-th output of a transform that split the event: n (from 1).
    pub part: Option<i64>,
    /// The replay job that queued this delivery (sent as `Forebay-Replay`).
    pub replay_id: Option<String>,
    /// The route's ordering key for this delivery, if the route has one (a Kafka
    /// record's key).
    pub ordering_key: Option<String>,
}

impl ClaimedDelivery {
    /// The `webhook-id` (and `Idempotency-Key`) of this delivery: the event id, with
    /// `.n` for the n-th part of a split so siblings never look like duplicates.
    pub fn webhook_id(&self) -> String {
        match self.part {
            Some(n) => format!("{}.{n}", self.event_id),
            None => self.event_id.clone(),
        }
    }

    /// The body to send: the transform's output, or the event's raw body.
    pub fn outgoing_body(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or(&self.body)
    }

    /// The content type of [`Self::outgoing_body`]: JSON for a transform's output, else
    /// the sender's own.
    pub fn content_type(&self) -> Option<String> {
        if self.payload.is_some() {
            return Some("application/json".to_owned());
        }
        self.headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// A delivery whose route's filter, transform or ordering key has yet to run, with the
/// event they run on.
#[derive(Debug, Clone)]
pub struct Unprepared {
    pub id: String,
    pub route: String,
    pub event: EventInput,
    /// Why the event cannot be read (damaged, or sealed so that it does not open): its
    /// delivery goes to the dead letters with this reason instead of being prepared.
    pub unreadable: Option<String>,
}

impl Unprepared {
    /// Fills in the event's headers and body from their stored form, or says why they
    /// cannot be read. `None` when the event is sealed with a key this process lacks
    /// (another process that has it prepares it).
    pub(crate) fn opened(mut self, sealer: &super::seal::Sealer, headers: Vec<u8>) -> Option<Self> {
        let body = std::mem::take(&mut self.event.body);
        let opened = sealer
            .open_request(&self.event.id, headers, Some(body))
            .map_err(super::StoreError::from)
            .and_then(|(headers, body)| {
                Ok((
                    super::headers::decode_stored(&headers)?,
                    body.unwrap_or_default(),
                ))
            });
        match opened {
            Ok((headers, body)) => {
                self.event.headers = headers;
                self.event.body = body;
            }
            Err(super::StoreError::Sealed(e)) if e.is_unknown_key() => {
                crate::throttled!(warn, delivery = %self.id, error = %e, "cannot open an event to prepare with this process's keys; leaving it to a process that has the key (give every process the same keys)");
                return None;
            }
            Err(e) => {
                self.unreadable = Some(format!(
                    "the event cannot be read: {}",
                    crate::error_chain::Chain(&e)
                ))
            }
        }
        Some(self)
    }
}

/// What filters, transforms and ordering keys see of an event.
#[derive(Debug, Clone)]
pub struct EventInput {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Name and raw value, as received.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// The result of running a route's filter, transform and ordering key on one delivery.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub delivery_id: String,
    /// The delivery's event and route (what a sealed payload is bound to).
    pub event_id: String,
    pub route: String,
    /// Deliveries of the route with the same key go one at a time, in receive order.
    pub ordering_key: Option<String>,
    /// When the route's `deliver_at` says the first attempt is due (ms since the epoch);
    /// `None` leaves it as it was queued.
    pub deliver_at_ms: Option<i64>,
    /// The route's debounce key for this delivery: a later delivery of the route with
    /// the same key supersedes it while it waits.
    pub debounce_key: Option<String>,
    pub outcome: Preparation,
}

/// Where a prepared delivery goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preparation {
    /// Send the event's raw body (no transform).
    Raw,
    /// Send these bodies: one keeps the delivery as it is; several split it into parts
    /// 1..n, each a delivery of its own.
    Bodies(Vec<Vec<u8>>),
    /// The filter said no, or the transform had no output: state `filtered`.
    Filtered,
    /// The expression failed or ran past its limits: state `dead`, with this error.
    Failed(String),
}

/// One attempt's result, and where the delivery goes next.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub id: String,
    pub delivery_id: String,
    /// The delivery's destination (what the activity counters count attempts by).
    pub destination: String,
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
    /// For the n-th output of a split transform: n.
    pub part: Option<i64>,
    pub ordering_key: Option<String>,
    /// The body a transform made; filled when one delivery is shown.
    pub payload: Option<Vec<u8>>,
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

/// A paused route or destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    pub kind: Pausable,
    pub name: String,
    /// Why forebay paused it; `None` when an operator did.
    pub reason: Option<String>,
}

impl Paused {
    /// `kind` as stored.
    pub fn kind_from(text: &str) -> Result<Pausable, super::StoreError> {
        match text {
            "route" => Ok(Pausable::Route),
            "destination" => Ok(Pausable::Destination),
            other => Err(super::StoreError::Corrupt(format!("paused kind {other:?}"))),
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

/// The number of deliveries of one route and destination in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryCount {
    pub route: String,
    pub destination: String,
    pub state: String,
    pub count: u64,
}

impl DeliveryCount {
    /// True for the states still to be sent: `pending`, `in_flight`, `retrying`.
    pub fn is_backlog(&self) -> bool {
        matches!(self.state.as_str(), "pending" | "in_flight" | "retrying")
    }
}

/// What a store shared by several processes needs from the delivery engine so that its
/// limits hold across all of them ([`super::Store::join_cluster`]).
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Each destination's limits, to hold for all processes together.
    pub limits: Vec<ClusterLimit>,
    /// Woken when another process commits work for the delivery engine (new events,
    /// prepared deliveries, a finished attempt that frees a slot, a retry), or when a
    /// rate limit allows the next start.
    pub wake: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// Woken when another process commits deliveries waiting to be prepared.
    pub prepare_wake: Option<std::sync::Arc<tokio::sync::Notify>>,
}

/// One destination's limits across the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLimit {
    pub destination: String,
    /// Most deliveries in flight (live leases) at once.
    pub max_in_flight: Option<u32>,
    /// Most starts per period: (count, period in ms), spread evenly.
    pub rate: Option<(u32, i64)>,
    /// Whether a route to it has an ordering key (its claims must then see every other
    /// claim's outcome to keep each key in order).
    pub ordered: bool,
}
