//! The events of the write-ahead log. Every state change of the daemon is
//! one of these, written (and fsynced) before it is acknowledged, and
//! [`crate::State::apply`] is the only code that interprets them, so
//! replaying the log rebuilds exactly the state that was acknowledged.

use serde::{Deserialize, Serialize};

use crate::job::{Job, JobId, JobState, StepState, Timestamp};
use crate::notification::{Notification, NotificationKind};
use crate::schedule_book::FireResult;

/// One state change. Serialized as JSON with a `type` tag, one per WAL line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A job was accepted (queued).
    JobSubmitted { job: Box<Job> },
    /// A queued job began running.
    JobStarted { id: JobId, at: Timestamp },
    /// Step `step` (index into the spec) began; `pod` for container steps.
    StepStarted {
        id: JobId,
        step: usize,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pod: Option<String>,
    },
    /// Step `step` ended.
    StepFinished {
        id: JobId,
        step: usize,
        at: Timestamp,
        state: StepState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Why it failed (the job's error when it ends the job).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Step `step`'s run failed and the step will run again at `retry_at`
    /// (its retry policy said so); the job stays running.
    StepRetrying {
        id: JobId,
        step: usize,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        reason: String,
        retry_at: Timestamp,
    },
    /// A finished job and its logs were deleted (`oj job rm`, retention).
    JobRemoved { id: JobId },
    /// The job ended (done, failed, cancelled, interrupted).
    JobFinished {
        id: JobId,
        at: Timestamp,
        state: JobState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A notification waits for delivery.
    NotificationQueued { notification: Box<Notification> },
    /// A notification was delivered (or given up on) and will not be retried.
    NotificationAcked { id: String },
    /// A held job was released (`oj job release`).
    JobReleased { id: JobId },
    /// A queue was paused: its jobs start no more until it is resumed.
    QueuePaused { queue: String },
    /// A paused queue was resumed.
    QueueResumed { queue: String },
    /// A schedule appeared in the config, or its `cron`, `timezone` or
    /// `enabled` changed (fires before `at` are then not caught up).
    ScheduleDefined {
        schedule: String,
        cron: String,
        timezone: String,
        enabled: bool,
        at: Timestamp,
    },
    /// Fire times up to `fire_time` are settled without a job: `fire_time`
    /// as `result`, the `missed_before` fire times before it as missed. (A
    /// `submitted` fire is its job's `JobSubmitted`, in the same record.)
    ScheduleSettled {
        schedule: String,
        fire_time: Timestamp,
        result: FireResult,
        #[serde(default, skip_serializing_if = "is_zero")]
        missed_before: u64,
    },
    /// `oj schedule pause` / `resume`.
    SchedulePaused {
        schedule: String,
        paused: bool,
        at: Timestamp,
    },
    /// The schedule left the config.
    ScheduleRemoved { schedule: String },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Event {
    /// The job this event is about, if any.
    pub fn job_id(&self) -> Option<&JobId> {
        match self {
            Event::JobSubmitted { job } => Some(&job.id),
            Event::JobStarted { id, .. }
            | Event::StepStarted { id, .. }
            | Event::StepFinished { id, .. }
            | Event::StepRetrying { id, .. }
            | Event::JobRemoved { id }
            | Event::JobReleased { id }
            | Event::JobFinished { id, .. } => Some(id),
            Event::NotificationQueued { .. }
            | Event::NotificationAcked { .. }
            | Event::QueuePaused { .. }
            | Event::QueueResumed { .. } => None,
            Event::ScheduleDefined { .. }
            | Event::ScheduleSettled { .. }
            | Event::SchedulePaused { .. }
            | Event::ScheduleRemoved { .. } => None,
        }
    }

    /// The notification this event calls for (start, done, fail), if any.
    /// The one place that maps job events to notifications.
    pub fn notification_kind(&self) -> Option<(NotificationKind, &JobId)> {
        match self {
            Event::JobStarted { id, .. } => Some((NotificationKind::Start, id)),
            Event::JobFinished { id, state, .. } => {
                NotificationKind::for_end(*state).map(|k| (k, id))
            }
            Event::StepRetrying { id, .. } => Some((NotificationKind::Retry, id)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json() {
        let e = Event::JobFinished {
            id: JobId::from_parts(5, 1),
            at: Timestamp(std::time::UNIX_EPOCH),
            state: JobState::Failed,
            error: None,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.starts_with("{\"type\":\"job_finished\""), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        assert_eq!(
            e.notification_kind().map(|(k, _)| k),
            Some(NotificationKind::Fail)
        );
    }
}
