//! Event search, shared by `GET /api/v1/events`, `GET /api/v1/export`, the stream and
//! replay jobs: the filters (`source`, `since`, `until`, `status`, `dedup_key`) run in
//! the store; the jq predicate `q` runs in a sandbox of its own, over the same object
//! route filters see.
//!
//! A predicate is evaluated event by event, so a search with `q` scans at most
//! [`SCAN_BUDGET`] events, or for [`SCAN_TIME`], per page and hands back a cursor where it
//! stopped: a page may be short, even empty, with more to come. Clients page on while
//! `next_cursor` is there.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::deliveries::STATES;
use crate::expr::{Expr, Limits, Sandbox};
use crate::http_error::ApiError;
use crate::store::{EventQuery, Store, StoredEvent};

/// Most events one page of a `q` search looks at.
pub const SCAN_BUDGET: usize = 5_000;
/// How long one page of a `q` search goes on scanning (checked between reads of
/// [`SCAN_PAGE`] events): a page that finds little still answers in about this time,
/// whatever the machine does per event.
const SCAN_TIME: std::time::Duration = std::time::Duration::from_millis(100);
/// Events read from the store at a time while scanning.
const SCAN_PAGE: usize = 200;

/// The filters, as given (query parameters, or a replay's JSON).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// RFC 3339, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// A delivery state: the event has at least one delivery in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    /// A jq predicate over the event object; an event matches when it yields `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
}

impl Filter {
    /// True when nothing narrows the search.
    pub fn is_empty(&self) -> bool {
        [
            &self.source,
            &self.since,
            &self.until,
            &self.status,
            &self.dedup_key,
            &self.q,
        ]
        .iter()
        .all(|f| f.as_deref().is_none_or(str::is_empty))
    }

    /// Checks every filter and compiles the predicate; errors name the parameter.
    pub fn compile(&self) -> Result<Search, ApiError> {
        let text = |f: &Option<String>| f.clone().filter(|s| !s.is_empty());
        if let Some(status) = text(&self.status)
            && !STATES.contains(&status.as_str())
        {
            return Err(ApiError::bad_request(
                "invalid_status",
                format!("status {status:?} is not one of {}", STATES.join(", ")),
            ));
        }
        let predicate = match text(&self.q) {
            None => None,
            Some(q) => {
                let expr = Expr::compile(&q).map_err(|e| {
                    ApiError::bad_request("invalid_q", format!("q does not compile: {e}"))
                })?;
                Some(Arc::new(Sandbox::new(vec![expr], Limits::default(), 1)))
            }
        };
        Ok(Search {
            query: EventQuery {
                source: text(&self.source),
                since_ms: time("since", &self.since)?,
                until_ms: time("until", &self.until)?,
                status: text(&self.status),
                dedup_key: text(&self.dedup_key),
                ..EventQuery::default()
            },
            predicate,
        })
    }
}

/// An RFC 3339 timestamp as ms since the Unix epoch.
pub fn time(name: &str, value: &Option<String>) -> Result<Option<i64>, ApiError> {
    let Some(text) = value.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_time",
                format!(
                    "{name} {text:?} is not an RFC 3339 time; write it like 2026-11-29T18:00:00Z"
                ),
            )
        })
}

/// A compiled search.
pub struct Search {
    query: EventQuery,
    predicate: Option<Arc<Sandbox>>,
}

/// One page of results.
pub struct Found {
    pub events: Vec<StoredEvent>,
    /// Where the next page starts; `None` when the search is complete.
    pub next_cursor: Option<String>,
    /// Events looked at (more than `events` when a predicate filtered some out).
    pub scanned: usize,
}

impl Search {
    /// Up to `limit` matching events after `cursor`, in the order asked.
    pub async fn page(
        &self,
        store: &dyn Store,
        oldest_first: bool,
        with_bodies: bool,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Found, ApiError> {
        let query = |limit: usize, cursor: Option<String>, bodies: bool| EventQuery {
            oldest_first,
            with_bodies: bodies,
            limit,
            cursor,
            ..self.query.clone()
        };
        let Some(predicate) = &self.predicate else {
            let events = store
                .list_events(query(limit, cursor, with_bodies))
                .await
                .map_err(|e| ApiError::from_store(&e))?;
            let next_cursor = (events.len() == limit)
                .then(|| events.last().map(|e| e.request.id.clone()))
                .flatten();
            let scanned = events.len();
            return Ok(Found {
                events,
                next_cursor,
                scanned,
            });
        };
        let mut found = Vec::new();
        let mut scanned = 0;
        let mut cursor = cursor;
        let started = std::time::Instant::now();
        loop {
            let want = SCAN_PAGE.min(SCAN_BUDGET - scanned);
            let batch = store
                .list_events(query(want, cursor.clone(), true))
                .await
                .map_err(|e| ApiError::from_store(&e))?;
            let exhausted = batch.len() < want;
            let matches = evaluate(predicate, &batch).await;
            for (event, matched) in batch.into_iter().zip(matches) {
                scanned += 1;
                cursor = Some(event.request.id.clone());
                if matched {
                    found.push(event);
                    if found.len() == limit {
                        break;
                    }
                }
            }
            if exhausted && found.len() < limit {
                cursor = None;
                break;
            }
            if found.len() == limit || scanned >= SCAN_BUDGET || started.elapsed() >= SCAN_TIME {
                break;
            }
        }
        if !with_bodies {
            for event in &mut found {
                event.request.body = None;
            }
        }
        Ok(Found {
            events: found,
            next_cursor: cursor,
            scanned,
        })
    }
}

/// Whether each event matches: the predicate yields `true`. An error or a run over the
/// limits is no match (the message is logged), as with jq's `select(…)?`.
async fn evaluate(predicate: &Arc<Sandbox>, events: &[StoredEvent]) -> Vec<bool> {
    let inputs: Vec<Vec<u8>> = events
        .iter()
        .map(|event| {
            let input = crate::routing::input::to_value(&event.to_input());
            serde_json::to_vec(&input).unwrap_or_default()
        })
        .collect();
    let items: Vec<(usize, &[u8])> = inputs.iter().map(|input| (0, input.as_slice())).collect();
    let mut matched = vec![false; events.len()];
    for (i, result) in predicate.run_many(&items).await.into_iter().enumerate() {
        match result {
            Ok(outputs) => matched[i] = outputs.iter().any(|v| v == &Value::Bool(true)),
            Err(e) => {
                tracing::debug!(event = %events[i].request.id, error = %e, "q did not evaluate")
            }
        }
    }
    matched
}
