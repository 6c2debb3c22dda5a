//! The shape of `forebay.toml`: one struct per table, a doc comment on every key.
//!
//! These types are deserialized item by item by [`super::load`], so that one bad source
//! does not hide the errors of the next.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use super::secret::SecretRef;
use super::units::{Keep, Rate, Size, Span};
use crate::ingest::verify::VerifyConfig;

/// `[server]`: listeners and limits on inbound requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Public listener: only `/in/*`, `/healthz` and `/readyz`.
    pub ingest_listen: SocketAddr,
    /// Private listener: admin API (and later dashboard and metrics).
    pub admin_listen: SocketAddr,
    /// Bearer token for the admin API; required when `admin_listen` is not loopback.
    pub admin_token: Option<SecretRef>,
    /// Most header bytes a request may send (answered 431 past it, see `header_limits`).
    pub max_header_bytes: Size,
    /// Most header lines a request may send.
    pub max_headers: usize,
    /// Time a client has to send its headers, and again its body (slow senders get 408).
    pub read_timeout: Span,
    /// How long shutdown waits for requests already being read or committed.
    pub shutdown_timeout: Span,
    /// Most body bytes held in memory across all requests being read or committed;
    /// past it ingest answers 503 with `Retry-After` instead of reading more.
    pub max_inflight_bytes: Size,
    /// Most connections each listener holds open; past it, new ones wait in the
    /// kernel's backlog until one closes.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            ingest_listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            admin_token: None,
            max_header_bytes: Size::kib(32),
            max_headers: 64,
            read_timeout: Span::secs(10),
            shutdown_timeout: Span::secs(30),
            max_inflight_bytes: Size::mib(256),
            max_connections: 1024,
        }
    }
}

/// `[storage]`: where events live and how commits are batched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://PATH` (relative to the working directory, or `sqlite:///abs/path`), or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` for a store shared by any number
    /// of forebay processes.
    pub url: String,
    /// PostgreSQL only: the schema forebay's tables live in (created if missing);
    /// unset means the connection's default search_path (usually `public`).
    pub schema: Option<String>,
    /// PostgreSQL only: most connections this process opens (the group-commit writer
    /// uses one, claims and reads the rest).
    pub pool_size: usize,
    /// How long a commit waits for a lock held by another process before answering 503;
    /// for PostgreSQL, how long to wait for a connection (opening one, or a free one).
    pub busy_timeout: Span,
    /// Most requests committed in one transaction (group commit).
    pub max_batch: usize,
    /// Requests waiting for the writer; past this ingest answers 503 (overloaded).
    pub queue_depth: usize,
    /// `Retry-After` sent with a 503 when the store cannot commit.
    pub retry_after: Span,
    /// Longest a request waits for its commit before it is answered 503 (the commit
    /// may still land later; the sender's retry is then a duplicate).
    pub commit_timeout: Span,
    /// Most body bytes kept of a request that failed verification (the rest is cut).
    pub rejected_body_limit: Size,
    /// How long stored data is kept, for every source that does not set its own (and
    /// for sources no longer in the file).
    pub retention: RetentionConfig,
    /// Encryption at rest of stored bodies and headers (events, duplicates, rejected
    /// requests, transformed payloads, attempts' responses).
    pub encryption: Option<EncryptionConfig>,
    /// Most room the store's data may take: past it the oldest delivered events go,
    /// and when only waiting or dead ones are left ingest answers 507. Unset: no cap.
    pub max_size: Option<Size>,
    /// The cold archive: old events move to object storage or a directory.
    pub archive: Option<ArchiveConfig>,
}

/// `[storage.archive]`: events received more than `after` ago, none of whose deliveries
/// waits, are written to `to` as zstd-compressed NDJSON (the export's lines), then
/// removed from the store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    pub after: Span,
    /// `s3://BUCKET[/PREFIX]` or `file:///DIR`.
    pub to: String,
    /// S3 only: the URL of an S3-compatible server (MinIO, Ceph, R2, ...) instead of AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3 only (default: `AWS_REGION`, else `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// S3 only; without them, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    #[serde(default)]
    pub access_key_id: Option<SecretRef>,
    #[serde(default)]
    pub secret_access_key: Option<SecretRef>,
}

/// `encryption = { keys = { k2 = "env:FB_KEY_2", k1 = "env:FB_KEY_1" }, active = "k2" }`:
/// each key is 32 random bytes in base64 (`forebay keygen` prints one), by an id that
/// every sealed blob carries. New data is sealed with `active`; data sealed with the
/// other keys still opens, and `forebay rekey` moves it to the active one. Without
/// `active`, new data is stored plain (and `forebay rekey` opens what is sealed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    pub keys: std::collections::BTreeMap<String, SecretRef>,
    #[serde(default)]
    pub active: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://./forebay-data/forebay.db".to_owned(),
            schema: None,
            pool_size: 16,
            busy_timeout: Span::secs(5),
            max_batch: 512,
            queue_depth: 8192,
            retry_after: Span::secs(5),
            commit_timeout: Span::secs(10),
            rejected_body_limit: Size::kib(64),
            retention: RetentionConfig::default(),
            encryption: None,
            max_size: None,
            archive: None,
        }
    }
}

/// `retention = { events = "30d", attempts = "30d", rejected = "3d" }`: how long stored
/// data is kept, counted from when it arrived; `"forever"` keeps it. Purged in the
/// background, by one process of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Events, with their deliveries and attempts. An event is kept while any of its
    /// deliveries waits (pending, in flight, retrying or dead), however old.
    pub events: Keep,
    /// Attempt records (with the captured responses) of finished deliveries.
    pub attempts: Keep,
    /// Requests that failed verification.
    pub rejected: Keep,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            events: Keep::For(Span::secs(30 * 86_400)),
            attempts: Keep::For(Span::secs(30 * 86_400)),
            rejected: Keep::For(Span::secs(3 * 86_400)),
        }
    }
}

/// A source's own `retention`: keys it leaves out come from `[storage] retention`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceRetention {
    pub events: Option<Keep>,
    pub attempts: Option<Keep>,
    pub rejected: Option<Keep>,
}

impl SourceRetention {
    /// This source's periods, the storage-wide ones filling the gaps.
    pub fn over(self, default: RetentionConfig) -> RetentionConfig {
        RetentionConfig {
            events: self.events.unwrap_or(default.events),
            attempts: self.attempts.unwrap_or(default.attempts),
            rejected: self.rejected.unwrap_or(default.rejected),
        }
    }
}

/// `[sources.NAME]`: one inbound endpoint, `/in/NAME`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// How requests prove they come from the sender (`kind = "stripe"`, `"github"`, ...).
    pub verify: VerifyConfig,
    /// HTTP methods accepted on `/in/NAME`.
    pub methods: Vec<String>,
    /// Largest body accepted; larger ones get 413 without being read.
    pub max_body: Size,
    /// `header:NAME` or `json:/json/pointer`; else the provider's id; else SHA-256 of the body.
    pub dedup_key: Option<String>,
    /// How long a dedup key is remembered.
    pub dedup_window: Span,
    /// What the sender gets back on success.
    pub response: ResponseConfig,
    /// How long this source's data is kept; unset keys come from `[storage] retention`.
    pub retention: SourceRetention,
    /// Most requests admitted per period (`"100/s"`); past it, 429 before the body is read.
    pub rate_limit: Option<Rate>,
    /// The bucket's size: requests admitted at once after a quiet period (default: the
    /// rate's count; less is stricter than the rate).
    pub burst: Option<u32>,
    /// The same limit for each remote address on its own.
    pub rate_limit_per_address: Option<Rate>,
    /// What the stored event leaves out: header values and body fields, replaced with
    /// `[redacted]`, before storing or once every delivery has succeeded.
    pub redact: Option<RedactConfig>,
}

/// `redact = { headers = ["authorization"], json = ["/data/object/card"], when = "stored" }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// Header names whose values are not kept.
    #[serde(default)]
    pub headers: Vec<String>,
    /// JSON pointers (`/data/object/card`; `*` for every member or element) of body
    /// fields not kept; in a form body, the field in bracket notation (`data[object][card]`).
    #[serde(default)]
    pub json: Vec<String>,
    /// `"stored"` (default): the event is stored redacted, and so delivered.
    /// `"delivered"`: stored whole, delivered whole, redacted once every delivery of the
    /// event has succeeded (or been filtered or discarded).
    #[serde(default)]
    pub when: Option<String>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            verify: VerifyConfig::default(),
            methods: vec!["POST".into(), "PUT".into(), "PATCH".into()],
            max_body: Size::mib(5),
            dedup_key: None,
            dedup_window: Span::secs(7 * 86400),
            response: ResponseConfig::default(),
            retention: SourceRetention::default(),
            rate_limit: None,
            burst: None,
            rate_limit_per_address: None,
            redact: None,
        }
    }
}

/// `[sources.NAME.response]`: the success answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {
    /// A 2xx status.
    pub status: u16,
    /// Body text; `{id}` is replaced by the event id. Default: `{"id":"evt_…"}`.
    pub body: Option<String>,
    /// Content type of `body`.
    pub content_type: Option<String>,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        Self {
            status: 200,
            body: None,
            content_type: None,
        }
    }
}

/// `[destinations.NAME]`: where deliveries go.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DestinationConfig {
    /// An HTTP handler or serverless function.
    Http(HttpDestination),
    /// A local command; the payload goes to its stdin.
    Exec(ExecDestination),
    /// A message broker: NATS JetStream, RabbitMQ or Redis Streams. Read by
    /// `item::deserialize_destination` (its settings and its broker's fields apart).
    #[serde(skip)]
    Broker(BrokerDestination),
}

impl DestinationConfig {
    /// The `kind` it was configured with.
    pub fn kind(&self) -> &'static str {
        match self {
            DestinationConfig::Http(_) => "http",
            DestinationConfig::Exec(_) => "exec",
            DestinationConfig::Broker(b) => b.broker.kind(),
        }
    }

    /// `(max_concurrency, rate_limit)`.
    pub fn limits(&self) -> (Option<u32>, Option<Rate>) {
        match self {
            DestinationConfig::Http(h) => (h.max_concurrency, h.rate_limit),
            DestinationConfig::Exec(e) => (e.max_concurrency, e.rate_limit),
            DestinationConfig::Broker(b) => (
                Some(
                    b.settings
                        .max_concurrency
                        .unwrap_or(BrokerSettings::DEFAULT_CONCURRENCY),
                ),
                b.settings.rate_limit,
            ),
        }
    }

    pub fn retry(&self) -> &RetryConfig {
        match self {
            DestinationConfig::Http(h) => &h.retry,
            DestinationConfig::Exec(e) => &e.retry,
            DestinationConfig::Broker(b) => &b.settings.retry,
        }
    }

    pub fn breaker(&self) -> &BreakerConfig {
        match self {
            DestinationConfig::Http(h) => &h.breaker,
            DestinationConfig::Exec(e) => &e.breaker,
            DestinationConfig::Broker(b) => &b.settings.breaker,
        }
    }

    /// The Standard Webhooks signing settings, for the kinds that sign.
    pub fn sign(&self) -> Option<&SignConfig> {
        match self {
            DestinationConfig::Http(h) => h.sign.as_ref(),
            DestinationConfig::Exec(_) => None,
            DestinationConfig::Broker(b) => b.settings.sign.as_ref(),
        }
    }
}

/// `kind = "nats"`, `"rabbitmq"`, `"redis"` or `"kafka"`: the broker's own fields, and the
/// delivery settings every broker destination has.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerDestination {
    pub broker: Broker,
    pub settings: BrokerSettings,
}

/// Where in which broker messages go. Names may hold `{source}`, `{route}` and
/// `{destination}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Broker {
    Nats(NatsBroker),
    Rabbitmq(RabbitmqBroker),
    Redis(RedisBroker),
    Kafka(KafkaBroker),
}

impl Broker {
    pub fn kind(&self) -> &'static str {
        match self {
            Broker::Nats(_) => "nats",
            Broker::Rabbitmq(_) => "rabbitmq",
            Broker::Redis(_) => "redis",
            Broker::Kafka(_) => "kafka",
        }
    }
}

/// `kind = "nats"`: a JetStream publish, acknowledged by the stream.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NatsBroker {
    /// `nats://host:4222` (`tls://` for TLS; `nats://user:pass@…` or `?token` for auth).
    pub url: String,
    /// Subject published to, e.g. `webhooks.{source}`; a stream must cover it.
    pub subject: String,
}

/// `kind = "rabbitmq"`: a persistent message, confirmed by the broker.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RabbitmqBroker {
    /// `amqp://user:pass@host:5672/vhost` (`%2f` for `/`).
    pub url: String,
    /// Exchange published to; `""` is the default exchange (routing key = queue name).
    #[serde(default)]
    pub exchange: String,
    pub routing_key: String,
}

/// `kind = "redis"`: an `XADD` to a stream.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisBroker {
    /// `redis://host:6379/db` (`rediss://` for TLS).
    pub url: String,
    pub stream: String,
    /// Trims the stream to about this many entries (`MAXLEN ~`).
    pub maxlen: Option<u64>,
}

/// `kind = "kafka"`: a record produced with `acks=all` by an idempotent producer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaBroker {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    /// Topic produced to, e.g. `webhooks` or `webhooks.{source}`.
    pub topic: String,
}

/// What a broker destination has besides its broker: the same as an HTTP destination's.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// Time one publish may take, its acknowledgement included.
    #[serde(default = "default_http_timeout")]
    pub timeout: Span,
    /// Most publishes waiting for their acknowledgement at once (default 256).
    pub max_concurrency: Option<u32>,
    /// Most publishes started per second, minute or hour.
    pub rate_limit: Option<Rate>,
    /// Standard Webhooks signature in the message's headers.
    pub sign: Option<SignConfig>,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub breaker: BreakerConfig,
}

impl BrokerSettings {
    /// Publishes in flight when `max_concurrency` is not set: more than an HTTP
    /// destination's 64, since a publish waiting for its acknowledgement holds no
    /// connection of its own, and a broker's acknowledgements come back batched, so its
    /// rate grows with what is in flight.
    pub const DEFAULT_CONCURRENCY: u32 = 256;

    /// The keys of the settings table, told apart from the broker's own.
    pub const KEYS: [&str; 6] = [
        "timeout",
        "max_concurrency",
        "rate_limit",
        "sign",
        "retry",
        "breaker",
    ];
}

/// `kind = "http"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpDestination {
    /// Where to send, `http://` or `https://`.
    pub url: String,
    /// Method of the outbound request.
    #[serde(default = "default_post")]
    pub method: String,
    /// Extra headers on every outbound request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Time one attempt may take.
    #[serde(default = "default_http_timeout")]
    pub timeout: Span,
    /// Most requests in flight at once.
    pub max_concurrency: Option<u32>,
    /// Most requests started per second, minute or hour.
    pub rate_limit: Option<Rate>,
    /// Standard Webhooks signing of outbound requests.
    pub sign: Option<SignConfig>,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Circuit breaker.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Follow redirects (off by default: a redirect usually means a wrong URL).
    #[serde(default)]
    pub follow_redirects: bool,
    /// Refuse to send to loopback, private, link-local and other non-public addresses,
    /// checked after name resolution and on every redirect (for URLs that users of a
    /// multi-tenant setup may enter).
    #[serde(default)]
    pub deny_private: bool,
    /// Pass the sender's original headers on (`X-GitHub-Event`, `X-Shopify-Topic`, …), except
    /// transport headers and the sender's credentials (`Authorization`, `Cookie`,
    /// `X-Gitlab-Token`).
    #[serde(default = "default_true")]
    pub forward_headers: bool,
}

/// `kind = "exec"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecDestination {
    /// Program to run; no shell is involved.
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Time one run may take before it is killed.
    #[serde(default = "default_exec_timeout")]
    pub timeout: Span,
    /// Most runs at once.
    pub max_concurrency: Option<u32>,
    /// Most runs started per second, minute or hour.
    pub rate_limit: Option<Rate>,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Circuit breaker.
    #[serde(default)]
    pub breaker: BreakerConfig,
}

/// `sign = { secret = "…" }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SignConfig {
    /// `whsec_…` secret shared with the handler.
    pub secret: SecretRef,
}

/// `retry = { … }`: a list of waits, or an exponential policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Waits after the first try, e.g. `["5s", "30s", "2m"]`.
    pub schedule: Option<Vec<Span>>,
    /// Exponential policy instead of a list.
    pub exponential: Option<ExponentialRetry>,
    /// Statuses that go straight to the dead-letter queue.
    #[serde(default)]
    pub give_up_on: Vec<u16>,
}

/// `exponential = { base = "5s", factor = 2.0, cap = "1h", max_attempts = 12 }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExponentialRetry {
    pub base: Span,
    pub factor: f64,
    pub cap: Span,
    pub max_attempts: u32,
}

/// `breaker = { failures = 10, cooldown = "30s" }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// First wait before a probe; doubles up to 10 minutes.
    pub cooldown: Span,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 10,
            cooldown: Span::secs(30),
        }
    }
}

/// `[[routes]]`: source → destination.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Defaults to `"{source}-{destination}"`.
    pub name: Option<String>,
    pub source: String,
    pub destination: String,
    /// Expression that must yield `true` (jq) or a truthy value (JavaScript) to deliver.
    pub filter: Option<ExprConfig>,
    /// Expression whose outputs (jq) or return value (JavaScript; an array for several)
    /// become the delivered bodies.
    pub transform: Option<ExprConfig>,
    /// Expression: deliveries with the same key go one at a time, in receive order.
    pub ordering_key: Option<ExprConfig>,
    /// After this many deliveries in a row whose expressions ran past their time limit,
    /// the route is paused (with the reason) instead of spending the limit on every
    /// event; 0 never pauses.
    #[serde(default = "default_pause_after_timeouts")]
    pub pause_after_timeouts: u32,
    /// 0 to 9: when the destination is held back by its limits, a delivery of priority
    /// `p` is claimed as if it had been due `p` minutes earlier, so higher priorities go
    /// first and a lower one never waits more than 9 minutes longer than it would have.
    #[serde(default)]
    pub priority: u8,
    /// How long after the event arrives its deliveries are first attempted.
    pub delay: Option<Span>,
    /// Expression giving when to first attempt each delivery: seconds since the Unix
    /// epoch, or an RFC 3339 time; `null` for at once.
    pub deliver_at: Option<ExprConfig>,
    /// Of a burst of events with the same key, only the last is delivered, once
    /// `window` has passed without another; the others are `superseded`.
    pub debounce: Option<DebounceConfig>,
    /// Deliver many events in one call: a JSON array of them.
    pub batch: Option<BatchConfig>,
}

/// A route's `batch = { max_events = 100, max_wait = "2s", max_bytes = "1MiB" }`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most events in one call; a batch this full goes at once.
    pub max_events: usize,
    /// Longest the oldest waiting event waits for others before its batch goes.
    pub max_wait: Span,
    /// Most bytes of events in one call (an event larger than this goes alone).
    pub max_bytes: Size,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: 100,
            max_wait: Span(std::time::Duration::from_secs(1)),
            max_bytes: Size::mib(1),
        }
    }
}

/// A route's `debounce = { key = '…', window = "5s" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebounceConfig {
    /// Expression: events with the same key debounce each other; `null` (or no
    /// output) is not debounced.
    pub key: ExprConfig,
    /// How long an event waits for a later one with its key before it is sent.
    pub window: Span,
}

fn default_pause_after_timeouts() -> u32 {
    20
}

/// An expression in a route: a string is jq; a table names its language,
/// `{ jq = "…" }`, `{ js = "export default (event) => …" }` or `{ js_file = "path.js" }`
/// (relative to the configuration file's directory).
#[derive(Debug, Clone, PartialEq)]
pub enum ExprConfig {
    Jq(String),
    Js(String),
    JsFile(String),
}

impl<'de> Deserialize<'de> for ExprConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        const FORMS: &str = "a jq string, or a table with one of `jq`, `js` (a module's text) or `js_file` (its path)";
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ExprConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(FORMS)
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ExprConfig, E> {
                Ok(ExprConfig::Jq(text.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ExprConfig, A::Error> {
                use serde::de::Error;
                let mut found: Option<ExprConfig> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let text: String = map.next_value()?;
                    let expr = match key.as_str() {
                        "jq" => ExprConfig::Jq(text),
                        "js" => ExprConfig::Js(text),
                        "js_file" => ExprConfig::JsFile(text),
                        other => {
                            return Err(A::Error::custom(format!(
                                "unknown key `{other}`; an expression is {FORMS}"
                            )));
                        }
                    };
                    if found.is_some() {
                        return Err(A::Error::custom(format!(
                            "give one of `jq`, `js` or `js_file`, not several (`{key}` is the second)"
                        )));
                    }
                    found = Some(expr);
                }
                found.ok_or_else(|| {
                    A::Error::custom(format!("empty table; an expression is {FORMS}"))
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn default_true() -> bool {
    true
}

fn default_post() -> String {
    "POST".to_owned()
}

fn default_http_timeout() -> Span {
    Span::secs(10)
}

fn default_exec_timeout() -> Span {
    Span::secs(30)
}
