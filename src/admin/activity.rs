//! `GET /api/v1/activity`: the recent past in numbers: events per source in time
//! buckets, what the window's attempts left their deliveries in, and attempts per
//! destination with how many failed. The dashboard's overview draws it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::paging::query_params;
use crate::http_error::ApiError;
use crate::store::activity::{Activity, Window};

/// Longest window asked for: as long as the counters are kept.
const MAX_WINDOW_SECS: u64 = 24 * 3600;
const MAX_BUCKETS: usize = 120;

#[derive(Deserialize)]
pub struct ActivityParams {
    /// How far back, as `30m`, `1h`, `6h` (default `1h`, at most `24h`).
    window: Option<String>,
    /// Bars in the window (default 12, at most 120, and at most one per 10 s counter).
    buckets: Option<String>,
}

impl ActivityParams {
    /// The last hour in `buckets` bars.
    pub fn last_hour(buckets: usize) -> Self {
        Self {
            window: Some("1h".to_owned()),
            buckets: Some(buckets.to_string()),
        }
    }
}

#[derive(Serialize)]
pub struct ActivityJson {
    pub since: String,
    pub until: String,
    /// Each bucket's length in milliseconds (a window need not divide into whole seconds).
    pub bucket_ms: u64,
    pub sources: Vec<SourceActivityJson>,
    pub deliveries: BTreeMap<String, u64>,
    pub destinations: Vec<DestinationActivityJson>,
}

#[derive(Serialize)]
pub struct SourceActivityJson {
    pub source: String,
    /// Events per bucket, oldest first.
    pub events: Vec<u64>,
}

#[derive(Serialize)]
pub struct DestinationActivityJson {
    pub destination: String,
    pub attempts: u64,
    pub failed: u64,
}

pub async fn activity(
    State(state): State<AdminState>,
    query: Result<Query<ActivityParams>, QueryRejection>,
) -> Result<Json<ActivityJson>, ApiError> {
    let p = query_params(query, "window and buckets")?;
    let window_secs = match p.window.as_deref().filter(|w| !w.is_empty()) {
        None => 3600,
        Some(text) => humantime::parse_duration(text)
            .ok()
            .map(|d| d.as_secs())
            .filter(|s| (60..=MAX_WINDOW_SECS).contains(s))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_window",
                    format!("window must be a span from 1m to 24h, like \"1h\", got {text:?}"),
                )
            })?,
    };
    let buckets = match p.buckets.as_deref().filter(|b| !b.is_empty()) {
        None => 12,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_BUCKETS).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_buckets",
                    format!("buckets must be a whole number from 1 to {MAX_BUCKETS}, got {text:?}"),
                )
            })?,
    };
    let span_ms = i64::try_from(window_secs * 1000).unwrap_or(i64::MAX);
    let window = Window::aligned(crate::clock::now_ms(), span_ms, buckets);
    let found = state
        .store
        .activity(window)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    Ok(Json(to_json(found, window)))
}

fn to_json(a: Activity, window: Window) -> ActivityJson {
    ActivityJson {
        since: crate::clock::rfc3339(window.since_ms()),
        until: crate::clock::rfc3339(window.until_ms),
        bucket_ms: u64::try_from(window.bucket_ms).unwrap_or(0),
        sources: a
            .sources
            .into_iter()
            .map(|s| SourceActivityJson {
                source: s.source,
                events: s.per_bucket,
            })
            .collect(),
        deliveries: a.deliveries.into_iter().collect(),
        destinations: a
            .destinations
            .into_iter()
            .map(|d| DestinationActivityJson {
                destination: d.destination,
                attempts: d.attempts,
                failed: d.failed,
            })
            .collect(),
    }
}
