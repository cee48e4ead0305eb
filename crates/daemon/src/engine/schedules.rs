//! Schedules in the engine (SPEC §8.3): the engine settles every due fire
//! time exactly once, durably — `submitted` (the job's `JobSubmitted`
//! carries the fire, one WAL record), `skipped` (overlap) or `missed` —
//! and only while it leads and does not drain.
//!
//! Time comes from an injected wall clock ([`Clock`]). The engine never
//! sleeps longer than [`MAX_NAP`] on the monotonic clock before reading the
//! wall clock again, so a machine that resumes from suspend notices its
//! due fires within that nap; the suspend counts as downtime (the catch-up
//! rule decides). What is due is the pure [`oj_core::schedule::plan`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use oj_core::schedule::Zone as TimeZone;
use oj_core::schedule::{self, CatchUp, CronExpr};
use oj_core::{Event, FireResult, Job, JobId, JobSchedule, JobState, ScheduleRecord, Timestamp};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Command, Effect, Engine, EngineHandle, SubmitError};
use oj_config::{ScheduleCatchUp, ScheduleConfig, ScheduleOverlap};

/// The wall clock the engine fires by (tests pass their own).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The system's wall clock.
pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// Longest sleep before the wall clock is read again (suspend, clock steps).
pub const MAX_NAP: Duration = Duration::from_secs(10);

/// How often schedules are looked at while the WAL cannot be written.
const STORAGE_PAUSE: Duration = Duration::from_secs(1);

/// The configured schedules, by name (`schedules.*`).
pub type ScheduleConfigs = BTreeMap<String, ScheduleConfig>;

/// One configured schedule, parsed.
struct Def {
    cfg: ScheduleConfig,
    /// The expression and zone, or why they cannot be used (config
    /// validation refuses such a config; this is the last line).
    parsed: Result<(CronExpr, TimeZone), String>,
}

/// The engine's schedule bookkeeping (what is not durable: caches).
pub struct Scheduler {
    clock: Clock,
    defs: BTreeMap<String, Def>,
    /// Definitions changed (or a turn was undone): sync and settle on the next tick.
    dirty: bool,
    /// The earliest next fire time of any active schedule.
    due_at: Option<Timestamp>,
    /// When the engine's loop ticks the schedules next.
    pub(super) wake_at: Option<Instant>,
    next: BTreeMap<String, Option<Timestamp>>,
    last_success: BTreeMap<String, Timestamp>,
    success_seeded: bool,
}

impl Scheduler {
    pub fn new(clock: Clock, configs: &ScheduleConfigs) -> Scheduler {
        let mut s = Scheduler {
            clock,
            defs: BTreeMap::new(),
            dirty: true,
            due_at: None,
            wake_at: None,
            next: BTreeMap::new(),
            last_success: BTreeMap::new(),
            success_seeded: false,
        };
        s.configure(configs);
        s
    }

    /// Takes a (reloaded) `schedules.*`; applied on the next tick.
    pub fn configure(&mut self, configs: &ScheduleConfigs) {
        let local = TimeZone::system();
        let same = self.defs.len() == configs.len()
            && configs
                .iter()
                .all(|(n, c)| self.defs.get(n).is_some_and(|d| d.cfg == *c));
        if same {
            return;
        }
        self.defs = configs
            .iter()
            .map(|(name, cfg)| {
                let parsed = CronExpr::parse(&cfg.cron)
                    .map_err(|e| format!("schedules.{name}.cron: {e}"))
                    .and_then(|cron| {
                        schedule::parse_zone(&cfg.timezone, &local)
                            .map(|zone| (cron, zone))
                            .map_err(|e| format!("schedules.{name}.timezone: {e}"))
                    });
                if let Err(e) = &parsed {
                    tracing::error!(schedule = %name, "schedule cannot fire: {e}");
                }
                (
                    name.clone(),
                    Def {
                        cfg: cfg.clone(),
                        parsed,
                    },
                )
            })
            .collect();
        self.dirty = true;
        self.wake_at = Some(Instant::now());
    }

    /// A turn was undone (its commit failed): what it settled is not
    /// settled; look again once storage works.
    pub(super) fn undone(&mut self) {
        self.dirty = true;
    }

    /// Something must be looked at again at once (a pause or resume).
    pub(super) fn touch(&mut self) {
        self.dirty = true;
        self.wake_at = Some(Instant::now());
    }

    fn now(&self) -> Timestamp {
        Timestamp((self.clock)())
    }
}

/// A schedule as `GET /v1/schedules` and `oj schedule list` show it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ScheduleInfo {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    /// `null` while paused or disabled (or when the expression never matches again).
    pub next_fire: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fire: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_result: Option<FireResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_job: Option<JobId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_job_state: Option<JobState>,
    pub paused: bool,
    pub enabled: bool,
    pub overlap: &'static str,
    pub catch_up: &'static str,
}

/// Why a schedule request is refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScheduleError {
    #[error("no schedule named {name:?}; configured: {}", if .known.is_empty() { "none (add a [schedules.<name>] table to the config)".to_string() } else { .known.join(", ") })]
    NotFound { name: String, known: Vec<String> },
    #[error(
        "schedule {name:?} still has job {job} queued or running and its overlap is \"skip\"; wait for it, cancel it, or set schedules.{name}.overlap"
    )]
    Overlap { name: String, job: JobId },
    #[error(
        "schedule {name:?} cannot submit its job: {reason}; fix schedules.{name}.job in the config and reload"
    )]
    Invalid { name: String, reason: String },
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// The schedule requests of the API.
pub enum ScheduleCommand {
    List {
        reply: oneshot::Sender<Vec<ScheduleInfo>>,
    },
    Run {
        name: String,
        reply: oneshot::Sender<Result<Job, ScheduleError>>,
    },
    Pause {
        name: String,
        paused: bool,
        reply: oneshot::Sender<Result<ScheduleInfo, ScheduleError>>,
    },
}

impl EngineHandle {
    /// Every configured schedule, by name.
    pub async fn schedules(&self) -> Vec<ScheduleInfo> {
        self.ask(|reply| Command::Schedule(ScheduleCommand::List { reply }))
            .await
            .unwrap_or_default()
    }

    /// Fires schedule `name` now (obeying its `overlap`).
    pub async fn run_schedule(&self, name: String) -> Result<Job, ScheduleError> {
        self.ask(|reply| Command::Schedule(ScheduleCommand::Run { name, reply }))
            .await
            .unwrap_or(Err(ScheduleError::Submit(SubmitError::Gone)))
    }

    /// Pauses (or resumes) schedule `name`, durably.
    pub async fn pause_schedule(
        &self,
        name: String,
        paused: bool,
    ) -> Result<ScheduleInfo, ScheduleError> {
        self.ask(|reply| {
            Command::Schedule(ScheduleCommand::Pause {
                name,
                paused,
                reply,
            })
        })
        .await
        .unwrap_or(Err(ScheduleError::Submit(SubmitError::Gone)))
    }
}

fn overlap_word(o: ScheduleOverlap) -> &'static str {
    match o {
        ScheduleOverlap::Skip => "skip",
        ScheduleOverlap::Allow => "allow",
        ScheduleOverlap::Replace => "replace",
    }
}

fn catch_up_word(c: ScheduleCatchUp) -> &'static str {
    match c {
        ScheduleCatchUp::Latest => "latest",
        ScheduleCatchUp::None => "none",
    }
}

impl Engine {
    /// Syncs definitions and settles every due fire time; re-arms the
    /// wake-up. Runs at the start of every turn's commit, so a fire's job
    /// is written (and started) in the same turn.
    pub(super) fn tick_schedules(&mut self) {
        if !self.is_leader || self.draining || !self.recovered {
            self.sched.wake_at = None;
            return;
        }
        if self.trouble.is_some() {
            // Storage fails: the engine writes again with backoff; look
            // again after a while rather than fail each turn anew.
            self.sched.wake_at = Some(Instant::now() + STORAGE_PAUSE);
            return;
        }
        let now = self.sched.now();
        let due = self.sched.due_at.is_some_and(|d| d <= now);
        if !self.sched.dirty && !due {
            if self.sched.wake_at.is_none_or(|w| w <= Instant::now()) {
                self.arm_schedules(now);
            }
            return;
        }
        if self.sched.dirty {
            self.sync_schedules(now);
        }
        let names: Vec<String> = self.sched.defs.keys().cloned().collect();
        for name in names {
            self.settle_due(&name, now);
        }
        self.sched.dirty = false;
        self.refresh_schedules(now);
    }

    /// Writes what the config says each schedule is (and drops those gone).
    fn sync_schedules(&mut self, now: Timestamp) {
        let mut events = Vec::new();
        for (name, def) in &self.sched.defs {
            let same = self.state.schedule(name).is_some_and(|r| {
                r.cron == def.cfg.cron
                    && r.timezone == def.cfg.timezone
                    && r.enabled == def.cfg.enabled
            });
            if !same {
                tracing::info!(schedule = %name, cron = %def.cfg.cron, timezone = %def.cfg.timezone, enabled = def.cfg.enabled, "schedule defined");
                events.push(Event::ScheduleDefined {
                    schedule: name.clone(),
                    cron: def.cfg.cron.clone(),
                    timezone: def.cfg.timezone.clone(),
                    enabled: def.cfg.enabled,
                    at: now,
                });
            }
        }
        for r in self.state.schedules() {
            if !self.sched.defs.contains_key(&r.name) {
                tracing::info!(schedule = %r.name, "schedule removed from the config");
                events.push(Event::ScheduleRemoved {
                    schedule: r.name.clone(),
                });
                self.effects.push(Effect::ScheduleGone(r.name.clone()));
            }
        }
        for e in events {
            self.record(e);
        }
    }

    /// Settles what is due of schedule `name` at `now`.
    fn settle_due(&mut self, name: &str, now: Timestamp) {
        let Some(def) = self.sched.defs.get(name) else {
            return;
        };
        let Ok((cron, zone)) = &def.parsed else {
            return;
        };
        let Some(rec) = self.state.schedule(name) else {
            return;
        };
        if !def.cfg.enabled || rec.paused {
            return;
        }
        let catch_up = match def.cfg.catch_up {
            ScheduleCatchUp::Latest => CatchUp::Latest,
            ScheduleCatchUp::None => CatchUp::None,
        };
        let Some(due) = schedule::plan(
            cron,
            zone,
            rec.settled_until,
            now,
            catch_up,
            def.cfg.catch_up_within,
        ) else {
            return;
        };
        if !due.run {
            tracing::warn!(schedule = %name, fire_time = %due.fire_time, missed = due.missed_before + 1, "schedule fires missed (downtime beyond the catch-up rule)");
            self.settle(name, due.fire_time, FireResult::Missed, due.missed_before);
            return;
        }
        if let Some(before) = due.missed_until {
            tracing::warn!(schedule = %name, missed = due.missed_before, "schedule fires missed during downtime; running the latest one");
            self.settle(name, before, FireResult::Missed, due.missed_before - 1);
        }
        match self.fire(name, due.fire_time, false) {
            Ok(job) => {
                tracing::info!(schedule = %name, fire_time = %due.fire_time, job_id = %job.id, "schedule fired");
            }
            Err(ScheduleError::Overlap { job, .. }) => {
                tracing::info!(schedule = %name, fire_time = %due.fire_time, running = %job, "schedule fire skipped: its last job is still queued or running (overlap = skip)");
                self.settle(name, due.fire_time, FireResult::Skipped, 0);
            }
            Err(e) => {
                tracing::error!(schedule = %name, fire_time = %due.fire_time, "schedule fire missed: {e}");
                self.settle(name, due.fire_time, FireResult::Missed, 0);
            }
        }
    }

    fn settle(&mut self, name: &str, fire_time: Timestamp, result: FireResult, missed_before: u64) {
        self.record(Event::ScheduleSettled {
            schedule: name.to_string(),
            fire_time,
            result,
            missed_before,
        });
        self.effects.push(Effect::ScheduleFired {
            schedule: name.to_string(),
            result,
            count: 1,
        });
        if missed_before > 0 {
            self.effects.push(Effect::ScheduleFired {
                schedule: name.to_string(),
                result: FireResult::Missed,
                count: missed_before,
            });
        }
    }

    /// Submits schedule `name`'s job for `fire_time`, obeying `overlap`,
    /// through the same admission as `POST /v1/jobs`.
    fn fire(
        &mut self,
        name: &str,
        fire_time: Timestamp,
        manual: bool,
    ) -> Result<Job, ScheduleError> {
        let Some(def) = self.sched.defs.get(name) else {
            return Err(self.not_found(name));
        };
        let spec =
            schedule::job_spec(name, &def.cfg.job).map_err(|reason| ScheduleError::Invalid {
                name: name.to_string(),
                reason,
            })?;
        let overlap = def.cfg.overlap;
        let active = self
            .state
            .schedule(name)
            .and_then(|r| r.last_job.as_ref())
            .and_then(|id| self.state.job(id))
            .filter(|j| matches!(j.state, JobState::Queued | JobState::Running))
            .map(|j| j.id.clone());
        if let Some(job) = active {
            match overlap {
                ScheduleOverlap::Skip => {
                    return Err(ScheduleError::Overlap {
                        name: name.to_string(),
                        job,
                    });
                }
                ScheduleOverlap::Allow => {}
                ScheduleOverlap::Replace => {
                    tracing::info!(schedule = %name, job_id = %job, "cancelling the schedule's running job (overlap = replace)");
                    let (reply, _) = oneshot::channel();
                    self.cancel(job, reply);
                }
            }
        }
        let job = self.admit_job(
            Box::new(spec),
            super::SubmitMeta::default(),
            Some(JobSchedule {
                name: name.to_string(),
                fire_time,
                manual,
            }),
        )?;
        if !manual {
            self.effects.push(Effect::ScheduleFired {
                schedule: name.to_string(),
                result: FireResult::Submitted,
                count: 1,
            });
        }
        Ok(job)
    }

    fn not_found(&self, name: &str) -> ScheduleError {
        ScheduleError::NotFound {
            name: name.to_string(),
            known: self.sched.defs.keys().cloned().collect(),
        }
    }

    /// Recomputes next fire times, metrics and the wake-up.
    fn refresh_schedules(&mut self, now: Timestamp) {
        if !self.sched.success_seeded {
            self.sched.success_seeded = true;
            for job in self.state.jobs() {
                if let (Some(s), JobState::Done, Some(end)) =
                    (&job.schedule, job.state, job.ended_at)
                {
                    let e = self.sched.last_success.entry(s.name.clone()).or_insert(end);
                    *e = (*e).max(end);
                }
            }
            for (name, at) in &self.sched.last_success {
                if self.sched.defs.contains_key(name) {
                    self.metrics.schedules.set_last_success(name, *at);
                }
            }
        }
        let mut next = BTreeMap::new();
        for (name, def) in &self.sched.defs {
            let rec = self.state.schedule(name);
            let t = match (&def.parsed, rec) {
                (Ok((cron, zone)), Some(r)) if def.cfg.enabled && !r.paused => {
                    schedule::next_fire(cron, r.settled_until.max(now), zone)
                }
                _ => None,
            };
            self.metrics.schedules.set_next_fire(name, t);
            let period = match (&def.parsed, t) {
                (Ok((cron, zone)), Some(t)) => {
                    schedule::next_fire(cron, t, zone).map(|after| after.since(t))
                }
                _ => None,
            };
            self.metrics.schedules.set_period(name, period);
            next.insert(name.clone(), t);
        }
        self.sched.due_at = next.values().flatten().min().copied();
        self.sched.next = next;
        self.arm_schedules(now);
    }

    fn arm_schedules(&mut self, now: Timestamp) {
        self.sched.wake_at = self.sched.due_at.map(|due| {
            let wait = due.0.duration_since(now.0).unwrap_or_default();
            Instant::now() + wait.clamp(Duration::from_millis(1), MAX_NAP)
        });
    }

    /// A reloaded `schedules.*`.
    pub(super) fn configure_schedules(&mut self, configs: &ScheduleConfigs) {
        self.sched.configure(configs);
    }

    /// Remembers a scheduled job's success (for the metric) once durable.
    pub(super) fn observe_schedule_end(&mut self, event: &Event) {
        let Event::JobFinished {
            id,
            at,
            state: JobState::Done,
            ..
        } = event
        else {
            return;
        };
        let Some(s) = self.state.job(id).and_then(|j| j.schedule.as_ref()) else {
            return;
        };
        self.sched.last_success.insert(s.name.clone(), *at);
        self.metrics.schedules.set_last_success(&s.name, *at);
    }

    /// Answers a schedule request of the API.
    pub(super) fn handle_schedule(&mut self, cmd: ScheduleCommand) {
        match cmd {
            ScheduleCommand::List { reply } => {
                let list = self
                    .sched
                    .defs
                    .keys()
                    .filter_map(|n| self.info(n))
                    .collect();
                let _ = reply.send(list);
            }
            ScheduleCommand::Run { name, reply } => {
                if let Some(e) = self.refuse() {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
                if self.sched.dirty {
                    let now = self.sched.now();
                    self.sync_schedules(now);
                }
                let now = self.sched.now();
                match self.fire(&name, now, true) {
                    Ok(job) => {
                        tracing::info!(schedule = %name, job_id = %job.id, "schedule run by request");
                        self.effects.push(Effect::Reply(Box::new(move |err| {
                            let _ = reply.send(match err {
                                None => Ok(job),
                                Some(e) => Err(SubmitError::Storage(e.to_string()).into()),
                            });
                        })));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            ScheduleCommand::Pause {
                name,
                paused,
                reply,
            } => {
                if let Some(e) = self.refuse() {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
                let now = self.sched.now();
                if self.sched.dirty || self.state.schedule(&name).is_none() {
                    self.sync_schedules(now);
                }
                if !self.sched.defs.contains_key(&name) {
                    let _ = reply.send(Err(self.not_found(&name)));
                    return;
                }
                if self
                    .state
                    .schedule(&name)
                    .is_some_and(|r| r.paused != paused)
                {
                    tracing::info!(schedule = %name, paused, "schedule {}", if paused { "paused" } else { "resumed" });
                    self.record(Event::SchedulePaused {
                        schedule: name.clone(),
                        paused,
                        at: now,
                    });
                    self.sched.touch();
                }
                self.refresh_schedules(now);
                let info = self.info(&name);
                self.effects.push(Effect::Reply(Box::new(move |err| {
                    let _ = reply.send(match (err, info) {
                        (None, Some(info)) => Ok(info),
                        (None, None) => Err(SubmitError::Gone.into()),
                        (Some(e), _) => Err(SubmitError::Storage(e.to_string()).into()),
                    });
                })));
            }
        }
    }

    fn refuse(&self) -> Option<SubmitError> {
        if !self.is_leader {
            Some(SubmitError::NotLeader)
        } else if self.draining {
            Some(SubmitError::Draining)
        } else {
            None
        }
    }

    fn info(&self, name: &str) -> Option<ScheduleInfo> {
        let def = self.sched.defs.get(name)?;
        let rec: Option<&ScheduleRecord> = self.state.schedule(name);
        let last_job = rec.and_then(|r| r.last_job.clone());
        let next_fire = match (&def.parsed, rec) {
            (Ok(_), Some(r)) if r.paused || !def.cfg.enabled => None,
            (Ok(_), Some(_)) => self.sched.next.get(name).copied().flatten(),
            (Ok((cron, zone)), None) if def.cfg.enabled => {
                schedule::next_fire(cron, self.sched.now(), zone)
            }
            _ => None,
        };
        Some(ScheduleInfo {
            name: name.to_string(),
            cron: def.cfg.cron.clone(),
            timezone: def.cfg.timezone.clone(),
            next_fire,
            last_fire: rec.and_then(|r| r.last_fire),
            last_result: rec.and_then(|r| r.last_result),
            last_job_state: last_job
                .as_ref()
                .and_then(|id| self.state.job(id))
                .map(|j| j.state),
            last_job,
            paused: rec.is_some_and(|r| r.paused),
            enabled: def.cfg.enabled,
            overlap: overlap_word(def.cfg.overlap),
            catch_up: catch_up_word(def.cfg.catch_up),
        })
    }
}

#[cfg(test)]
#[path = "schedules_tests.rs"]
mod tests;
