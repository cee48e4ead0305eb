//! Why the engine refuses a submission or a cancel: the errors the API maps
//! to responses.

use oj_core::{JobId, JobState, SpecError};

/// Why a submission was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    #[error(
        "the daemon is draining (shutting down) and accepts no new jobs; submit again once it has restarted"
    )]
    Draining,
    #[error("this daemon is a standby (it does not hold the lock); send the job to the leader")]
    NotLeader,
    #[error("invalid job spec: {0}")]
    Invalid(#[from] SpecError),
    #[error(
        "the job could not be stored durably, so it was not accepted and will not run: {0}; free space on the state volume (or fix the error) and submit again"
    )]
    Storage(String),
    #[error("the engine has stopped")]
    Gone,
    #[error(
        "the Idempotency-Key was first used for job {0} with a different job spec; send the same spec to get that job back, or use a new key for a new job"
    )]
    IdempotencyConflict(JobId),
    #[error(
        "the first request with this Idempotency-Key (job {0}) is still being committed; retry in a moment"
    )]
    IdempotencyInProgress(JobId),
}

/// Why a cancel was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CancelError {
    #[error("no job with id {0}")]
    NotFound(JobId),
    #[error("job {id} has already ended ({state}); nothing to cancel")]
    Ended { id: JobId, state: JobState },
    #[error("this daemon is a standby (it does not hold the lock)")]
    NotLeader,
    #[error(
        "the cancel could not be stored durably, so the job goes on: {0}; free space on the state volume (or fix the error) and cancel again"
    )]
    Storage(String),
    #[error("the engine has stopped")]
    Gone,
}
