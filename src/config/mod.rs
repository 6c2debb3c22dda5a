//! Configuration: `forebay.toml`, `FOREBAY_*` overrides, secrets, and validation.
//!
//! [`Config::load`] reads and checks everything once; the server then only sees
//! resolved values ([`Source`] has its verifier built and its secrets read).

mod env;
mod errors;
mod item;
mod load;
pub mod model;
pub mod secret;
pub mod units;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::Method;

pub use errors::{ConfigError, ConfigErrors};
pub(crate) use load::{BudgetIs, check_body_budget};
pub use load::{MAX_DELAY, MAX_PRIORITY, is_valid_name};
pub use model::{
    BatchConfig, Broker, BrokerDestination, DebounceConfig, DestinationConfig, ResponseConfig,
    RetentionConfig, RouteConfig, ServerConfig, SignConfig, StorageConfig,
};
pub use secret::{Secret, SecretRef};
pub use units::{Keep, Rate, Size, Span};

use crate::expr::Expr;
use crate::ingest::dedup::DedupRule;
use crate::ingest::verify::Verifier;

/// The commented starter configuration that `forebay init` writes.
pub const STARTER: &str = include_str!("../../forebay.toml");

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub storage: Storage,
    pub sources: BTreeMap<String, Arc<Source>>,
    pub destinations: BTreeMap<String, DestinationConfig>,
    pub routes: Vec<Route>,
    /// Non-fatal remarks worth printing at start (e.g. a source without verification).
    pub warnings: Vec<String>,
    /// What this process does; set from `forebay serve --role`, not from the file.
    pub role: Role,
    /// The file it was read from (a reload reads it again); `None` when parsed from text.
    pub origin: Option<PathBuf>,
}

/// What a `forebay serve` process does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Accept webhooks only; other processes deliver them.
    Ingest,
    /// Deliver only: `/in/*` answers 503 so a load balancer sends senders elsewhere.
    Deliver,
    /// Both.
    #[default]
    All,
}

/// `[server]` with its secret resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub ingest_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<Secret>,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub read_timeout: Span,
    pub shutdown_timeout: Span,
    pub max_inflight_bytes: u64,
    pub max_connections: usize,
}

/// `[storage]` with its URL understood.
#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    pub backend: Backend,
    pub busy_timeout: Span,
    pub max_batch: usize,
    pub queue_depth: usize,
    pub retry_after: Span,
    pub commit_timeout: Span,
    pub rejected_body_limit: usize,
    /// For sources without their own, and for sources no longer configured.
    pub retention: RetentionConfig,
    /// The keys stored blobs are sealed with (none: stored plain).
    pub encryption: crate::store::seal::Keys,
    /// Overwrite what is deleted or rewritten with zeros (SQLite's `secure_delete`): on
    /// when encryption is, or a source redacts, so neither leaves the old bytes in the
    /// file's free space. Decided at start.
    pub scrub_freed: bool,
    /// `max_size` in bytes (see [`crate::size_cap`]).
    pub max_size: Option<u64>,
    /// `[storage.archive]`, checked.
    pub archive: Option<Archive>,
}

/// The cold archive's settings, checked and with their secrets read.
#[derive(Debug, Clone, PartialEq)]
pub struct Archive {
    /// Events received longer ago than this go.
    pub after: Span,
    /// As configured, for messages and the API.
    pub url: String,
    pub location: ArchiveLocation,
}

/// Where archived objects go.
#[derive(Clone, PartialEq)]
pub enum ArchiveLocation {
    /// A directory (created if missing).
    Directory(std::path::PathBuf),
    S3 {
        bucket: String,
        /// Object names start with it (no leading or trailing `/`; may be empty).
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
        credentials: Option<(String, Secret)>,
    },
}

impl std::fmt::Debug for ArchiveLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Directory(dir) => f.debug_tuple("Directory").field(dir).finish(),
            Self::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                credentials,
            } => f
                .debug_struct("S3")
                .field("bucket", bucket)
                .field("prefix", prefix)
                .field("endpoint", endpoint)
                .field("region", region)
                .field("access_key_id", &credentials.as_ref().map(|c| &c.0))
                .finish_non_exhaustive(),
        }
    }
}

/// Which store to open. `Debug` hides a password in a PostgreSQL URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite {
        path: PathBuf,
    },
    /// A PostgreSQL database shared by any number of forebay processes.
    Postgres {
        /// As written in `storage.url` (validated at load).
        url: String,
        /// `storage.schema`.
        schema: Option<String>,
        /// `storage.pool_size`.
        pool_size: usize,
    },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            Backend::Postgres {
                url,
                schema,
                pool_size,
            } => f
                .debug_struct("Postgres")
                .field("url", &without_password(url))
                .field("schema", schema)
                .field("pool_size", pool_size)
                .finish(),
        }
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod backend_tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_database_password() {
        let backend = Backend::Postgres {
            url: "postgres://forebay:s3cr3t@db.internal:5432/hooks".into(),
            schema: None,
            pool_size: 16,
        };
        let shown = format!("{backend:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("postgres://forebay:***@db.internal:5432/hooks"),
            "{shown}"
        );
        assert_eq!(
            without_password("postgres://root@h/db"),
            "postgres://root@h/db"
        );
        assert_eq!(without_password("not a url"), "not a url");
    }
}

/// One source, ready to serve.
#[derive(Debug)]
pub struct Source {
    pub name: String,
    pub verifier: Verifier,
    pub methods: Vec<Method>,
    pub max_body: u64,
    pub dedup: DedupRule,
    pub dedup_window: Span,
    pub response: ResponseConfig,
    /// How long this source's data is kept (its own keys over `[storage] retention`).
    pub retention: RetentionConfig,
    /// Routes fed by this source, in file order.
    pub routes: Vec<Route>,
    /// `rate_limit` and `rate_limit_per_address`, checked before the body is read.
    /// Shared so that a reload with the same limits keeps counting where it was.
    pub edge_limit: Option<Arc<crate::ingest::edge_limit::EdgeLimit>>,
    /// What the stored event leaves out (empty: nothing).
    pub redact: crate::ingest::redact::Redaction,
}

/// One route, with its name settled.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub source: String,
    pub destination: String,
    pub config: RouteConfig,
    /// The compiled `filter`, `transform`, `ordering_key`, `deliver_at` and
    /// `debounce.key`.
    pub filter: Option<Expr>,
    pub transform: Option<Expr>,
    pub ordering_key: Option<Expr>,
    pub deliver_at: Option<Expr>,
    pub debounce_key: Option<Expr>,
}

impl Route {
    /// True when the route has expressions to run before its deliveries can be sent.
    pub fn needs_preparing(&self) -> bool {
        self.filter.is_some()
            || self.transform.is_some()
            || self.ordering_key.is_some()
            || self.deliver_at.is_some()
            || self.debounce_key.is_some()
    }

    /// The route's `debounce.window` in ms, when it debounces.
    pub fn debounce_window_ms(&self) -> Option<i64> {
        self.config
            .debounce
            .as_ref()
            .map(|d| d.window.as_millis_i64())
    }

    /// The route's `delay` in ms (0 without one).
    pub fn delay_ms(&self) -> i64 {
        self.config.delay.map_or(0, |d| d.as_millis_i64())
    }
}

impl Config {
    /// Reads `path`, applies `FOREBAY_*` overrides from `vars`, and validates it all.
    pub fn load<I, K, V>(path: &std::path::Path, vars: I) -> Result<Config, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut errors = ConfigErrors::default();
            errors.push(
                "",
                format!(
                    "cannot read {}: {e}; pass an existing file with --config, or create one with `forebay init`",
                    path.display()
                ),
            );
            errors
        })?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        let mut config = load::parse(&text, vars, base)?;
        config.origin = Some(path.to_owned());
        Ok(config)
    }

    /// Parses configuration text (no environment unless given in `vars`).
    pub fn parse<I, K, V>(text: &str, vars: I) -> Result<Config, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        load::parse(text, vars, std::path::Path::new("."))
    }
}
