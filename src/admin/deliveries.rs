//! `GET /api/v1/deliveries`, `GET /api/v1/deliveries/{id}` (with its attempts),
//! `POST /api/v1/deliveries/{id}/retry`.

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
use crate::store::{DeliveryQuery, RetryNow};

const STATES: [&str; 6] = [
    "pending",
    "in_flight",
    "retrying",
    "delivered",
    "dead",
    "filtered",
];

#[derive(Deserialize)]
pub struct DeliveryParams {
    state: Option<String>,
    route: Option<String>,
    destination: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
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
    let delivery = find(
        id::DELIVERY,
        &delivery_id,
        || not_found(&delivery_id),
        state.store.get_delivery(&delivery_id),
    )
    .await?;
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
    let delivery = find(
        id::DELIVERY,
        &delivery_id,
        || not_found(&delivery_id),
        state.store.get_delivery(&delivery_id),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "delivery_not_found",
        format!("no delivery {id:?}; list them with GET /api/v1/deliveries"),
    )
}
