//! What the daemon remembers about each schedule, durably: the fire times
//! already settled (`submitted`, `skipped`, `missed`), pauses, and the
//! definition they were settled under. Changed only by the schedule events
//! of the WAL (and by a `JobSubmitted` whose job carries `schedule`, so a
//! fire and its job are one record), through [`State::apply`].
//!
//! [`State::apply`]: crate::State::apply

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::Event;
use crate::job::{Job, JobId, Timestamp};

/// The schedule fire that submitted a job (`"schedule"` of a job in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSchedule {
    /// The schedule's name (`schedules.<name>`).
    pub name: String,
    /// The fire time; for `oj schedule run`, when it was asked.
    pub fire_time: Timestamp,
    /// Fired by `oj schedule run`, not by the clock.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
}

/// How a fire time was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FireResult {
    /// A job was submitted for it (in the same WAL record).
    Submitted,
    /// The schedule's last job was still queued or running (`overlap = "skip"`).
    Skipped,
    /// Downtime beyond the catch-up rule (or a refused job).
    Missed,
}

impl FireResult {
    pub fn as_str(self) -> &'static str {
        match self {
            FireResult::Submitted => "submitted",
            FireResult::Skipped => "skipped",
            FireResult::Missed => "missed",
        }
    }
}

/// One schedule's durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub name: String,
    /// The definition fires are settled under; a change of `cron` or
    /// `timezone` (or `enabled` turning on) moves `settled_until` to then.
    pub cron: String,
    pub timezone: String,
    pub enabled: bool,
    /// Every fire time at or before this is settled, or is not caught up
    /// (it fell before the schedule existed, changed, was resumed or enabled).
    pub settled_until: Timestamp,
    #[serde(default)]
    pub paused: bool,
    /// The newest settled fire time and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fire: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<FireResult>,
    /// The newest job this schedule submitted (by the clock or `run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<JobId>,
}

/// Why a schedule event does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event for unknown schedule {0}")]
pub struct UnknownSchedule(pub String);

/// The schedule records, by name.
pub type ScheduleBook = BTreeMap<String, ScheduleRecord>;

/// Applies the schedule part of `event` (a no-op for other events). Checks
/// before it changes anything, so an error leaves `book` as it was.
pub fn apply(book: &mut ScheduleBook, event: &Event) -> Result<(), UnknownSchedule> {
    match event {
        Event::ScheduleDefined {
            schedule,
            cron,
            timezone,
            enabled,
            at,
        } => match book.get_mut(schedule) {
            Some(r) => {
                let moved = r.cron != *cron || r.timezone != *timezone || (*enabled && !r.enabled);
                if moved {
                    r.settled_until = r.settled_until.max(*at);
                }
                r.cron = cron.clone();
                r.timezone = timezone.clone();
                r.enabled = *enabled;
            }
            None => {
                book.insert(
                    schedule.clone(),
                    ScheduleRecord {
                        name: schedule.clone(),
                        cron: cron.clone(),
                        timezone: timezone.clone(),
                        enabled: *enabled,
                        settled_until: *at,
                        paused: false,
                        last_fire: None,
                        last_result: None,
                        last_job: None,
                    },
                );
            }
        },
        Event::ScheduleSettled {
            schedule,
            fire_time,
            result,
            ..
        } => {
            let r = book
                .get_mut(schedule)
                .ok_or_else(|| UnknownSchedule(schedule.clone()))?;
            r.settled_until = r.settled_until.max(*fire_time);
            r.last_fire = Some(*fire_time);
            r.last_result = Some(*result);
        }
        Event::SchedulePaused {
            schedule,
            paused,
            at,
        } => {
            let r = book
                .get_mut(schedule)
                .ok_or_else(|| UnknownSchedule(schedule.clone()))?;
            if r.paused && !*paused {
                // Fires that fell while paused are not caught up.
                r.settled_until = r.settled_until.max(*at);
            }
            r.paused = *paused;
        }
        Event::ScheduleRemoved { schedule } => {
            book.remove(schedule);
        }
        Event::JobSubmitted { job } => submitted(book, job),
        _ => {}
    }
    Ok(())
}

/// A job of a schedule: the fire it settles (unless run by hand) and the
/// schedule's last job. A job of a schedule no longer known changes nothing.
fn submitted(book: &mut ScheduleBook, job: &Job) {
    let Some(s) = &job.schedule else { return };
    let Some(r) = book.get_mut(&s.name) else {
        return;
    };
    r.last_job = Some(job.id.clone());
    if !s.manual {
        r.settled_until = r.settled_until.max(s.fire_time);
        r.last_fire = Some(s.fire_time);
        r.last_result = Some(FireResult::Submitted);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::{JobSpec, State};

    fn at(s: u64) -> Timestamp {
        Timestamp(UNIX_EPOCH + Duration::from_secs(s))
    }

    fn define(cron: &str, enabled: bool, t: u64) -> Event {
        Event::ScheduleDefined {
            schedule: "nightly".into(),
            cron: cron.into(),
            timezone: "UTC".into(),
            enabled,
            at: at(t),
        }
    }

    fn job(n: u64, fire: u64, manual: bool) -> Event {
        let spec: JobSpec =
            serde_json::from_str(r#"{"name":"n","steps":[{"name":"s","run":"true"}]}"#).unwrap();
        let mut job = Job::new(JobId::from_parts(n, 1), spec, at(fire));
        job.schedule = Some(JobSchedule {
            name: "nightly".into(),
            fire_time: at(fire),
            manual,
        });
        Event::JobSubmitted { job: Box::new(job) }
    }

    fn settled(state: &State) -> Timestamp {
        state.schedule("nightly").unwrap().settled_until
    }

    #[test]
    fn a_fire_and_its_job_are_one_event_and_undo_together() {
        let mut state = State::new();
        state.apply(&define("0 3 * * *", true, 100)).unwrap();
        assert_eq!(settled(&state), at(100));
        let before = state.clone();
        let undo = state.apply_undoable(&job(1, 200, false)).unwrap();
        let r = state.schedule("nightly").unwrap();
        assert_eq!(
            (r.settled_until, r.last_result, r.last_job.clone()),
            (
                at(200),
                Some(FireResult::Submitted),
                Some(JobId::from_parts(1, 1))
            )
        );
        assert_eq!(state.counts().queued, 1);
        state.undo(undo);
        assert_eq!(state, before);
        // a manual run records its job but settles no fire time
        state.apply(&job(2, 300, true)).unwrap();
        assert_eq!(settled(&state), at(100));
        assert!(state.schedule("nightly").unwrap().last_job.is_some());
    }

    #[test]
    fn pauses_changes_and_enabling_drop_the_fires_before_them() {
        let mut state = State::new();
        state.apply(&define("0 3 * * *", true, 100)).unwrap();
        let pause = |paused, t| Event::SchedulePaused {
            schedule: "nightly".into(),
            paused,
            at: at(t),
        };
        state.apply(&pause(true, 150)).unwrap();
        assert_eq!(settled(&state), at(100), "pausing settles nothing");
        state.apply(&pause(false, 400)).unwrap();
        assert_eq!(
            settled(&state),
            at(400),
            "fires while paused are not caught up"
        );
        state.apply(&define("0 3 * * *", true, 500)).unwrap();
        assert_eq!(
            settled(&state),
            at(400),
            "an unchanged definition moves nothing"
        );
        state.apply(&define("0 4 * * *", true, 600)).unwrap();
        assert_eq!(settled(&state), at(600), "a new cron starts afresh");
        state.apply(&define("0 4 * * *", false, 700)).unwrap();
        state.apply(&define("0 4 * * *", true, 800)).unwrap();
        assert_eq!(settled(&state), at(800), "enabling starts afresh");
        let undo = state
            .apply_undoable(&Event::ScheduleSettled {
                schedule: "nightly".into(),
                fire_time: at(900),
                result: FireResult::Skipped,
                missed_before: 2,
            })
            .unwrap();
        assert_eq!(settled(&state), at(900));
        state.undo(undo);
        assert_eq!(settled(&state), at(800));
        // the records survive a snapshot
        assert_eq!(State::from_snapshot(state.snapshot()), state);
        state
            .apply(&Event::ScheduleRemoved {
                schedule: "nightly".into(),
            })
            .unwrap();
        assert!(state.schedule("nightly").is_none());
        assert!(state.apply(&pause(true, 1000)).is_err());
    }
}
