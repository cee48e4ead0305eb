//! The API's removal routes: `DELETE /v1/jobs/{id}` (204; 409
//! `not_finished` while the job is queued or running; 404 unknown) and
//! `POST /v1/jobs/prune` with an optional body `{"older_than": "7d",
//! "state": "failed"}` answering `{"removed": n}`. Both go through the
//! engine, so a removal is durable before it is answered.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oj_api::{ErrorCode, PruneRequest, Pruned};
use oj_core::{JobId, JobState};

use crate::api::{ApiFailure, Shared, bad_id, error};
use crate::engine::PruneFilter;

pub(crate) async fn remove(State(s): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return bad_id(&id);
    };
    match s.engine.remove(id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiFailure::from(e).into_response(),
    }
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
        Err(e) => return error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, e),
    };
    match s.engine.prune(filter).await {
        Ok(n) => axum::Json(Pruned { removed: n as u64 }).into_response(),
        Err(e) => ApiFailure::from(e).into_response(),
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
