//! `GET /v1/config` (SPEC §7.5): the configuration the daemon runs with,
//! secrets redacted, with the layer of every key, the generation, the keys
//! pending a restart and the outcome of the last reload.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::{Shared, error};

pub async fn get_config(State(s): State<Shared>) -> Response {
    match &s.config {
        Some(status) => axum::Json(status.to_json()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this daemon was started without a config view",
        ),
    }
}
