//! The schedule routes of SPEC §8.3: `GET /v1/schedules` →
//! `{"schedules": [...]}`; `POST /v1/schedules/{name}/run` → 201 with the
//! job, or 409 `{"code": "overlap"}` while its last job is queued or
//! running and its overlap is `skip`; `POST /v1/schedules/{name}/pause` and
//! `/resume` → 202 with the schedule (durable). Unknown names are 404.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oj_api::ScheduleList;

use crate::api::{ApiFailure, Shared};
use crate::engine::schedules::ScheduleInfo;

pub(crate) async fn list(State(s): State<Shared>) -> Response {
    let schedules = s.engine.schedules().await.into_iter().map(wire).collect();
    axum::Json(ScheduleList { schedules }).into_response()
}

/// A schedule as the API writes it.
fn wire(info: ScheduleInfo) -> oj_api::ScheduleInfo {
    oj_api::ScheduleInfo {
        name: info.name,
        cron: info.cron,
        timezone: info.timezone,
        next_fire: info.next_fire,
        last_fire: info.last_fire,
        last_result: info.last_result,
        last_job: info.last_job,
        last_job_state: info.last_job_state,
        paused: info.paused,
        enabled: info.enabled,
        overlap: info.overlap.to_string(),
        catch_up: info.catch_up.to_string(),
    }
}

pub(crate) async fn run(State(s): State<Shared>, UrlPath(name): UrlPath<String>) -> Response {
    match s.engine.run_schedule(name).await {
        Ok(job) => (StatusCode::CREATED, axum::Json(job)).into_response(),
        Err(e) => ApiFailure::from(e).into_response(),
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
        Ok(info) => (StatusCode::ACCEPTED, axum::Json(wire(info))).into_response(),
        Err(e) => ApiFailure::from(e).into_response(),
    }
}
