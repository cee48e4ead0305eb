//! The API of queues and holds (SPEC §8.2): `GET /v1/queues`, `POST
//! /v1/queues/{name}/pause` and `/resume` (202; 404 unknown queue), and
//! `POST /v1/jobs/{id}/release` (202; 409 when the job is not held). Each
//! change goes through the engine and is durable before it is answered.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oj_api::{ErrorCode, QueueList};
use oj_core::JobId;

use crate::api::{ApiFailure, Shared, bad_id, error};

pub(crate) async fn list(State(s): State<Shared>) -> Response {
    match s.engine.queues().await {
        Some(queues) => axum::Json(QueueList { queues }).into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Draining,
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
        Err(e) => ApiFailure::from(e).into_response(),
    }
}

pub(crate) async fn release(State(s): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return bad_id(&id);
    };
    match s.engine.release(id).await {
        Ok(job) => (StatusCode::ACCEPTED, axum::Json(job)).into_response(),
        Err(e) => ApiFailure::from(e).into_response(),
    }
}
