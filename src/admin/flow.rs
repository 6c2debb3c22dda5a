//! Routes and destinations: `GET /api/v1/routes`, `GET /api/v1/destinations` (with their
//! paused state), and `POST …/{name}/pause` and `…/{name}/resume`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::Serialize;

use super::AdminState;
use crate::config::DestinationConfig;
use crate::http_error::ApiError;
use crate::store::Pausable;

#[derive(Serialize)]
pub struct RouteJson {
    name: String,
    source: String,
    destination: String,
    paused: bool,
}

#[derive(Serialize)]
pub struct DestinationJson {
    name: String,
    kind: &'static str,
    paused: bool,
    /// `closed`, `open` (deliveries wait without spending attempts) or `probing`.
    breaker: &'static str,
}

pub async fn routes(State(state): State<AdminState>) -> Json<Vec<RouteJson>> {
    Json(
        state
            .routes
            .iter()
            .map(|r| RouteJson {
                paused: state.pauses.is_paused(Pausable::Route, &r.name),
                name: r.name.clone(),
                source: r.source.clone(),
                destination: r.destination.clone(),
            })
            .collect(),
    )
}

pub async fn destinations(State(state): State<AdminState>) -> Json<Vec<DestinationJson>> {
    Json(
        state
            .destinations
            .iter()
            .map(|(name, cfg)| DestinationJson {
                paused: state.pauses.is_paused(Pausable::Destination, name),
                breaker: state
                    .senders
                    .get(name)
                    .map_or("closed", |d| d.breaker.status().as_str()),
                name: name.clone(),
                kind: match cfg {
                    DestinationConfig::Http(_) => "http",
                    DestinationConfig::Exec(_) => "exec",
                },
            })
            .collect(),
    )
}

pub async fn pause_route(
    State(state): State<AdminState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (name, action) = name_and_action(path)?;
    if !state.routes.iter().any(|r| r.name == name) {
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
    if !state.destinations.contains_key(&name) {
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
        .set_paused(kind, name, paused, crate::clock::now_ms())
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    state.pauses.set(kind, name, paused);
    if !paused {
        state.wake.notify_one();
    }
    tracing::info!(kind = kind.as_str(), name, paused, "pause state changed");
    Ok(Json(
        serde_json::json!({ "kind": kind.as_str(), "name": name, "paused": paused }),
    ))
}
