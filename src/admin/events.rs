//! `GET /api/v1/events`, `GET /api/v1/events/{id}`, `GET /api/v1/rejected`.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::AdminState;
use super::json::{EventJson, Page, RejectedJson};
use crate::http_error::ApiError;
use crate::id;
use crate::store::EventQuery;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

#[derive(Deserialize)]
pub struct ListParams {
    source: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

impl ListParams {
    fn query(self, cursor_prefix: &str) -> Result<EventQuery, ApiError> {
        let limit = match self.limit.as_deref() {
            None | Some("") => DEFAULT_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_limit",
                        format!("limit must be a whole number from 1 to {MAX_LIMIT}, got {text:?}"),
                    ));
                }
            },
        };
        let before = match self.cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(c) if id::is_valid(cursor_prefix, &c) => Some(c),
            Some(c) => {
                return Err(ApiError::bad_request(
                    "invalid_cursor",
                    format!(
                        "cursor {c:?} is not one this API gave out; pass the previous page's next_cursor"
                    ),
                ));
            }
        };
        Ok(EventQuery {
            source: self.source.filter(|s| !s.is_empty()),
            limit,
            before,
        })
    }
}

pub async fn list(
    State(state): State<AdminState>,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<EventJson>>, ApiError> {
    let query = params.query(id::EVENT)?;
    let limit = query.limit;
    let events = state
        .store
        .list_events(query)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    let next_cursor = (events.len() == limit)
        .then(|| events.last().map(|e| e.id.clone()))
        .flatten();
    Ok(Json(Page {
        data: events.into_iter().map(EventJson::from).collect(),
        next_cursor,
    }))
}

pub async fn show(
    State(state): State<AdminState>,
    Path(event_id): Path<String>,
) -> Result<Json<EventJson>, ApiError> {
    let not_found = || {
        ApiError::not_found(
            "event_not_found",
            format!("no event {event_id:?}; list events with GET /api/v1/events"),
        )
    };
    if !id::is_valid(id::EVENT, &event_id) {
        return Err(not_found());
    }
    let event = state
        .store
        .get_event(&event_id)
        .await
        .map_err(|e| ApiError::from_store(&e))?
        .ok_or_else(not_found)?;
    Ok(Json(event.into()))
}

pub async fn list_rejected(
    State(state): State<AdminState>,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<RejectedJson>>, ApiError> {
    let query = params.query(id::REJECTED)?;
    let limit = query.limit;
    let rejected = state
        .store
        .list_rejected(query)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    let next_cursor = (rejected.len() == limit)
        .then(|| rejected.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(Page {
        data: rejected.into_iter().map(RejectedJson::from).collect(),
        next_cursor,
    }))
}
