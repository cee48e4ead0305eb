//! What a committed [`Event`] changed, as the live event stream
//! (`GET /v1/events`, SPEC §8.4) names it: a job, a queue, a schedule, or
//! the daemon's status. The daemon publishes, after each commit, the
//! current JSON of every object a turn's events touched; this module is the
//! one place that says which object an event touches.
//!
//! A new kind of event slots in with one arm in [`Event::topic`] (and,
//! when it deletes its object, one in [`Event::removes_topic`]); a new kind
//! of object with one [`Topic`] variant and one arm where the daemon
//! renders it (`crates/daemon/src/events.rs`, `object_json`).

use crate::events::Event;
use crate::job::JobId;

/// An object of the event stream. `kind()` is the SSE `event:` field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Job(JobId),
    Queue(String),
    Schedule(String),
    /// `GET /v1/status` (leader, draining): changes outside the WAL.
    Status,
}

impl Topic {
    /// The SSE `event:` name: `job`, `queue`, `schedule` or `status`.
    pub fn kind(&self) -> &'static str {
        match self {
            Topic::Job(_) => "job",
            Topic::Queue(_) => "queue",
            Topic::Schedule(_) => "schedule",
            Topic::Status => "status",
        }
    }

    /// The job this topic is, if it is one (what `?job=ID` filters on).
    pub fn job_id(&self) -> Option<&JobId> {
        match self {
            Topic::Job(id) => Some(id),
            _ => None,
        }
    }
}

impl Event {
    /// The object this event changes, as published on the event stream;
    /// `None` for bookkeeping nobody watches (notification delivery).
    pub fn topic(&self) -> Option<Topic> {
        match self {
            Event::JobSubmitted { job } => Some(Topic::Job(job.id.clone())),
            Event::JobStarted { id, .. }
            | Event::StepStarted { id, .. }
            | Event::StepFinished { id, .. }
            | Event::StepRetrying { id, .. }
            | Event::JobRemoved { id }
            | Event::JobReleased { id }
            | Event::JobFinished { id, .. } => Some(Topic::Job(id.clone())),
            Event::QueuePaused { queue } | Event::QueueResumed { queue } => {
                Some(Topic::Queue(queue.clone()))
            }
            Event::ScheduleDefined { schedule, .. }
            | Event::ScheduleSettled { schedule, .. }
            | Event::SchedulePaused { schedule, .. }
            | Event::ScheduleRemoved { schedule } => Some(Topic::Schedule(schedule.clone())),
            Event::NotificationQueued { .. } | Event::NotificationAcked { .. } => None,
        }
    }

    /// Whether this event deletes its topic's object (the stream then
    /// carries the object's last JSON with `"removed": true`, so a reader
    /// waiting for a job's end still learns it).
    pub fn removes_topic(&self) -> bool {
        matches!(self, Event::JobRemoved { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobState, Timestamp};

    #[test]
    fn job_events_touch_their_job_and_notifications_touch_nothing() {
        let id = JobId::from_parts(7, 1);
        let at = Timestamp(std::time::UNIX_EPOCH);
        let started = Event::JobStarted { id: id.clone(), at };
        assert_eq!(started.topic(), Some(Topic::Job(id.clone())));
        assert_eq!(started.topic().unwrap().kind(), "job");
        assert!(!started.removes_topic());
        let ended = Event::JobFinished {
            id: id.clone(),
            at,
            state: JobState::Done,
            error: None,
        };
        assert_eq!(ended.topic().unwrap().job_id(), Some(&id));
        let removed = Event::JobRemoved { id: id.clone() };
        assert!(removed.removes_topic());
        assert_eq!(removed.topic(), Some(Topic::Job(id)));
        let acked = Event::NotificationAcked { id: "n1".into() };
        assert_eq!(acked.topic(), None);
    }

    #[test]
    fn every_topic_has_its_stream_name() {
        assert_eq!(Topic::Queue("q".into()).kind(), "queue");
        assert_eq!(Topic::Schedule("s".into()).kind(), "schedule");
        assert_eq!(Topic::Status.kind(), "status");
        assert_eq!(Topic::Status.job_id(), None);
    }
}
