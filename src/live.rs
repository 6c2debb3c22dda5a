//! The running configuration, and reloading it without a restart.
//!
//! Everything that reads the configuration while serving (ingest, the delivery worker,
//! the preparer, replays, retention, the admin API) takes the current [`Running`] when it
//! starts a piece of work and keeps it to the end: a request, a send or a batch that
//! began before a reload finishes on the configuration it began with, and the next one
//! sees the new. A reload builds the whole new [`Running`] first and swaps it in at once,
//! or changes nothing.
//!
//! Carried over, so a reload does not reset them: a destination (its connections,
//! concurrency and rate limits, breaker) when its configuration and signing key are the
//! same; for one that changed, its limits (with the sends they count) and its breaker
//! when their own settings are the same, the old one closed once its sends finish; and
//! a source's edge rate limit when its limits are the same. `[server]` and `[storage]`
//! (but `storage.retention`) are fixed at start; a reload that changes them says so and
//! keeps the running values.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::config::{Backend, BudgetIs, Config, ConfigErrors, Role, check_body_budget};
use crate::deliver::{self, Destination};
use crate::maintenance::Retention;
use crate::routing::Programs;
use crate::store::{Cluster, ClusterLimit, Store};

/// One generation of the configuration, with what was built from it.
pub struct Running {
    /// 1 at start, one more with each reload that applied.
    pub generation: u64,
    pub config: Config,
    pub destinations: Arc<BTreeMap<String, Arc<Destination>>>,
    /// The batching routes, by destination.
    pub batches: Arc<crate::deliver::worker::Batches>,
    /// The compiled `jq` of routes and dedup keys.
    pub programs: Arc<Programs>,
}

/// The current [`Running`], and how to replace it.
pub struct Live {
    current: ArcSwap<Running>,
    /// One reload at a time: two would build from the same generation.
    reloading: tokio::sync::Mutex<()>,
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    prepare_wake: Arc<Notify>,
    /// Reloads applied and refused, for `/metrics`.
    applied: AtomicU64,
    refused: AtomicU64,
}

/// What a reload applied.
#[derive(Debug, serde::Serialize)]
pub struct Reloaded {
    pub generation: u64,
    /// What was added, removed or replaced, in words (`"source github added"`, ...);
    /// a source whose settings changed is not listed (sources have no equality).
    pub changes: Vec<String>,
    /// Keys that changed in the file but apply only after a restart.
    pub needs_restart: Vec<String>,
}

/// Why a reload applied nothing; the running configuration stays as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(
        "this process was not started from a configuration file, so there is nothing to read again"
    )]
    NoFile,
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// Building the new configuration stopped short (a panic).
    #[error(
        "the reload stopped short ({0}); this is a bug in forebay, please report it with the log"
    )]
    Failed(String),
}

impl Live {
    pub fn new(
        first: Running,
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
        prepare_wake: Arc<Notify>,
    ) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(first),
            reloading: tokio::sync::Mutex::new(()),
            store,
            wake,
            prepare_wake,
            applied: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// The configuration in force now.
    pub fn current(&self) -> Arc<Running> {
        self.current.load_full()
    }

    /// Reloads applied and refused since start.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.applied.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    /// The destinations in force, for the delivery worker.
    pub fn destinations(
        self: &Arc<Self>,
    ) -> Arc<dyn Fn() -> Arc<BTreeMap<String, Arc<Destination>>> + Send + Sync> {
        let live = self.clone();
        Arc::new(move || live.current().destinations.clone())
    }

    /// The batching routes in force, for the delivery worker.
    pub fn batches(
        self: &Arc<Self>,
    ) -> Arc<dyn Fn() -> Arc<crate::deliver::worker::Batches> + Send + Sync> {
        let live = self.clone();
        Arc::new(move || live.current().batches.clone())
    }

    /// How long data is kept, for maintenance.
    pub fn retention(self: &Arc<Self>) -> Arc<dyn Fn() -> Retention + Send + Sync> {
        let live = self.clone();
        Arc::new(move || {
            let config = &live.current().config;
            Retention::of(&config.sources, config.storage.retention)
        })
    }

    /// The compiled expressions in force, for the preparer.
    pub fn programs(self: &Arc<Self>) -> Arc<dyn Fn() -> Arc<Programs> + Send + Sync> {
        let live = self.clone();
        Arc::new(move || live.current().programs.clone())
    }

    /// Reads the configuration file again (with the `FOREBAY_*` environment) and, when
    /// it is valid, puts it in force. Errors name the key at fault. It runs to its end
    /// even when the caller stops waiting (a client that hangs up).
    pub async fn reload(self: &Arc<Self>) -> Result<Reloaded, ReloadError> {
        let this = self.clone();
        tokio::spawn(async move { this.reload_now().await })
            .await
            .unwrap_or_else(|e| Err(ReloadError::Failed(e.to_string())))
    }

    async fn reload_now(&self) -> Result<Reloaded, ReloadError> {
        let _one = self.reloading.lock().await;
        crate::service_manager::reloading();
        let running = self.current();
        // Reading files and building clients takes milliseconds: not on a runtime thread
        // that is serving requests.
        let from = running.clone();
        let built = tokio::task::spawn_blocking(move || build(&from))
            .await
            .unwrap_or_else(|e| Err(ReloadError::Failed(e.to_string())));
        let (next, reloaded) = match built {
            Ok(built) => built,
            Err(e) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    generation = running.generation,
                    "configuration not reloaded, the running one stays: {e}"
                );
                crate::service_manager::ready(&format!(
                    "serving configuration generation {} (a reload was refused: see the log)",
                    running.generation
                ));
                return Err(e);
            }
        };
        for warning in &next.config.warnings {
            tracing::warn!("{warning}");
        }
        for key in &reloaded.needs_restart {
            tracing::warn!(key = %key, "this change applies after a restart; the running value stays");
        }
        // The cluster knows the new destinations' limits before the worker claims for them.
        if running.config.role != Role::Ingest {
            self.store
                .join_cluster(cluster_of(&next.config, &self.wake, &self.prepare_wake));
        }
        let replaced: Vec<Arc<Destination>> = running
            .destinations
            .iter()
            .filter(|(name, before)| {
                next.destinations
                    .get(*name)
                    .is_none_or(|now| !Arc::ptr_eq(now, before))
            })
            .map(|(_, before)| before.clone())
            .collect();
        self.current.store(Arc::new(next));
        drop(running);
        for before in replaced {
            retire(before);
        }
        self.applied.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            generation = reloaded.generation,
            changes = %if reloaded.changes.is_empty() { "none".to_owned() } else { reloaded.changes.join("; ") },
            "configuration reloaded"
        );
        crate::service_manager::ready(&format!(
            "serving configuration generation {}",
            reloaded.generation
        ));
        // New routes or destinations may find work already waiting.
        self.wake.notify_one();
        self.prepare_wake.notify_one();
        Ok(reloaded)
    }
}

/// What the store needs to hold each destination's limits across processes.
pub fn cluster_of(config: &Config, wake: &Arc<Notify>, prepare_wake: &Arc<Notify>) -> Cluster {
    let limits = config
        .destinations
        .iter()
        .map(|(name, d)| {
            let (max_in_flight, rate) = d.limits();
            ClusterLimit {
                destination: name.clone(),
                ordered: config
                    .routes
                    .iter()
                    .any(|r| &r.destination == name && r.ordering_key.is_some()),
                max_in_flight,
                rate: rate.map(|r| {
                    (
                        r.count,
                        i64::try_from(r.per.as_millis()).unwrap_or(i64::MAX),
                    )
                }),
            }
        })
        .collect();
    Cluster {
        limits,
        wake: Some(wake.clone()),
        prepare_wake: Some(prepare_wake.clone()),
    }
}

/// The next generation from the file, or why there is none.
fn build(running: &Running) -> Result<(Running, Reloaded), ReloadError> {
    let old = &running.config;
    let path = old.origin.as_deref().ok_or(ReloadError::NoFile)?;
    let text = std::fs::read_to_string(path).map_err(|e| {
        let mut errors = ConfigErrors::default();
        errors.push(
            "",
            format!(
                "cannot read {}: {e}; this process was started from that file: put it back, then reload again",
                path.display()
            ),
        );
        ReloadError::Invalid(errors)
    })?;
    let mut new = Config::parse(&text, std::env::vars()).map_err(ReloadError::Invalid)?;
    new.origin = old.origin.clone();
    new.role = old.role;
    check_against_running(old, &new).map_err(ReloadError::Invalid)?;
    let needs_restart = restart_only_changes(old, &new);
    // The running values stay in force until a restart; retention is read per round.
    let retention = new.storage.retention;
    new.server = old.server.clone();
    new.storage = old.storage.clone();
    new.storage.retention = retention;
    keep_edge_limits(old, &mut new);
    let mut destinations = deliver::destinations(&new).map_err(|e| {
        // Built destinations name theirs first: `destinations.NAME: what`.
        let (key, message) = e.split_once(": ").unwrap_or(("", &e));
        let mut errors = ConfigErrors::default();
        errors.push(key, message);
        ReloadError::Invalid(errors)
    })?;
    for (name, fresh) in destinations.iter_mut() {
        if let (Some(before), Some(config_before)) =
            (running.destinations.get(name), old.destinations.get(name))
            && new.destinations.get(name) == Some(config_before)
            && before.signs_like(fresh)
        {
            *fresh = before.clone();
        } else if let (Some(before), Some(was), Some(now), Some(fresh)) = (
            running.destinations.get(name),
            old.destinations.get(name),
            new.destinations.get(name),
            Arc::get_mut(fresh),
        ) {
            fresh.carry_over(before, was, now);
        }
    }
    let changes = describe_changes(running, &new, &destinations);
    let generation = running.generation + 1;
    let programs = Programs::new(&new);
    Ok((
        Running {
            generation,
            batches: Arc::new(crate::deliver::batch::batches_of(&new)),
            config: new,
            destinations: Arc::new(destinations),
            programs,
        },
        Reloaded {
            generation,
            changes,
            needs_restart,
        },
    ))
}

/// Closes a destination a reload replaced or removed (a broker connection is told it
/// ends, Kafka's producer flushed) once the sends that still hold it have finished, or
/// when the longest of them would have timed out.
fn retire(before: Arc<Destination>) {
    tokio::spawn(async move {
        let give_up = tokio::time::Instant::now() + before.timeout() + RETIRE_GRACE;
        while Arc::strong_count(&before) > 1 && tokio::time::Instant::now() < give_up {
            tokio::time::sleep(RETIRE_POLL).await;
        }
        before.close().await;
    });
}

/// How often a retired destination looks whether its last send has finished.
const RETIRE_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// Past a send's timeout, how long a retired destination still waits before closing.
const RETIRE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Reloads on each SIGHUP until `stop` turns true. Where signals cannot be listened for,
/// says so once: `POST /api/v1/reload` still works.
pub fn reload_on_hangup(
    live: Arc<Live>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Listening before this returns, so a SIGHUP once the server serves is never missed.
    let hangups = signal(SignalKind::hangup());
    tokio::spawn(async move {
        let mut hangups = match hangups {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /api/v1/reload");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hangups.recv() => {
                    tracing::info!("SIGHUP: reading the configuration again");
                    // The outcome is logged by `reload`.
                    let _ = live.reload().await;
                }
                _ = stop.changed() => return,
            }
        }
    })
}

/// What the new file must satisfy with the `[server]` that stays in force (its own is
/// only read at the next start).
fn check_against_running(old: &Config, new: &Config) -> Result<(), ConfigErrors> {
    let mut errors = ConfigErrors::default();
    check_body_budget(
        new.sources
            .iter()
            .map(|(name, s)| (name.as_str(), s.max_body)),
        old.server.max_inflight_bytes,
        BudgetIs::Running,
        &mut errors,
    );
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A source whose edge limits did not change keeps its limiter, and with it the
/// requests already counted (a reload must not hand a flooding sender a fresh bucket).
fn keep_edge_limits(old: &Config, new: &mut Config) {
    for (name, source) in new.sources.iter_mut() {
        let Some(before) = old.sources.get(name).and_then(|s| s.edge_limit.as_ref()) else {
            continue;
        };
        let same = source
            .edge_limit
            .as_ref()
            .is_some_and(|l| before.same_limits(l));
        // Freshly loaded, so nothing else holds it yet.
        if same && let Some(source) = Arc::get_mut(source) {
            source.edge_limit = Some(before.clone());
        }
    }
}

/// The keys of `[server]` and `[storage]` that differ: they are fixed while running.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    macro_rules! compare {
        ($section:ident: $($key:ident),+) => {
            $(if old.$section.$key != new.$section.$key {
                keys.push(concat!(stringify!($section), ".", stringify!($key)).to_owned());
            })+
        };
    }
    compare!(server: ingest_listen, admin_listen, admin_token, max_header_bytes, max_headers,
        read_timeout, shutdown_timeout, max_inflight_bytes, max_connections);
    match (&old.storage.backend, &new.storage.backend) {
        (
            Backend::Postgres {
                url,
                schema,
                pool_size,
            },
            Backend::Postgres {
                url: url2,
                schema: schema2,
                pool_size: pool_size2,
            },
        ) => {
            for (key, changed) in [
                ("storage.url", url != url2),
                ("storage.schema", schema != schema2),
                ("storage.pool_size", pool_size != pool_size2),
            ] {
                if changed {
                    keys.push(key.to_owned());
                }
            }
        }
        (a, b) if a != b => keys.push("storage.url".to_owned()),
        _ => {}
    }
    compare!(storage: busy_timeout, max_batch, queue_depth, retry_after, commit_timeout,
        rejected_body_limit, encryption);
    keys
}

/// Sources, destinations and routes added, removed or replaced, in words.
fn describe_changes(
    running: &Running,
    new: &Config,
    destinations: &BTreeMap<String, Arc<Destination>>,
) -> Vec<String> {
    let old = &running.config;
    let mut changes = Vec::new();
    for name in new.sources.keys().filter(|n| !old.sources.contains_key(*n)) {
        changes.push(format!("source {name} added"));
    }
    for name in old.sources.keys().filter(|n| !new.sources.contains_key(*n)) {
        changes.push(format!("source {name} removed (its URL answers 404 now)"));
    }
    for (name, d) in destinations {
        match running.destinations.get(name) {
            None => changes.push(format!("destination {name} added")),
            Some(before) if !Arc::ptr_eq(before, d) => {
                changes.push(format!("destination {name} replaced"))
            }
            Some(_) => {}
        }
    }
    for name in running.destinations.keys() {
        if !destinations.contains_key(name) {
            changes.push(format!(
                "destination {name} removed (its waiting deliveries stay stored until it is configured again)"
            ));
        }
    }
    let routes = |c: &Config| {
        c.routes
            .iter()
            .map(|r| (r.name.clone(), r.config.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let (before, after) = (routes(old), routes(new));
    for (name, route) in &after {
        match before.get(name) {
            None => changes.push(format!("route {name} added")),
            Some(was) if was != route => changes.push(format!("route {name} changed")),
            Some(_) => {}
        }
    }
    for name in before.keys().filter(|n| !after.contains_key(*n)) {
        changes.push(format!("route {name} removed"));
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, std::iter::empty::<(&str, &str)>()).expect("valid")
    }

    #[test]
    fn listen_addresses_and_the_store_are_reported_as_needing_a_restart() {
        let old = parse(
            "[server]\ningest_listen = \"127.0.0.1:8080\"\n[storage]\nurl = \"sqlite:///tmp/a.db\"\n",
        );
        let new = parse(
            "[server]\ningest_listen = \"127.0.0.1:9090\"\n[storage]\nurl = \"sqlite:///tmp/b.db\"\nretention = { events = \"1d\" }\n",
        );
        assert_eq!(
            restart_only_changes(&old, &new),
            ["server.ingest_listen", "storage.url"],
            "retention applies live, so it is not listed"
        );
        assert!(restart_only_changes(&old, &old).is_empty());
    }

    #[test]
    fn a_source_with_the_same_limits_keeps_its_limiter() {
        let text = "[sources.a]\nrate_limit = \"5/s\"\n[sources.b]\nrate_limit = \"5/s\"\n";
        let old = parse(text);
        let mut new = parse(&text.replace(
            "[sources.b]\nrate_limit = \"5/s\"",
            "[sources.b]\nrate_limit = \"6/s\"",
        ));
        keep_edge_limits(&old, &mut new);
        let limiter = |c: &Config, n: &str| c.sources[n].edge_limit.clone().expect("limited");
        assert!(Arc::ptr_eq(&limiter(&old, "a"), &limiter(&new, "a")));
        assert!(!Arc::ptr_eq(&limiter(&old, "b"), &limiter(&new, "b")));
    }
}
