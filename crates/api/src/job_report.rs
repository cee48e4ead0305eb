//! A job as a client reads it: [`JobReport`], the lenient twin of the
//! [`oj_core::Job`] the daemon writes (through [`oj_core::JobView`]).
//!
//! Why a second type: `Job` is the daemon's stored record, strict where it
//! must be (an unknown field in a spec is refused, ids and times are
//! parsed). A client must keep working against a newer daemon, so what it
//! reads takes every field as optional, ignores fields it does not know,
//! and keeps a state word it does not know ([`StateWord::Other`]) instead
//! of refusing the whole answer. Times stay the RFC 3339 text they came as:
//! the client only shows them.
//!
//! Every answer about one job (submit, show, list, cancel, rerun, the
//! `job` frames of the event stream) reads as a `JobReport`.

use std::collections::BTreeMap;

use oj_core::JobState;
use serde::{Deserialize, Deserializer};

/// A job or step state as sent: one of SPEC §3.2's, or a word a newer
/// daemon added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateWord {
    Known(JobState),
    Other(String),
}

impl StateWord {
    /// The word on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            StateWord::Known(s) => s.as_str(),
            StateWord::Other(word) => word,
        }
    }

    pub fn is(&self, state: JobState) -> bool {
        *self == StateWord::Known(state)
    }

    /// Whether the job has ended (`done`, `failed`, `cancelled`,
    /// `interrupted`). A word this client does not know is not an end: a
    /// follower keeps waiting for one it knows rather than report an end
    /// it cannot name.
    pub fn is_terminal(&self) -> bool {
        matches!(self, StateWord::Known(s) if s.is_terminal())
    }

    pub fn from_word(word: &str) -> StateWord {
        JobState::ALL
            .into_iter()
            .find(|s| s.as_str() == word)
            .map_or_else(|| StateWord::Other(word.to_string()), StateWord::Known)
    }
}

impl<'de> Deserialize<'de> for StateWord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = String::deserialize(d)?;
        Ok(StateWord::from_word(&word))
    }
}

/// A job as the API sends it (SPEC §3.2, §8.1, §8.2); see the module doc.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct JobReport {
    pub id: Option<String>,
    pub name: Option<String>,
    pub state: Option<StateWord>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub error: Option<String>,
    pub steps: Vec<StepReport>,
    /// SPEC §8.2: placement in its queue.
    pub queue: Option<String>,
    pub priority: i64,
    pub after: Vec<DependencyReport>,
    pub hold: bool,
    pub not_before: Option<String>,
    /// Why a queued job has not started.
    pub waiting: Option<WaitingReport>,
    /// SPEC §8.1: where it runs and how it is found.
    pub dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub rerun_of: Option<String>,
    /// The schedule fire that submitted the job (SPEC §8.3).
    pub schedule: Option<ScheduleFireReport>,
    /// Set on the last event about a job that retention deleted.
    pub removed: bool,
}

impl JobReport {
    /// The state word, `?` when none was sent.
    pub fn state_str(&self) -> &str {
        self.state.as_ref().map_or("?", StateWord::as_str)
    }

    pub fn is(&self, state: JobState) -> bool {
        self.state.as_ref().is_some_and(|s| s.is(state))
    }

    pub fn is_terminal(&self) -> bool {
        self.state.as_ref().is_some_and(StateWord::is_terminal)
    }
}

/// One step of a [`JobReport`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct StepReport {
    pub name: Option<String>,
    pub state: Option<StateWord>,
    pub exit_code: Option<i64>,
    /// The pod of a container step.
    pub pod: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Every run that ended, oldest first.
    pub attempts: Vec<AttemptReport>,
    /// Set while the step waits for its next attempt.
    pub retry_at: Option<String>,
}

impl StepReport {
    pub fn is(&self, state: JobState) -> bool {
        self.state.as_ref().is_some_and(|s| s.is(state))
    }
}

/// One ended run of a step.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AttemptReport {
    pub exit_code: Option<i64>,
    /// Why the run failed; none for a run that succeeded.
    pub reason: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

/// One entry of a job's `after`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DependencyReport {
    pub job: Option<String>,
    /// `done` (the default) or `ended`.
    pub need: Option<String>,
}

/// `schedule {name, fire_time, manual}` of a job a schedule submitted.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ScheduleFireReport {
    pub name: Option<String>,
    pub fire_time: Option<String>,
    /// Fired by `oj schedule run`, not by the clock.
    pub manual: bool,
}

/// `waiting {reason, detail}` of a queued job.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct WaitingReport {
    pub reason: Option<String>,
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use oj_core::{Job, JobId, JobView, Timestamp};

    #[test]
    fn what_the_daemon_writes_reads_back() {
        let spec = serde_json::from_value(serde_json::json!({
            "name": "build", "dir": "/w", "labels": {"team": "a"}, "queue": "default",
            "priority": 5, "hold": true,
            "steps": [{"name": "make", "run": "make"}]
        }))
        .unwrap();
        let mut job = Job::new(
            JobId::from_parts(7, 0),
            spec,
            Timestamp(std::time::UNIX_EPOCH),
        );
        job.error = Some("boom".into());
        job.steps[0].exit_code = Some(2);
        job.steps[0].state = JobState::Failed;
        let text = serde_json::to_string(&JobView::of(&job)).unwrap();
        let r: JobReport = serde_json::from_str(&text).unwrap();
        assert_eq!(r.id.as_deref(), Some(job.id.as_str()));
        assert_eq!(r.name.as_deref(), Some("build"));
        assert!(r.is(JobState::Queued) && !r.is_terminal());
        assert_eq!(r.created_at.as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(r.error.as_deref(), Some("boom"));
        assert_eq!(r.dir.as_deref(), Some("/w"));
        assert_eq!(r.labels["team"], "a");
        assert_eq!((r.priority, r.hold), (5, true));
        assert_eq!(r.queue.as_deref(), Some("default"));
        assert_eq!(r.steps[0].name.as_deref(), Some("make"));
        assert!(r.steps[0].is(JobState::Failed));
        assert_eq!(r.steps[0].exit_code, Some(2));
    }

    #[test]
    fn a_newer_daemon_does_not_break_the_reader() {
        let r: JobReport = serde_json::from_str(
            r#"{"id": "x", "state": "paused", "new_field": {"a": 1},
                "steps": [{"name": "s", "state": "skipped", "extra": true}]}"#,
        )
        .unwrap();
        assert_eq!(r.state, Some(StateWord::Other("paused".into())));
        assert_eq!(r.state_str(), "paused");
        assert!(!r.is_terminal(), "an unknown state is not an end");
        assert_eq!(r.steps[0].state.as_ref().unwrap().as_str(), "skipped");
        // Nothing at all, or nulls, is a job with nothing known.
        let empty: JobReport = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, JobReport::default());
        assert_eq!(empty.state_str(), "?");
        let nulls: JobReport =
            serde_json::from_str(r#"{"id": null, "error": null, "waiting": null}"#).unwrap();
        assert_eq!(nulls, JobReport::default());
    }

    #[test]
    fn every_known_state_word_reads_as_its_state() {
        for s in JobState::ALL {
            let w: StateWord = serde_json::from_value(serde_json::json!(s.as_str())).unwrap();
            assert!(w.is(s), "{s:?}");
            assert_eq!(w.is_terminal(), s.is_terminal());
        }
    }
}
