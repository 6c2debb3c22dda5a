//! `GET /api/v1/stream`: new events as server-sent events, for `forebay listen` and
//! `forebay events tail`.
//!
//! A client resumes with `Last-Event-ID` (or `?after=evt_…`): it first gets every event
//! committed after that one, then new ones as they come. Without either it gets only
//! events committed after it connected (on PostgreSQL, possibly also a few committed the
//! moment before). Events go in commit order, so one committed late (its id made
//! earlier) is not skipped; on PostgreSQL an event shows once every transaction older
//! than its own has ended (see `Store::events_after_position`). New commits are picked
//! up by asking the store every [`POLL`]: that also sees events committed by other
//! processes.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use http::HeaderMap;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::AdminState;
use super::json::EventJson;
use crate::http_error::ApiError;
use crate::id;

/// How often an idle stream asks the store for new events.
const POLL: Duration = Duration::from_millis(250);
/// Events read per query.
const PAGE: usize = 100;
/// Keep-alive comments, so proxies do not close an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub struct StreamParams {
    pub(crate) source: Option<String>,
    pub(crate) after: Option<String>,
}

pub async fn stream(
    State(state): State<AdminState>,
    headers: HeaderMap,
    query: Result<Query<StreamParams>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let p = super::paging::query_params(query, "source and after")?;
    let source = p.source.filter(|s| !s.is_empty());
    if let Some(name) = &source
        && !state.live.current().config.sources.contains_key(name)
    {
        return Err(ApiError::not_found(
            "unknown_source",
            format!("no source named {name:?}; list them with GET /api/v1/sources"),
        ));
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(p.after)
        .filter(|s| !s.is_empty());
    let store_error = |e: crate::store::StoreError| ApiError::from_store(&e);
    let mut position = match resume {
        None => state
            .store
            .last_event_position()
            .await
            .map_err(store_error)?,
        Some(after) => {
            let known = if id::is_valid(id::EVENT, &after) {
                state
                    .store
                    .event_position(&after)
                    .await
                    .map_err(store_error)?
            } else {
                None
            };
            known.ok_or_else(|| {
                ApiError::not_found(
                    "resume_event_not_found",
                    format!(
                        "cannot resume after {after:?}: no such event (purged, or from another server); reconnect without Last-Event-ID to follow new events"
                    ),
                )
            })?
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(16);
    let mut stopping = state.stopping.clone();
    tokio::spawn(async move {
        loop {
            // At shutdown the stream ends (the client resumes elsewhere or later with
            // Last-Event-ID), so graceful shutdown does not wait on it.
            if *stopping.borrow() {
                return;
            }
            let events = match state
                .store
                .events_after_position(position, source.clone(), PAGE)
                .await
            {
                Ok(events) => events,
                Err(e) => {
                    crate::throttled!(warn, error = %crate::error_chain::Chain(&e), "the event stream cannot read the store; trying again");
                    Vec::new()
                }
            };
            let full = events.len() == PAGE;
            for (at, event) in events {
                position = at;
                let id = event.request.id.clone();
                let data = serde_json::to_string(&EventJson::from(event)).unwrap_or_default();
                let message = Event::default().id(id).event("event").data(data);
                if tx.send(Ok(message)).await.is_err() {
                    return; // the client went away
                }
            }
            if !full {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = tx.closed() => return,
                    _ = stopping.changed() => return,
                }
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keepalive")))
}
