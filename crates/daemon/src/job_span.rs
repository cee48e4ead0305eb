//! The `job` span (`job_id`, `name`): everything the daemon does for one
//! job — the engine's lines about it, its steps' runners, its
//! notifications — runs inside it. So a JSON log line carries the job's id
//! and name even when the event itself does not, and one job can be traced
//! without raising the level for the whole daemon:
//! `log.level = "info,oj_daemon[job{job_id=<id>}]=trace"`.
//!
//! The span is INFO, so that it exists at the default level; its target is
//! this crate's, which the `oj_daemon[job{…}]` directive needs to match.

use tracing::Span;

/// The span of job `job_id` named `name`.
pub fn job_span(job_id: &str, name: &str) -> Span {
    tracing::info_span!("job", job_id = %job_id, name = %name)
}

/// The span of job `id` as `state` knows it (an unknown job gets an empty name).
pub fn of(state: &oj_core::State, id: &oj_core::JobId) -> Span {
    let name = state.job(id).map(|j| j.name.as_str()).unwrap_or("");
    job_span(id.as_str(), name)
}
