//! `GET /api/v1/export`: every event matching the search filters, oldest first by
//! default, with bodies and headers, as NDJSON (one event JSON per line), streamed page
//! by page so neither side holds the export in memory.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::header;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::AdminState;
use super::events::oldest_first;
use super::json::EventJson;
use super::search::Filter;
use crate::http_error::ApiError;

/// Events read per page.
const PAGE: usize = 200;

#[derive(Deserialize)]
pub struct ExportParams {
    #[serde(flatten)]
    filter: Filter,
    order: Option<String>,
}

pub async fn export(
    State(state): State<AdminState>,
    query: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = super::paging::query_params(
        query,
        "source, since, until, status, dedup_key, q and order",
    )?;
    let oldest = oldest_first(p.order.as_deref(), true)?;
    let search = p.filter.compile()?;
    // Errors after the first line cannot change the status any more: the stream ends
    // with an error line (`{"error": …}`) instead, so a client can tell it was cut short.
    let (lines, body) = mpsc::channel::<Result<Bytes, Infallible>>(4);
    tokio::spawn(async move {
        let mut cursor = None;
        loop {
            let found = match search
                .page(state.store.as_ref(), oldest, true, PAGE, cursor.take())
                .await
            {
                Ok(found) => found,
                Err(e) => {
                    let _ = lines.send(Ok(error_line(&e))).await;
                    return;
                }
            };
            for event in found.events {
                let mut line = serde_json::to_vec(&EventJson::from(event)).unwrap_or_default();
                line.push(b'\n');
                if lines.send(Ok(Bytes::from(line))).await.is_err() {
                    return; // the client went away
                }
            }
            match found.next_cursor {
                Some(next) => cursor = Some(next),
                None => return,
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(ReceiverStream::new(body)),
    )
        .into_response())
}

fn error_line(e: &ApiError) -> Bytes {
    let mut line = serde_json::to_vec(&serde_json::json!({
        "error": {"code": e.code, "message": e.message}
    }))
    .unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}
