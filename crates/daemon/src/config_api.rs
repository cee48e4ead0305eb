//! `GET /v1/config` (SPEC §7.5): the configuration the daemon runs with,
//! secrets redacted, with the layer of every key, the generation, the keys
//! pending a restart and the outcome of the last reload; and the short
//! form of it that `GET /v1/status` carries. Both are `oj-api` types.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oj_api::{ConfigAnswer, ConfigSummary, ErrorCode};
use oj_config::render;

use crate::api::{Shared, error};
use crate::reload::{ConfigStatus, LastReload};

pub async fn get_config(State(s): State<Shared>) -> Response {
    match &s.config {
        Some(status) => axum::Json(answer(status)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "this daemon was started without a config view",
        ),
    }
}

/// The body of `GET /v1/config`.
pub fn answer(status: &ConfigStatus) -> ConfigAnswer {
    let s = status.snapshot();
    let mut tree = serde_json::to_value(&s.running.config).unwrap_or_default();
    render::redact(&mut tree);
    ConfigAnswer {
        config: tree,
        files: s.running.files.clone(),
        generation: s.generation,
        last_reload: s.last_reload.as_ref().map(last_reload),
        pending_restart: s.pending_restart,
        profile: Some(s.running.profile.clone()),
        sources: s
            .running
            .sources
            .iter()
            .map(|(key, layer)| (key.clone(), layer.to_string()))
            .collect(),
    }
}

/// The `config` part of `GET /v1/status`.
pub fn summary(status: &ConfigStatus) -> ConfigSummary {
    let s = status.snapshot();
    ConfigSummary {
        generation: s.generation,
        last_reload: s.last_reload.as_ref().map(last_reload),
        pending_restart: s.pending_restart,
    }
}

fn last_reload(r: &LastReload) -> oj_api::LastReload {
    oj_api::LastReload {
        at: humantime::format_rfc3339_seconds(r.at).to_string(),
        changed: r.changed.clone(),
        errors: r.errors.clone(),
        reason: r.reason.clone(),
        result: if r.accepted { "ok" } else { "rejected" }.to_string(),
    }
}
