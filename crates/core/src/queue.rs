//! Queues, priorities, dependencies and holds (SPEC §8.2): the words a job
//! spec uses for them, their checks, and why a queued job waits.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::job::JobId;

/// The queue every job waits in unless it names another; it always exists.
pub const DEFAULT_QUEUE: &str = "default";

/// Lowest and highest `priority`.
pub const PRIORITY_MIN: i32 = -1000;
pub const PRIORITY_MAX: i32 = 1000;

/// The most jobs one job may wait for.
pub const MAX_AFTER: usize = 256;

/// What a dependent needs of the job it waits for.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Need {
    /// The dependency must end `done` (`--after ID`); any other end cancels
    /// the dependent.
    #[default]
    Done,
    /// Any end will do (`--after-ended ID`).
    Ended,
}

impl Need {
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Done => "done",
            Need::Ended => "ended",
        }
    }
}

/// One entry of a job's `after`: `{"job": "<id>", "need": "done" | "ended"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub job: JobId,
    #[serde(default)]
    pub need: Need,
}

/// Why a queued job has not started (`waiting.reason` in its JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    Dependency,
    Held,
    NotBefore,
    QueuePaused,
    QueueFull,
    Capacity,
    Leader,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Dependency => "dependency",
            WaitReason::Held => "held",
            WaitReason::NotBefore => "not_before",
            WaitReason::QueuePaused => "queue_paused",
            WaitReason::QueueFull => "queue_full",
            WaitReason::Capacity => "capacity",
            WaitReason::Leader => "leader",
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `"waiting": {"reason", "detail"}` of a queued job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub reason: WaitReason,
    /// A short text for `oj job list`, e.g. `after 0mx49xbba000`.
    pub detail: String,
}

/// Why the queue fields of a spec are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error(
        "\"queue\" {0:?} is not a queue name; use 1–63 characters of a-z 0-9 _ - starting with a letter or digit"
    )]
    BadName(String),
    #[error(
        "\"priority\" {0} is out of range; use an integer from {PRIORITY_MIN} to {PRIORITY_MAX}"
    )]
    Priority(i64),
    #[error("\"after\" lists job {0} twice; list each job once")]
    DuplicateDependency(JobId),
    #[error("\"after\" lists {0} jobs; a job may wait for at most {MAX_AFTER}")]
    TooManyDependencies(usize),
    #[error(
        "queue {queue:?} does not exist; known queues: {}; add [queues.{queue}] to the daemon's config or pick a known one",
        .known.join(", ")
    )]
    UnknownQueue { queue: String, known: Vec<String> },
    #[error(
        "\"after\": no job {0}; a job can only wait for a job the daemon knows (see `oj job list`)"
    )]
    UnknownDependency(JobId),
}

/// Whether `name` is a valid queue name: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn is_queue_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Checks a spec's `queue`, `priority` and `after` (not whether the queue
/// or the jobs exist: that is the daemon's part).
pub fn validate(queue: &str, priority: i32, after: &[Dependency]) -> Result<(), QueueError> {
    if !is_queue_name(queue) {
        return Err(QueueError::BadName(queue.to_string()));
    }
    if !(PRIORITY_MIN..=PRIORITY_MAX).contains(&priority) {
        return Err(QueueError::Priority(priority.into()));
    }
    if after.len() > MAX_AFTER {
        return Err(QueueError::TooManyDependencies(after.len()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for d in after {
        if !seen.insert(&d.job) {
            return Err(QueueError::DuplicateDependency(d.job.clone()));
        }
    }
    Ok(())
}

pub(crate) fn default_queue_name() -> String {
    DEFAULT_QUEUE.to_string()
}

pub(crate) fn is_zero(n: &i32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        for ok in [
            "default",
            "build",
            "a",
            "0",
            "deploy-prod",
            "x_1",
            &"a".repeat(63),
        ] {
            assert!(is_queue_name(ok), "{ok}");
        }
        for bad in ["", "Build", "-a", "_a", "a.b", "a b", &"a".repeat(64)] {
            assert!(!is_queue_name(bad), "{bad}");
        }
    }

    #[test]
    fn priorities_and_dependencies_are_checked() {
        let id: JobId = "0mx49xbba000".parse().unwrap();
        assert!(validate("default", 1000, &[]).is_ok());
        assert_eq!(
            validate("default", 1001, &[]),
            Err(QueueError::Priority(1001))
        );
        assert!(validate("default", -1001, &[]).is_err());
        let twice = vec![
            Dependency {
                job: id.clone(),
                need: Need::Done,
            },
            Dependency {
                job: id.clone(),
                need: Need::Ended,
            },
        ];
        assert_eq!(
            validate("default", 0, &twice),
            Err(QueueError::DuplicateDependency(id))
        );
        let e = QueueError::UnknownQueue {
            queue: "nope".into(),
            known: vec!["build".into(), "default".into()],
        };
        assert!(
            e.to_string().contains("known queues: build, default"),
            "{e}"
        );
    }

    #[test]
    fn a_dependency_needs_done_unless_told() {
        let d: Dependency = serde_json::from_str(r#"{"job":"abc"}"#).unwrap();
        assert_eq!(d.need, Need::Done);
        let d: Dependency = serde_json::from_str(r#"{"job":"abc","need":"ended"}"#).unwrap();
        assert_eq!(d.need, Need::Ended);
        assert!(serde_json::from_str::<Dependency>(r#"{"job":"abc","need":"failed"}"#).is_err());
    }
}
