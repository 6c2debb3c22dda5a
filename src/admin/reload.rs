//! `POST /api/v1/reload`: read the configuration file again and put it in force, as
//! SIGHUP does, answering with what changed or with every error and its key.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use super::AdminState;
use crate::live::ReloadError;

pub async fn reload(State(state): State<AdminState>) -> Response {
    let errors = match state.live.reload().await {
        Ok(reloaded) => return Json(reloaded).into_response(),
        Err(ReloadError::Invalid(errors)) => errors,
        Err(e @ ReloadError::Failed(_)) => {
            let body = json!({"error": {"code": "reload_failed", "message": format!("{e}; the running configuration stays")}});
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
        }
        Err(e @ ReloadError::NoFile) => {
            let body =
                json!({"error": {"code": "no_configuration_file", "message": e.to_string()}});
            return (StatusCode::CONFLICT, Json(body)).into_response();
        }
    };
    let n = errors.iter().count();
    let body = json!({"error": {
        "code": "invalid_configuration",
        "message": format!(
            "the configuration file has {n} error{}; nothing changed, the running configuration stays (each error is under `errors`, with its key)",
            if n == 1 { "" } else { "s" }
        ),
        "errors": errors
            .iter()
            .map(|e| json!({"key": e.path, "message": e.message}))
            .collect::<Vec<_>>(),
    }});
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}
