//! Sources, routes and destinations: `GET /api/v1/sources`, `GET /api/v1/routes`,
//! `GET /api/v1/destinations` (with live state: paused, breaker, backlog, dead), and
//! `POST …/{name}/pause` and `…/{name}/resume`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::Serialize;

use super::AdminState;
use super::json::Page;
use crate::http_error::ApiError;
use crate::store::Pausable;

#[derive(Serialize)]
pub struct RouteJson {
    pub(crate) name: String,
    pub(crate) source: String,
    pub(crate) destination: String,
    pub(crate) filter: Option<String>,
    pub(crate) transform: Option<String>,
    pub(crate) ordering_key: Option<String>,
    pub(crate) deliver_at: Option<String>,
    /// The language of each expression the route has: `jq` or `js`.
    pub(crate) languages: std::collections::BTreeMap<&'static str, crate::expr::Language>,
    /// 0 (the default) to 9.
    pub(crate) priority: u8,
    /// The route's `delay` in milliseconds; `null` without one.
    pub(crate) delay_ms: Option<i64>,
    /// The route's `debounce`: its key expression and window; `null` without one.
    pub(crate) debounce: Option<serde_json::Value>,
    /// The route's `batch` limits; `null` when it sends one event per call.
    pub(crate) batch: Option<serde_json::Value>,
    pub(crate) paused: bool,
    /// Why forebay paused the route itself (its expressions kept running past their
    /// time limit); `null` when it is not paused or an operator paused it.
    pub(crate) paused_reason: Option<String>,
    /// Deliveries still to send: pending, in flight or retrying.
    pub(crate) backlog: u64,
    /// Dead deliveries (the route's share of the dead-letter queue).
    pub(crate) dead: u64,
}

#[derive(Serialize)]
pub struct DestinationJson {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) paused: bool,
    /// `closed`, `open` (deliveries wait without spending attempts) or `probing`.
    pub(crate) breaker: &'static str,
    pub(crate) backlog: u64,
    pub(crate) dead: u64,
    pub(crate) max_concurrency: Option<u32>,
    /// `N/s`, `N/m` or `N/h`.
    pub(crate) rate_limit: Option<String>,
}

#[derive(Serialize)]
pub struct SourceJson {
    pub(crate) name: String,
    pub(crate) verify: &'static str,
    pub(crate) methods: Vec<String>,
    pub(crate) max_body: u64,
    /// Seconds.
    pub(crate) dedup_window: u64,
    /// Seconds each kind of data is kept; `null` keeps it forever.
    pub(crate) retention: RetentionJson,
    pub(crate) routes: Vec<String>,
}

#[derive(Serialize)]
pub struct RetentionJson {
    pub(crate) events: Option<u64>,
    pub(crate) attempts: Option<u64>,
    pub(crate) rejected: Option<u64>,
}

impl From<crate::config::RetentionConfig> for RetentionJson {
    fn from(r: crate::config::RetentionConfig) -> Self {
        let secs = |keep: crate::config::Keep| match keep {
            crate::config::Keep::For(span) => Some(span.0.as_secs()),
            crate::config::Keep::Forever => None,
        };
        Self {
            events: secs(r.events),
            attempts: secs(r.attempts),
            rejected: secs(r.rejected),
        }
    }
}

/// Deliveries per route, destination and state.
async fn counts(state: &AdminState) -> Result<Vec<crate::store::DeliveryCount>, ApiError> {
    state
        .store
        .delivery_counts()
        .await
        .map_err(|e| ApiError::from_store(&e))
}

/// Backlog and dead counts, summed over the counts `matches` selects.
fn sum(
    counts: &[crate::store::DeliveryCount],
    matches: impl Fn(&crate::store::DeliveryCount) -> bool,
) -> (u64, u64) {
    counts
        .iter()
        .filter(|c| matches(c))
        .fold((0, 0), |(b, d), c| {
            if c.is_backlog() {
                (b + c.count, d)
            } else if c.state == "dead" {
                (b, d + c.count)
            } else {
                (b, d)
            }
        })
}

pub async fn routes(State(state): State<AdminState>) -> Result<Json<Page<RouteJson>>, ApiError> {
    let counts = counts(&state).await?;
    let running = state.live.current();
    let data = running
        .config
        .routes
        .iter()
        .map(|r| {
            let (backlog, dead) = sum(&counts, |c| c.route == r.name);
            let text = |e: &Option<crate::expr::Expr>| e.as_ref().map(|e| e.text().to_owned());
            RouteJson {
                paused: state.pauses.is_paused(Pausable::Route, &r.name),
                paused_reason: state.pauses.reason(Pausable::Route, &r.name),
                name: r.name.clone(),
                source: r.source.clone(),
                destination: r.destination.clone(),
                filter: text(&r.filter),
                transform: text(&r.transform),
                ordering_key: text(&r.ordering_key),
                deliver_at: text(&r.deliver_at),
                languages: [
                    ("filter", &r.filter),
                    ("transform", &r.transform),
                    ("ordering_key", &r.ordering_key),
                    ("deliver_at", &r.deliver_at),
                    ("debounce_key", &r.debounce_key),
                ]
                .into_iter()
                .filter_map(|(key, e)| Some((key, e.as_ref()?.language())))
                .collect(),
                priority: r.config.priority,
                delay_ms: r.config.delay.map(|d| d.as_millis_i64()),
                debounce: r.config.debounce.as_ref().map(|d| {
                    serde_json::json!({
                        "key": text(&r.debounce_key),
                        "window_ms": d.window.as_millis_i64(),
                    })
                }),
                batch: r.config.batch.map(|b| {
                    serde_json::json!({
                        "max_events": b.max_events,
                        "max_wait_ms": b.max_wait.as_millis_i64(),
                        "max_bytes": b.max_bytes.0,
                    })
                }),
                backlog,
                dead,
            }
        })
        .collect();
    Ok(Json(Page {
        data,
        next_cursor: None,
    }))
}

pub async fn destinations(
    State(state): State<AdminState>,
) -> Result<Json<Page<DestinationJson>>, ApiError> {
    let counts = counts(&state).await?;
    let running = state.live.current();
    let data = running
        .config
        .destinations
        .iter()
        .map(|(name, cfg)| {
            let (backlog, dead) = sum(&counts, |c| &c.destination == name);
            let (max_concurrency, rate_limit) = cfg.limits();
            DestinationJson {
                max_concurrency,
                rate_limit: rate_limit.map(|r| r.to_string()),
                paused: state.pauses.is_paused(Pausable::Destination, name),
                breaker: running
                    .destinations
                    .get(name)
                    .map_or("closed", |d| d.breaker.status().as_str()),
                name: name.clone(),
                kind: cfg.kind(),
                backlog,
                dead,
            }
        })
        .collect();
    Ok(Json(Page {
        data,
        next_cursor: None,
    }))
}

pub async fn sources(State(state): State<AdminState>) -> Json<Page<SourceJson>> {
    let running = state.live.current();
    let data = running
        .config
        .sources
        .values()
        .map(|s| SourceJson {
            name: s.name.clone(),
            verify: s.verifier.kind_name(),
            methods: s.methods.iter().map(|m| m.to_string()).collect(),
            max_body: s.max_body,
            dedup_window: s.dedup_window.0.as_secs(),
            retention: s.retention.into(),
            routes: s.routes.iter().map(|r| r.name.clone()).collect(),
        })
        .collect();
    Json(Page {
        data,
        next_cursor: None,
    })
}

pub async fn pause_route(
    State(state): State<AdminState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (name, action) = name_and_action(path)?;
    if !state
        .live
        .current()
        .config
        .routes
        .iter()
        .any(|r| r.name == name)
    {
        return Err(ApiError::not_found(
            "route_not_found",
            format!("no route named {name:?}; list them with GET /api/v1/routes"),
        ));
    }
    apply(&state, Pausable::Route, &name, &action).await
}

pub async fn pause_destination(
    State(state): State<AdminState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (name, action) = name_and_action(path)?;
    if !state.live.current().config.destinations.contains_key(&name) {
        return Err(ApiError::not_found(
            "destination_not_found",
            format!("no destination named {name:?}; list them with GET /api/v1/destinations"),
        ));
    }
    apply(&state, Pausable::Destination, &name, &action).await
}

fn name_and_action(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
}

/// Persists first, then updates what the worker reads: a pause is never only in memory.
async fn apply(
    state: &AdminState,
    kind: Pausable,
    name: &str,
    action: &str,
) -> Result<Json<serde_json::Value>, ApiError> {
    let paused = match action {
        "pause" => true,
        "resume" => false,
        other => {
            return Err(ApiError::not_found(
                "not_found",
                format!("no action {other:?}; use …/pause or …/resume"),
            ));
        }
    };
    state
        .store
        .set_paused(kind, name, paused, None, crate::clock::now_ms())
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    state.pauses.set(kind, name, paused, None);
    if !paused {
        state.wake.notify_one();
        state.prepare_wake.notify_one();
    }
    tracing::info!(kind = kind.as_str(), name, paused, "pause state changed");
    Ok(Json(
        serde_json::json!({ "kind": kind.as_str(), "name": name, "paused": paused }),
    ))
}
