//! `GET /api/v1/events` (search), `GET /api/v1/events/{id}`, `GET /api/v1/rejected`,
//! `GET /api/v1/rejected/{id}`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::AdminState;
use super::json::{EventJson, Page, RejectedJson};
use super::paging::page_params;
use super::search::Filter;
use crate::http_error::ApiError;
use crate::id;
use crate::store::EventQuery;

#[derive(Deserialize)]
pub struct ListParams {
    pub(crate) source: Option<String>,
    pub(crate) limit: Option<String>,
    pub(crate) cursor: Option<String>,
}

/// `GET /api/v1/events`: the filters of [`Filter`], plus order, bodies and paging.
#[derive(Deserialize)]
pub struct SearchParams {
    #[serde(flatten)]
    pub(crate) filter: Filter,
    pub(crate) order: Option<String>,
    pub(crate) include_body: Option<String>,
    pub(crate) limit: Option<String>,
    pub(crate) cursor: Option<String>,
}

const SEARCH_PARAMS: &str =
    "source, since, until, status, dedup_key, q, order, include_body, limit and cursor";

/// `order`: `desc` (newest first, the default) or `asc`.
pub(super) fn oldest_first(order: Option<&str>, default_oldest: bool) -> Result<bool, ApiError> {
    match order {
        None | Some("") => Ok(default_oldest),
        Some("asc") => Ok(true),
        Some("desc") => Ok(false),
        Some(other) => Err(ApiError::bad_request(
            "invalid_order",
            format!("order must be asc or desc, got {other:?}"),
        )),
    }
}

/// `include_body`: `true` or `false` (the default).
fn flag(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "invalid_query",
            format!("{name} must be true or false, got {other:?}"),
        )),
    }
}

/// The `{id}` of the path, or a JSON 400 when it is not valid text.
pub(super) fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
}

/// A page, with the cursor for the next one when this one is full.
pub(super) fn page<T, J: From<T>>(
    items: Vec<T>,
    limit: usize,
    id_of: impl Fn(&T) -> &str,
) -> Page<J> {
    let next_cursor = (items.len() == limit)
        .then(|| items.last().map(|item| id_of(item).to_owned()))
        .flatten();
    Page {
        data: items.into_iter().map(J::from).collect(),
        next_cursor,
    }
}

/// Checks an id's shape before asking the store, and turns "none" into a 404.
pub(super) async fn find<T, F>(
    prefix: &str,
    id: &str,
    not_found: impl Fn() -> ApiError,
    fetch: F,
) -> Result<T, ApiError>
where
    F: std::future::Future<Output = Result<Option<T>, crate::store::StoreError>>,
{
    if !id::is_valid(prefix, id) {
        return Err(not_found());
    }
    fetch
        .await
        .map_err(|e| ApiError::from_store(&e))?
        .ok_or_else(not_found)
}

pub async fn list(
    State(state): State<AdminState>,
    query: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<Page<EventJson>>, ApiError> {
    let p = super::paging::query_params(query, SEARCH_PARAMS)?;
    let (limit, cursor) = page_params(p.limit.as_deref(), p.cursor, id::EVENT)?;
    let oldest = oldest_first(p.order.as_deref(), false)?;
    let with_bodies = flag("include_body", p.include_body.as_deref())?;
    let found = p
        .filter
        .compile()?
        .page(state.store.as_ref(), oldest, with_bodies, limit, cursor)
        .await?;
    Ok(Json(Page {
        data: found.events.into_iter().map(EventJson::from).collect(),
        next_cursor: found.next_cursor,
    }))
}

pub async fn show(
    State(state): State<AdminState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EventJson>, ApiError> {
    let event_id = path_id(path)?;
    let not_found = || {
        ApiError::not_found(
            "event_not_found",
            format!("no event {event_id:?}; list events with GET /api/v1/events"),
        )
    };
    let event = find(
        id::EVENT,
        &event_id,
        not_found,
        state.store.get_event(&event_id),
    )
    .await?;
    Ok(Json(event.into()))
}

pub async fn list_rejected(
    State(state): State<AdminState>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<RejectedJson>>, ApiError> {
    let p = super::paging::query_params(query, "source, limit and cursor")?;
    let (limit, cursor) = page_params(p.limit.as_deref(), p.cursor, id::REJECTED)?;
    let query = EventQuery {
        source: p.source.filter(|s| !s.is_empty()),
        limit,
        cursor,
        ..EventQuery::default()
    };
    let rejected = state
        .store
        .list_rejected(query)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    Ok(Json(page(rejected, limit, |r| &r.request.id)))
}

pub async fn show_rejected(
    State(state): State<AdminState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RejectedJson>, ApiError> {
    let rejected_id = path_id(path)?;
    let not_found = || {
        ApiError::not_found(
            "rejected_not_found",
            format!("no rejected request {rejected_id:?}; list them with GET /api/v1/rejected"),
        )
    };
    let rejected = find(
        id::REJECTED,
        &rejected_id,
        not_found,
        state.store.get_rejected(&rejected_id),
    )
    .await?;
    Ok(Json(rejected.into()))
}
