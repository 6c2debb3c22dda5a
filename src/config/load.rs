//! From TOML text to a validated [`Config`], collecting every error with its key path.
//!
//! Each table and each source, destination and route is deserialized on its own, so a
//! mistake in one does not hide the mistakes in the others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use http::Method;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::env::apply_overrides;
use super::model::{DestinationConfig, RouteConfig, ServerConfig, SourceConfig, StorageConfig};
use super::{Backend, Config, ConfigErrors, Route, Server, Source, Storage};
use crate::ingest::dedup::DedupRule;

const TOP_LEVEL: [&str; 5] = ["server", "storage", "sources", "destinations", "routes"];

pub(super) fn parse<I, K, V>(text: &str, vars: I) -> Result<Config, ConfigErrors>
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
    apply_overrides(&mut table, vars);

    for key in table.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            errors.push(
                key.clone(),
                format!("unknown key; expected one of {}", TOP_LEVEL.join(", ")),
            );
        }
    }

    let server = section::<ServerConfig>(&table, "server", &mut errors)
        .and_then(|s| resolve_server(s, &mut errors));
    let storage = section::<StorageConfig>(&table, "storage", &mut errors)
        .and_then(|s| resolve_storage(s, &mut errors));

    let mut warnings = Vec::new();
    let mut sources = BTreeMap::new();
    for (name, value) in named_items(&table, "sources", &mut errors) {
        let path = format!("sources.{name}");
        check_name(&path, &name, &mut errors);
        if let Some(cfg) = deserialize_at::<SourceConfig>(value, &path, &mut errors)
            && let Some(source) = resolve_source(&name, cfg, &path, &mut errors)
        {
            if source.verifier.is_none() {
                warnings.push(format!(
                    "source {name:?} does not verify its sender (verify.kind = \"none\"): anyone who knows the URL can post events"
                ));
            }
            sources.insert(name, source);
        }
    }

    let mut destinations = BTreeMap::new();
    for (name, value) in named_items(&table, "destinations", &mut errors) {
        let path = format!("destinations.{name}");
        check_name(&path, &name, &mut errors);
        if let Some(cfg) = deserialize_at::<DestinationConfig>(value, &path, &mut errors) {
            check_destination(&cfg, &path, &mut errors);
            destinations.insert(name, cfg);
        }
    }

    let routes = resolve_routes(&table, &sources, &destinations, &mut errors);

    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(server), Some(storage)) = (server, storage) else {
        return Err(errors);
    };
    let sources = sources
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
    Ok(Config {
        server,
        storage,
        sources,
        destinations,
        routes,
        warnings,
    })
}

/// Deserializes `value` as `T`, recording an error at `path` (plus the inner path).
fn deserialize_at<T: DeserializeOwned>(
    value: Value,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = if inner == "." || inner.is_empty() {
                path.to_owned()
            } else {
                format!("{path}.{inner}")
            };
            errors.push(full, e.into_inner().message().trim_end());
            None
        }
    }
}

/// A top-level table that may be absent (then its defaults apply).
fn section<T: DeserializeOwned + Default>(
    table: &Table,
    key: &str,
    errors: &mut ConfigErrors,
) -> Option<T> {
    match table.get(key) {
        None => Some(T::default()),
        Some(v) => deserialize_at(v.clone(), key, errors),
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

fn check_name(path: &str, name: &str, errors: &mut ConfigErrors) {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        errors.push(
            path,
            "names may use only letters, digits, `-` and `_` (they appear in URLs)",
        );
    }
}

fn resolve_server(cfg: ServerConfig, errors: &mut ConfigErrors) -> Option<Server> {
    let admin_token = match &cfg.admin_token {
        None => None,
        Some(r) => match r.resolve() {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push("server.admin_token", e);
                return None;
            }
        },
    };
    if admin_token.is_none() && !cfg.admin_listen.ip().is_loopback() {
        errors.push(
            "server.admin_token",
            format!(
                "admin_listen {} is not a loopback address, so the admin API needs a token; set admin_token (e.g. \"env:FOREBAY_ADMIN_TOKEN\") or listen on 127.0.0.1",
                cfg.admin_listen
            ),
        );
        return None;
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
    Some(Server {
        ingest_listen: cfg.ingest_listen,
        admin_listen: cfg.admin_listen,
        admin_token,
        max_header_bytes: cfg.max_header_bytes.as_usize(),
        max_headers: cfg.max_headers,
        read_timeout: cfg.read_timeout,
        shutdown_timeout: cfg.shutdown_timeout,
    })
}

fn resolve_storage(cfg: StorageConfig, errors: &mut ConfigErrors) -> Option<Storage> {
    let backend = if let Some(rest) = cfg.url.strip_prefix("sqlite://") {
        if rest.is_empty() {
            errors.push(
                "storage.url",
                "sqlite:// needs a file path, e.g. \"sqlite://./forebay-data/forebay.db\"",
            );
            return None;
        }
        Backend::Sqlite {
            path: PathBuf::from(rest),
        }
    } else if cfg.url.starts_with("postgres://") || cfg.url.starts_with("postgresql://") {
        errors.push(
            "storage.url",
            "the PostgreSQL store is not part of this version yet; use \"sqlite://PATH\"",
        );
        return None;
    } else {
        errors.push(
            "storage.url",
            format!(
                "unsupported store URL {:?}; use \"sqlite://./forebay-data/forebay.db\"",
                cfg.url
            ),
        );
        return None;
    };
    if cfg.max_batch == 0 {
        errors.push("storage.max_batch", "must be at least 1");
    }
    if cfg.queue_depth == 0 {
        errors.push("storage.queue_depth", "must be at least 1");
    }
    Some(Storage {
        backend,
        busy_timeout: cfg.busy_timeout,
        max_batch: cfg.max_batch.max(1),
        queue_depth: cfg.queue_depth.max(1),
        retry_after: cfg.retry_after,
    })
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
    if cfg.max_body.0 == 0 {
        errors.push(format!("{path}.max_body"), "must be at least 1 byte");
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
        routes: Vec::new(),
    })
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
            if Method::from_bytes(http.method.as_bytes()).is_err() {
                errors.push(
                    format!("{path}.method"),
                    format!("{:?} is not an HTTP method", http.method),
                );
            }
            if let Some(sign) = &http.sign
                && let Err(e) = sign.secret.resolve()
            {
                errors.push(format!("{path}.sign.secret"), e);
            }
            (&http.retry, &http.breaker, http.max_concurrency)
        }
        DestinationConfig::Exec(exec) => {
            if exec.command.trim().is_empty() {
                errors.push(format!("{path}.command"), "give the program to run");
            }
            (&exec.retry, &exec.breaker, exec.max_concurrency)
        }
    };
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
        let Some(cfg) = deserialize_at::<RouteConfig>(value, &path, errors) else {
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
        routes.push(Route {
            name,
            source: cfg.source.clone(),
            destination: cfg.destination.clone(),
            config: cfg,
        });
    }
    routes
}

fn table_has(table: &Table, key: &str, name: &str) -> bool {
    table
        .get(key)
        .and_then(Value::as_table)
        .is_some_and(|t| t.contains_key(name))
}
