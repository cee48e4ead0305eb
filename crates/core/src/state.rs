//! The daemon's state as a pure value: jobs and pending notifications,
//! changed only by [`State::apply`] of an [`Event`], with the queries the
//! API needs and the scheduling decision (which queued jobs start next).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::events::Event;
use crate::job::{Job, JobId, JobMap, JobState, StepStatus, Timestamp};
use crate::job_filter::{JobFilter, JobIndex};
use crate::notification::Notification;
use crate::queue::Waiting;
use crate::schedule_book::{self, ScheduleBook, ScheduleRecord};
use crate::scheduler::{Gate, Index, Limits};

/// Why an event does not fit the state (a corrupt or reordered log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("event for unknown job {0}")]
    UnknownJob(JobId),
    #[error("job {0} is submitted twice")]
    DuplicateJob(JobId),
    #[error("job {id}: step index {step} is out of range")]
    UnknownStep { id: JobId, step: usize },
    #[error("job {id} is {state}; only a finished job can be removed")]
    NotFinished { id: JobId, state: JobState },
    #[error("job {0} is named in the `after` of a job that has not started")]
    Needed(JobId),
    #[error("job {0} is not held")]
    NotHeld(JobId),
    #[error(transparent)]
    UnknownSchedule(#[from] schedule_book::UnknownSchedule),
    #[error("job {id}: cannot go from {from} to {to}")]
    BadTransition {
        id: JobId,
        from: JobState,
        to: JobState,
    },
}

/// Number of jobs per state (the `jobs` object of `GET /v1/status`); a
/// state a daemon does not report reads as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobCounts {
    pub queued: usize,
    pub running: usize,
    pub done: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub interrupted: usize,
}

impl JobCounts {
    pub fn get(&self, s: JobState) -> usize {
        match s {
            JobState::Queued => self.queued,
            JobState::Running => self.running,
            JobState::Done => self.done,
            JobState::Failed => self.failed,
            JobState::Cancelled => self.cancelled,
            JobState::Interrupted => self.interrupted,
        }
    }

    fn slot(&mut self, s: JobState) -> &mut usize {
        match s {
            JobState::Queued => &mut self.queued,
            JobState::Running => &mut self.running,
            JobState::Done => &mut self.done,
            JobState::Failed => &mut self.failed,
            JobState::Cancelled => &mut self.cancelled,
            JobState::Interrupted => &mut self.interrupted,
        }
    }
}

/// Everything the daemon knows, rebuilt from snapshot + WAL on start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    jobs: JobMap,
    notifications: BTreeMap<String, Notification>,
    // Indexes kept in step with `jobs` so scheduling does not scan history.
    queued: BTreeSet<JobId>,
    running: BTreeSet<JobId>,
    counts: JobCounts,
    /// Queues, priorities, dependencies, holds (SPEC §8.2).
    sched: Index,
    /// Labels, queues, names and idempotency keys (list filters, SPEC §8.1).
    filters: JobIndex,
    schedules: ScheduleBook,
}

/// What one applied event changed, so that [`State::undo`] can put it back.
/// The daemon applies a turn's events before their WAL write; when that
/// write fails it undoes them, newest first, and memory again equals disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Undo(UndoKind);

#[derive(Debug, Clone, PartialEq)]
enum UndoKind {
    /// The event added this job.
    Inserted(JobId),
    /// The event removed this job; here it is.
    Removed(Box<Job>),
    /// The event changed this job's progress (never its spec).
    Progress(JobId, Progress),
    /// The event set or removed this notification; here is what was there.
    Notification(String, Option<Notification>),
    /// The event released this held job.
    Released(JobId),
    /// The event paused or resumed this queue; whether it was paused.
    Paused(String, bool),
    /// The event changed this schedule's record; here is what was there
    /// (and the job it added, for a scheduled job's submission).
    Schedule(String, Option<Box<ScheduleRecord>>, Option<JobId>),
}

/// The part of a job that events after its submission change.
#[derive(Debug, Clone, PartialEq)]
struct Progress {
    state: JobState,
    started_at: Option<Timestamp>,
    ended_at: Option<Timestamp>,
    error: Option<String>,
    steps: Vec<StepStatus>,
}

impl Progress {
    fn of(job: &Job) -> Progress {
        Progress {
            state: job.state,
            started_at: job.started_at,
            ended_at: job.ended_at,
            error: job.error.clone(),
            steps: job.steps.clone(),
        }
    }
}

/// The serialized form of a [`State`] (the snapshot file's content).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub jobs: Vec<Job>,
    #[serde(default)]
    pub notifications: Vec<Notification>,
    /// Paused queues (SPEC §8.2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paused_queues: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleRecord>,
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Rebuilds a state from a snapshot.
    pub fn from_snapshot(snapshot: Snapshot) -> State {
        let mut state = State::new();
        // Built in one go, the map's nodes are full; inserted one by one
        // in id order they would stay half empty.
        let jobs: JobMap = snapshot
            .jobs
            .into_iter()
            .map(|job| (job.id.clone(), Box::new(job)))
            .collect();
        for job in jobs.values() {
            state.count(&job.id, job.state);
            state.sched.add(job, &jobs);
            state.filters.add(job);
        }
        state.jobs = jobs;
        for n in snapshot.notifications {
            state.notifications.insert(n.id.clone(), n);
        }
        for q in snapshot.paused_queues {
            state.sched.set_paused(&q, true);
        }
        for r in snapshot.schedules {
            state.schedules.insert(r.name.clone(), r);
        }
        state
    }

    /// The state as a snapshot value.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            jobs: self.jobs.values().map(|j| (**j).clone()).collect(),
            notifications: self.notifications.values().cloned().collect(),
            paused_queues: self.sched.paused().cloned().collect(),
            schedules: self.schedules.values().cloned().collect(),
        }
    }

    fn insert(&mut self, job: Box<Job>) {
        self.count(&job.id, job.state);
        self.filters.add(&job);
        let id = job.id.clone();
        self.jobs.insert(id.clone(), job);
        self.sched_add(&id);
    }

    /// Puts job `id` (as it is now) into the scheduler's index, and looks
    /// again at the jobs waiting for it.
    fn sched_add(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        self.sched.add(job, &self.jobs);
        let dependents: Vec<JobId> = self.sched.dependents_of(id).cloned().collect();
        for d in dependents {
            if let Some(dj) = self.jobs.get(&d) {
                self.sched.remove(dj);
                self.sched.add(dj, &self.jobs);
            }
        }
    }

    /// Takes job `id` (as it is now) out of the scheduler's index.
    fn sched_remove(&mut self, id: &JobId) {
        if let Some(job) = self.jobs.get(id) {
            self.sched.remove(job);
        }
    }

    /// Counts a job that enters the state, and lists it when it waits or runs.
    fn count(&mut self, id: &JobId, state: JobState) {
        *self.counts.slot(state) += 1;
        match state {
            JobState::Queued => {
                self.queued.insert(id.clone());
            }
            JobState::Running => {
                self.running.insert(id.clone());
            }
            _ => {}
        }
    }

    fn remove(&mut self, id: &JobId) {
        self.sched_remove(id);
        if let Some(job) = self.jobs.remove(id) {
            self.filters.remove(&job);
            *self.counts.slot(job.state) -= 1;
            self.queued.remove(id);
            self.running.remove(id);
        }
    }

    fn set_state_unindexed(&mut self, id: &JobId, to: JobState) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let from = job.state;
        job.state = to;
        *self.counts.slot(from) -= 1;
        *self.counts.slot(to) += 1;
        match from {
            JobState::Queued => {
                self.queued.remove(id);
            }
            JobState::Running => {
                self.running.remove(id);
            }
            _ => {}
        }
        match to {
            JobState::Queued => {
                self.queued.insert(id.clone());
            }
            JobState::Running => {
                self.running.insert(id.clone());
            }
            _ => {}
        }
    }

    /// Applies one event. An error leaves the state unchanged.
    pub fn apply(&mut self, event: &Event) -> Result<(), ApplyError> {
        // An event about a job already in the state changes what the
        // scheduler's index says of it: take it out, then put it back.
        let changed = match event {
            Event::JobSubmitted { .. } | Event::JobRemoved { .. } => None,
            e => e.job_id().cloned(),
        };
        if let Some(id) = &changed {
            self.sched_remove(id);
        }
        let result = self.apply_unindexed(event);
        if let Some(id) = &changed {
            self.sched_add(id);
        }
        result
    }

    fn apply_unindexed(&mut self, event: &Event) -> Result<(), ApplyError> {
        if let Event::JobSubmitted { job } = event
            && self.jobs.contains_key(&job.id)
        {
            return Err(ApplyError::DuplicateJob(job.id.clone()));
        }
        schedule_book::apply(&mut self.schedules, event)?;
        match event {
            Event::JobSubmitted { job } => {
                if self.jobs.contains_key(&job.id) {
                    return Err(ApplyError::DuplicateJob(job.id.clone()));
                }
                self.insert(job.clone());
            }
            Event::JobStarted { id, at } => {
                let job = self.job_mut(id)?;
                check(id, job.state, JobState::Running, &[JobState::Queued])?;
                job.started_at = Some(*at);
                self.set_state_unindexed(id, JobState::Running);
            }
            Event::StepStarted { id, step, at, pod } => {
                let job = self.job_mut(id)?;
                check(id, job.state, JobState::Running, &[JobState::Running])?;
                let s = job.steps.get_mut(*step).ok_or(ApplyError::UnknownStep {
                    id: id.clone(),
                    step: *step,
                })?;
                s.state = JobState::Running;
                s.started_at = Some(*at);
                s.pod = pod.clone();
                s.retry_at = None;
            }
            Event::StepFinished {
                id,
                step,
                at,
                state,
                exit_code,
                reason,
            } => {
                let job = self.job_mut(id)?;
                check(id, job.state, *state, &[JobState::Running])?;
                let s = job.steps.get_mut(*step).ok_or(ApplyError::UnknownStep {
                    id: id.clone(),
                    step: *step,
                })?;
                s.state = *state;
                s.ended_at = Some(*at);
                s.exit_code = *exit_code;
                s.retry_at = None;
                s.push_attempt(*at, *exit_code, reason.clone());
            }
            Event::StepRetrying {
                id,
                step,
                at,
                exit_code,
                reason,
                retry_at,
            } => {
                let job = self.job_mut(id)?;
                check(id, job.state, JobState::Running, &[JobState::Running])?;
                let s = job.steps.get_mut(*step).ok_or(ApplyError::UnknownStep {
                    id: id.clone(),
                    step: *step,
                })?;
                if s.state != JobState::Running {
                    return Err(ApplyError::BadTransition {
                        id: id.clone(),
                        from: s.state,
                        to: JobState::Queued,
                    });
                }
                s.push_attempt(*at, *exit_code, Some(reason.clone()));
                // The step is queued again; what it shows is its next run.
                s.state = JobState::Queued;
                s.exit_code = None;
                s.ended_at = None;
                s.pod = None;
                s.retry_at = Some(*retry_at);
            }
            Event::JobRemoved { id } => {
                let job = self
                    .jobs
                    .get(id)
                    .ok_or_else(|| ApplyError::UnknownJob(id.clone()))?;
                if !job.state.is_terminal() {
                    return Err(ApplyError::NotFinished {
                        id: id.clone(),
                        state: job.state,
                    });
                }
                if self.sched.is_needed(id) {
                    return Err(ApplyError::Needed(id.clone()));
                }
                self.remove(id);
            }
            Event::JobFinished {
                id,
                at,
                state,
                error,
            } => {
                let job = self.job_mut(id)?;
                if !state.is_terminal() {
                    return Err(ApplyError::BadTransition {
                        id: id.clone(),
                        from: job.state,
                        to: *state,
                    });
                }
                check(
                    id,
                    job.state,
                    *state,
                    &[JobState::Queued, JobState::Running],
                )?;
                job.ended_at = Some(*at);
                job.error = error.clone();
                for s in &mut job.steps {
                    // A step still marked running ends the way the job did,
                    // and so does a step waiting for a retry; a cancelled
                    // job's unstarted steps are cancelled too.
                    let was_running = s.state == JobState::Running;
                    if was_running
                        || s.waits_for_retry()
                        || (s.state == JobState::Queued && *state == JobState::Cancelled)
                    {
                        s.state = *state;
                        if was_running {
                            s.ended_at = Some(*at);
                            s.push_attempt(*at, None, error.clone());
                        }
                    }
                    s.retry_at = None;
                }
                self.set_state_unindexed(id, *state);
            }
            Event::NotificationQueued { notification } => {
                self.notifications
                    .insert(notification.id.clone(), (**notification).clone());
            }
            Event::NotificationAcked { id } => {
                self.notifications.remove(id);
            }
            Event::JobReleased { id } => {
                let job = self.job_mut(id)?;
                if job.state != JobState::Queued || !job.hold {
                    return Err(ApplyError::NotHeld(id.clone()));
                }
                job.hold = false;
            }
            Event::QueuePaused { queue } => {
                self.sched.set_paused(queue, true);
            }
            Event::QueueResumed { queue } => {
                self.sched.set_paused(queue, false);
            }
            Event::ScheduleDefined { .. }
            | Event::ScheduleSettled { .. }
            | Event::SchedulePaused { .. }
            | Event::ScheduleRemoved { .. } => {}
        }
        Ok(())
    }

    /// Applies one event like [`State::apply`] and returns how to undo it.
    pub fn apply_undoable(&mut self, event: &Event) -> Result<Undo, ApplyError> {
        let undo = match event {
            Event::JobSubmitted { job } => match &job.schedule {
                Some(s) => UndoKind::Schedule(
                    s.name.clone(),
                    self.schedules.get(&s.name).cloned().map(Box::new),
                    Some(job.id.clone()),
                ),
                None => UndoKind::Inserted(job.id.clone()),
            },
            Event::NotificationQueued { notification } => UndoKind::Notification(
                notification.id.clone(),
                self.notifications.get(&notification.id).cloned(),
            ),
            Event::NotificationAcked { id } => {
                UndoKind::Notification(id.clone(), self.notifications.get(id).cloned())
            }
            Event::JobRemoved { id } => {
                let job = self
                    .jobs
                    .get(id)
                    .ok_or_else(|| ApplyError::UnknownJob(id.clone()))?;
                UndoKind::Removed(job.clone())
            }
            Event::JobReleased { id } => UndoKind::Released(id.clone()),
            Event::QueuePaused { queue } | Event::QueueResumed { queue } => {
                UndoKind::Paused(queue.clone(), self.sched.is_paused(queue))
            }
            Event::ScheduleDefined { schedule, .. }
            | Event::ScheduleSettled { schedule, .. }
            | Event::SchedulePaused { schedule, .. }
            | Event::ScheduleRemoved { schedule } => UndoKind::Schedule(
                schedule.clone(),
                self.schedules.get(schedule).cloned().map(Box::new),
                None,
            ),
            Event::JobStarted { id, .. }
            | Event::StepStarted { id, .. }
            | Event::StepFinished { id, .. }
            | Event::StepRetrying { id, .. }
            | Event::JobFinished { id, .. } => {
                let job = self
                    .jobs
                    .get(id)
                    .ok_or_else(|| ApplyError::UnknownJob(id.clone()))?;
                UndoKind::Progress(id.clone(), Progress::of(job))
            }
        };
        self.apply(event)?;
        Ok(Undo(undo))
    }

    /// Puts back what [`State::apply_undoable`] changed. Undo a sequence of
    /// events newest first.
    pub fn undo(&mut self, undo: Undo) {
        match undo.0 {
            UndoKind::Inserted(id) => self.remove(&id),
            UndoKind::Removed(job) => self.insert(job),
            UndoKind::Progress(id, p) => {
                self.sched_remove(&id);
                self.set_state_unindexed(&id, p.state);
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.started_at = p.started_at;
                    job.ended_at = p.ended_at;
                    job.error = p.error;
                    job.steps = p.steps;
                }
                self.sched_add(&id);
            }
            UndoKind::Released(id) => {
                self.sched_remove(&id);
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.hold = true;
                }
                self.sched_add(&id);
            }
            UndoKind::Paused(queue, was) => {
                self.sched.set_paused(&queue, was);
            }
            UndoKind::Schedule(name, before, job) => {
                if let Some(id) = job {
                    self.remove(&id);
                }
                match before {
                    Some(r) => {
                        self.schedules.insert(name, *r);
                    }
                    None => {
                        self.schedules.remove(&name);
                    }
                }
            }
            UndoKind::Notification(id, before) => match before {
                Some(n) => {
                    self.notifications.insert(id, n);
                }
                None => {
                    self.notifications.remove(&id);
                }
            },
        }
    }

    fn job_mut(&mut self, id: &JobId) -> Result<&mut Job, ApplyError> {
        self.jobs
            .get_mut(id)
            .map(|j| &mut **j)
            .ok_or_else(|| ApplyError::UnknownJob(id.clone()))
    }

    pub fn job(&self, id: &JobId) -> Option<&Job> {
        self.jobs.get(id).map(|j| &**j)
    }

    /// All jobs, oldest first.
    pub fn jobs(&self) -> impl DoubleEndedIterator<Item = &Job> {
        self.jobs.values().map(|j| &**j)
    }

    /// Pending notifications, by id.
    pub fn notifications(&self) -> impl Iterator<Item = &Notification> {
        self.notifications.values()
    }

    /// Jobs newest first, optionally only those in `status`, at most `limit`.
    pub fn list(&self, status: Option<JobState>, limit: Option<usize>) -> Vec<&Job> {
        self.jobs
            .values()
            .rev()
            .map(|j| &**j)
            .filter(|j| status.is_none_or(|s| j.state == s))
            .take(limit.unwrap_or(usize::MAX))
            .collect()
    }

    /// One page of jobs, newest first: those older than `after` (every job
    /// when `None`), optionally only those in `status`, at most `limit`; and
    /// whether more match after the page.
    pub fn page(
        &self,
        status: Option<JobState>,
        after: Option<&JobId>,
        limit: usize,
    ) -> (Vec<&Job>, bool) {
        let older = match after {
            Some(id) => self.jobs.range(..id.clone()),
            None => self.jobs.range(..),
        };
        let mut matching = older
            .rev()
            .map(|(_, j)| &**j)
            .filter(|j| status.is_none_or(|s| j.state == s));
        let page: Vec<&Job> = matching.by_ref().take(limit).collect();
        let more = matching.next().is_some();
        (page, more)
    }

    /// One page of the jobs matching `filter`, newest first, older than
    /// `after`, from the filter index (see [`JobIndex::page`]).
    pub fn page_filtered(
        &self,
        filter: &JobFilter,
        after: Option<&JobId>,
        limit: usize,
    ) -> (Vec<&Job>, bool) {
        if filter.is_plain() {
            return self.page(filter.status, after, limit);
        }
        self.filters.page(&self.jobs, filter, after, limit)
    }

    /// The kept job submitted with this idempotency key.
    pub fn idempotency_holder(&self, key: &str) -> Option<&Job> {
        self.filters
            .key_holder(key)
            .and_then(|id| self.jobs.get(id))
            .map(|j| &**j)
    }

    pub fn counts(&self) -> JobCounts {
        self.counts
    }

    /// One schedule's durable record.
    pub fn schedule(&self, name: &str) -> Option<&ScheduleRecord> {
        self.schedules.get(name)
    }

    /// Every schedule's record, by name.
    pub fn schedules(&self) -> impl Iterator<Item = &ScheduleRecord> {
        self.schedules.values()
    }

    /// Ids of running jobs.
    pub fn running(&self) -> impl Iterator<Item = &JobId> {
        self.running.iter()
    }

    /// Ids of queued jobs, first submitted first.
    pub fn queued(&self) -> impl Iterator<Item = &JobId> {
        self.queued.iter()
    }

    /// The newest job id (to seed the id generator after a restart).
    pub fn newest_id(&self) -> Option<&JobId> {
        self.jobs.keys().next_back()
    }

    /// The queued jobs to start now so that at most `max_concurrent` run
    /// (one queue, no per-queue limits).
    pub fn next_to_start(&self, max_concurrent: usize) -> Vec<JobId> {
        self.sched.pick(&Limits::total(max_concurrent))
    }

    /// The queued jobs to start now within `limits`, best first (SPEC §8.2).
    pub fn pick(&self, limits: &Limits) -> Vec<JobId> {
        self.sched.pick(limits)
    }

    /// The scheduler's index (queue counts, pauses, dependents).
    pub fn scheduler(&self) -> &Index {
        &self.sched
    }

    /// Tells the scheduler the time: jobs whose `not_before` has come may start.
    pub fn advance_clock(&mut self, now: Timestamp) {
        self.sched.advance_clock(now, &self.jobs);
    }

    /// Why queued job `id` waits (`None` when it is not queued).
    pub fn waiting(&self, id: &JobId, limits: &Limits, gate: Gate) -> Option<Waiting> {
        self.sched
            .waiting(self.jobs.get(id)?, &self.jobs, limits, gate)
    }

    /// `id` with its `waiting` filled in when it is queued.
    pub fn shown(&self, id: &JobId, limits: &Limits, gate: Gate) -> Option<Job> {
        let mut job = (**self.jobs.get(id)?).clone();
        job.waiting = self.waiting(id, limits, gate);
        Some(job)
    }

    /// The `done` dependency of queued job `id` that ended otherwise, if any.
    pub fn doomed(&self, id: &JobId) -> Option<(JobId, JobState)> {
        Index::doomed_by(self.jobs.get(id)?, &self.jobs)
    }

    /// Events that end every job left `running` by a process that died:
    /// such jobs become `interrupted` (their shell steps are gone).
    pub fn recover(&self, at: Timestamp) -> Vec<Event> {
        self.running
            .iter()
            // A job waiting for a step's retry has no process to lose.
            .filter(|id| {
                self.jobs
                    .get(*id)
                    .is_none_or(|j| j.retrying_step().is_none())
            })
            .map(|id| Event::JobFinished {
                id: id.clone(),
                at,
                state: JobState::Interrupted,
                error: Some("the daemon stopped while the job was running".into()),
            })
            .collect()
    }

    /// Notifications queued and not yet acknowledged, oldest first.
    pub fn pending_notifications(&self) -> Vec<Notification> {
        let mut v: Vec<Notification> = self.notifications.values().cloned().collect();
        v.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        v
    }
}

fn check(
    id: &JobId,
    from: JobState,
    to: JobState,
    allowed_from: &[JobState],
) -> Result<(), ApplyError> {
    if allowed_from.contains(&from) {
        Ok(())
    } else {
        Err(ApplyError::BadTransition {
            id: id.clone(),
            from,
            to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::NotificationKind;
    use crate::spec::{JobSpec, StepSpec};
    use std::time::{Duration, UNIX_EPOCH};

    fn t(s: u64) -> Timestamp {
        Timestamp(UNIX_EPOCH + Duration::from_secs(1_795_000_000 + s))
    }

    fn spec(steps: &[&str]) -> JobSpec {
        JobSpec {
            name: "j".into(),
            queue: "default".into(),
            dir: None,
            labels: Default::default(),
            env: Default::default(),
            notify: None,
            container: None,
            retry: None,
            priority: 0,
            after: Vec::new(),
            hold: false,
            not_before: None,
            steps: steps
                .iter()
                .map(|s| StepSpec {
                    name: s.to_string(),
                    run: "true".into(),
                    timeout: None,
                    container: None,
                    retry: None,
                    secrets: Default::default(),
                })
                .collect(),
            workspace: None,
            secrets: Default::default(),
        }
    }

    fn submit(state: &mut State, n: u64, steps: &[&str]) -> JobId {
        let id = JobId::from_parts(1_795_000_000_000 + n, 0);
        let job = Job::new(id.clone(), spec(steps), t(n));
        state
            .apply(&Event::JobSubmitted { job: Box::new(job) })
            .unwrap();
        id
    }

    #[test]
    fn fifo_scheduling_respects_the_limit() {
        let mut s = State::new();
        let a = submit(&mut s, 1, &["x"]);
        let b = submit(&mut s, 2, &["x"]);
        let c = submit(&mut s, 3, &["x"]);
        assert_eq!(s.next_to_start(2), vec![a.clone(), b.clone()]);
        s.apply(&Event::JobStarted {
            id: a.clone(),
            at: t(4),
        })
        .unwrap();
        assert_eq!(s.next_to_start(1), Vec::<JobId>::new());
        assert_eq!(s.next_to_start(2), vec![b.clone()]);
        s.apply(&Event::JobFinished {
            id: a,
            at: t(5),
            state: JobState::Done,
            error: None,
        })
        .unwrap();
        assert_eq!(s.next_to_start(1), vec![b]);
        assert_eq!(s.counts().done, 1);
        assert_eq!(s.counts().queued, 2);
        assert_eq!(s.list(None, Some(1))[0].id, c);
    }

    #[test]
    fn a_full_run_records_steps_and_times() {
        let mut s = State::new();
        let id = submit(&mut s, 1, &["a", "b"]);
        s.apply(&Event::JobStarted {
            id: id.clone(),
            at: t(2),
        })
        .unwrap();
        s.apply(&Event::StepStarted {
            id: id.clone(),
            step: 0,
            at: t(2),
            pod: None,
        })
        .unwrap();
        s.apply(&Event::StepFinished {
            id: id.clone(),
            step: 0,
            at: t(3),
            state: JobState::Failed,
            exit_code: Some(3),
            reason: Some("step a exited with code 3".into()),
        })
        .unwrap();
        s.apply(&Event::JobFinished {
            id: id.clone(),
            at: t(3),
            state: JobState::Failed,
            error: Some("step a exited with code 3".into()),
        })
        .unwrap();
        let job = s.job(&id).unwrap();
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.steps[0].exit_code, Some(3));
        assert_eq!(job.steps[1].state, JobState::Queued);
        assert_eq!(job.ended_at, Some(t(3)));
        // Nothing happens to a finished job.
        assert!(s.apply(&Event::JobStarted { id, at: t(4) }).is_err());
    }

    #[test]
    fn cancel_of_a_queued_job_cancels_its_steps() {
        let mut s = State::new();
        let id = submit(&mut s, 1, &["a", "b"]);
        s.apply(&Event::JobFinished {
            id: id.clone(),
            at: t(2),
            state: JobState::Cancelled,
            error: None,
        })
        .unwrap();
        let job = s.job(&id).unwrap();
        assert!(job.steps.iter().all(|st| st.state == JobState::Cancelled));
        assert!(s.next_to_start(4).is_empty());
    }

    #[test]
    fn recovery_interrupts_running_jobs_and_keeps_queued_ones() {
        let mut s = State::new();
        let a = submit(&mut s, 1, &["a"]);
        let b = submit(&mut s, 2, &["a"]);
        s.apply(&Event::JobStarted {
            id: a.clone(),
            at: t(3),
        })
        .unwrap();
        s.apply(&Event::StepStarted {
            id: a.clone(),
            step: 0,
            at: t(3),
            pod: None,
        })
        .unwrap();
        let restored = State::from_snapshot(s.snapshot());
        assert_eq!(restored, s);
        let mut r = restored;
        for e in r.recover(t(9)) {
            r.apply(&e).unwrap();
        }
        assert_eq!(r.job(&a).unwrap().state, JobState::Interrupted);
        assert_eq!(r.job(&a).unwrap().steps[0].state, JobState::Interrupted);
        assert_eq!(r.next_to_start(4), vec![b]);
    }

    #[test]
    fn notifications_stay_pending_until_acked() {
        let mut s = State::new();
        let id = submit(&mut s, 1, &["a"]);
        let n = Notification::for_job(NotificationKind::Start, s.job(&id).unwrap(), t(2));
        s.apply(&Event::NotificationQueued {
            notification: Box::new(n.clone()),
        })
        .unwrap();
        let restored = State::from_snapshot(s.snapshot());
        assert_eq!(restored.pending_notifications(), vec![n.clone()]);
        s.apply(&Event::NotificationAcked { id: n.id }).unwrap();
        assert!(s.pending_notifications().is_empty());
    }

    #[test]
    fn pages_walk_every_job_once_newest_first() {
        let mut s = State::new();
        let ids: Vec<JobId> = (1..=7).map(|n| submit(&mut s, n, &["a"])).collect();
        let mut seen = Vec::new();
        let mut after: Option<JobId> = None;
        loop {
            let (page, more) = s.page(None, after.as_ref(), 3);
            seen.extend(page.iter().map(|j| j.id.clone()));
            if !more {
                break;
            }
            after = Some(page.last().unwrap().id.clone());
        }
        let newest_first: Vec<JobId> = ids.iter().rev().cloned().collect();
        assert_eq!(seen, newest_first);
        let (page, more) = s.page(Some(JobState::Running), None, 3);
        assert!(page.is_empty() && !more);
        let (page, more) = s.page(None, Some(&ids[0]), 3);
        assert!(page.is_empty() && !more);
    }

    /// Every event of a job's life, applied then undone newest first, gives
    /// back the state as it was before each one.
    #[test]
    fn undo_puts_back_every_kind_of_event() {
        let mut s = State::new();
        let keep = submit(&mut s, 1, &["a"]);
        let id = JobId::from_parts(1_795_000_000_009, 0);
        let job = Job::new(id.clone(), spec(&["a", "b"]), t(9));
        let n = Notification::for_job(NotificationKind::Start, &job, t(10));
        let events = vec![
            Event::JobSubmitted { job: Box::new(job) },
            Event::JobStarted {
                id: id.clone(),
                at: t(10),
            },
            Event::NotificationQueued {
                notification: Box::new(n.clone()),
            },
            Event::StepStarted {
                id: id.clone(),
                step: 0,
                at: t(10),
                pod: Some("p".into()),
            },
            Event::StepFinished {
                id: id.clone(),
                step: 0,
                at: t(11),
                state: JobState::Done,
                exit_code: Some(0),
                reason: None,
            },
            Event::NotificationAcked { id: n.id.clone() },
            Event::StepStarted {
                id: id.clone(),
                step: 1,
                at: t(11),
                pod: None,
            },
            Event::StepRetrying {
                id: id.clone(),
                step: 1,
                at: t(12),
                exit_code: Some(1),
                reason: "step b exited with code 1".into(),
                retry_at: t(20),
            },
            Event::JobFinished {
                id: id.clone(),
                at: t(12),
                state: JobState::Cancelled,
                error: Some("cancelled".into()),
            },
            Event::JobRemoved { id: id.clone() },
        ];
        let mut before = Vec::new();
        let mut undos = Vec::new();
        for e in &events {
            before.push(s.clone());
            undos.push(s.apply_undoable(e).unwrap());
        }
        assert_eq!(s.counts().cancelled, 0, "removed");
        assert!(s.job(&id).is_none());
        while let Some(u) = undos.pop() {
            s.undo(u);
            assert_eq!(s, before.pop().unwrap());
        }
        assert_eq!(s.jobs().count(), 1);
        assert_eq!(s.next_to_start(4), vec![keep]);
        // An event that does not apply changes nothing and gives no undo.
        assert!(s.apply_undoable(&events[1]).is_err());
        assert_eq!(s.jobs().count(), 1);
    }

    fn run_step(s: &mut State, id: &JobId, step: usize, at: u64) {
        s.apply(&Event::StepStarted {
            id: id.clone(),
            step,
            at: t(at),
            pod: None,
        })
        .unwrap();
    }

    /// A failed run that is retried is recorded as an attempt, the step is
    /// queued again with its retry time, the job stays running and is not
    /// interrupted by a restart; the final run is the last attempt.
    #[test]
    fn a_retried_step_keeps_every_attempt() {
        let mut s = State::new();
        let id = submit(&mut s, 1, &["a"]);
        s.apply(&Event::JobStarted {
            id: id.clone(),
            at: t(2),
        })
        .unwrap();
        run_step(&mut s, &id, 0, 2);
        s.apply(&Event::StepRetrying {
            id: id.clone(),
            step: 0,
            at: t(3),
            exit_code: Some(2),
            reason: "step a exited with code 2".into(),
            retry_at: t(13),
        })
        .unwrap();
        let job = s.job(&id).unwrap();
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.steps[0].state, JobState::Queued);
        assert_eq!(job.steps[0].retry_at, Some(t(13)));
        assert_eq!(job.retrying_step(), Some(0));
        assert_eq!(job.running_step(), None);
        assert!(
            s.recover(t(5)).is_empty(),
            "a waiting retry is not interrupted"
        );
        let restored = State::from_snapshot(s.snapshot());
        assert_eq!(restored, s);
        // Retrying a step that is not running does not fit.
        assert!(
            s.apply(&Event::StepRetrying {
                id: id.clone(),
                step: 0,
                at: t(4),
                exit_code: None,
                reason: "x".into(),
                retry_at: t(5),
            })
            .is_err()
        );
        run_step(&mut s, &id, 0, 13);
        s.apply(&Event::StepFinished {
            id: id.clone(),
            step: 0,
            at: t(14),
            state: JobState::Done,
            exit_code: Some(0),
            reason: None,
        })
        .unwrap();
        let step = &s.job(&id).unwrap().steps[0];
        assert_eq!(step.retry_at, None);
        assert_eq!(step.attempts.len(), 2);
        assert_eq!(step.attempts[0].exit_code, Some(2));
        assert_eq!(
            (step.attempts[0].started_at, step.attempts[0].ended_at),
            (t(2), t(3))
        );
        assert_eq!(step.attempts[1].reason, None);
        assert_eq!(step.attempts[1].started_at, t(13));
        let json = serde_json::to_value(step).unwrap();
        assert_eq!(json["attempts"][0]["reason"], "step a exited with code 2");
    }

    /// Cancelling a job that waits for a retry cancels the waiting step.
    #[test]
    fn a_job_ended_while_waiting_for_a_retry_ends_its_step() {
        let mut s = State::new();
        let id = submit(&mut s, 1, &["a", "b"]);
        s.apply(&Event::JobStarted {
            id: id.clone(),
            at: t(2),
        })
        .unwrap();
        run_step(&mut s, &id, 0, 2);
        s.apply(&Event::StepRetrying {
            id: id.clone(),
            step: 0,
            at: t(3),
            exit_code: None,
            reason: "step a timed out after 1s".into(),
            retry_at: t(13),
        })
        .unwrap();
        s.apply(&Event::JobFinished {
            id: id.clone(),
            at: t(4),
            state: JobState::Cancelled,
            error: Some("cancelled".into()),
        })
        .unwrap();
        let job = s.job(&id).unwrap();
        assert!(job.steps.iter().all(|st| st.state == JobState::Cancelled));
        assert!(job.steps.iter().all(|st| st.retry_at.is_none()));
        assert_eq!(job.steps[0].attempts.len(), 1);
    }

    /// Only finished jobs are removed; a removed job is gone from the
    /// counts, the lists and the next snapshot.
    #[test]
    fn only_finished_jobs_are_removed() {
        let mut s = State::new();
        let done = submit(&mut s, 1, &["a"]);
        let queued = submit(&mut s, 2, &["a"]);
        s.apply(&Event::JobFinished {
            id: done.clone(),
            at: t(3),
            state: JobState::Failed,
            error: None,
        })
        .unwrap();
        assert_eq!(
            s.apply(&Event::JobRemoved { id: queued.clone() }),
            Err(ApplyError::NotFinished {
                id: queued.clone(),
                state: JobState::Queued
            })
        );
        s.apply(&Event::JobRemoved { id: done.clone() }).unwrap();
        assert_eq!(s.counts().failed, 0);
        assert_eq!(s.counts().queued, 1);
        assert!(s.job(&done).is_none());
        assert_eq!(s.snapshot().jobs.len(), 1);
        assert!(matches!(
            s.apply(&Event::JobRemoved { id: done }),
            Err(ApplyError::UnknownJob(_))
        ));
        let json = serde_json::to_string(&Event::JobRemoved { id: queued }).unwrap();
        assert!(json.len() < 64, "a removal is small: {json}");
    }

    #[test]
    fn unknown_jobs_are_rejected() {
        let mut s = State::new();
        let e = Event::JobStarted {
            id: JobId::from_parts(1, 1),
            at: t(1),
        };
        assert!(matches!(s.apply(&e), Err(ApplyError::UnknownJob(_))));
    }
}
