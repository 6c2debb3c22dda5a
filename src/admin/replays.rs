//! Replay jobs: `POST /api/v1/replays` (start one), `GET /api/v1/replays`,
//! `GET /api/v1/replays/{id}`, `POST /api/v1/replays/{id}/cancel`. The job itself runs
//! in [`crate::replay`].

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::events::{find, path_id};
use super::json::Page;
use super::search::Filter;
use crate::clock::{now_ms, rfc3339};
use crate::config::Rate;
use crate::http_error::ApiError;
use crate::id;
use crate::replay::Selection;
use crate::store::{NewReplay, ReplayWrite, StoredReplay};

/// Most events one job may name.
const MAX_EVENT_IDS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(flatten)]
    pub(crate) filter: Filter,
    /// These events instead of a search.
    pub(crate) event_ids: Option<Vec<String>>,
    /// Every stored event (a search with no filter must say so).
    #[serde(default)]
    pub(crate) all: bool,
    /// Send to this destination only, instead of the events' routes.
    pub(crate) destination: Option<String>,
    /// Events queued per period: `N/s`, `N/m` or `N/h`.
    pub(crate) rate: Option<String>,
}

#[derive(Serialize)]
pub struct ReplayJson {
    pub(crate) id: String,
    /// `running`, `done`, `cancelled` or `failed`.
    pub(crate) state: String,
    pub(crate) filter: serde_json::Value,
    pub(crate) destination: Option<String>,
    pub(crate) rate: Option<String>,
    pub(crate) scanned: i64,
    pub(crate) matched: i64,
    pub(crate) queued: i64,
    /// The job's deliveries per state (shown with one job).
    pub(crate) deliveries: BTreeMap<String, i64>,
    pub(crate) created_at: String,
    pub(crate) finished_at: Option<String>,
    pub(crate) error: Option<String>,
}

impl From<StoredReplay> for ReplayJson {
    fn from(r: StoredReplay) -> Self {
        Self {
            filter: serde_json::from_str(&r.filter).unwrap_or(serde_json::Value::Null),
            created_at: rfc3339(r.created_at_ms),
            finished_at: r.finished_at_ms.map(rfc3339),
            deliveries: r.deliveries.into_iter().collect(),
            id: r.id,
            state: r.state,
            destination: r.destination,
            rate: r.rate,
            scanned: r.scanned,
            matched: r.matched,
            queued: r.queued,
            error: r.error,
        }
    }
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

pub async fn create(
    State(state): State<AdminState>,
    body: Result<Json<ReplayRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ReplayJson>), ApiError> {
    let Json(request) = body.map_err(|e| {
        bad(
            "invalid_body",
            format!(
                "{}; send JSON like {{\"source\": \"stripe\", \"since\": \"2026-11-29T00:00:00Z\", \"rate\": \"50/s\"}}",
                e.body_text()
            ),
        )
    })?;
    // Checked now, so the job cannot fail on them later.
    request.filter.compile()?;
    if let Some(ids) = &request.event_ids {
        if !request.filter.is_empty() {
            return Err(bad(
                "invalid_body",
                "give event_ids or search filters, not both",
            ));
        }
        if ids.is_empty() || ids.len() > MAX_EVENT_IDS {
            return Err(bad(
                "invalid_body",
                format!("event_ids must name 1 to {MAX_EVENT_IDS} events"),
            ));
        }
        if let Some(wrong) = ids.iter().find(|i| !id::is_valid(id::EVENT, i)) {
            return Err(bad(
                "invalid_body",
                format!("{wrong:?} is not an event id (evt_…)"),
            ));
        }
    } else if request.filter.is_empty() && !request.all {
        return Err(bad(
            "filter_required",
            "this would replay every stored event: pass a filter (source, since, until, status, dedup_key, q), event_ids, or \"all\": true",
        ));
    }
    if let Some(name) = &request.destination
        && !state.live.current().config.destinations.contains_key(name)
    {
        return Err(bad(
            "unknown_destination",
            format!("no destination named {name:?}; list them with GET /api/v1/destinations"),
        ));
    }
    if let Some(rate) = &request.rate {
        rate.parse::<Rate>().map_err(|e| bad("invalid_rate", e))?;
    }
    let selection = Selection {
        filter: request.filter,
        event_ids: request.event_ids,
    };
    let replay_id = id::new(id::REPLAY);
    let store_error = |e: crate::store::StoreError| ApiError::from_store(&e);
    state
        .store
        .write_replay(ReplayWrite::Create(NewReplay {
            id: replay_id.clone(),
            filter: serde_json::to_string(&selection).unwrap_or_default(),
            destination: request.destination,
            rate: request.rate,
            created_at_ms: now_ms(),
        }))
        .await
        .map_err(store_error)?;
    let job = state
        .store
        .get_replay(&replay_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::from_store(&crate::store::StoreError::Closed))?;
    state.replayer.start(job.clone());
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

pub async fn list(State(state): State<AdminState>) -> Result<Json<Page<ReplayJson>>, ApiError> {
    let jobs = state
        .store
        .list_replays(false, 100)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    Ok(Json(Page {
        data: jobs.into_iter().map(ReplayJson::from).collect(),
        next_cursor: None,
    }))
}

fn not_found(replay_id: &str) -> ApiError {
    ApiError::not_found(
        "replay_not_found",
        format!("no replay {replay_id:?}; list them with GET /api/v1/replays"),
    )
}

pub async fn show(
    State(state): State<AdminState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ReplayJson>, ApiError> {
    let replay_id = path_id(path)?;
    let job = find(
        id::REPLAY,
        &replay_id,
        || not_found(&replay_id),
        state.store.get_replay(&replay_id),
    )
    .await?;
    Ok(Json(job.into()))
}

pub async fn cancel(
    State(state): State<AdminState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ReplayJson>, ApiError> {
    let replay_id = path_id(path)?;
    if !id::is_valid(id::REPLAY, &replay_id) {
        return Err(not_found(&replay_id));
    }
    let found = state
        .store
        .write_replay(ReplayWrite::Cancel {
            id: replay_id.clone(),
            now_ms: now_ms(),
        })
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    if found.is_none() {
        return Err(not_found(&replay_id));
    }
    show(State(state), Ok(Path(replay_id))).await
}
