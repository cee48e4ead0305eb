//! The job routes' own bodies: a page of `GET /v1/jobs`, the rerun and
//! prune requests, the prune answer. A single job is [`oj_core::Job`]
//! (or, with `queue`, `dir` and `labels` lifted to the top, the
//! [`oj_core::JobView`] it is written as).

use oj_core::JobId;
use serde::{Deserialize, Serialize};

/// One page of `GET /v1/jobs?limit=N&after=ID`: `{"jobs": [...], "next":
/// "<id>" | null}`, newest first; `next` is the `after` of the next page.
///
/// The item type is a parameter: the client reads pages of raw JSON
/// values to print them as they came (`oj job list --json`), and typed
/// jobs where it decides. A daemon of the first release sends no `next`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPage<J = oj_core::Job> {
    #[serde(default = "Vec::new")]
    pub jobs: Vec<J>,
    #[serde(default)]
    pub next: Option<JobId>,
}

/// The body of `POST /v1/jobs/{id}/rerun` (optional: empty = from the start).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunRequest {
    /// Rerun from this step on (earlier steps are skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_step: Option<String>,
}

/// The body of `POST /v1/jobs/prune`; every field optional.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// Only jobs that ended longer ago than this (`"7d"`, `"12h"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<String>,
    /// Only jobs in this finished state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// The answer to `POST /v1/jobs/prune`: `{"removed": n}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Pruned {
    #[serde(default)]
    pub removed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_of_values_and_of_jobs() {
        let page: JobPage<serde_json::Value> =
            serde_json::from_str(r#"{"jobs":[{"id":"x","z":1,"a":2}],"next":"0mx49xbba000"}"#)
                .unwrap();
        assert_eq!(page.jobs[0]["z"], 1);
        assert_eq!(page.next.unwrap().as_str(), "0mx49xbba000");
        let old: JobPage<serde_json::Value> = serde_json::from_str(r#"{"jobs":[]}"#).unwrap();
        assert_eq!(old.next, None);
        let typed: JobPage = serde_json::from_str(r#"{"jobs":[],"next":null}"#).unwrap();
        assert!(typed.jobs.is_empty());
    }

    #[test]
    fn requests_write_only_what_is_set() {
        assert_eq!(
            serde_json::to_string(&PruneRequest::default()).unwrap(),
            "{}"
        );
        let p = PruneRequest {
            older_than: Some("7d".into()),
            state: Some("failed".into()),
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"older_than":"7d","state":"failed"}"#
        );
        assert!(serde_json::from_str::<PruneRequest>(r#"{"older":"1h"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&RerunRequest::default()).unwrap(),
            "{}"
        );
    }
}
