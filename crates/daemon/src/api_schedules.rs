//! The schedule routes of SPEC §8.3: `GET /v1/schedules` →
//! `{"schedules": [...]}`; `POST /v1/schedules/{name}/run` → 201 with the
//! job, or 409 `{"code": "overlap"}` while its last job is queued or
//! running and its overlap is `skip`; `POST /v1/schedules/{name}/pause` and
//! `/resume` → 202 with the schedule (durable). Unknown names are 404.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::Shared;
use crate::engine::SubmitError;
use crate::engine::schedules::ScheduleError;

pub(crate) async fn list(State(s): State<Shared>) -> Response {
    axum::Json(json!({ "schedules": s.engine.schedules().await })).into_response()
}

pub(crate) async fn run(State(s): State<Shared>, UrlPath(name): UrlPath<String>) -> Response {
    match s.engine.run_schedule(name).await {
        Ok(job) => (StatusCode::CREATED, axum::Json(job)).into_response(),
        Err(e) => refused(e),
    }
}

pub(crate) async fn pause(State(s): State<Shared>, UrlPath(name): UrlPath<String>) -> Response {
    set_paused(s, name, true).await
}

pub(crate) async fn resume(State(s): State<Shared>, UrlPath(name): UrlPath<String>) -> Response {
    set_paused(s, name, false).await
}

async fn set_paused(s: Shared, name: String, paused: bool) -> Response {
    match s.engine.pause_schedule(name, paused).await {
        Ok(info) => (StatusCode::ACCEPTED, axum::Json(info)).into_response(),
        Err(e) => refused(e),
    }
}

fn refused(e: ScheduleError) -> Response {
    let (status, code) = match &e {
        ScheduleError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
        ScheduleError::Overlap { .. } => (StatusCode::CONFLICT, "overlap"),
        ScheduleError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_spec"),
        ScheduleError::Submit(SubmitError::Invalid(_)) => (StatusCode::BAD_REQUEST, "invalid_spec"),
        ScheduleError::Submit(SubmitError::Draining) => {
            (StatusCode::SERVICE_UNAVAILABLE, "draining")
        }
        ScheduleError::Submit(SubmitError::NotLeader) => {
            (StatusCode::SERVICE_UNAVAILABLE, "standby")
        }
        ScheduleError::Submit(SubmitError::Storage(_)) => {
            (StatusCode::INSUFFICIENT_STORAGE, "storage")
        }
        ScheduleError::Submit(SubmitError::Gone) => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        // A fire carries no Idempotency-Key: these cannot happen here.
        ScheduleError::Submit(SubmitError::IdempotencyConflict(_)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_conflict")
        }
        ScheduleError::Submit(SubmitError::IdempotencyInProgress(_)) => {
            (StatusCode::CONFLICT, "idempotency_in_progress")
        }
    };
    let mut body = json!({ "error": e.to_string(), "code": code });
    if let ScheduleError::Overlap { job, .. } = &e {
        body["job"] = json!(job);
    }
    (status, axum::Json(body)).into_response()
}
