//! The one mapping from a refusal to the API's answer: an HTTP status and
//! an [`ErrorBody`] (`{"code", "error"}`).
//!
//! Every engine error (`SubmitError`, `CancelError`, `ReleaseError`,
//! `QueueOpError`, `RemoveError`, `PruneError`, `ScheduleError`) becomes an
//! [`ApiFailure`] through `From`, so each route answers `?`-style and the
//! words for standby (503 `standby`), a stopped engine (503 `draining`) and
//! a failed write (507 `storage`) are chosen here, once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oj_api::{ErrorBody, ErrorCode};
use oj_core::JobId;

use crate::engine::schedules::ScheduleError;
use crate::engine::{
    CancelError, PruneError, QueueOpError, ReleaseError, RemoveError, SubmitError,
};

/// A refused request: the status and the body the client reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiFailure {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiFailure {
        ApiFailure {
            status,
            body: ErrorBody::new(code, message),
        }
    }

    /// 404 for a job id the daemon does not know.
    pub fn unknown_job(id: &JobId) -> ApiFailure {
        ApiFailure::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no job with id {id}; `oj job list` shows the jobs"),
        )
    }

    /// A standby's refusal (503 `standby`).
    fn standby(message: String) -> ApiFailure {
        ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Standby, message)
    }

    /// A draining daemon's, or a stopped engine's, refusal (503 `draining`).
    fn draining(message: String) -> ApiFailure {
        ApiFailure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Draining,
            message,
        )
    }

    /// A change that could not be stored durably (507 `storage`).
    fn storage(message: String) -> ApiFailure {
        ApiFailure::new(
            StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::Storage,
            message,
        )
    }

    fn conflict(code: ErrorCode, message: String) -> ApiFailure {
        ApiFailure::new(StatusCode::CONFLICT, code, message)
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

impl From<SubmitError> for ApiFailure {
    fn from(e: SubmitError) -> Self {
        let message = e.to_string();
        match e {
            SubmitError::Invalid(_) => {
                ApiFailure::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidSpec, message)
            }
            SubmitError::Draining | SubmitError::Gone => ApiFailure::draining(message),
            SubmitError::NotLeader => ApiFailure::standby(message),
            SubmitError::Storage(_) => ApiFailure::storage(message),
            SubmitError::IdempotencyConflict(_) => ApiFailure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::IdempotencyConflict,
                message,
            ),
            SubmitError::IdempotencyInProgress(_) => {
                ApiFailure::conflict(ErrorCode::IdempotencyInProgress, message)
            }
        }
    }
}

impl From<CancelError> for ApiFailure {
    fn from(e: CancelError) -> Self {
        let message = e.to_string();
        match e {
            CancelError::NotFound(id) => ApiFailure::unknown_job(&id),
            CancelError::Ended { .. } => ApiFailure::conflict(ErrorCode::Ended, message),
            CancelError::NotLeader => ApiFailure::standby(message),
            CancelError::Gone => ApiFailure::draining(message),
            CancelError::Storage(_) => ApiFailure::storage(message),
        }
    }
}

impl From<ReleaseError> for ApiFailure {
    fn from(e: ReleaseError) -> Self {
        let message = e.to_string();
        match e {
            ReleaseError::NotFound(id) => ApiFailure::unknown_job(&id),
            ReleaseError::NotHeld { .. } => ApiFailure::conflict(ErrorCode::NotHeld, message),
            ReleaseError::NotLeader => ApiFailure::standby(message),
            ReleaseError::Gone => ApiFailure::draining(message),
            ReleaseError::Storage(_) => ApiFailure::storage(message),
        }
    }
}

impl From<QueueOpError> for ApiFailure {
    fn from(e: QueueOpError) -> Self {
        let message = e.to_string();
        match e {
            QueueOpError::Unknown { .. } => {
                ApiFailure::new(StatusCode::NOT_FOUND, ErrorCode::UnknownQueue, message)
            }
            QueueOpError::NotLeader => ApiFailure::standby(message),
            QueueOpError::Gone => ApiFailure::draining(message),
            QueueOpError::Storage(_) => ApiFailure::storage(message),
        }
    }
}

impl From<RemoveError> for ApiFailure {
    fn from(e: RemoveError) -> Self {
        let message = e.to_string();
        match e {
            RemoveError::NotFound(id) => ApiFailure::unknown_job(&id),
            RemoveError::NotFinished { .. } => {
                ApiFailure::conflict(ErrorCode::NotFinished, message)
            }
            RemoveError::Needed { .. } => ApiFailure::conflict(ErrorCode::Needed, message),
            RemoveError::NotLeader => ApiFailure::standby(message),
            RemoveError::Gone => ApiFailure::draining(message),
            RemoveError::Storage(_) => ApiFailure::storage(message),
        }
    }
}

impl From<PruneError> for ApiFailure {
    fn from(e: PruneError) -> Self {
        let message = e.to_string();
        match e {
            PruneError::NotLeader => ApiFailure::standby(message),
            PruneError::Gone => ApiFailure::draining(message),
            PruneError::Storage(_) => ApiFailure::storage(message),
        }
    }
}

impl From<ScheduleError> for ApiFailure {
    fn from(e: ScheduleError) -> Self {
        let message = e.to_string();
        match e {
            ScheduleError::NotFound { .. } => {
                ApiFailure::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
            }
            ScheduleError::Overlap { job, .. } => {
                let mut failure = ApiFailure::conflict(ErrorCode::Overlap, message);
                failure.body.job = Some(job);
                failure
            }
            ScheduleError::Invalid { .. } => {
                ApiFailure::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidSpec, message)
            }
            // A schedule's fire is a submission: refused as one (the
            // message is the submission's own: `ScheduleError` is
            // transparent there).
            ScheduleError::Submit(e) => ApiFailure::from(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oj_core::JobState;

    #[test]
    fn the_same_refusal_gets_the_same_answer_on_every_route() {
        let standby = [
            ApiFailure::from(SubmitError::NotLeader),
            ApiFailure::from(CancelError::NotLeader),
            ApiFailure::from(ReleaseError::NotLeader),
            ApiFailure::from(QueueOpError::NotLeader),
            ApiFailure::from(RemoveError::NotLeader),
            ApiFailure::from(PruneError::NotLeader),
            ApiFailure::from(ScheduleError::Submit(SubmitError::NotLeader)),
        ];
        for f in standby {
            assert_eq!(f.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(f.body.code, ErrorCode::Standby);
            assert!(f.body.error.contains("standby"), "{f:?}");
        }
        for f in [
            ApiFailure::from(SubmitError::Draining),
            ApiFailure::from(SubmitError::Gone),
            ApiFailure::from(CancelError::Gone),
            ApiFailure::from(PruneError::Gone),
        ] {
            assert_eq!(f.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(f.body.code, ErrorCode::Draining);
        }
        let f = ApiFailure::from(RemoveError::Storage("disk full".into()));
        assert_eq!(f.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(f.body.code, ErrorCode::Storage);
        assert!(f.body.error.contains("disk full"));
    }

    #[test]
    fn not_found_and_conflicts() {
        let id = JobId::from_parts(1, 0);
        let f = ApiFailure::from(CancelError::NotFound(id.clone()));
        assert_eq!(f.status, StatusCode::NOT_FOUND);
        assert_eq!(
            f.body.error,
            format!("no job with id {id}; `oj job list` shows the jobs")
        );
        let f = ApiFailure::from(CancelError::Ended {
            id: id.clone(),
            state: JobState::Done,
        });
        assert_eq!(
            (f.status, f.body.code),
            (StatusCode::CONFLICT, ErrorCode::Ended)
        );
        let f = ApiFailure::from(ScheduleError::Overlap {
            name: "n".into(),
            job: id.clone(),
        });
        assert_eq!(f.body.job, Some(id));
        let text = serde_json::to_string(&f.body).unwrap();
        assert!(text.starts_with(r#"{"code":"overlap","error":"#), "{text}");
    }
}
