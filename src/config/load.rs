//! From TOML text to a validated [`Config`], collecting every error with its key path.
//!
//! Each table and each source, destination and route is deserialized on its own, so a
//! mistake in one does not hide the mistakes in the others; within one item,
//! [`super::item`] keeps going past the first bad key. Errors about a
//! value that a `FOREBAY_*` variable set end in `(set by FOREBAY_…)`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderValue, Method};
use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::env::{Applied, apply_overrides};
use super::item::{deserialize_at, deserialize_destination};
use super::model::{
    ArchiveConfig, Broker, DestinationConfig, EncryptionConfig, ExprConfig, RedactConfig,
    RouteConfig, ServerConfig, SourceConfig, SourceRetention, StorageConfig,
};
use super::units::{Keep, Size, Span};
use super::{
    Archive, ArchiveLocation, Backend, Config, ConfigErrors, Route, SecretRef, Server, Source,
    Storage,
};
use crate::expr::{Expr, Role};
use crate::ingest::dedup::DedupRule;
use crate::ingest::redact::{Pointer, Redaction, When};
use crate::store::seal;

const TOP_LEVEL: [&str; 5] = ["server", "storage", "sources", "destinations", "routes"];

/// The largest `max_body`. An event is one SQLite row, and the bundled SQLite limits a
/// row (like any one blob) to `SQLITE_MAX_LENGTH` = 1,000,000,000 bytes, which is less
/// than 1GiB; 900MiB leaves the rest for the headers and the other columns.
const MAX_BODY_LIMIT: Size = Size::mib(900);

/// `base` is the directory relative paths in the file start from (`js_file`).
pub(super) fn parse<I, K, V>(text: &str, vars: I, base: &Path) -> Result<Config, ConfigErrors>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut errors = ConfigErrors::default();
    let mut table: Table = text.parse().map_err(|e: toml::de::Error| {
        let mut errors = ConfigErrors::default();
        errors.push("", format!("not valid TOML: {}", e.to_string().trim_end()));
        errors
    })?;
    let overrides = apply_overrides(&mut table, vars, &mut errors);
    check(&table, &overrides, base, errors).map_err(|mut errors| {
        name_overrides(&mut errors, &overrides);
        errors
    })
}

fn check(
    table: &Table,
    overrides: &[Applied],
    base: &Path,
    mut errors: ConfigErrors,
) -> Result<Config, ConfigErrors> {
    for key in table.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            errors.push(
                key.clone(),
                format!("unknown key; expected one of {}", TOP_LEVEL.join(", ")),
            );
        }
    }

    let server = section::<ServerConfig>(table, "server", overrides, &mut errors)
        .and_then(|s| resolve_server(s, &mut errors));
    let storage = section::<StorageConfig>(table, "storage", overrides, &mut errors)
        .and_then(|s| resolve_storage(s, &mut errors));

    let mut warnings = Vec::new();
    let mut sources = BTreeMap::new();
    for (name, value) in named_items(table, "sources", &mut errors) {
        let path = format!("sources.{name}");
        check_name(&path, &name, &mut errors);
        if let Some(cfg) = deserialize_at::<SourceConfig>(value, &path, overrides, &mut errors)
            && let own_retention = cfg.retention
            && let Some(mut source) = resolve_source(&name, cfg, &path, &mut errors)
        {
            if let Some(storage) = &storage {
                settle_retention(&mut source, own_retention, storage, &path, &mut errors);
            }
            if source.verifier.is_none() {
                warnings.push(format!(
                    "source {name:?} does not verify its sender (verify.kind = \"none\"): anyone who knows the URL can post events"
                ));
            }
            warnings.extend(signed_dedup_warning(&source));
            sources.insert(name, source);
        }
    }

    let mut destinations = BTreeMap::new();
    for (name, value) in named_items(table, "destinations", &mut errors) {
        let path = format!("destinations.{name}");
        check_name(&path, &name, &mut errors);
        if let Some(cfg) = deserialize_destination(value, &path, overrides, &mut errors) {
            check_destination(&cfg, &path, &mut errors);
            destinations.insert(name, cfg);
        }
    }

    let routes = resolve_routes(table, &sources, &destinations, overrides, base, &mut errors);

    if let Some(server) = &server {
        check_body_budget(
            sources.iter().map(|(name, s)| (name.as_str(), s.max_body)),
            server.max_inflight_bytes,
            BudgetIs::InTheFile,
            &mut errors,
        );
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(server), Some(storage)) = (server, storage) else {
        return Err(errors);
    };
    let sources: BTreeMap<String, Arc<Source>> = sources
        .into_iter()
        .map(|(name, mut source)| {
            source.routes = routes
                .iter()
                .filter(|r| r.source == name)
                .cloned()
                .collect();
            (name, Arc::new(source))
        })
        .collect();
    let mut storage = storage;
    storage.scrub_freed =
        !storage.encryption.keys.is_empty() || sources.values().any(|s| !s.redact.is_empty());
    Ok(Config {
        server,
        storage,
        sources,
        destinations,
        routes,
        warnings,
        role: super::Role::default(),
        origin: None,
    })
}

/// Ends each error about a value an override set with ` (set by VAR)`, so a mistake that
/// is not in the file is not looked for there. The most specific override wins (one that
/// set `sources.a.verify.secret` over one that set all of `sources.a.verify`).
fn name_overrides(errors: &mut ConfigErrors, overrides: &[Applied]) {
    for error in &mut errors.0 {
        if error.path.is_empty() {
            continue;
        }
        if let Some(o) = overrides
            .iter()
            .filter(|o| o.explains(&error.path))
            .max_by_key(|o| o.keys.len())
        {
            error.message.push_str(&format!(" (set by {})", o.var));
        }
    }
}

/// A top-level table that may be absent (then its defaults apply).
fn section<T: DeserializeOwned + Default>(
    table: &Table,
    key: &str,
    overrides: &[Applied],
    errors: &mut ConfigErrors,
) -> Option<T> {
    match table.get(key) {
        None => Some(T::default()),
        Some(v) => deserialize_at(v.clone(), key, overrides, errors),
    }
}

/// The entries of a `[key.NAME]` table, in name order.
fn named_items(table: &Table, key: &str, errors: &mut ConfigErrors) -> Vec<(String, Value)> {
    match table.get(key) {
        None => Vec::new(),
        Some(Value::Table(t)) => t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(_) => {
            errors.push(
                key,
                format!("must be a table of named entries, like [{key}.NAME]"),
            );
            Vec::new()
        }
    }
}

/// Where the in-flight budget a file is checked against comes from.
pub(crate) enum BudgetIs {
    /// The file's own `server.max_inflight_bytes`.
    InTheFile,
    /// The running process's, which a reload keeps.
    Running,
}

/// Each source's `max_body` must fit the in-flight budget: the budget is charged as
/// bytes arrive, so a larger body could only pass when nothing else is in flight.
pub(crate) fn check_body_budget<'a>(
    sources: impl IntoIterator<Item = (&'a str, u64)>,
    budget: u64,
    from: BudgetIs,
    errors: &mut ConfigErrors,
) {
    let (what, fix) = match from {
        BudgetIs::InTheFile => (
            "server.max_inflight_bytes",
            "raise max_inflight_bytes or lower max_body",
        ),
        BudgetIs::Running => (
            "the running server.max_inflight_bytes",
            "lower max_body, or raise max_inflight_bytes and restart",
        ),
    };
    for (name, max_body) in sources {
        if max_body > budget {
            errors.push(
                format!("sources.{name}.max_body"),
                format!(
                    "{max_body} bytes is more than {what} ({budget} bytes), the memory all bodies in progress may use; {fix}"
                ),
            );
        }
    }
}

/// A name a source, route or destination may have: it appears in URLs.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_name(path: &str, name: &str, errors: &mut ConfigErrors) {
    if !is_valid_name(name) {
        errors.push(
            path,
            "names may use only letters, digits, `-` and `_` (they appear in URLs)",
        );
    }
}

fn resolve_server(cfg: ServerConfig, errors: &mut ConfigErrors) -> Option<Server> {
    let before = errors.0.len();
    let admin_token = match &cfg.admin_token {
        None => None,
        Some(r) => r
            .resolve()
            .map_err(|e| errors.push("server.admin_token", e))
            .ok(),
    };
    if cfg.admin_token.is_none() && !cfg.admin_listen.ip().is_loopback() {
        errors.push(
            "server.admin_token",
            format!(
                "admin_listen {} is not a loopback address, so the admin API needs a token; set admin_token (e.g. \"env:FOREBAY_ADMIN_TOKEN\") or listen on 127.0.0.1",
                cfg.admin_listen
            ),
        );
    }
    if listeners_clash(cfg.ingest_listen, cfg.admin_listen) {
        errors.push(
            "server.admin_listen",
            format!(
                "{} takes the same port as ingest_listen {}, so one of the two listeners cannot start; give admin_listen a port of its own (e.g. 127.0.0.1:8081)",
                cfg.admin_listen, cfg.ingest_listen
            ),
        );
    }
    if cfg.max_inflight_bytes.0 < 1024 {
        errors.push(
            "server.max_inflight_bytes",
            "must be at least 1KiB; it bounds the memory of all request bodies in progress",
        );
    }
    if cfg.max_connections == 0 {
        errors.push(
            "server.max_connections",
            "must be at least 1; it is how many connections each listener holds open",
        );
    }
    if cfg.max_headers == 0 {
        errors.push("server.max_headers", "must be at least 1");
    }
    if cfg.max_header_bytes.0 < 8192 {
        errors.push(
            "server.max_header_bytes",
            "must be at least 8KiB (the HTTP parser's smallest buffer)",
        );
    }
    require_positive(
        errors,
        "server.read_timeout",
        cfg.read_timeout,
        "would time out every request before its headers arrive; use e.g. \"10s\"",
    );
    require_positive(
        errors,
        "server.shutdown_timeout",
        cfg.shutdown_timeout,
        "would answer 503 to every request still in progress at shutdown instead of letting it finish; use e.g. \"30s\"",
    );
    if errors.0.len() > before {
        return None;
    }
    Some(Server {
        ingest_listen: cfg.ingest_listen,
        admin_listen: cfg.admin_listen,
        admin_token,
        max_header_bytes: cfg.max_header_bytes.as_usize(),
        max_headers: cfg.max_headers,
        read_timeout: cfg.read_timeout,
        shutdown_timeout: cfg.shutdown_timeout,
        max_inflight_bytes: cfg.max_inflight_bytes.0,
        max_connections: cfg.max_connections,
    })
}

/// Whether two listeners would fight over one port: the same address, or a wildcard
/// that covers the other's (an IPv6 wildcard takes IPv4 too on default dual-stack
/// sockets; an IPv4 wildcard leaves IPv6 alone). Port 0 lets the system pick a free port
/// for each, so it never clashes.
fn listeners_clash(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let covers = |wild: SocketAddr, other: SocketAddr| {
        wild.ip().is_unspecified() && (wild.is_ipv6() || other.is_ipv4())
    };
    a.ip() == b.ip() || covers(a, b) || covers(b, a)
}

/// Durations that must not be zero: zero would not mean "no limit" but "fail at once".
fn require_positive(errors: &mut ConfigErrors, path: &str, span: Span, why: &str) {
    if span.0.is_zero() {
        errors.push(path, format!("must be more than 0s: 0s {why}"));
    }
}

fn resolve_storage(cfg: StorageConfig, errors: &mut ConfigErrors) -> Option<Storage> {
    let before = errors.0.len();
    let backend = if let Some(rest) = cfg.url.strip_prefix("sqlite://") {
        if rest.is_empty() {
            errors.push(
                "storage.url",
                "sqlite:// needs a file path, e.g. \"sqlite://./forebay-data/forebay.db\"",
            );
        }
        Some(Backend::Sqlite {
            path: PathBuf::from(rest),
        })
    } else if cfg.url.starts_with("postgres://") || cfg.url.starts_with("postgresql://") {
        match crate::store::postgres::tls::parse(&cfg.url) {
            Ok(pg) if pg.config.get_dbname().is_none() => {
                errors.push(
                    "storage.url",
                    "the PostgreSQL URL names no database; use \"postgres://USER@HOST:5432/DATABASE\"",
                );
                None
            }
            Ok(_) => Some(Backend::Postgres {
                url: cfg.url.clone(),
                schema: cfg.schema.clone(),
                pool_size: cfg.pool_size,
            }),
            Err(e) => {
                errors.push("storage.url", e);
                None
            }
        }
    } else {
        errors.push(
            "storage.url",
            format!(
                "unsupported store URL {:?}; use \"sqlite://./forebay-data/forebay.db\" or \"postgres://USER@HOST:5432/DATABASE\"",
                cfg.url
            ),
        );
        None
    };
    if let Some(schema) = &cfg.schema
        && !crate::store::postgres::valid_schema_name(schema)
    {
        errors.push(
            "storage.schema",
            format!(
                "{schema:?} is not a plain schema name; use lower-case letters, digits and _ (starting with a letter or _), at most 63"
            ),
        );
    }
    if cfg.pool_size < 2 {
        errors.push(
            "storage.pool_size",
            "must be at least 2 (the group-commit writer holds one connection)",
        );
    }
    if cfg.max_batch == 0 {
        errors.push("storage.max_batch", "must be at least 1");
    }
    if cfg.queue_depth == 0 {
        errors.push("storage.queue_depth", "must be at least 1");
    }
    require_positive(
        errors,
        "storage.commit_timeout",
        cfg.commit_timeout,
        "would answer every request 503 before its commit could land; use e.g. \"10s\"",
    );
    let encryption = cfg
        .encryption
        .as_ref()
        .map(|e| resolve_encryption(e, errors))
        .unwrap_or_default();
    let max_size = cfg.max_size.map(|s| s.0);
    if let Some(max) = max_size
        && max < MIN_MAX_SIZE
    {
        errors.push(
            "storage.max_size",
            format!(
                "{max} bytes is too small to hold the store's own tables; use at least \"1MiB\" (or leave it out for no cap)"
            ),
        );
    }
    let archive = cfg
        .archive
        .as_ref()
        .and_then(|a| resolve_archive(a, errors));
    if errors.0.len() > before {
        return None;
    }
    Some(Storage {
        backend: backend?,
        busy_timeout: cfg.busy_timeout,
        max_batch: cfg.max_batch,
        queue_depth: cfg.queue_depth,
        retry_after: cfg.retry_after,
        commit_timeout: cfg.commit_timeout,
        rejected_body_limit: cfg.rejected_body_limit.as_usize(),
        retention: cfg.retention,
        encryption,
        scrub_freed: false,
        max_size,
        archive,
    })
}

/// `[storage.archive]`: the location understood and its secrets read.
fn resolve_archive(cfg: &ArchiveConfig, errors: &mut ConfigErrors) -> Option<Archive> {
    const KEY: &str = "storage.archive";
    if cfg.after.0.is_zero() {
        errors.push(
            format!("{KEY}.after"),
            "must be longer than 0; e.g. \"30d\" archives events a month after they arrived",
        );
    }
    let secret = |name: &str, r: &Option<SecretRef>, errors: &mut ConfigErrors| {
        r.as_ref().and_then(|r| match r.resolve() {
            Ok(secret) => Some(secret),
            Err(e) => {
                errors.push(format!("{KEY}.{name}"), e);
                None
            }
        })
    };
    let location = if let Some(path) = cfg.to.strip_prefix("file://") {
        if !path.starts_with('/') {
            errors.push(
                format!("{KEY}.to"),
                format!(
                    "{:?} is not an absolute directory; write file:///var/lib/forebay/archive (three slashes)",
                    cfg.to
                ),
            );
            return None;
        }
        for key in ["endpoint", "region", "access_key_id", "secret_access_key"] {
            let set = match key {
                "endpoint" => cfg.endpoint.is_some(),
                "region" => cfg.region.is_some(),
                "access_key_id" => cfg.access_key_id.is_some(),
                _ => cfg.secret_access_key.is_some(),
            };
            if set {
                errors.push(
                    format!("{KEY}.{key}"),
                    "is for an s3:// archive; a file:// one needs only `to` and `after`",
                );
            }
        }
        ArchiveLocation::Directory(std::path::PathBuf::from(path))
    } else if let Some(rest) = cfg.to.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            errors.push(
                format!("{KEY}.to"),
                "names no bucket; write s3://BUCKET or s3://BUCKET/PREFIX",
            );
            return None;
        }
        if let Some(endpoint) = &cfg.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            errors.push(
                format!("{KEY}.endpoint"),
                format!("{endpoint:?} is not a URL; write e.g. \"https://minio.example:9000\""),
            );
        }
        let id = secret("access_key_id", &cfg.access_key_id, errors);
        let key = secret("secret_access_key", &cfg.secret_access_key, errors);
        let credentials = match (id, key) {
            (Some(id), Some(key)) => Some((String::from_utf8_lossy(id.expose()).into_owned(), key)),
            (None, None) => None,
            _ => {
                errors.push(
                    KEY,
                    "sets only one of access_key_id and secret_access_key; set both, or neither (then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are read)",
                );
                None
            }
        };
        ArchiveLocation::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: cfg.endpoint.clone(),
            region: cfg.region.clone(),
            credentials,
        }
    } else {
        errors.push(
            format!("{KEY}.to"),
            format!(
                "{:?} is not an archive location; write s3://BUCKET/PREFIX or file:///DIR",
                cfg.to
            ),
        );
        return None;
    };
    Some(Archive {
        after: cfg.after,
        url: cfg.to.clone(),
        location,
    })
}

/// The smallest `storage.max_size`: an empty store takes a few hundred KiB.
const MIN_MAX_SIZE: u64 = 1024 * 1024;

/// `[storage] encryption`: every key read and decoded, the active one among them.
fn resolve_encryption(cfg: &EncryptionConfig, errors: &mut ConfigErrors) -> seal::Keys {
    let mut keys = seal::Keys::default();
    if cfg.keys.is_empty() {
        errors.push(
            "storage.encryption.keys",
            "names no key; add one, e.g. keys = { k1 = \"env:FOREBAY_KEY_1\" } with a key from `forebay keygen`",
        );
    }
    for (id, secret) in &cfg.keys {
        let path = format!("storage.encryption.keys.{id}");
        if !seal::valid_key_id(id) {
            errors.push(
                &path,
                format!(
                    "{id:?} cannot name a key: use 1 to {} letters, digits, '-', '_' or '.'",
                    seal::MAX_ID_LEN
                ),
            );
            continue;
        }
        match secret.resolve() {
            Ok(bytes) => match seal::decode_key(bytes.expose()) {
                Ok(key) => {
                    keys.keys.insert(id.clone(), key);
                }
                Err(why) => errors.push(
                    &path,
                    format!(
                        "the key {why}; a key is 32 random bytes in base64 (44 characters): make one with `forebay keygen`"
                    ),
                ),
            },
            Err(e) => errors.push(&path, e),
        }
    }
    if let Some(active) = &cfg.active
        && !cfg.keys.contains_key(active)
    {
        errors.push(
            "storage.encryption.active",
            format!(
                "{active:?} is not one of the keys ({}); add it to keys or name one of them",
                cfg.keys.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    keys.active = cfg.active.clone();
    keys
}

fn resolve_source(
    name: &str,
    cfg: SourceConfig,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<Source> {
    let before = errors.0.len();
    let verifier = cfg
        .verify
        .build()
        .map_err(|e| errors.push(format!("{path}.verify"), e))
        .ok();
    let mut methods = Vec::new();
    for m in &cfg.methods {
        match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(method) if method != Method::GET && method != Method::HEAD => methods.push(method),
            Ok(_) => errors.push(
                format!("{path}.methods"),
                format!("{m} requests have no body to store; accept POST, PUT or PATCH"),
            ),
            Err(_) => errors.push(
                format!("{path}.methods"),
                format!("{m:?} is not an HTTP method"),
            ),
        }
    }
    if methods.is_empty() && cfg.methods.is_empty() {
        errors.push(
            format!("{path}.methods"),
            "list at least one method, e.g. [\"POST\"]",
        );
    }
    let dedup = match cfg.dedup_key.as_deref() {
        None => DedupRule::Auto,
        Some(text) => DedupRule::parse(text)
            .map_err(|e| errors.push(format!("{path}.dedup_key"), e))
            .unwrap_or(DedupRule::Auto),
    };
    if !(200..300).contains(&cfg.response.status) {
        errors.push(
            format!("{path}.response.status"),
            format!(
                "{} is not a success status; senders retry anything but 2xx, so use 200-299",
                cfg.response.status
            ),
        );
    }
    if let Some(ct) = &cfg.response.content_type
        && HeaderValue::from_str(ct).is_err()
    {
        errors.push(
            format!("{path}.response.content_type"),
            format!(
                "{ct:?} cannot be sent as a Content-Type header (only visible ASCII, no line breaks); use e.g. \"application/json\""
            ),
        );
    }
    if cfg.max_body.0 == 0 {
        errors.push(format!("{path}.max_body"), "must be at least 1 byte");
    }
    if cfg.max_body > MAX_BODY_LIMIT {
        errors.push(
            format!("{path}.max_body"),
            format!(
                "{} bytes is more than SQLite can store: each event is one row, and SQLite's limit for a row or blob is 1000000000 bytes (less than 1GiB); use at most \"900MiB\"",
                cfg.max_body.0
            ),
        );
    }
    if cfg.burst.is_some() && cfg.rate_limit.is_none() {
        errors.push(
            format!("{path}.burst"),
            "burst is the size of rate_limit's bucket; set rate_limit too (e.g. rate_limit = \"100/s\")",
        );
    }
    if cfg.burst == Some(0) {
        errors.push(format!("{path}.burst"), "must be at least 1");
    }
    let redact = cfg
        .redact
        .as_ref()
        .map(|r| resolve_redact(r, &format!("{path}.redact"), errors))
        .unwrap_or_default();
    if let Some(kept) = redact.kept_by(&dedup) {
        errors.push(
            format!("{path}.dedup_key"),
            format!(
                "the dedup key would keep {kept}, which redact takes out (the dedup key is stored and shown as it is); dedup on another header or field, or leave dedup_key out"
            ),
        );
    }
    if errors.0.len() > before {
        return None;
    }
    Some(Source {
        name: name.to_owned(),
        verifier: verifier?,
        methods,
        max_body: cfg.max_body.0,
        dedup,
        dedup_window: cfg.dedup_window,
        response: cfg.response,
        // Completed with `[storage] retention` by `settle_retention`.
        retention: cfg.retention.over(super::RetentionConfig::default()),
        routes: Vec::new(),
        edge_limit: crate::ingest::edge_limit::EdgeLimit::new(
            cfg.rate_limit,
            cfg.burst,
            cfg.rate_limit_per_address,
        )
        .map(Arc::new),
        redact,
    })
}

/// A source's `redact`: header names that are header names, fields that are pointers.
fn resolve_redact(cfg: &RedactConfig, path: &str, errors: &mut ConfigErrors) -> Redaction {
    let mut rule = Redaction::default();
    for (i, name) in cfg.headers.iter().enumerate() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(
                format!("{path}.headers[{i}]"),
                format!(
                    "{name:?} is not a header name (letters, digits and -, e.g. \"x-api-key\")"
                ),
            );
        } else {
            rule.headers.push(name.to_ascii_lowercase());
        }
    }
    for (i, pointer) in cfg.json.iter().enumerate() {
        match Pointer::parse(pointer) {
            Ok(p) => rule.fields.push(p),
            Err(e) => errors.push(format!("{path}.json[{i}]"), e),
        }
    }
    rule.when = match cfg.when.as_deref() {
        None | Some("stored") => When::Stored,
        Some("delivered") => When::Delivered,
        Some(other) => {
            errors.push(
                format!("{path}.when"),
                format!("{other:?} is not a choice: use \"stored\" (redact before storing) or \"delivered\" (once every delivery succeeded)"),
            );
            When::Stored
        }
    };
    if cfg.headers.is_empty() && cfg.json.is_empty() {
        errors.push(
            path,
            "names nothing to redact; list headers = [...] and/or json = [\"/pointer\"], or remove it",
        );
    }
    rule
}

/// Mailgun signs a timestamp and a token, not the event: anyone who sees one signed
/// body (a handler, a log) can attach another event to its signature within the
/// tolerance. Dedup on the token is what stops that, so say so when the source turns
/// it off.
///
/// PayPal is the same: it signs a CRC-32 of the body, which a body of one's choosing can
/// match, so dedup on the signed transmission id is what makes each signature count once.
fn signed_dedup_warning(source: &Source) -> Option<String> {
    let (provider, key, tolerance) = match source.verifier.kind_name() {
        "mailgun" => ("Mailgun", "signature token", "5m"),
        "paypal" => ("PayPal", "PAYPAL-TRANSMISSION-ID", "73h"),
        _ => return None,
    };
    let name = &source.name;
    if !matches!(source.dedup, DedupRule::Auto) {
        return Some(format!(
            "source {name:?}: dedup_key replaces {provider}'s {key} as the dedup key; {provider} does not sign the event itself, so a signature seen once could carry another event within the tolerance. Remove dedup_key to dedup on the {key}"
        ));
    }
    let window =
        humantime::parse_duration(tolerance).map_or(Span::secs(300), |d| Span::secs(d.as_secs()));
    (source.dedup_window < window).then(|| format!(
        "source {name:?}: dedup_window is shorter than {provider}'s default signature tolerance ({tolerance}): a signature seen once could carry another event after the window; keep dedup_window at least {tolerance}"
    ))
}

/// The source's retention, its own keys over the storage-wide ones. Events must outlive
/// the dedup window: dedup compares a request with the stored events.
fn settle_retention(
    source: &mut Source,
    own: SourceRetention,
    storage: &Storage,
    path: &str,
    errors: &mut ConfigErrors,
) {
    source.retention = own.over(storage.retention);
    let events = source.retention.events;
    if !events.outlasts(source.dedup_window) {
        let (key, from) = if own.events.is_some() {
            (format!("{path}.retention.events"), String::new())
        } else {
            (
                "storage.retention.events".to_owned(),
                format!(" (for source {:?})", source.name),
            )
        };
        errors.push(
            key,
            format!(
                "keeps events {events}{from}, less than the source's dedup_window ({}): a repeat arriving after its event was purged would be delivered again; keep events at least as long as dedup_window, or shorten dedup_window",
                humantime::format_duration(source.dedup_window.0)
            ),
        );
    }
    if let Some(archive) = &storage.archive
        && let Keep::For(kept) = events
        && kept <= archive.after
    {
        let key = if own.events.is_some() {
            format!("{path}.retention.events")
        } else {
            "storage.retention.events".to_owned()
        };
        errors.push(
            key,
            format!(
                "keeps events of source {:?} {events}, no longer than storage.archive.after ({}): they would be purged before they are archived; keep events longer (or \"forever\": archived events leave the store anyway)",
                source.name,
                humantime::format_duration(archive.after.0)
            ),
        );
    }
}

/// Where a broker is (a URL of the right scheme, or Kafka's list), and its name: not
/// empty, with only the placeholders there are.
fn check_broker(broker: &Broker, path: &str, errors: &mut ConfigErrors) {
    let mut url = |url: &str, schemes: &[&str], example: &str| {
        check_url_scheme(url, schemes, example, &format!("{path}.url"), errors);
    };
    let (key, name) = match broker {
        Broker::Nats(n) => {
            url(&n.url, &["nats", "tls"], "nats://127.0.0.1:4222");
            ("subject", &n.subject)
        }
        Broker::Rabbitmq(r) => {
            url(
                &r.url,
                &["amqp", "amqps"],
                "amqp://guest:guest@127.0.0.1:5672/%2f",
            );
            ("routing_key", &r.routing_key)
        }
        Broker::Redis(r) => {
            url(&r.url, &["redis", "rediss"], "redis://127.0.0.1:6379");
            ("stream", &r.stream)
        }
        Broker::Kafka(k) => {
            #[cfg(not(feature = "kafka"))]
            errors.push(
                format!("{path}.kind"),
                "this forebay was built without Kafka: build it with the cargo feature `kafka` (on by default)",
            );
            check_kafka_brokers(&k.brokers, path, errors);
            ("topic", &k.topic)
        }
    };
    if name.trim().is_empty() {
        errors.push(format!("{path}.{key}"), "must not be empty");
    } else if let Err(e) = crate::deliver::broker::NameTemplate::parse(name) {
        errors.push(format!("{path}.{key}"), e);
    }
}

/// `url` must start with one of `schemes` and `://`.
fn check_url_scheme(
    url: &str,
    schemes: &[&str],
    example: &str,
    at: &str,
    errors: &mut ConfigErrors,
) {
    let known = schemes.iter().any(|scheme| {
        url.strip_prefix(scheme)
            .is_some_and(|rest| rest.starts_with("://"))
    });
    if !known {
        let schemes: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        errors.push(
            at,
            format!("must start with {}, like {example:?}", schemes.join(" or ")),
        );
    }
}

/// Kafka's bootstrap list: at least one, each `host:port`.
fn check_kafka_brokers(brokers: &[String], path: &str, errors: &mut ConfigErrors) {
    if brokers.is_empty() {
        errors.push(
            format!("{path}.brokers"),
            "give at least one broker, like [\"127.0.0.1:9092\"]",
        );
    }
    for (i, broker) in brokers.iter().enumerate() {
        let port = broker
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(_))) if !host.is_empty() && !host.contains('/')) {
            errors.push(
                format!("{path}.brokers[{i}]"),
                format!("{broker:?} is not host:port, like \"127.0.0.1:9092\" (no scheme)"),
            );
        }
    }
}

fn check_destination(cfg: &DestinationConfig, path: &str, errors: &mut ConfigErrors) {
    let (retry, breaker, concurrency) = match cfg {
        DestinationConfig::Http(http) => {
            if !(http.url.starts_with("http://") || http.url.starts_with("https://")) {
                errors.push(
                    format!("{path}.url"),
                    format!("{:?} must start with http:// or https://", http.url),
                );
            }
            if http.deny_private
                && let Ok(url) = reqwest::Url::parse(&http.url)
                && let Some(ip) = crate::address_guard::literal_host(&url)
                && crate::address_guard::is_private(ip)
            {
                errors.push(
                    format!("{path}.url"),
                    crate::address_guard::refusal(&ip.to_string()),
                );
            }
            if Method::from_bytes(http.method.as_bytes()).is_err() {
                errors.push(
                    format!("{path}.method"),
                    format!("{:?} is not an HTTP method", http.method),
                );
            }
            (&http.retry, &http.breaker, http.max_concurrency)
        }
        DestinationConfig::Exec(exec) => {
            if exec.command.trim().is_empty() {
                errors.push(format!("{path}.command"), "give the program to run");
            }
            (&exec.retry, &exec.breaker, exec.max_concurrency)
        }
        DestinationConfig::Broker(b) => {
            check_broker(&b.broker, path, errors);
            (
                &b.settings.retry,
                &b.settings.breaker,
                b.settings.max_concurrency,
            )
        }
    };
    if let Some(sign) = cfg.sign()
        && let Err(e) = sign.secret.resolve()
    {
        errors.push(format!("{path}.sign.secret"), e);
    }
    if retry.schedule.is_some() && retry.exponential.is_some() {
        errors.push(
            format!("{path}.retry"),
            "give either `schedule` or `exponential`, not both",
        );
    }
    if let Some(exp) = &retry.exponential
        && !(exp.factor >= 1.0 && exp.factor.is_finite())
    {
        errors.push(
            format!("{path}.retry.exponential.factor"),
            "must be 1.0 or more",
        );
    }
    if breaker.failures == 0 {
        errors.push(format!("{path}.breaker.failures"), "must be at least 1");
    }
    if concurrency == Some(0) {
        errors.push(format!("{path}.max_concurrency"), "must be at least 1");
    }
}

fn resolve_routes(
    table: &Table,
    sources: &BTreeMap<String, Source>,
    destinations: &BTreeMap<String, DestinationConfig>,
    overrides: &[Applied],
    base: &Path,
    errors: &mut ConfigErrors,
) -> Vec<Route> {
    let items = match table.get("routes") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            errors.push(
                "routes",
                "must be an array of tables: write each as [[routes]]",
            );
            Vec::new()
        }
    };
    let mut routes = Vec::new();
    let mut names = BTreeSet::new();
    for (i, value) in items.into_iter().enumerate() {
        let path = format!("routes[{i}]");
        let Some(cfg) = deserialize_at::<RouteConfig>(value, &path, overrides, errors) else {
            continue;
        };
        // A source or destination that failed its own checks is reported there already.
        if !sources.contains_key(&cfg.source) && !table_has(table, "sources", &cfg.source) {
            errors.push(
                format!("{path}.source"),
                format!(
                    "no source named {:?}; define [sources.{}]",
                    cfg.source, cfg.source
                ),
            );
        }
        if !destinations.contains_key(&cfg.destination)
            && !table_has(table, "destinations", &cfg.destination)
        {
            errors.push(
                format!("{path}.destination"),
                format!(
                    "no destination named {:?}; define [destinations.{}]",
                    cfg.destination, cfg.destination
                ),
            );
        }
        let name = cfg
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", cfg.source, cfg.destination));
        check_name(&format!("{path}.name"), &name, errors);
        if !names.insert(name.clone()) {
            errors.push(
                format!("{path}.name"),
                format!("route name {name:?} is used twice; give each route a distinct `name`"),
            );
        }
        let mut compile = |key: &str, expr: &Option<ExprConfig>, role: Role| {
            let at = format!("{path}.{key}");
            route_expr(expr.as_ref()?, &at, role, base)
                .map_err(|e| {
                    errors.push(
                        at,
                        format!("the {key} of route {name:?} does not compile: {e}"),
                    );
                })
                .ok()
        };
        let filter = compile("filter", &cfg.filter, Role::Filter);
        let transform = compile("transform", &cfg.transform, Role::Transform);
        let ordering_key = compile("ordering_key", &cfg.ordering_key, Role::Value);
        let deliver_at = compile("deliver_at", &cfg.deliver_at, Role::Value);
        let debounce_key = cfg.debounce.as_ref().and_then(|d| {
            let key = Some(d.key.clone());
            compile("debounce.key", &key, Role::Value)
        });
        if let Some(debounce) = &cfg.debounce {
            if cfg.delay.is_some() || cfg.deliver_at.is_some() {
                errors.push(
                    format!("{path}.debounce"),
                    format!("route {name:?} has `debounce` and `delay` or `deliver_at`; the debounce window already delays each delivery, so keep only `debounce`"),
                );
            }
            if debounce.window.0.is_zero() || debounce.window.0 > MAX_DELAY {
                errors.push(
                    format!("{path}.debounce.window"),
                    "a debounce window must be more than 0 and at most 365 days, like \"5s\""
                        .to_owned(),
                );
            }
        }
        if let Some(batch) = &cfg.batch {
            if !(1..=MAX_BATCH_EVENTS).contains(&batch.max_events) {
                errors.push(
                    format!("{path}.batch.max_events"),
                    format!("max_events must be 1 to {MAX_BATCH_EVENTS}"),
                );
            }
            if batch.max_wait.0 > std::time::Duration::from_secs(3600) {
                errors.push(
                    format!("{path}.batch.max_wait"),
                    "max_wait may be at most an hour, like \"2s\"".to_owned(),
                );
            }
            if batch.max_bytes.0 < 1024 {
                errors.push(
                    format!("{path}.batch.max_bytes"),
                    "max_bytes must be at least 1KiB, like \"1MiB\"".to_owned(),
                );
            }
        }
        if cfg.priority > MAX_PRIORITY {
            errors.push(
                format!("{path}.priority"),
                format!(
                    "priority {} is out of range; use 0 (the default, lowest) to {MAX_PRIORITY} (highest)",
                    cfg.priority
                ),
            );
        }
        if cfg.delay.is_some() && cfg.deliver_at.is_some() {
            errors.push(
                format!("{path}.delay"),
                format!("route {name:?} has both `delay` and `deliver_at`; keep one of them"),
            );
        }
        if cfg.delay.is_some_and(|d| d.0 > MAX_DELAY) {
            errors.push(
                format!("{path}.delay"),
                "a delay may be at most 365 days; shorten it".to_owned(),
            );
        }
        routes.push(Route {
            name,
            source: cfg.source.clone(),
            destination: cfg.destination.clone(),
            config: cfg,
            filter,
            transform,
            ordering_key,
            deliver_at,
            debounce_key,
        });
    }
    routes
}

/// The most events a route's `batch` may put in one call.
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// The highest route `priority`.
pub const MAX_PRIORITY: u8 = 9;

/// The longest route `delay`, and how far ahead a `deliver_at` may be.
pub const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);

/// A route's expression, checked: jq compiled, JavaScript loaded and run to its default
/// export (read from its file first, relative to `base`). JavaScript's errors cite the
/// file, or the key `at` for a module written in the configuration.
fn route_expr(expr: &ExprConfig, at: &str, role: Role, base: &Path) -> Result<Expr, String> {
    match expr {
        ExprConfig::Jq(text) => Expr::jq(text, role),
        ExprConfig::Js(text) => Expr::js(text, at, role),
        ExprConfig::JsFile(file) => {
            let full = base.join(file);
            let text = std::fs::read_to_string(&full).map_err(|e| {
                format!(
                    "cannot read js_file {}: {e}; the path is relative to the configuration file's directory",
                    full.display()
                )
            })?;
            Expr::js(&text, file, role)
        }
    }
}

fn table_has(table: &Table, key: &str, name: &str) -> bool {
    table
        .get(key)
        .and_then(Value::as_table)
        .is_some_and(|t| t.contains_key(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The printed lines of the errors (`path: message`).
    fn errors(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
        match parse(text, vars.iter().copied(), Path::new(".")) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// Compares line by line; an expected line ending in `…` need only start the line, so
    /// a new field in a struct does not break a test about something else.
    fn assert_lines(got: &[String], expected: &[&str]) {
        let matches = got.len() == expected.len()
            && got
                .iter()
                .zip(expected)
                .all(|(g, e)| match e.strip_suffix('…') {
                    Some(prefix) => g.starts_with(prefix),
                    None => g == e,
                });
        assert!(matches, "got {got:#?}\nexpected {expected:#?}");
    }

    #[test]
    fn deny_private_refuses_a_private_address_written_in_the_url() {
        let config = |url: &str| {
            format!(
                "[sources.s]\n[destinations.d]\nkind = \"http\"\nurl = \"{url}\"\ndeny_private = true\n\
                 [[routes]]\nsource = \"s\"\ndestination = \"d\"\n"
            )
        };
        assert_lines(
            &errors(&config("http://127.0.0.1:9000/hook"), &[]),
            &[
                "destinations.d.url: 127.0.0.1 is not a public address, and the destination has deny_private = true; point it at a public address or set deny_private = false",
            ],
        );
        assert_eq!(errors(&config("http://[fd00::1]/"), &[]).len(), 1);
        // Names are checked when they are resolved, at each send.
        assert!(errors(&config("https://hooks.example.com/"), &[]).is_empty());
    }

    fn ok(text: &str, vars: &[(&str, &str)]) -> Config {
        match parse(text, vars.iter().copied(), Path::new(".")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn every_bad_key_of_one_table_is_reported() {
        let got = errors(
            r#"
            [server]
            admin_lissen = "127.0.0.1:1"
            read_timeout = 5
            shutdown_timeout = "later"
            "#,
            &[],
        );
        assert_lines(
            &got,
            &[
                "server.admin_lissen: unknown key; expected one of `ingest_listen`, `admin_listen`, …",
                "server.read_timeout: invalid type: integer `5`, expected a string",
                "server.shutdown_timeout: invalid duration \"later\" (expected number at 0); write it like \"500ms\", \"30s\", \"5m\" or \"7d\"",
            ],
        );
    }

    #[test]
    fn a_single_error_keeps_its_text_and_path() {
        assert_eq!(
            errors("[sources.a]\ndedup_window = \"soon\"\n", &[]),
            [
                "sources.a.dedup_window: invalid duration \"soon\" (expected number at 0); write it like \"500ms\", \"30s\", \"5m\" or \"7d\""
            ]
        );
        assert_eq!(
            errors("[sources.a]\nverify = { kind = \"github\" }\n", &[]),
            ["sources.a.verify: missing field `secret`"]
        );
        assert_eq!(
            errors("[destinations.d]\nkind = \"http\"\n", &[]),
            ["destinations.d: missing field `url`"]
        );
        assert_eq!(
            errors("[destinations.d]\nkind = \"ftp\"\n", &[]),
            [
                "destinations.d.kind: unknown destination kind \"ftp\": give one of http, exec, nats, rabbitmq, redis, kafka"
            ]
        );
    }

    #[test]
    fn a_listener_must_allow_one_connection() {
        assert_eq!(
            errors("[server]\nmax_connections = 0\n", &[]),
            [
                "server.max_connections: must be at least 1; it is how many connections each listener holds open"
            ]
        );
    }

    #[test]
    fn errors_inside_sources_destinations_and_routes_are_all_reported() {
        let got = errors(
            r#"
            [sources.a]
            max_body = -1
            verify = { kind = "github", secret = "s", bogus = 1 }
            zzz = 1
            [destinations.d]
            kind = "http"
            url = 5
            timeout = "soon"
            breaker = { timeout = "5s" }
            retry = { schedule = ["5s", 7] }
            [[routes]]
            source = 5
            destination = "d"
            bogus = true
            "#,
            &[],
        );
        assert_lines(
            &got,
            &[
                "sources.a.max_body: invalid size -1; write it like \"512KiB\" or \"5MiB\"",
                "sources.a.verify.bogus: unknown key; expected `secret`",
                "sources.a.zzz: unknown key; expected one of `verify`, `methods`, …",
                // Not `destinations.d.timeout`: the `timeout` at the top is a valid key.
                "destinations.d.breaker.timeout: unknown key; expected `failures` or `cooldown`",
                "destinations.d.retry.schedule[1]: invalid type: integer `7`, expected a string",
                "destinations.d.timeout: invalid duration \"soon\" (expected number at 0); write it like \"500ms\", \"30s\", \"5m\" or \"7d\"",
                // Removing the bad `url` must not add "missing field `url`".
                "destinations.d.url: invalid type: integer `5`, expected a string",
                "routes[0].bogus: unknown key; expected one of `name`, `source`, …",
                "routes[0].source: invalid type: integer `5`, expected a string",
            ],
        );
    }

    #[test]
    fn values_that_would_fail_at_run_time_are_refused() {
        let got = errors(
            r#"
            [server]
            read_timeout = "0s"
            shutdown_timeout = "0s"
            [storage]
            commit_timeout = "0s"
            [sources.a]
            max_body = "1GiB"
            response = { content_type = "text/plain\r\nX-Injected: 1" }
            "#,
            &[],
        );
        let expected = [
            "server.read_timeout: must be more than 0s",
            "server.shutdown_timeout: must be more than 0s",
            "storage.commit_timeout: must be more than 0s",
            "sources.a.response.content_type: \"text/plain\\r\\nX-Injected: 1\" cannot be sent as a Content-Type header",
            "sources.a.max_body: 1073741824 bytes is more than SQLite can store",
        ];
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        for (got, expected) in got.iter().zip(expected) {
            assert!(got.starts_with(expected), "{got}");
        }
        // The largest allowed body, and a dedup window of 0s ("no dedup"), are fine.
        let config = ok(
            "[server]\nmax_inflight_bytes = \"1GiB\"\n[sources.a]\nmax_body = \"900MiB\"\ndedup_window = \"0s\"\nresponse = { content_type = \"application/json; charset=utf-8\" }\n",
            &[],
        );
        assert!(config.sources["a"].dedup_window.0.is_zero());
    }

    #[test]
    fn retention_comes_from_the_source_then_storage_then_defaults() {
        use crate::config::Keep;
        let day = |n: u64| Keep::For(Span::secs(n * 86_400));
        let config = ok(
            "[storage]\nretention = { events = \"90d\" }\n\
             [sources.a]\nretention = { rejected = \"forever\" }\n[sources.b]\n",
            &[],
        );
        let a = config.sources["a"].retention;
        assert_eq!(
            (a.events, a.attempts, a.rejected),
            (day(90), day(30), Keep::Forever)
        );
        let b = config.sources["b"].retention;
        assert_eq!(
            (b.events, b.attempts, b.rejected),
            (day(90), day(30), day(3))
        );
        assert_eq!(config.storage.retention.events, day(90));
    }

    #[test]
    fn events_kept_shorter_than_the_dedup_window_are_refused() {
        assert_lines(
            &errors(
                "[sources.a]\nretention = { events = \"1d\" }\n\
                 [storage]\nretention = { events = \"2h\" }\n[sources.b]\ndedup_window = \"1h\"\n[sources.c]\n",
                &[],
            ),
            &[
                "sources.a.retention.events: keeps events 1day, less than the source's dedup_window (7days): a repeat arriving after its event was purged would be delivered again; keep events at least as long as dedup_window, or shorten dedup_window",
                "storage.retention.events: keeps events 2h (for source \"c\"), less than the source's dedup_window (7days): a repeat arriving after its event was purged would be delivered again; keep events at least as long as dedup_window, or shorten dedup_window",
            ],
        );
    }

    #[test]
    fn mailgun_and_paypal_sources_that_give_up_their_signed_dedup_are_warned_about() {
        let mailgun = "verify = { kind = \"mailgun\", secret = \"key\" }";
        let warned = |extra: &str| {
            ok(&format!("[sources.mg]\n{mailgun}\n{extra}\n"), &[])
                .warnings
                .into_iter()
                .filter(|w| w.contains("Mailgun"))
                .collect::<Vec<_>>()
        };
        assert!(warned("").is_empty());
        assert!(warned("dedup_key = \"json:/event-data/id\"")[0].contains("Remove dedup_key"));
        assert!(warned("dedup_window = \"1m\"")[0].contains("keep dedup_window at least 5m"));

        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("paypal.pem");
        std::fs::write(
            &cert,
            include_str!("../ingest/verify/testdata/paypal-sandbox-2017.pem"),
        )
        .unwrap();
        let paypal = format!(
            "verify = {{ kind = \"paypal\", certificate = \"file:{}\", webhook_id = \"W1\" }}",
            cert.display()
        );
        let warned = |extra: &str| {
            ok(&format!("[sources.pp]\n{paypal}\n{extra}\n"), &[])
                .warnings
                .into_iter()
                .filter(|w| w.contains("PayPal"))
                .collect::<Vec<_>>()
        };
        assert!(warned("").is_empty());
        assert!(warned("dedup_key = \"json:/id\"")[0].contains("PAYPAL-TRANSMISSION-ID"));
        assert!(warned("dedup_window = \"1d\"")[0].contains("keep dedup_window at least 73h"));
    }

    #[test]
    fn listeners_on_one_port_are_refused() {
        let clash = |ingest: &str, admin: &str| {
            // A token, so that a public admin_listen is not an error of its own.
            let text = format!(
                "[server]\ningest_listen = \"{ingest}\"\nadmin_listen = \"{admin}\"\nadmin_token = \"t\"\n"
            );
            let got = errors(&text, &[]);
            match got.as_slice() {
                [] => false,
                [one] if one.starts_with("server.admin_listen: ") && one.contains("same port") => {
                    true
                }
                other => panic!("{other:?}"),
            }
        };
        assert!(clash("127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(clash("0.0.0.0:8080", "127.0.0.1:8080"));
        assert!(clash("127.0.0.1:8080", "0.0.0.0:8080"));
        assert!(clash("[::]:8080", "127.0.0.1:8080"));
        assert!(clash("[::1]:8080", "[::1]:8080"));
        assert!(!clash("0.0.0.0:8080", "127.0.0.1:8081"));
        assert!(!clash("127.0.0.2:8080", "127.0.0.1:8080"));
        assert!(!clash("0.0.0.0:8080", "[::1]:8080"));
        // Port 0: the system picks two different ports (as the tests do).
        assert!(!clash("127.0.0.1:0", "127.0.0.1:0"));
    }

    #[test]
    fn errors_about_overridden_values_name_the_variable() {
        let got = errors(
            "[sources.a]\n",
            &[
                ("FOREBAY_SERVER__READ_TIMEOUT", "0s"),
                ("FOREBAY_SOURCES__A__MAX_BODY", "-1"),
                ("FOREBAY_STORAGE__COMMIT_TIMEOUT", "5"),
                ("FOREBAY_SOURCES__A__VERIFY", "{ kind = \"github\" }"),
                ("FOREBAY_SERVR__PORT", "1"),
            ],
        );
        assert_eq!(
            got,
            [
                "servr: unknown key; expected one of server, storage, sources, destinations, routes (set by FOREBAY_SERVR__PORT)",
                "server.read_timeout: must be more than 0s: 0s would time out every request before its headers arrive; use e.g. \"10s\" (set by FOREBAY_SERVER__READ_TIMEOUT)",
                "storage.commit_timeout: invalid duration \"5\" (time unit needed, for example 5sec or 5ms); write it like \"500ms\", \"30s\", \"5m\" or \"7d\" (set by FOREBAY_STORAGE__COMMIT_TIMEOUT)",
                "sources.a.max_body: invalid size -1; write it like \"512KiB\" or \"5MiB\" (set by FOREBAY_SOURCES__A__MAX_BODY)",
                "sources.a.verify: missing field `secret` (set by FOREBAY_SOURCES__A__VERIFY)",
            ]
        );
        // The file's own mistakes say nothing about the environment.
        assert_eq!(
            errors(
                "[server]\nread_timeout = \"0s\"\n",
                &[("FOREBAY_SERVER__MAX_HEADERS", "5")]
            )
            .len(),
            1
        );
        assert!(
            !errors(
                "[server]\nread_timeout = \"0s\"\n",
                &[("FOREBAY_SERVER__MAX_HEADERS", "5")]
            )[0]
            .contains("set by")
        );
    }

    #[test]
    fn digits_for_a_text_key_stay_text_and_numbers_stay_numbers() {
        let config = ok(
            "[sources.a]\n",
            &[
                ("FOREBAY_SERVER__ADMIN_TOKEN", "12345"),
                ("FOREBAY_SERVER__MAX_HEADERS", "200"),
                ("FOREBAY_SOURCES__A__MAX_BODY", "2048"),
                ("FOREBAY_SOURCES__A__METHODS", "[\"POST\"]"),
            ],
        );
        let token = config
            .server
            .admin_token
            .as_ref()
            .map(|t| t.expose().to_vec());
        assert_eq!(token.as_deref(), Some(&b"12345"[..]));
        assert_eq!(config.server.max_headers, 200);
        assert_eq!(config.sources["a"].max_body, 2048);
        assert_eq!(config.sources["a"].methods, [Method::POST]);
        // Text where a number is wanted is still an error, reported once.
        assert_eq!(
            errors("", &[("FOREBAY_SERVER__MAX_HEADERS", "many")]),
            [
                "server.max_headers: invalid type: string \"many\", expected usize (set by FOREBAY_SERVER__MAX_HEADERS)"
            ]
        );
    }

    #[test]
    fn overrides_that_cannot_apply_are_reported_with_the_rest() {
        let got = errors(
            "[sources.stripe]\n[server]\nread_timeout = \"0s\"\n",
            &[
                ("FOREBAY_SOURCES__STRIPPE__MAX_BODY", "1MiB"),
                ("FOREBAY_ROUTES__0__NAME", "x"),
            ],
        );
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[0].starts_with(
            "FOREBAY_ROUTES__0__NAME: routes cannot be overridden from the environment"
        ));
        assert_eq!(
            got[1],
            "FOREBAY_SOURCES__STRIPPE__MAX_BODY names source `strippe`, which the file does not define; define [sources.strippe] in the file"
        );
        assert!(got[2].starts_with("server.read_timeout"));
    }
}
