//! `GET /api/v1/deliveries`, `GET /api/v1/deliveries/{id}` (with its attempts),
//! `POST /api/v1/deliveries/{id}/retry`, and the dead-letter queue: `GET /api/v1/dlq`,
//! `POST /api/v1/dlq/retry`, `POST /api/v1/dlq/discard` (all matching `route` and
//! `destination`), `POST /api/v1/deliveries/{id}/discard` (one).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use http::StatusCode;
use serde::Deserialize;

use super::AdminState;
use super::events::{find, page, path_id};
use super::json::{DeliveryDetailJson, Page};
use super::paging::{page_params, query_params};
use crate::http_error::ApiError;
use crate::id;
use crate::store::{DeadAction, DeadFilter, DeliveryQuery, RetryNow, StoredDelivery};

pub(crate) const STATES: [&str; 8] = [
    "pending",
    "in_flight",
    "retrying",
    "delivered",
    "dead",
    "filtered",
    "discarded",
    "superseded",
];

#[derive(Deserialize)]
pub struct DeliveryParams {
    pub(crate) state: Option<String>,
    pub(crate) route: Option<String>,
    pub(crate) destination: Option<String>,
    pub(crate) limit: Option<String>,
    pub(crate) cursor: Option<String>,
}

pub async fn list(
    State(state): State<AdminState>,
    query: Result<Query<DeliveryParams>, QueryRejection>,
) -> Result<Json<Page<DeliveryDetailJson>>, ApiError> {
    let p = query_params(query, "state, route, destination, limit and cursor")?;
    let (limit, before) = page_params(p.limit.as_deref(), p.cursor, id::DELIVERY)?;
    let wanted_state = p.state.filter(|s| !s.is_empty());
    if let Some(s) = &wanted_state
        && !STATES.contains(&s.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_state",
            format!("state {s:?} is not one of {}", STATES.join(", ")),
        ));
    }
    let deliveries = state
        .store
        .list_deliveries(DeliveryQuery {
            state: wanted_state,
            route: p.route.filter(|s| !s.is_empty()),
            destination: p.destination.filter(|s| !s.is_empty()),
            limit,
            before,
        })
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    Ok(Json(page(deliveries, limit, |d| &d.id)))
}

pub async fn show(
    State(state): State<AdminState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<DeliveryDetailJson>, ApiError> {
    let delivery_id = path_id(path)?;
    let delivery = load(&state, &delivery_id).await?;
    Ok(Json(delivery.into()))
}

/// Makes the delivery due now: a dead one gets a new chance, a retrying one skips its wait.
pub async fn retry(
    State(state): State<AdminState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<DeliveryDetailJson>), ApiError> {
    let delivery_id = path_id(path)?;
    if !id::is_valid(id::DELIVERY, &delivery_id) {
        return Err(not_found(&delivery_id));
    }
    let now_ms = crate::clock::now_ms();
    match state
        .store
        .retry_delivery(&delivery_id, now_ms)
        .await
        .map_err(|e| ApiError::from_store(&e))?
    {
        RetryNow::NotFound => return Err(not_found(&delivery_id)),
        RetryNow::InFlight => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "delivery_in_flight",
                "the delivery is being sent right now; look again when the attempt ends",
            ));
        }
        RetryNow::Finished => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "delivery_finished",
                "the delivery was delivered (or filtered); there is nothing to retry",
            ));
        }
        RetryNow::Scheduled => state.wake.notify_one(),
    }
    let delivery = load(&state, &delivery_id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}

/// One delivery with its attempts, or a 404.
async fn load(state: &AdminState, delivery_id: &str) -> Result<StoredDelivery, ApiError> {
    find(
        id::DELIVERY,
        delivery_id,
        || not_found(delivery_id),
        state.store.get_delivery(delivery_id),
    )
    .await
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "delivery_not_found",
        format!("no delivery {id:?}; list them with GET /api/v1/deliveries"),
    )
}

#[derive(Deserialize)]
pub struct DeadParams {
    pub(crate) route: Option<String>,
    pub(crate) destination: Option<String>,
}

/// `GET /api/v1/dlq`: the dead deliveries, as `GET /api/v1/deliveries?state=dead`.
pub async fn dead(
    state: State<AdminState>,
    query: Result<Query<DeliveryParams>, QueryRejection>,
) -> Result<Json<Page<DeliveryDetailJson>>, ApiError> {
    let mut p = query_params(query, "route, destination, limit and cursor")?;
    p.state = Some("dead".to_owned());
    list(state, Ok(Query(p))).await
}

/// `POST /api/v1/dlq/retry`: every dead delivery matching the filter is due again now.
pub async fn retry_dead(
    State(state): State<AdminState>,
    query: Result<Query<DeadParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = query_params(query, "route and destination")?;
    let n = act(
        &state,
        filter(p.route, p.destination, None),
        DeadAction::Retry,
    )
    .await?;
    if n > 0 {
        state.wake.notify_one();
    }
    Ok(Json(serde_json::json!({ "retried": n })))
}

/// `POST /api/v1/dlq/discard`: every dead delivery matching the filter is set aside.
pub async fn discard_dead(
    State(state): State<AdminState>,
    query: Result<Query<DeadParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = query_params(query, "route and destination")?;
    let n = act(
        &state,
        filter(p.route, p.destination, None),
        DeadAction::Discard,
    )
    .await?;
    Ok(Json(serde_json::json!({ "discarded": n })))
}

/// `POST /api/v1/deliveries/{id}/discard`: one dead delivery is set aside.
pub async fn discard(
    State(state): State<AdminState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<DeliveryDetailJson>, ApiError> {
    let delivery_id = path_id(path)?;
    let delivery = load(&state, &delivery_id).await?;
    if delivery.state != "dead" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "delivery_not_dead",
            format!(
                "only dead deliveries are discarded; this one is {}",
                delivery.state
            ),
        ));
    }
    act(
        &state,
        filter(None, None, Some(delivery_id.clone())),
        DeadAction::Discard,
    )
    .await?;
    let delivery = load(&state, &delivery_id).await?;
    Ok(Json(delivery.into()))
}

fn filter(route: Option<String>, destination: Option<String>, id: Option<String>) -> DeadFilter {
    DeadFilter {
        route: route.filter(|s| !s.is_empty()),
        destination: destination.filter(|s| !s.is_empty()),
        id,
    }
}

async fn act(
    state: &AdminState,
    filter: DeadFilter,
    action: DeadAction,
) -> Result<usize, ApiError> {
    let n = state
        .store
        .act_on_dead(filter, action.clone(), crate::clock::now_ms())
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    tracing::info!(?action, n, "dead-letter queue");
    Ok(n)
}
