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
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Start => "start",
            NotificationKind::Done => "done",
            NotificationKind::Fail => "fail",
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
        let templates = job.spec.notify.as_ref();
        let template = templates.and_then(|t| match kind {
            NotificationKind::Start => t.on_start.as_deref(),
            NotificationKind::Done => t.on_done.as_deref(),
            NotificationKind::Fail => t.on_fail.as_deref(),
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
                NotificationKind::Fail => format!(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{JobSpec, NotifyTemplates, StepSpec};
    use std::time::{Duration, UNIX_EPOCH};

    fn job(notify: Option<NotifyTemplates>) -> Job {
        let spec = JobSpec {
            name: "build".into(),
            env: Default::default(),
            notify,
            container: None,
            steps: vec![StepSpec {
                name: "s".into(),
                run: "x".into(),
                timeout: None,
                container: None,
            }],
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
