//! The wire contract of the daemon's HTTP API (SPEC §3.2, §7.5, §8): the
//! request and response bodies of every `/v1` route, compiled by both
//! sides — the daemon serialises these types, the `oj` client
//! deserialises them. No I/O here, no HTTP types: only shapes.
//!
//! Two rules shape the types:
//! - **The daemon's bytes do not change.** Where an answer used to be a
//!   `json!` object (whose keys serde_json writes sorted), the struct's
//!   fields are declared in that same sorted order.
//! - **A newer daemon must not break an older client.** Answers the client
//!   reads take missing fields as their default, ignore unknown ones, and
//!   an error `code` this client does not know is [`ErrorCode::Other`].
//!
//! | route | request | answer |
//! |---|---|---|
//! | `GET /v1/status` | — | [`Status`] |
//! | `POST /v1/jobs` (header [`IDEMPOTENCY_KEY`]) | [`JobSpec`] | a job ([`JobView`]) |
//! | `GET /v1/jobs` | query | [`JobPage`] |
//! | `GET /v1/jobs/{id}`, `POST …/cancel` | — | a job ([`JobView`]) |
//! | `POST /v1/jobs/{id}/rerun` | [`RerunRequest`] | a job ([`JobView`]) |
//! | `POST /v1/jobs/{id}/release` | — | a job ([`Job`]) |
//! | `DELETE /v1/jobs/{id}` | — | 204 |
//! | `POST /v1/jobs/prune` | [`PruneRequest`] | [`Pruned`] |
//! | `GET /v1/queues` | — | [`QueueList`] |
//! | `POST /v1/queues/{name}/pause`, `/resume` | — | [`QueueInfo`] |
//! | `GET /v1/schedules` | — | [`ScheduleList`] |
//! | `POST /v1/schedules/{name}/run` | — | a job ([`Job`]) |
//! | `POST /v1/schedules/{name}/pause`, `/resume` | — | [`ScheduleInfo`] |
//! | `GET /v1/config` | — | [`ConfigAnswer`] |
//! | `POST /v1/shutdown` | — | [`ShutdownAnswer`] |
//! | `GET /v1/events` | query | SSE frames ([`EventKind`]) |
//! | any error | — | [`ErrorBody`] with an [`ErrorCode`] |
//!
//! The client reads every job answer as a [`JobReport`]: the same fields,
//! each optional, so that a newer daemon's answers still read.

mod config;
mod error;
mod events;
mod job_report;
mod jobs;
mod queues;
mod status;

pub use config::{ConfigAnswer, ConfigSummary, LastReload};
pub use error::{ErrorBody, ErrorCode};
pub use events::{EventKind, LogData, ResetData};
pub use job_report::{
    AttemptReport, DependencyReport, JobReport, ScheduleFireReport, StateWord, StepReport,
    WaitingReport,
};
pub use jobs::{JobPage, PruneRequest, Pruned, RerunRequest};
pub use oj_core::{Job, JobCounts, JobId, JobSpec, JobState, JobView};

/// The request header that makes a submission or rerun idempotent (the
/// IETF draft's `Idempotency-Key`; header names are case-insensitive).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub use queues::{QueueInfo, QueueList, ScheduleInfo, ScheduleList};
pub use status::{Leftovers, Listener, ShutdownAnswer, Status};

/// Writes `value` with the keys of every object in it sorted, as the
/// `json!` objects these types replace wrote them (serde_json's map is
/// sorted): for fields whose own type declares its fields in another order.
pub(crate) fn sorted_keys<T, S>(value: &T, s: S) -> Result<S::Ok, S::Error>
where
    T: serde::Serialize,
    S: serde::Serializer,
{
    use serde::Serialize;
    serde_json::to_value(value)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}
