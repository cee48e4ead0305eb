//! Queues, priorities, dependencies and holds in the engine (SPEC §8.2).
//!
//! The decision of what starts next is the core's ([`oj_core::Limits`],
//! `State::pick`); this module feeds it the configuration (`queues.*`,
//! `jobs.max_concurrent`, applied live), admits submissions (one function,
//! [`Engine::admit`], for every way a job enters), cancels the dependents
//! of a job that ended the wrong way (a worklist, so a long chain is no
//! deep recursion), and serves release, pause, resume and the queue list.
//! Every change is an event: pauses, holds and releases are in the WAL and
//! the snapshot like the jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use oj_config::RuntimeConfig;
use oj_core::queue::DEFAULT_QUEUE;
use oj_core::{Event, Gate, Job, JobId, JobSpec, JobState, Limits, QueueError, SpecError};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Command, Effect, Engine, EngineHandle};

/// How long the engine sleeps at most before looking at the wall clock
/// again for a job's `not_before`: a monotonic timer does not run while the
/// machine is suspended, the wall clock does.
const NOT_BEFORE_RECHECK: Duration = Duration::from_secs(1);

/// One queue as `GET /v1/queues` and `oj queue list` show it: the wire type.
pub use oj_api::QueueInfo;

/// Requests about queues and holds.
pub(super) enum QueueCommand {
    Release {
        id: JobId,
        reply: oneshot::Sender<Result<Job, ReleaseError>>,
    },
    Pause {
        queue: String,
        pause: bool,
        reply: oneshot::Sender<Result<QueueInfo, QueueOpError>>,
    },
    List {
        reply: oneshot::Sender<Vec<QueueInfo>>,
    },
    JobsIn {
        queues: Vec<String>,
        reply: oneshot::Sender<BTreeMap<String, Vec<JobId>>>,
    },
}

/// Why a release was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReleaseError {
    #[error("no job with id {0}")]
    NotFound(JobId),
    #[error("job {id} is not held ({state}{}); only a queued job submitted with --hold can be released", if *.released { ", already released" } else { "" })]
    NotHeld {
        id: JobId,
        state: JobState,
        released: bool,
    },
    #[error("this daemon is a standby (it does not hold the lock)")]
    NotLeader,
    #[error(
        "the release could not be stored durably, so the job stays held: {0}; free space on the state volume (or fix the error) and release again"
    )]
    Storage(String),
    #[error("the engine has stopped")]
    Gone,
}

/// Why a pause or resume was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueOpError {
    #[error("no queue {queue:?}; known queues: {}", .known.join(", "))]
    Unknown { queue: String, known: Vec<String> },
    #[error("this daemon is a standby (it does not hold the lock)")]
    NotLeader,
    #[error(
        "the change could not be stored durably, so the queue is as it was: {0}; free space on the state volume (or fix the error) and try again"
    )]
    Storage(String),
    #[error("the engine has stopped")]
    Gone,
}

/// `queues.<name>.max_concurrent` of `cfg` (`None` = `jobs.max_concurrent`).
pub fn configured_queues(cfg: &RuntimeConfig) -> BTreeMap<String, Option<usize>> {
    cfg.queues
        .iter()
        .map(|(name, q)| (name.clone(), q.max_concurrent.map(|n| n.max(1) as usize)))
        .collect()
}

impl EngineHandle {
    /// Releases a held job (`POST /v1/jobs/{id}/release`).
    pub async fn release(&self, id: JobId) -> Result<Job, ReleaseError> {
        self.ask(|reply| Command::Queue(QueueCommand::Release { id, reply }))
            .await
            .unwrap_or(Err(ReleaseError::Gone))
    }

    /// Pauses (`pause`) or resumes a queue.
    pub async fn pause_queue(&self, queue: String, pause: bool) -> Result<QueueInfo, QueueOpError> {
        self.ask(|reply| {
            Command::Queue(QueueCommand::Pause {
                queue,
                pause,
                reply,
            })
        })
        .await
        .unwrap_or(Err(QueueOpError::Gone))
    }

    /// Every known queue, by name.
    pub async fn queues(&self) -> Option<Vec<QueueInfo>> {
        self.ask(|reply| Command::Queue(QueueCommand::List { reply }))
            .await
    }

    /// The queued and running jobs of `queues` (the reload check).
    pub async fn jobs_in_queues(&self, queues: Vec<String>) -> BTreeMap<String, Vec<JobId>> {
        self.ask(|reply| Command::Queue(QueueCommand::JobsIn { queues, reply }))
            .await
            .unwrap_or_default()
    }
}

/// The engine-loop instant of a wall-clock time, at most
/// [`NOT_BEFORE_RECHECK`] away.
fn recheck_instant(at: oj_core::Timestamp) -> Instant {
    let wait = at.0.duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now() + wait.min(NOT_BEFORE_RECHECK)
}

impl Engine {
    /// The limits in effect now: `jobs.max_concurrent` and `queues.*`.
    pub(super) fn limits(&self) -> Limits {
        Limits {
            max_concurrent: self.cfg.get().max_concurrent,
            queues: self
                .cfg
                .get()
                .queues
                .iter()
                .filter_map(|(q, n)| n.map(|n| (q.clone(), n.max(1))))
                .collect(),
        }
    }

    pub(super) fn gate(&self) -> Gate {
        if !self.is_leader {
            Gate::Standby
        } else if self.draining {
            Gate::Draining
        } else {
            Gate::Open
        }
    }

    /// Job `id` as the API shows it: with `waiting` while queued.
    pub(super) fn shown(&self, id: &JobId) -> Option<Job> {
        self.state.shown(id, &self.limits(), self.gate())
    }

    /// The queues jobs may name: `default` and those configured.
    fn known_queues(&self) -> BTreeSet<String> {
        let mut known: BTreeSet<String> = self.cfg.get().queues.keys().cloned().collect();
        known.insert(DEFAULT_QUEUE.to_string());
        known
    }

    /// What every submission must pass besides the spec's own checks: its
    /// queue exists and every job of its `after` is known.
    pub(super) fn admit(&self, spec: &JobSpec) -> Result<(), SpecError> {
        let known = self.known_queues();
        if !known.contains(&spec.queue) {
            return Err(QueueError::UnknownQueue {
                queue: spec.queue.clone(),
                known: known.into_iter().collect(),
            }
            .into());
        }
        if let Some(d) = spec.after.iter().find(|d| self.state.job(&d.job).is_none()) {
            return Err(QueueError::UnknownDependency(d.job.clone()).into());
        }
        Ok(())
    }

    /// Notes an applied event whose dependents (or itself, when just
    /// submitted) must be judged before the turn commits.
    pub(super) fn note_for_dependents(&mut self, event: &Event) {
        match event {
            Event::JobSubmitted { job } if !job.after.is_empty() => {
                self.to_judge.push(job.id.clone());
            }
            Event::JobFinished { id, state, .. } if *state != JobState::Done => {
                let dependents: Vec<JobId> =
                    self.state.scheduler().dependents_of(id).cloned().collect();
                self.to_judge.extend(dependents);
            }
            _ => {}
        }
    }

    /// After a restart: judges every job that waits for a dependency.
    pub(super) fn judge_all_blocked(&mut self) {
        let blocked: Vec<JobId> = self.state.scheduler().blocked().cloned().collect();
        self.to_judge.extend(blocked);
    }

    /// Cancels every noted job whose `done` dependency ended otherwise;
    /// their own dependents follow in the same loop.
    pub(super) fn judge_dependents(&mut self) {
        if !self.is_leader {
            self.to_judge.clear();
            return;
        }
        while let Some(id) = self.to_judge.pop() {
            let Some((dep, state)) = self.state.doomed(&id) else {
                continue;
            };
            let error = format!("dependency {dep} ended {state}");
            let _in_job = crate::job_span::of(&self.state, &id).entered();
            tracing::info!(job_id = %id, dependency = %dep, "a dependency ended without success; the job is cancelled");
            self.record(Event::JobFinished {
                id,
                at: super::now(),
                state: JobState::Cancelled,
                error: Some(error),
            });
        }
    }

    /// When the engine must look again for jobs whose `not_before` came.
    pub(super) fn next_not_before(&self) -> Option<Instant> {
        if !self.is_leader || self.draining {
            return None;
        }
        self.state.scheduler().next_due().map(recheck_instant)
    }

    /// Starts steps whose retry is due and that waited for a free slot.
    pub(super) fn start_retries_with_room(&mut self) {
        if self.retry_ready.is_empty() {
            return;
        }
        let limits = self.limits();
        let mut waiting = Vec::new();
        for (id, step) in std::mem::take(&mut self.retry_ready) {
            let Some(job) = self.state.job(&id) else {
                continue;
            };
            if job.state != JobState::Running || job.retrying_step() != Some(step) {
                continue;
            }
            if self.state.scheduler().has_room(&job.queue, &limits) {
                tracing::info!(job_id = %id, step, "retrying step (a slot is free)");
                self.start_step(&id, step);
            } else {
                waiting.push((id, step));
            }
        }
        self.retry_ready = waiting;
    }

    /// Whether a step whose retry is due may start now; when not, it
    /// waits for a slot like a queued job.
    pub(super) fn retry_has_room(&mut self, id: &JobId, step: usize) -> bool {
        let Some(job) = self.state.job(id) else {
            return true;
        };
        if self.state.scheduler().has_room(&job.queue, &self.limits()) {
            return true;
        }
        tracing::info!(job_id = %id, step, "retry due; it waits for a free slot");
        self.retry_ready.push((id.clone(), step));
        false
    }

    pub(super) fn queue_command(&mut self, cmd: QueueCommand) {
        match cmd {
            QueueCommand::Release { id, reply } => self.release(id, reply),
            QueueCommand::Pause {
                queue,
                pause,
                reply,
            } => self.pause(queue, pause, reply),
            QueueCommand::List { reply } => {
                let _ = reply.send(self.queue_infos());
            }
            QueueCommand::JobsIn { queues, reply } => {
                let wanted: BTreeSet<&String> = queues.iter().collect();
                let mut out: BTreeMap<String, Vec<JobId>> = BTreeMap::new();
                for id in self.state.queued().chain(self.state.running()) {
                    if let Some(job) = self.state.job(id)
                        && wanted.contains(&job.queue)
                    {
                        out.entry(job.queue.clone()).or_default().push(id.clone());
                    }
                }
                let _ = reply.send(out);
            }
        }
    }

    fn release(&mut self, id: JobId, reply: oneshot::Sender<Result<Job, ReleaseError>>) {
        if !self.is_leader {
            let _ = reply.send(Err(ReleaseError::NotLeader));
            return;
        }
        let Some(job) = self.state.job(&id) else {
            let _ = reply.send(Err(ReleaseError::NotFound(id)));
            return;
        };
        if job.state != JobState::Queued || !job.hold {
            let err = ReleaseError::NotHeld {
                released: job.spec.hold && !job.hold,
                state: job.state,
                id,
            };
            let _ = reply.send(Err(err));
            return;
        }
        let _in_job = crate::job_span::of(&self.state, &id).entered();
        tracing::info!(job_id = %id, "job released");
        self.record(Event::JobReleased { id: id.clone() });
        let shown = self.shown(&id);
        self.effects.push(Effect::Reply(Box::new(move |err| {
            let _ = reply.send(match (err, shown) {
                (None, Some(job)) => Ok(job),
                (None, None) => Err(ReleaseError::NotFound(id)),
                (Some(e), _) => Err(ReleaseError::Storage(e.to_string())),
            });
        })));
    }

    fn pause(
        &mut self,
        queue: String,
        pause: bool,
        reply: oneshot::Sender<Result<QueueInfo, QueueOpError>>,
    ) {
        if !self.is_leader {
            let _ = reply.send(Err(QueueOpError::NotLeader));
            return;
        }
        let known = self.known_queues();
        // A queue that was removed from the config while paused can still
        // be resumed.
        let paused = self.state.scheduler().is_paused(&queue);
        if !known.contains(&queue) && !paused {
            let _ = reply.send(Err(QueueOpError::Unknown {
                queue,
                known: known.into_iter().collect(),
            }));
            return;
        }
        if paused != pause {
            tracing::info!(queue = %queue, "queue {}", if pause { "paused: no job of it starts" } else { "resumed" });
            self.record(if pause {
                Event::QueuePaused {
                    queue: queue.clone(),
                }
            } else {
                Event::QueueResumed {
                    queue: queue.clone(),
                }
            });
        }
        let info = self
            .queue_infos()
            .into_iter()
            .find(|q| q.name == queue)
            .unwrap_or(QueueInfo {
                max_concurrent: self.limits().of(&queue),
                name: queue,
                running: 0,
                queued: 0,
                paused: pause,
            });
        self.effects.push(Effect::Reply(Box::new(move |err| {
            let _ = reply.send(match err {
                None => Ok(info),
                Some(e) => Err(QueueOpError::Storage(e.to_string())),
            });
        })));
    }

    /// Known queues, those holding jobs, and paused ones, by name.
    pub(super) fn queue_infos(&self) -> Vec<QueueInfo> {
        let limits = self.limits();
        let sched = self.state.scheduler();
        let mut names = self.known_queues();
        names.extend(sched.queue_counts().keys().cloned());
        names.extend(sched.paused().cloned());
        names
            .into_iter()
            .map(|name| {
                let c = sched.queue_counts().get(&name).copied().unwrap_or_default();
                QueueInfo {
                    max_concurrent: limits.of(&name),
                    running: c.running,
                    queued: c.queued,
                    paused: sched.is_paused(&name),
                    name,
                }
            })
            .collect()
    }

    /// Mirrors the queues into the metrics when they changed.
    pub(super) fn publish_queues(&mut self) {
        let infos = self.queue_infos();
        if infos != self.published_queues {
            self.metrics.queues.set(&infos, &self.published_queues);
            self.published_queues = infos;
        }
    }
}

/// The problems of a reload from `old` to `new` that removes queues still
/// holding queued or running jobs: one line per queue, naming its jobs.
/// Blocks on the engine (a reload runs on a worker that may block).
pub fn removed_queues_in_use(
    old: &RuntimeConfig,
    new: &RuntimeConfig,
    engine: &EngineHandle,
) -> Vec<String> {
    let kept = configured_queues(new);
    let removed: Vec<String> = configured_queues(old)
        .into_keys()
        .filter(|q| q != DEFAULT_QUEUE && !kept.contains_key(q))
        .collect();
    if removed.is_empty() {
        return Vec::new();
    }
    let handle = tokio::runtime::Handle::current();
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return Vec::new();
    }
    let in_use = tokio::task::block_in_place(|| handle.block_on(engine.jobs_in_queues(removed)));
    in_use
        .into_iter()
        .filter(|(_, jobs)| !jobs.is_empty())
        .map(|(queue, jobs)| {
            const SHOWN: usize = 10;
            let mut names: Vec<String> = jobs.iter().take(SHOWN).map(ToString::to_string).collect();
            if jobs.len() > SHOWN {
                names.push(format!("and {} more", jobs.len() - SHOWN));
            }
            format!(
                "queues.{queue}: the new configuration removes queue {queue:?}, which still holds {} queued or running job(s): {}; keep the queue until they end (or cancel them), then remove it",
                jobs.len(),
                names.join(", ")
            )
        })
        .collect()
}
