//! The API of queues and holds (SPEC §8.2): `GET /v1/queues`, `POST
//! /v1/queues/{name}/pause` and `/resume` (202; 404 unknown queue), and
//! `POST /v1/jobs/{id}/release` (202; 409 when the job is not held). Each
//! change goes through the engine and is durable before it is answered.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oj_core::JobId;
use serde_json::json;

use crate::api::{Shared, bad_id, error, unknown};
use crate::engine::{QueueOpError, ReleaseError};

pub(crate) async fn list(State(s): State<Shared>) -> Response {
    match s.engine.queues().await {
        Some(queues) => axum::Json(json!({ "queues": queues })).into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the engine has stopped",
        ),
    }
}

pub(crate) async fn pause(s: State<Shared>, name: UrlPath<String>) -> Response {
    pause_or_resume(s, name, true).await
}

pub(crate) async fn resume(s: State<Shared>, name: UrlPath<String>) -> Response {
    pause_or_resume(s, name, false).await
}

async fn pause_or_resume(
    State(s): State<Shared>,
    UrlPath(name): UrlPath<String>,
    pause: bool,
) -> Response {
    match s.engine.pause_queue(name, pause).await {
        Ok(queue) => (StatusCode::ACCEPTED, axum::Json(queue)).into_response(),
        Err(e @ QueueOpError::Unknown { .. }) => {
            error(StatusCode::NOT_FOUND, "unknown_queue", e.to_string())
        }
        Err(e) => engine_error(e.to_string(), matches!(e, QueueOpError::Storage(_))),
    }
}

pub(crate) async fn release(State(s): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return bad_id(&id);
    };
    match s.engine.release(id.clone()).await {
        Ok(job) => (StatusCode::ACCEPTED, axum::Json(job)).into_response(),
        Err(ReleaseError::NotFound(_)) => unknown(&id),
        Err(e @ ReleaseError::NotHeld { .. }) => {
            error(StatusCode::CONFLICT, "not_held", e.to_string())
        }
        Err(e) => engine_error(e.to_string(), matches!(e, ReleaseError::Storage(_))),
    }
}

/// Standby, storage and a stopped engine, as the rest of the API answers them.
fn engine_error(message: String, storage: bool) -> Response {
    if storage {
        error(StatusCode::INSUFFICIENT_STORAGE, "storage", message)
    } else if message.contains("standby") {
        error(StatusCode::SERVICE_UNAVAILABLE, "standby", message)
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "draining", message)
    }
}
