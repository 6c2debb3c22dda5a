//! What every list endpoint shares: `limit` and `cursor` parsing, and query errors in the
//! API's JSON shape.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;

use crate::http_error::ApiError;
use crate::id;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

/// `limit` (1 to 500, default 50) and `cursor` (an id of `prefix`, from `next_cursor`).
pub fn page_params(
    limit: Option<&str>,
    cursor: Option<String>,
    prefix: &str,
) -> Result<(usize, Option<String>), ApiError> {
    let limit = match limit {
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
    let before = match cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) if id::is_valid(prefix, &c) => Some(c),
        Some(c) => {
            return Err(ApiError::bad_request(
                "invalid_cursor",
                format!(
                    "cursor {c:?} is not one this API gave out; pass the previous page's next_cursor"
                ),
            ));
        }
    };
    Ok((limit, before))
}

/// Turns axum's plain-text query rejection into the API's JSON error.
pub fn query_params<T>(
    query: Result<Query<T>, QueryRejection>,
    names: &str,
) -> Result<T, ApiError> {
    query.map(|Query(p)| p).map_err(|e| {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "{}; the parameters are {names}, each at most once",
                e.body_text()
            ),
        )
    })
}
