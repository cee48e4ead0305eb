//! The API's removal routes: `DELETE /v1/jobs/{id}` (204; 409
//! `not_finished` while the job is queued or running; 404 unknown) and
//! `POST /v1/jobs/prune` with an optional body `{"older_than": "7d",
//! "state": "failed"}` answering `{"removed": n}`. Both go through the
//! engine, so a removal is durable before it is answered.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oj_core::{JobId, JobState};
use serde::Deserialize;
use serde_json::json;

use crate::api::{Shared, bad_id, error, unknown};
use crate::engine::{PruneError, PruneFilter, RemoveError};

pub(crate) async fn remove(State(s): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return bad_id(&id);
    };
    match s.engine.remove(id.clone()).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(RemoveError::NotFound(_)) => unknown(&id),
        Err(e @ RemoveError::NotFinished { .. }) => {
            error(StatusCode::CONFLICT, "not_finished", e.to_string())
        }
        Err(e @ RemoveError::NotLeader) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "standby", e.to_string())
        }
        Err(e @ RemoveError::Gone) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "draining", e.to_string())
        }
        Err(e @ RemoveError::Storage(_)) => {
            error(StatusCode::INSUFFICIENT_STORAGE, "storage", e.to_string())
        }
    }
}

/// The body of `POST /v1/jobs/prune`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneRequest {
    #[serde(default)]
    older_than: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// The request as a filter, or why it is refused.
fn filter_of(body: &[u8]) -> Result<PruneFilter, String> {
    let req: PruneRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PruneRequest::default()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            format!("the body must be {{\"older_than\"?: \"7d\", \"state\"?: \"failed\"}}: {e}")
        })?
    };
    let state = match req.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(word) => {
            let st = word.parse::<JobState>().map_err(|e| e.to_string())?;
            if !st.is_terminal() {
                return Err(format!(
                    "state \"{st}\" is not a finished state; only done, failed, cancelled and interrupted jobs are pruned"
                ));
            }
            Some(st)
        }
    };
    let older_than = match req.older_than.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(humantime::parse_duration(text).map_err(|e| {
            format!("older_than {text:?} is not a duration ({e}); use e.g. \"7d\" or \"12h\"")
        })?),
    };
    Ok(PruneFilter { older_than, state })
}

pub(crate) async fn prune(State(s): State<Shared>, body: Bytes) -> Response {
    let filter = match filter_of(&body) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e),
    };
    match s.engine.prune(filter).await {
        Ok(n) => axum::Json(json!({ "removed": n })).into_response(),
        Err(e @ PruneError::NotLeader) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "standby", e.to_string())
        }
        Err(e @ PruneError::Gone) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "draining", e.to_string())
        }
        Err(e @ PruneError::Storage(_)) => {
            error(StatusCode::INSUFFICIENT_STORAGE, "storage", e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn prune_bodies() {
        assert_eq!(filter_of(b"").unwrap(), PruneFilter::default());
        let f = filter_of(br#"{"older_than":"2h","state":"failed"}"#).unwrap();
        assert_eq!(f.older_than, Some(Duration::from_secs(7200)));
        assert_eq!(f.state, Some(JobState::Failed));
        let e = filter_of(br#"{"state":"running"}"#).unwrap_err();
        assert!(e.contains("not a finished state"), "{e}");
        let e = filter_of(br#"{"state":"gone"}"#).unwrap_err();
        assert!(e.contains("\"gone\""), "{e}");
        let e = filter_of(br#"{"older":"1h"}"#).unwrap_err();
        assert!(e.contains("older"), "{e}");
        assert!(filter_of(br#"{"older_than":"soon"}"#).is_err());
    }
}
