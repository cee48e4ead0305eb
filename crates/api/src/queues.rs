//! Queues and schedules (SPEC §8.2, §8.3): `GET /v1/queues`, `GET
//! /v1/schedules` and the answers of their pause, resume and run routes.

use oj_core::{FireResult, JobId, JobState, Timestamp};
use serde::{Deserialize, Serialize};

/// One queue as `GET /v1/queues` and `oj queue list` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub name: String,
    pub max_concurrent: usize,
    pub running: usize,
    pub queued: usize,
    pub paused: bool,
}

/// The body of `GET /v1/queues`: `{"queues": [...]}`. The item is a
/// parameter so the client can print the items as they came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "Q: Serialize", deserialize = "Q: Deserialize<'de>"))]
pub struct QueueList<Q = QueueInfo> {
    /// Written with sorted keys (the bytes of the `json!` list it replaces).
    #[serde(default = "Vec::new", serialize_with = "crate::sorted_keys")]
    pub queues: Vec<Q>,
}

/// A schedule as `GET /v1/schedules` and `oj schedule list` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    /// `null` while paused or disabled (or when the expression never matches again).
    #[serde(default)]
    pub next_fire: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fire: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<FireResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<JobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job_state: Option<JobState>,
    #[serde(default)]
    pub paused: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `skip`, `queue` or `allow`.
    #[serde(default)]
    pub overlap: String,
    /// `none`, `one` or `all`.
    #[serde(default)]
    pub catch_up: String,
}

fn yes() -> bool {
    true
}

/// The body of `GET /v1/schedules`: `{"schedules": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: Deserialize<'de>"))]
pub struct ScheduleList<S = ScheduleInfo> {
    /// Written with sorted keys (the bytes of the `json!` list it replaces).
    #[serde(default = "Vec::new", serialize_with = "crate::sorted_keys")]
    pub schedules: Vec<S>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse() {
        let q: QueueList = serde_json::from_str(
            r#"{"queues":[{"name":"default","max_concurrent":4,"running":1,"queued":0,"paused":false}]}"#,
        )
        .unwrap();
        assert_eq!(q.queues[0].max_concurrent, 4);
        let text = r#"{"schedules":[{"catch_up":"one","cron":"0 3 * * *","enabled":true,"last_result":"skipped","name":"nightly","next_fire":"2026-12-08T03:00:00.000Z","overlap":"skip","paused":false,"timezone":"UTC"}]}"#;
        let s: ScheduleList = serde_json::from_str(text).unwrap();
        assert_eq!(s.schedules[0].last_result, Some(FireResult::Skipped));
        assert_eq!(serde_json::to_string(&s).unwrap(), text);
    }
}
