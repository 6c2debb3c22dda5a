//! `GET /api/v1/archive`: the cold archive's objects (`[storage.archive]`), newest first:
//! which events each holds (first and last id and receive time), how many, its size and
//! where it is.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::json::Page;
use super::paging::{page_params, query_params};
use crate::http_error::ApiError;
use crate::store::archive::ArchiveObject;

#[derive(Deserialize)]
pub struct ArchiveParams {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

#[derive(Serialize)]
pub struct ArchiveObjectJson {
    pub name: String,
    /// Where it is: the archive's `to` and the name.
    pub url: String,
    pub first_id: String,
    pub last_id: String,
    pub first_received_at: String,
    pub last_received_at: String,
    pub events: i64,
    pub bytes: i64,
    /// The key it is sealed with, when encryption is on.
    pub sealed_with: Option<String>,
    pub archived_at: String,
}

pub async fn list(
    State(state): State<AdminState>,
    query: Result<Query<ArchiveParams>, QueryRejection>,
) -> Result<Json<Page<ArchiveObjectJson>>, ApiError> {
    let p = query_params(query, "limit and cursor")?;
    // Object names are not ids: the cursor is checked here, the limit as elsewhere.
    let (limit, _) = page_params(p.limit.as_deref(), None, "")?;
    let cursor = p.cursor.filter(|c| !c.is_empty());
    if let Some(c) = &cursor
        && !c.starts_with("events/")
    {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            format!(
                "cursor {c:?} is not one this API gave out; pass the previous page's next_cursor"
            ),
        ));
    }
    let base = state
        .live
        .current()
        .config
        .storage
        .archive
        .as_ref()
        .map(|a| a.url.trim_end_matches('/').to_owned())
        .unwrap_or_default();
    let objects = state
        .store
        .list_archive("done", cursor, limit + 1)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    let more = objects.len() > limit;
    let data: Vec<ArchiveObjectJson> = objects
        .into_iter()
        .take(limit)
        .map(|o| json(&base, o))
        .collect();
    let next_cursor = more.then(|| data.last().map(|o| o.name.clone())).flatten();
    Ok(Json(Page { data, next_cursor }))
}

fn json(base: &str, o: ArchiveObject) -> ArchiveObjectJson {
    let time = crate::clock::rfc3339;
    ArchiveObjectJson {
        url: format!("{base}/{}", o.name),
        name: o.name,
        first_id: o.first_id,
        last_id: o.last_id,
        first_received_at: time(o.first_at_ms),
        last_received_at: time(o.last_at_ms),
        events: o.events,
        bytes: o.bytes,
        sealed_with: o.sealed_with,
        archived_at: time(o.created_at_ms),
    }
}
