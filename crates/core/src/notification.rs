//! A notification about a job (`start`, `done`, `fail`), built here so the
//! message rules (runbook template or default text) live in one place and
//! the daemon can persist it with a stable id for at-least-once delivery.

use serde::{Deserialize, Serialize};

use crate::job::{Job, JobId, JobState, Timestamp};
use crate::template::{MAX_MESSAGE_BYTES, RuntimeVars};

/// Which job event a notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    Start,
    Done,
    Fail,
    /// A step failed and will run again (its retry policy said so).
    Retry,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Start => "start",
            NotificationKind::Done => "done",
            NotificationKind::Fail => "fail",
            NotificationKind::Retry => "retry",
        }
    }

    /// The kind for a job that ended in `state`: `done` for done, `fail` for
    /// failed and interrupted, none for cancelled (the user asked for it).
    pub fn for_end(state: JobState) -> Option<NotificationKind> {
        match state {
            JobState::Done => Some(NotificationKind::Done),
            JobState::Failed | JobState::Interrupted => Some(NotificationKind::Fail),
            _ => None,
        }
    }

    /// The matching config value of `notify.events`.
    pub fn config_event(self) -> oj_config::NotifyEvent {
        match self {
            NotificationKind::Start => oj_config::NotifyEvent::Start,
            NotificationKind::Done => oj_config::NotifyEvent::Done,
            NotificationKind::Fail => oj_config::NotifyEvent::Fail,
            NotificationKind::Retry => oj_config::NotifyEvent::Retry,
        }
    }
}

/// One notification, ready for any backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable across retries and restarts: `msg_<job-id>_<kind>` (the webhook-id).
    pub id: String,
    pub kind: NotificationKind,
    pub job_id: JobId,
    pub job_name: String,
    /// The job name.
    pub title: String,
    /// The runbook's template for this event, or the default text.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: Timestamp,
}

impl Notification {
    /// The notification of `kind` for `job` as it is now.
    pub fn for_job(kind: NotificationKind, job: &Job, at: Timestamp) -> Notification {
        if kind == NotificationKind::Retry {
            return Notification::for_retry(job, at);
        }
        let templates = job.spec.notify.as_ref();
        let template = templates.and_then(|t| match kind {
            NotificationKind::Start => t.on_start.as_deref(),
            NotificationKind::Done => t.on_done.as_deref(),
            NotificationKind::Fail => t.on_fail.as_deref(),
            NotificationKind::Retry => None,
        });
        let error = match kind {
            NotificationKind::Fail => {
                Some(job.error.clone().unwrap_or_else(|| job.state.to_string()))
            }
            _ => None,
        };
        let message = match template {
            Some(t) => RuntimeVars {
                job_id: job.id.as_str(),
                name: &job.name,
                step: None,
                error: error.as_deref(),
            }
            .fill_truncated(t, MAX_MESSAGE_BYTES),
            None => match kind {
                NotificationKind::Start => format!("Job {} started", job.name),
                NotificationKind::Done => format!("Job {} done", job.name),
                NotificationKind::Fail | NotificationKind::Retry => format!(
                    "Job {} failed: {}",
                    job.name,
                    error.as_deref().unwrap_or_default()
                ),
            },
        };
        Notification {
            id: format!("msg_{}_{}", job.id, kind.as_str()),
            kind,
            job_id: job.id.clone(),
            job_name: job.name.clone(),
            title: job.name.clone(),
            message,
            error,
            created_at: at,
        }
    }
}

impl Notification {
    /// The `retry` notification of the step `job` waits to run again. A
    /// job may retry many times, so the id names the step and the attempt
    /// that failed: `msg_<job-id>_retry_<step-index>_<attempt>`.
    fn for_retry(job: &Job, at: Timestamp) -> Notification {
        let step = job.retrying_step();
        let status = step.and_then(|i| job.steps.get(i));
        let failed_runs = status.map_or(0, |s| s.attempts.len());
        let reason = status
            .and_then(|s| s.attempts.last())
            .and_then(|a| a.reason.clone());
        let total = step
            .and_then(|i| job.spec.step_retry(i))
            .map_or(failed_runs + 1, |r| r.attempts as usize);
        let step_name = status.map_or("?", |s| s.name.as_str());
        // Whole seconds: the wait is a doubling backoff, not a stopwatch.
        let wait_s = status
            .and_then(|s| s.retry_at)
            .map_or(0, |r| r.since(at).as_secs());
        let wait = humantime::format_duration(std::time::Duration::from_secs(wait_s));
        Notification {
            id: format!(
                "msg_{}_retry_{}_{failed_runs}",
                job.id,
                step.unwrap_or_default()
            ),
            kind: NotificationKind::Retry,
            job_id: job.id.clone(),
            job_name: job.name.clone(),
            title: job.name.clone(),
            message: format!(
                "Job {}: step {step_name} failed (attempt {failed_runs} of {total}): {}; retrying in {wait}",
                job.name,
                reason.as_deref().unwrap_or("no reason given"),
            ),
            error: reason,
            created_at: at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{JobSpec, NotifyTemplates, StepSpec};
    use std::time::{Duration, UNIX_EPOCH};

    fn job(notify: Option<NotifyTemplates>) -> Job {
        let spec = JobSpec {
            name: "build".into(),
            queue: "default".into(),
            dir: None,
            labels: Default::default(),
            env: Default::default(),
            notify: notify.map(Box::new),
            container: None,
            retry: None,
            priority: 0,
            after: Vec::new(),
            hold: false,
            not_before: None,
            steps: vec![StepSpec {
                name: "s".into(),
                run: "x".into(),
                timeout: None,
                container: None,
                retry: None,
                secrets: Default::default(),
            }],
            workspace: None,
            secrets: Default::default(),
        };
        Job::new(
            JobId::from_parts(1, 0),
            spec,
            Timestamp(UNIX_EPOCH + Duration::from_secs(1)),
        )
    }

    #[test]
    fn default_messages() {
        let mut j = job(None);
        let at = j.created_at;
        assert_eq!(
            Notification::for_job(NotificationKind::Start, &j, at).message,
            "Job build started"
        );
        assert_eq!(
            Notification::for_job(NotificationKind::Done, &j, at).message,
            "Job build done"
        );
        j.state = JobState::Failed;
        j.error = Some("step s exited with code 2".into());
        let n = Notification::for_job(NotificationKind::Fail, &j, at);
        assert_eq!(n.message, "Job build failed: step s exited with code 2");
        assert_eq!(n.id, format!("msg_{}_fail", j.id));
        assert_eq!(n.title, "build");
    }

    #[test]
    fn a_retry_notification_names_the_step_and_the_attempt() {
        let mut j = job(None);
        j.spec.retry = Some(crate::RetrySpec {
            attempts: 3,
            backoff: Duration::from_secs(10),
            on: vec![crate::RetryCause::Failed],
        });
        let at = Timestamp(UNIX_EPOCH + Duration::from_secs(5));
        j.state = JobState::Running;
        j.steps[0].push_attempt(at, Some(1), Some("step s exited with code 1".into()));
        j.steps[0].retry_at = Some(Timestamp(UNIX_EPOCH + Duration::from_secs(15)));
        let n = Notification::for_job(NotificationKind::Retry, &j, at);
        assert_eq!(n.id, format!("msg_{}_retry_0_1", j.id));
        assert_eq!(
            n.message,
            "Job build: step s failed (attempt 1 of 3): step s exited with code 1; retrying in 10s"
        );
        assert_eq!(n.error.as_deref(), Some("step s exited with code 1"));
    }

    #[test]
    fn templates_are_filled() {
        let mut j = job(Some(NotifyTemplates {
            on_fail: Some("${name} broke: ${error}".into()),
            ..Default::default()
        }));
        j.error = Some("boom".into());
        let n = Notification::for_job(NotificationKind::Fail, &j, j.created_at);
        assert_eq!(n.message, "build broke: boom");
    }
}
