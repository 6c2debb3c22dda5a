//! `POST /api/v1/rekey` (start moving stored data to the active key) and
//! `GET /api/v1/rekey` (the job's progress). The job runs in [`crate::rekey`].

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::AdminState;
use crate::http_error::ApiError;

pub async fn start(State(state): State<AdminState>) -> Response {
    let active = state
        .live
        .current()
        .config
        .storage
        .encryption
        .active
        .clone();
    match state.rekeyer.start(state.store.clone(), active) {
        Ok(status) => (StatusCode::ACCEPTED, Json(status)).into_response(),
        Err(e) => {
            ApiError::new(StatusCode::CONFLICT, "rekey_running", e.to_string()).into_response()
        }
    }
}

pub async fn show(State(state): State<AdminState>) -> Response {
    match state.rekeyer.status() {
        Some(status) => Json(status).into_response(),
        None => ApiError::not_found(
            "no_rekey",
            "no rekey has run since this process started; start one with POST /api/v1/rekey (`forebay rekey`)",
        )
        .into_response(),
    }
}
