//! The job record the daemon keeps and the API returns: its id, states,
//! times and per-step status, next to the spec it was submitted with.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::queue::{Dependency, Waiting};
use crate::spec::JobSpec;

/// A job id: lowercase base36, DNS-1123 safe, sortable by creation
/// (17 characters: 9 for the millisecond, 3 for a counter, 5 for the
/// daemon that made it — random per daemon start, so that two daemons of
/// one user never hand out the same id). Ids of earlier versions have 12
/// characters (no daemon part) and stay valid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

const MS_WIDTH: usize = 9;
const SEQ_WIDTH: usize = 3;
const SEQ_MAX: u64 = 36u64.pow(SEQ_WIDTH as u32) - 1;
/// Characters of the daemon part ([`IdGen::with_node`]).
pub const NODE_WIDTH: usize = 5;

impl JobId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id from the parts; `seq` wraps at 36³.
    pub fn from_parts(unix_ms: u64, seq: u64) -> JobId {
        let mut s = base36(unix_ms, MS_WIDTH);
        s.push_str(&base36(seq % (SEQ_MAX + 1), SEQ_WIDTH));
        JobId(s)
    }

    /// The id from the parts and a daemon part ([`node_from`]).
    pub fn from_parts_on(unix_ms: u64, seq: u64, node: &str) -> JobId {
        let mut id = JobId::from_parts(unix_ms, seq);
        id.0.push_str(node);
        id
    }

    /// Whether the id has a shape oj generates (with or without the daemon
    /// part): only such names under `logs/` are oj's to delete.
    pub fn is_generated(&self) -> bool {
        self.unix_ms().is_some()
    }

    /// The millisecond part, if the id has the generated shape.
    fn unix_ms(&self) -> Option<u64> {
        let len = self.0.len();
        if len != MS_WIDTH + SEQ_WIDTH && len != MS_WIDTH + SEQ_WIDTH + NODE_WIDTH {
            return None;
        }
        u64::from_str_radix(&self.0[..MS_WIDTH], 36).ok()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a string is not a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a job id (expected 1–20 characters of a-z and 0-9, as printed by `oj run`)")]
pub struct BadJobId(pub String);

impl FromStr for JobId {
    type Err = BadJobId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty()
            || s.len() > 20
            || !s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(BadJobId(s.to_string()));
        }
        Ok(JobId(s.to_string()))
    }
}

fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = Vec::with_capacity(width);
    while n > 0 {
        buf.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    while buf.len() < width {
        buf.push(b'0');
    }
    buf.reverse();
    String::from_utf8(buf).unwrap_or_default()
}

/// The daemon part of ids: [`NODE_WIDTH`] base36 characters from a
/// random number (the caller brings the randomness: this crate does no I/O).
pub fn node_from(random: u64) -> String {
    base36(random % 36u64.pow(NODE_WIDTH as u32), NODE_WIDTH)
}

/// Hands out increasing job ids. Seeded with the newest id already stored,
/// so ids stay unique across restarts even when the clock steps back.
#[derive(Debug, Clone, Default)]
pub struct IdGen {
    last_ms: u64,
    seq: u64,
    /// The daemon part appended to every id (empty: none).
    node: String,
}

impl IdGen {
    /// A generator whose ids all sort after `newest`.
    pub fn after(newest: Option<&JobId>) -> IdGen {
        match newest.and_then(JobId::unix_ms) {
            Some(ms) => IdGen {
                last_ms: ms,
                seq: SEQ_MAX,
                node: String::new(),
            },
            None => IdGen::default(),
        }
    }

    /// Appends `node` (see [`node_from`]) to every id from now on.
    pub fn with_node(mut self, node: &str) -> IdGen {
        self.node = node.to_string();
        self
    }

    /// The next id for a job created at `now`.
    pub fn next(&mut self, now: SystemTime) -> JobId {
        let ms = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        if ms > self.last_ms {
            self.last_ms = ms;
            self.seq = 0;
        } else if self.seq >= SEQ_MAX {
            // Counter exhausted within one millisecond: borrow the next one.
            self.last_ms += 1;
            self.seq = 0;
        } else {
            self.seq += 1;
        }
        JobId::from_parts_on(self.last_ms, self.seq, &self.node)
    }
}

/// A point in time, serialized as RFC 3339 with milliseconds (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    pub fn rfc3339(&self) -> String {
        humantime::format_rfc3339_millis(self.0).to_string()
    }

    /// Time elapsed from `earlier` to `self` (zero if negative).
    pub fn since(&self, earlier: Timestamp) -> Duration {
        self.0.duration_since(earlier.0).unwrap_or_default()
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        Timestamp(t)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s)
            .map(Timestamp)
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 time: {e}")))
    }
}

/// The state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
    /// The daemon stopped (drain timeout, crash) while the job ran.
    Interrupted,
}

/// The state of a step; same words as a job. A step that never started
/// (an earlier one failed) stays `queued`.
pub type StepState = JobState;

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        }
    }

    /// Done, failed, cancelled or interrupted: nothing more will happen.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a job state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a job state; use one of queued, running, done, failed, cancelled, interrupted"
)]
pub struct BadJobState(pub String);

impl FromStr for JobState {
    type Err = BadJobState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| BadJobState(s.to_string()))
    }
}

/// The status of one step of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStatus {
    pub name: String,
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The pod of a container step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// Every run of the step that ended, oldest first (more than one when
    /// it was retried).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::spec::exact_vec"
    )]
    pub attempts: Vec<Attempt>,
    /// Set while the step waits for its next attempt (state `queued`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Timestamp>,
}

impl StepStatus {
    /// The step waits for a retry (its job is running, no process is).
    pub fn waits_for_retry(&self) -> bool {
        self.retry_at.is_some() && self.state == JobState::Queued
    }

    /// Closes the current run as an attempt ending at `at`.
    pub(crate) fn push_attempt(
        &mut self,
        at: Timestamp,
        exit_code: Option<i32>,
        reason: Option<String>,
    ) {
        self.attempts.push(Attempt {
            exit_code,
            reason,
            pod: self.pod.clone(),
            started_at: self.started_at.unwrap_or(at),
            ended_at: at,
        });
    }
}

/// One run of a step: `{"exit_code"?, "reason"?, "pod"?, "started_at", "ended_at"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why the run failed (none when it succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
}

/// Every job the state keeps, by id. Boxed: a job is over 1 KB, and a
/// B-tree filled in id order leaves its nodes about half empty, so inline
/// jobs would cost twice their size (SPEC §8.2 budgets 2 KB per waiting job).
pub type JobMap = std::collections::BTreeMap<JobId, Box<Job>>;

/// A job: the API's JSON shape (SPEC §3.2) plus the spec it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub name: String,
    pub state: JobState,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// SPEC §8.2 (copied from the spec; `hold` turns false on release).
    #[serde(default = "crate::queue::default_queue_name")]
    pub queue: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub after: Vec<Dependency>,
    #[serde(default)]
    pub hold: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    /// Why a queued job waits; filled in when the job is shown, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    #[serde(deserialize_with = "crate::spec::exact_vec")]
    pub steps: Vec<StepStatus>,
    pub spec: JobSpec,
    /// The job this one reruns (`oj job rerun`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<JobId>,
    /// The `Idempotency-Key` it was submitted with; kept as long as the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The schedule fire that submitted the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::schedule_book::JobSchedule>,
}

impl Job {
    /// A freshly submitted job: queued, every step queued.
    pub fn new(id: JobId, spec: JobSpec, created_at: Timestamp) -> Job {
        Job {
            id,
            name: spec.name.clone(),
            state: JobState::Queued,
            created_at,
            started_at: None,
            ended_at: None,
            error: None,
            queue: spec.queue.clone(),
            priority: spec.priority,
            after: spec.after.clone(),
            hold: spec.hold,
            not_before: spec.not_before,
            waiting: None,
            steps: spec
                .steps
                .iter()
                .map(|s| StepStatus {
                    name: s.name.clone(),
                    state: JobState::Queued,
                    exit_code: None,
                    pod: None,
                    started_at: None,
                    ended_at: None,
                    attempts: Vec::new(),
                    retry_at: None,
                })
                .collect(),
            spec,
            rerun_of: None,
            idempotency_key: None,
            schedule: None,
        }
    }

    /// The step waiting for its next attempt, if any.
    pub fn retrying_step(&self) -> Option<usize> {
        self.steps.iter().position(StepStatus::waits_for_retry)
    }

    /// The step currently running, if any.
    pub fn running_step(&self) -> Option<usize> {
        self.steps.iter().position(|s| s.state == JobState::Running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_safe_and_increasing() {
        let mut g = IdGen::default();
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_000);
        let a = g.next(t);
        let b = g.next(t);
        let c = g.next(t + Duration::from_millis(1));
        assert!(a < b && b < c, "{a} {b} {c}");
        for id in [&a, &b, &c] {
            assert!(id.as_str().len() <= 20);
            assert!(
                id.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            );
            assert_eq!(id.as_str().parse::<JobId>().unwrap(), *id);
        }
    }

    #[test]
    fn ids_of_two_daemons_differ_and_stay_sortable_and_pod_safe() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_000);
        let mut a = IdGen::default().with_node(&node_from(7));
        let mut b = IdGen::default().with_node(&node_from(u64::MAX / 3));
        let (a1, b1) = (a.next(t), b.next(t));
        assert_ne!(a1, b1, "same millisecond, same counter, two daemons");
        let a2 = a.next(t + Duration::from_millis(1));
        assert!(a1 < a2);
        assert_eq!(a1.as_str().len(), 17);
        assert!(a1.is_generated() && a1.as_str().parse::<JobId>().is_ok());
        // An old 12-character id stays readable and sorts before newer ids.
        let old: JobId = "0mxdix09l000".parse().unwrap();
        assert!(old.is_generated());
        let mut after = IdGen::after(Some(&old)).with_node("abcde");
        assert!(after.next(UNIX_EPOCH) > old);
        assert!(!"0mxdix09l000ab".parse::<JobId>().unwrap().is_generated());
    }

    #[test]
    fn ids_stay_unique_after_restart_with_a_clock_behind() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_000);
        let mut g = IdGen::default();
        let last = g.next(t);
        let mut after = IdGen::after(Some(&last));
        let next = after.next(t - Duration::from_secs(5));
        assert!(next > last, "{next} should sort after {last}");
    }

    #[test]
    fn times_are_rfc3339_millis() {
        let t = Timestamp(UNIX_EPOCH + Duration::from_millis(1_500));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"1970-01-01T00:00:01.500Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    #[test]
    fn states_are_lowercase_words() {
        assert_eq!(
            serde_json::to_string(&JobState::Interrupted).unwrap(),
            "\"interrupted\""
        );
        assert_eq!(
            "cancelled".parse::<JobState>().unwrap(),
            JobState::Cancelled
        );
        assert!("Done".parse::<JobState>().is_err());
    }
}
