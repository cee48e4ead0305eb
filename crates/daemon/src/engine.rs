//! The engine: one task that owns the [`State`] and the WAL, so every state
//! change is serialized without locks. Clients talk to it through an
//! [`EngineHandle`] (commands over a channel); runners report step ends on
//! the same channel.
//!
//! Each loop turn handles a batch of commands, appends their events to the
//! WAL buffer, then commits (write + fsync) once and only then performs the
//! turn's effects: replies to callers, process spawns, notifications. So
//! nothing is acknowledged or started before it is durable, and the fsync
//! cost is shared by every request of the batch (group commit).
//!
//! Commit, then apply: a turn's events change the in-memory state as they
//! are made (later commands of the batch must see them), but each one is
//! recorded with its [`Undo`]. When the commit fails (a full disk) the turn
//! is undone newest first, so memory equals disk again; its effects are
//! dropped (nothing spawns, nothing is notified), callers get the storage
//! error (507), and what the engine itself had to record (a step that ended,
//! a notification delivered) is kept and written again with backoff. While
//! storage fails `/readyz` is 503, `oj_storage_errors_total` counts the
//! failed writes, and one ERROR line is logged per episode.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use oj_core::{
    Event, IdGen, Job, JobCounts, JobFilter, JobId, JobSpec, JobState, JobView, Notification,
    NotificationKind, SpecError, State, StepStatus, Timestamp, Undo,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::Instrument;

use crate::job_span;
mod queues;
mod retention;
mod retry;
mod submit_meta;
mod workdir;

pub use queues::{QueueInfo, QueueOpError, ReleaseError, configured_queues, removed_queues_in_use};
pub mod schedules;

pub use retention::{PruneError, PruneFilter, RemoveError, Retention};
pub use submit_meta::{SubmitMeta, Submitted};

use crate::metrics::Metrics;
use crate::runner::{Runners, StepContext, StepOutcome, Stop};
use crate::storage::{Committed, Storage};

/// Jobs a list page holds when the client does not say.
pub const PAGE_DEFAULT: usize = 100;
/// The most jobs one list page holds.
pub const PAGE_MAX: usize = 1000;
/// A page stops early once its JSON passes this many bytes (the rest is on
/// the next page), so one request's memory does not grow with job sizes.
const PAGE_BYTES: usize = 1 << 20;

/// First and longest wait before writing again what a failed commit could
/// not store.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Command {
    /// A query that answers from the state at once (no event of its own).
    fn reads_state(&self) -> bool {
        matches!(
            self,
            Command::Get { .. }
                | Command::Page { .. }
                | Command::Progress { .. }
                | Command::Queue(queues::QueueCommand::List { .. })
                | Command::Schedule(schedules::ScheduleCommand::List { .. })
        )
    }
}

/// How long a turn that no caller waits for (step ends) may wait for more
/// work to share its fsync with, while other steps run. Bounds the delay
/// such a turn adds to what follows it (the next step, a notification).
const GROUP_COMMIT_WINDOW: Duration = Duration::from_millis(1);

/// WAL records between two snapshots.
pub const SNAPSHOT_EVERY: usize = 10_000;

/// Where notifications go (the notifier of `oj_adapters::notify`, or none).
pub trait NotifySink: Send + Sync + 'static {
    /// Whether notifications of `kind` are wanted at all (else they are not persisted).
    fn wants(&self, kind: NotificationKind) -> bool;
    /// Hands a notification over; never blocks.
    fn enqueue(&self, n: &Notification);
}

/// Runs once when this daemon becomes leader, before any job starts or a
/// container step is followed again; gets the ids of every known job (the
/// Kubernetes adapter deletes pods of unknown jobs).
pub type LeadHook = Arc<dyn Fn(HashSet<String>) -> BoxFuture<'static, ()> + Send + Sync>;

/// The engine's slice of the configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub max_concurrent: usize,
    pub step_timeout: Duration,
    pub logs_dir: PathBuf,
    /// Re-read the WAL and snapshot when becoming leader: a standby's copy
    /// may be stale if the state directory is shared (lease strategy).
    pub reload_on_lead: bool,
    /// `jobs.allow_shell`: `false` = only container steps are accepted.
    pub allow_shell: bool,
    /// `jobs.keep_finished` and `jobs.max_finished`.
    pub retention: Retention,
    /// `queues.<name>.max_concurrent` (`None` = `jobs.max_concurrent`).
    pub queues: std::collections::BTreeMap<String, Option<usize>>,
}

/// Why a submission was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    #[error(
        "the daemon is draining (shutting down) and accepts no new jobs; submit again once it has restarted"
    )]
    Draining,
    #[error("this daemon is a standby (it does not hold the lock); send the job to the leader")]
    NotLeader,
    #[error("invalid job spec: {0}")]
    Invalid(#[from] SpecError),
    #[error(
        "the job could not be stored durably, so it was not accepted and will not run: {0}; free space on the state volume (or fix the error) and submit again"
    )]
    Storage(String),
    #[error("the engine has stopped")]
    Gone,
    #[error(
        "the Idempotency-Key was first used for job {0} with a different job spec; send the same spec to get that job back, or use a new key for a new job"
    )]
    IdempotencyConflict(JobId),
    #[error(
        "the first request with this Idempotency-Key (job {0}) is still being committed; retry in a moment"
    )]
    IdempotencyInProgress(JobId),
}

/// Why a cancel was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CancelError {
    #[error("no job with id {0}")]
    NotFound(JobId),
    #[error("job {id} has already ended ({state}); nothing to cancel")]
    Ended { id: JobId, state: JobState },
    #[error("this daemon is a standby (it does not hold the lock)")]
    NotLeader,
    #[error(
        "the cancel could not be stored durably, so the job goes on: {0}; free space on the state volume (or fix the error) and cancel again"
    )]
    Storage(String),
    #[error("the engine has stopped")]
    Gone,
}

/// A step being run now, as the drain reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveStep {
    pub job_id: JobId,
    pub job_name: String,
    pub step: String,
    /// Container steps are left running in their pods by the drain.
    pub container: bool,
}

type Reply = Box<dyn FnOnce(Option<&str>) + Send>;

/// One page of `GET /v1/jobs`: the response body, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPage {
    /// `{"jobs": [...], "next": "<id>" | null}`.
    pub body: Vec<u8>,
    /// How many jobs the page holds.
    pub len: usize,
    pub next: Option<JobId>,
}

/// A job's progress, without its spec (what a log follower polls).
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub state: JobState,
    pub steps: Vec<StepStatus>,
}

enum Command {
    Submit {
        spec: Box<JobSpec>,
        meta: SubmitMeta,
        reply: oneshot::Sender<Result<Submitted, SubmitError>>,
    },
    Get {
        id: JobId,
        reply: oneshot::Sender<Option<Job>>,
    },
    Page {
        filter: Box<JobFilter>,
        after: Option<JobId>,
        limit: usize,
        reply: oneshot::Sender<JobPage>,
    },
    Progress {
        id: JobId,
        reply: oneshot::Sender<Option<Progress>>,
    },
    Cancel {
        id: JobId,
        reply: oneshot::Sender<Result<Job, CancelError>>,
    },
    StepExited {
        id: JobId,
        step: usize,
        outcome: StepOutcome,
    },
    NotificationAcked {
        id: String,
    },
    Remove {
        id: JobId,
        reply: oneshot::Sender<Result<(), RemoveError>>,
    },
    Prune {
        filter: PruneFilter,
        reply: oneshot::Sender<Result<usize, PruneError>>,
    },
    Drain,
    Terminate,
    LeadReady,
    Shutdown {
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A reload's new `jobs.*` slice: applies to jobs started from now on.
    Reconfigure(EngineConfig),
    /// Release, pause, resume, the queue list (SPEC §8.2).
    Queue(queues::QueueCommand),
    /// `GET /v1/schedules`, `POST /v1/schedules/{name}/…`.
    Schedule(schedules::ScheduleCommand),
    /// A reload's new `schedules.*`.
    Schedules(schedules::ScheduleConfigs),
}

/// A cheap, cloneable handle to the engine task.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::UnboundedSender<Command>,
    active: watch::Receiver<Vec<ActiveStep>>,
    counts: watch::Receiver<JobCounts>,
    storage_error: watch::Receiver<Option<String>>,
    events: Arc<crate::events::Hub>,
}

impl EngineHandle {
    /// What the engine publishes after each commit (`GET /v1/events`).
    pub fn events(&self) -> &Arc<crate::events::Hub> {
        &self.events
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).ok()?;
        rx.await.ok()
    }

    pub async fn submit(&self, spec: JobSpec) -> Result<Job, SubmitError> {
        self.submit_with(spec, SubmitMeta::default())
            .await
            .map(|s| s.job)
    }

    pub async fn get(&self, id: JobId) -> Option<Job> {
        self.ask(|reply| Command::Get { id, reply }).await.flatten()
    }

    /// A page of jobs, newest first, older than `after`; `limit` is capped
    /// at [`PAGE_MAX`]. `None` once the engine has stopped.
    pub async fn page(
        &self,
        status: Option<JobState>,
        after: Option<JobId>,
        limit: usize,
    ) -> Option<JobPage> {
        let filter = JobFilter {
            status,
            ..JobFilter::default()
        };
        self.page_filtered(filter, after, limit).await
    }

    /// A job's state and steps (cheaper than [`EngineHandle::get`]).
    pub async fn progress(&self, id: JobId) -> Option<Progress> {
        self.ask(|reply| Command::Progress { id, reply })
            .await
            .flatten()
    }

    /// Jobs per state as of the last engine turn; never waits for the
    /// engine (so `/v1/status` answers while a big request is served).
    pub async fn counts(&self) -> JobCounts {
        *self.counts.borrow()
    }

    /// [`EngineHandle::counts`] without awaiting.
    pub fn counts_now(&self) -> JobCounts {
        *self.counts.borrow()
    }

    /// The last storage error while writes fail; `None` when they work.
    pub fn storage_error(&self) -> Option<String> {
        self.storage_error.borrow().clone()
    }

    pub async fn cancel(&self, id: JobId) -> Result<Job, CancelError> {
        self.ask(|reply| Command::Cancel { id, reply })
            .await
            .unwrap_or(Err(CancelError::Gone))
    }

    /// Records that a notification is finished (called from the notifier).
    pub fn ack_notification(&self, id: &str) {
        let _ = self
            .tx
            .send(Command::NotificationAcked { id: id.to_string() });
    }

    /// Drain phase 1: start no more jobs, refuse submissions.
    pub fn drain(&self) {
        let _ = self.tx.send(Command::Drain);
    }

    /// Drain phase 3: stop every running shell step (SIGTERM, SIGKILL later).
    pub fn terminate(&self) {
        let _ = self.tx.send(Command::Terminate);
    }

    /// Writes the final snapshot and stops the engine.
    pub async fn shutdown(&self) -> Result<(), String> {
        self.ask(|reply| Command::Shutdown { reply })
            .await
            .unwrap_or_else(|| Err("the engine had already stopped".into()))
    }

    /// Applies a reloaded `jobs.max_concurrent` / `jobs.step_timeout` at once.
    pub fn reconfigure(&self, cfg: EngineConfig) {
        let _ = self.tx.send(Command::Reconfigure(cfg));
    }

    /// The steps running now (updated on every change).
    pub fn active(&self) -> watch::Receiver<Vec<ActiveStep>> {
        self.active.clone()
    }
}

struct Running {
    step: usize,
    stop: watch::Sender<Stop>,
    container: bool,
    step_name: String,
    job_name: String,
}

/// What a turn does once its events are durable (and never otherwise).
enum Effect {
    Reply(Reply),
    Spawn {
        ctx: Box<StepContext>,
        running: Running,
        stop: watch::Receiver<Stop>,
    },
    Notify(Box<Notification>),
    /// Job metrics (queue wait, duration, ends) of a committed event.
    Observe(Event),
    /// Schedule fire times settled (counted once durable).
    ScheduleFired {
        schedule: String,
        result: oj_core::FireResult,
        count: u64,
    },
    /// A schedule left the config: its metric series go.
    ScheduleGone(String),
    /// Deletes `logs/<id>/` of a removed job (only once the removal is durable).
    RemoveLogs(JobId),
    /// The engine stops tracking a step that ended (and, when the job
    /// ended, the job's cancel request).
    Forget(JobId),
    Submitted,
}

/// What the current turn changed, to undo it if its commit fails.
#[derive(Default)]
struct Turn {
    /// Applied events' undos, oldest first.
    undo: Vec<Undo>,
    /// Commands from inside the daemon whose events must be written again
    /// if this turn's commit fails.
    internal: Vec<Command>,
    /// The turn ran the recovery after a restart.
    recovered: bool,
    /// Idempotency keys of jobs submitted in this turn (not durable yet).
    keys: HashSet<String>,
}

/// A storage episode: writes fail.
struct StorageTrouble {
    failures: u64,
    backoff: Duration,
}

/// The engine task's state.
pub struct Engine {
    state: State,
    storage: Storage,
    cfg: EngineConfig,
    runners: Runners,
    notify: Option<Arc<dyn NotifySink>>,
    metrics: Arc<Metrics>,
    rx: mpsc::UnboundedReceiver<Command>,
    tx: mpsc::UnboundedSender<Command>,
    leader: watch::Receiver<bool>,
    is_leader: bool,
    /// False once the lock strategy dropped its sender (leadership is then fixed).
    leader_open: bool,
    recovered: bool,
    lead_hook: Option<LeadHook>,
    lead_pending: bool,
    draining: bool,
    terminating: bool,
    ids: IdGen,
    running: HashMap<JobId, Running>,
    cancel_requested: HashSet<JobId>,
    effects: Vec<Effect>,
    turn: Turn,
    /// Internal commands a failed commit could not store, to retry.
    retry: Vec<Command>,
    /// When to write again (set while storage fails or retries wait).
    retry_at: Option<Instant>,
    trouble: Option<StorageTrouble>,
    /// Steps waiting for their next attempt: job → (step, when).
    step_retries: HashMap<JobId, (usize, Instant)>,
    /// When retention runs next.
    prune_at: Instant,
    /// Log directories of jobs no longer known were looked for (once).
    orphan_logs_checked: bool,
    active_tx: watch::Sender<Vec<ActiveStep>>,
    active_dirty: bool,
    counts_tx: watch::Sender<JobCounts>,
    storage_error_tx: watch::Sender<Option<String>>,
    /// Jobs whose dependencies must be judged before this turn commits.
    to_judge: Vec<JobId>,
    /// Steps whose retry is due but waits for a free slot.
    retry_ready: Vec<(JobId, usize)>,
    /// The queues as the metrics last showed them.
    published_queues: Vec<QueueInfo>,
    sched: schedules::Scheduler,
    /// Publishes each durable turn's changes (crate::events).
    events: crate::events::Publisher,
}

impl Engine {
    /// Builds the engine around replayed state; run it with [`Engine::run`].
    pub fn new(
        state: State,
        storage: Storage,
        cfg: EngineConfig,
        runners: Runners,
        metrics: Arc<Metrics>,
        leader: watch::Receiver<bool>,
    ) -> (Engine, EngineHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (active_tx, active_rx) = watch::channel(Vec::new());
        let (counts_tx, counts_rx) = watch::channel(state.counts());
        let (storage_error_tx, storage_error_rx) = watch::channel(None);
        let ids = IdGen::after(state.newest_id()).with_node(crate::identity::id_node());
        let events = crate::events::Publisher::new(storage.next_seq() - 1);
        let hub = events.hub();
        let engine = Engine {
            state,
            storage,
            cfg,
            runners,
            notify: None,
            metrics,
            rx,
            tx: tx.clone(),
            leader,
            is_leader: false,
            leader_open: true,
            recovered: false,
            lead_hook: None,
            lead_pending: false,
            draining: false,
            terminating: false,
            ids,
            running: HashMap::new(),
            cancel_requested: HashSet::new(),
            effects: Vec::new(),
            turn: Turn::default(),
            retry: Vec::new(),
            retry_at: None,
            trouble: None,
            step_retries: HashMap::new(),
            prune_at: Instant::now(),
            orphan_logs_checked: false,
            active_tx,
            active_dirty: false,
            counts_tx,
            storage_error_tx,
            to_judge: Vec::new(),
            retry_ready: Vec::new(),
            published_queues: Vec::new(),
            sched: schedules::Scheduler::new(schedules::system_clock(), &Default::default()),
            events,
        };
        (
            engine,
            EngineHandle {
                tx,
                active: active_rx,
                counts: counts_rx,
                storage_error: storage_error_rx,
                events: hub,
            },
        )
    }

    /// Notifications not acknowledged before the last stop (to hand to the notifier).
    pub fn pending_notifications(&self) -> Vec<Notification> {
        self.state.pending_notifications()
    }

    /// Sets the hook run when this daemon becomes leader.
    pub fn set_on_lead(&mut self, hook: LeadHook) {
        self.lead_hook = Some(hook);
    }

    /// The wall clock schedules fire by, and the configured schedules.
    pub fn set_schedules(&mut self, clock: schedules::Clock, configs: &schedules::ScheduleConfigs) {
        self.sched = schedules::Scheduler::new(clock, configs);
    }

    /// Plugs in the notifier.
    pub fn set_notifier(&mut self, sink: Arc<dyn NotifySink>) {
        self.notify = Some(sink);
    }

    /// Runs until [`EngineHandle::shutdown`].
    pub async fn run(mut self) {
        self.check_leader();
        self.after_turn();
        loop {
            let (step_retry_at, prune_at) = (self.next_step_retry(), self.prune_at);
            let not_before = self.next_not_before();
            let schedule_at = self.sched.wake_at;
            let cmd = tokio::select! {
                // Leadership first: a request sent after the API saw the
                // change must see it too.
                biased;
                changed = self.leader.changed(), if self.leader_open => {
                    if changed.is_err() {
                        // The lock strategy is gone: keep the last value.
                        self.leader_open = false;
                    }
                    self.check_leader();
                    self.after_turn();
                    continue;
                }
                () = sleep_until(self.retry_at), if self.retry_at.is_some() => {
                    self.retry_stored();
                    continue;
                }
                () = sleep_until(step_retry_at), if step_retry_at.is_some() => {
                    self.start_due_retries();
                    self.after_turn();
                    continue;
                }
                () = sleep_until(not_before), if not_before.is_some() => {
                    self.after_turn();
                    continue;
                }
                () = sleep_until(schedule_at), if schedule_at.is_some() => {
                    self.after_turn();
                    continue;
                }
                () = tokio::time::sleep_until(prune_at) => {
                    self.prune_retention();
                    self.after_turn();
                    continue;
                }
                cmd = self.rx.recv() => cmd,
            };
            let Some(cmd) = cmd else { break };
            let mut stop = self.handle(cmd);
            self.take_waiting(&mut stop);
            let mut closed = false;
            if stop.is_none() && self.may_defer_commit() {
                // Group commit: a turn nobody waits for shares the next
                // turn's fsync when more work is about to come.
                match tokio::time::timeout(GROUP_COMMIT_WINDOW, self.rx.recv()).await {
                    Ok(Some(cmd)) => {
                        stop = self.handle(cmd);
                        self.take_waiting(&mut stop);
                    }
                    Ok(None) => closed = true,
                    Err(_) => {}
                }
            }
            self.after_turn();
            if closed {
                break;
            }
            if let Some(reply) = stop {
                let result = tokio::task::block_in_place(|| self.storage.snapshot(&self.state))
                    .map_err(|e| e.to_string());
                match &result {
                    Ok(()) => {
                        tracing::info!(jobs = self.state.jobs().count(), "final snapshot written")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write the final snapshot; the WAL still has every change")
                    }
                }
                let _ = reply.send(result);
                break;
            }
        }
    }

    /// Handles whatever else is already waiting, into the same commit.
    fn take_waiting(&mut self, stop: &mut Option<oneshot::Sender<Result<(), String>>>) {
        let mut n = 0;
        while stop.is_none() && n < 512 {
            match self.rx.try_recv() {
                Ok(cmd) => *stop = self.handle(cmd),
                Err(_) => break,
            }
            n += 1;
        }
    }

    /// Whether this turn's commit may wait [`GROUP_COMMIT_WINDOW`] for more
    /// work: it has something to write, no caller waits for it (step ends,
    /// acks), storage works, and other steps still run, so more step ends
    /// are coming. A lone job's end is committed at once.
    fn may_defer_commit(&self) -> bool {
        let ending = self
            .effects
            .iter()
            .filter(|e| matches!(e, Effect::Forget(_)))
            .count();
        self.storage.has_pending()
            && self.trouble.is_none()
            && !self.effects.iter().any(|e| matches!(e, Effect::Reply(_)))
            && self.running.len() > ending
    }

    fn check_leader(&mut self) {
        let leader = *self.leader.borrow_and_update();
        if leader != self.is_leader {
            self.is_leader = leader;
            self.events.status_changed();
            if leader {
                tracing::info!("leader: jobs may run");
            } else {
                tracing::warn!("not the leader: no job starts");
            }
        }
        if leader && !self.recovered && !self.lead_pending {
            self.reload();
            match &self.lead_hook {
                Some(hook) => {
                    self.lead_pending = true;
                    let ids = self.state.jobs().map(|j| j.id.to_string()).collect();
                    let fut = hook(ids);
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        fut.await;
                        let _ = tx.send(Command::LeadReady);
                    });
                }
                None => {
                    self.recovered = true;
                    self.recover();
                }
            }
        }
    }

    /// Reloads state from disk (first leadership of a lease standby).
    fn reload(&mut self) {
        if !self.cfg.reload_on_lead {
            return;
        }
        let dir = self.storage.dir().to_path_buf();
        match tokio::task::block_in_place(|| Storage::open(&dir)) {
            Ok((storage, state, report)) => {
                tracing::info!(
                    jobs = state.jobs().count(),
                    wal_records = report.wal_records,
                    "state reloaded on becoming leader"
                );
                self.storage = storage;
                self.state = state;
                self.ids =
                    IdGen::after(self.state.newest_id()).with_node(crate::identity::id_node());
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reload the state on becoming leader; using the copy loaded at start")
            }
        }
    }

    /// Jobs left `running` by a process that died: follow container steps
    /// again when the container runner can, end the rest `interrupted`.
    fn recover(&mut self) {
        self.turn.recovered = true;
        // Workspaces of jobs that ended while no daemon ran (SPEC §8.5).
        self.runners
            .container
            .release(crate::cluster::sweep_of(self.state.jobs()));
        let now = now();
        let running: Vec<JobId> = self
            .state
            .running()
            .filter(|id| !self.running.contains_key(*id))
            .cloned()
            .collect();
        for id in running {
            if self.rearm_waiting_retry(&id) {
                continue;
            }
            let Some(job) = self.state.job(&id) else {
                continue;
            };
            let span = job_span::job_span(id.as_str(), &job.name);
            let _in_job = span.enter();
            let step = job.running_step();
            let reattach = step.and_then(|i| {
                job.spec.step_container(i)?;
                let ctx = self.step_context(job, i).ok()?;
                let (stop_tx, stop_rx) = watch::channel(Stop::Run);
                let fut = self.runners.container.reattach(ctx.clone(), stop_rx)?;
                Some((i, ctx, stop_tx, fut))
            });
            match reattach {
                Some((i, ctx, stop_tx, fut)) => {
                    tracing::info!(job_id = %id, step = %ctx.step_name, "following a container step started before the restart");
                    self.running.insert(
                        id.clone(),
                        Running {
                            step: i,
                            stop: stop_tx,
                            container: true,
                            step_name: ctx.step_name.clone(),
                            job_name: ctx.job_name.clone(),
                        },
                    );
                    self.active_dirty = true;
                    let tx = self.tx.clone();
                    let fut = fut.instrument(span.clone());
                    tokio::spawn(async move {
                        let outcome = fut.await;
                        let _ = tx.send(Command::StepExited {
                            id: ctx.job_id.clone(),
                            step: ctx.index,
                            outcome,
                        });
                    });
                }
                None => {
                    // Its shell step's processes outlived the dead daemon
                    // (own process group): stop them before saying so.
                    let killed = crate::runner::shell::kill_leftovers(id.as_str());
                    if killed > 0 {
                        tracing::warn!(job_id = %id, processes = killed, "killed what was left of the job's step from before the restart");
                    }
                    let what = match step.map(|i| job.steps[i].name.clone()) {
                        Some(s) => format!("the daemon stopped while step {s} was running"),
                        None => "the daemon stopped while the job was running".to_string(),
                    };
                    tracing::warn!(job_id = %id, "job was running when the daemon stopped; marking it interrupted");
                    self.record(Event::JobFinished {
                        id,
                        at: now,
                        state: JobState::Interrupted,
                        error: Some(what),
                    });
                }
            }
        }
        self.judge_all_blocked();
        let queued = self.state.counts().queued;
        if queued > 0 {
            tracing::info!(queued, "queued jobs from before the restart will start");
        }
    }

    fn handle(&mut self, cmd: Command) -> Option<oneshot::Sender<Result<(), String>>> {
        if cmd.reads_state() && self.storage.has_pending() {
            // A reader sees only what is durable: commit the turn so far.
            self.after_turn();
        }
        match cmd {
            Command::Submit { spec, meta, reply } => self.submit(spec, meta, reply),
            Command::Get { id, reply } => {
                let _ = reply.send(self.shown(&id));
            }
            Command::Page {
                filter,
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.page(&filter, after.as_ref(), limit));
            }
            Command::Progress { id, reply } => {
                let _ = reply.send(self.state.job(&id).map(|j| Progress {
                    state: j.state,
                    steps: j.steps.clone(),
                }));
            }
            Command::Cancel { id, reply } => self.cancel(id, reply),
            Command::StepExited { id, step, outcome } => {
                self.turn.internal.push(Command::StepExited {
                    id: id.clone(),
                    step,
                    outcome: outcome.clone(),
                });
                self.step_exited(id, step, outcome)
            }
            Command::NotificationAcked { id } => {
                if self.state.notifications().any(|n| n.id == id) {
                    self.turn
                        .internal
                        .push(Command::NotificationAcked { id: id.clone() });
                    self.record(Event::NotificationAcked { id });
                }
            }
            Command::Reconfigure(cfg) => self.cfg = cfg,
            Command::Schedule(cmd) => self.handle_schedule(cmd),
            Command::Schedules(configs) => self.configure_schedules(configs),
            Command::Remove { id, reply } => self.remove_job(id, reply),
            Command::Prune { filter, reply } => self.prune_matching(filter, reply),
            Command::Drain => {
                if !self.draining {
                    self.draining = true;
                    self.events.status_changed();
                    tracing::info!(
                        queued = self.state.counts().queued,
                        "draining: no new jobs start; queued jobs stay queued"
                    );
                }
            }
            Command::Terminate => {
                self.draining = true;
                self.terminating = true;
                for (id, r) in &self.running {
                    let _in_job = job_span::job_span(id.as_str(), &r.job_name).entered();
                    // A container step's runner applies shutdown.container_steps:
                    // detach (the pod keeps running) or delete the pod.
                    if !r.container {
                        tracing::warn!(job_id = %id, step = %r.step_name, "terminating step: SIGTERM to its process group");
                    }
                    r.stop.send_if_modified(|s| {
                        if *s == Stop::Run {
                            *s = Stop::Terminate;
                            true
                        } else {
                            false
                        }
                    });
                }
            }
            Command::LeadReady => {
                self.lead_pending = false;
                if self.is_leader && !self.recovered {
                    self.recovered = true;
                    self.recover();
                }
            }
            Command::Shutdown { reply } => return Some(reply),
            Command::Queue(cmd) => self.queue_command(cmd),
        }
        None
    }

    /// Why a job cannot be admitted now, if it cannot: standby, draining,
    /// a bad spec, a shell step under `jobs.allow_shell = false`, an
    /// unknown queue or dependency.
    fn refusal(&self, spec: &JobSpec) -> Option<SubmitError> {
        if !self.is_leader {
            Some(SubmitError::NotLeader)
        } else if self.draining {
            Some(SubmitError::Draining)
        } else {
            spec.validate()
                .and_then(|()| match self.cfg.allow_shell {
                    true => Ok(()),
                    false => spec.refuse_shell_steps(),
                })
                .and_then(|()| self.admit(spec))
                .err()
                .map(SubmitError::Invalid)
        }
    }

    fn submit(
        &mut self,
        spec: Box<JobSpec>,
        meta: SubmitMeta,
        reply: oneshot::Sender<Result<Submitted, SubmitError>>,
    ) {
        if let Some(e) = self.refusal(&spec) {
            let _ = reply.send(Err(e));
            return;
        }
        if let Some(answer) = self.idempotent_answer(&spec, &meta) {
            let _ = reply.send(answer);
            return;
        }
        match self.admit_job(spec, meta, None) {
            Ok(job) => self.effects.push(Effect::Reply(Box::new(move |err| {
                let _ = reply.send(match err {
                    None => Ok(Submitted { job, created: true }),
                    Some(e) => Err(SubmitError::Storage(e.to_string())),
                });
            }))),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// The admission of every job, submitted or fired by a schedule:
    /// checks the spec, records the job (with the schedule fire it
    /// settles, in the same WAL record) and returns it.
    fn admit_job(
        &mut self,
        spec: Box<JobSpec>,
        meta: SubmitMeta,
        schedule: Option<oj_core::JobSchedule>,
    ) -> Result<Job, SubmitError> {
        if let Some(e) = self.refusal(&spec) {
            return Err(e);
        }
        let at = now();
        let id = self.ids.next(at.0);
        spec.check_filled(id.as_str())
            .map_err(SubmitError::Invalid)?;
        let mut job = Job::new(id.clone(), *spec, at);
        self.stamp(&mut job, meta);
        job.schedule = schedule;
        let _in_job = job_span::job_span(id.as_str(), &job.name).entered();
        tracing::info!(job_id = %id, name = %job.name, steps = job.steps.len(), "job submitted");
        self.record(Event::JobSubmitted {
            job: Box::new(job.clone()),
        });
        self.judge_dependents();
        let job = self.shown(&id).unwrap_or(job);
        self.effects.push(Effect::Submitted);
        Ok(job)
    }

    fn cancel(&mut self, id: JobId, reply: oneshot::Sender<Result<Job, CancelError>>) {
        if !self.is_leader {
            let _ = reply.send(Err(CancelError::NotLeader));
            return;
        }
        if self.cancel_waiting_retry(&id) {
            return self.reply_cancelled(id, reply);
        }
        let Some(job) = self.state.job(&id) else {
            let _ = reply.send(Err(CancelError::NotFound(id)));
            return;
        };
        let _in_job = job_span::job_span(id.as_str(), &job.name).entered();
        match job.state {
            JobState::Queued => {
                tracing::info!(job_id = %id, "cancelling queued job");
                self.record(Event::JobFinished {
                    id: id.clone(),
                    at: now(),
                    state: JobState::Cancelled,
                    error: Some("cancelled before it started".into()),
                });
            }
            JobState::Running => {
                tracing::info!(job_id = %id, "cancelling running job");
                self.cancel_requested.insert(id.clone());
                if let Some(r) = self.running.get(&id) {
                    r.stop.send_if_modified(|s| {
                        if *s == Stop::Run {
                            *s = Stop::Cancel;
                            true
                        } else {
                            false
                        }
                    });
                }
            }
            state => {
                let _ = reply.send(Err(CancelError::Ended { id, state }));
                return;
            }
        }
        self.reply_cancelled(id, reply);
    }

    /// Answers a cancel once its events are durable.
    fn reply_cancelled(&mut self, id: JobId, reply: oneshot::Sender<Result<Job, CancelError>>) {
        let snapshot = self.state.job(&id).cloned();
        self.effects.push(Effect::Reply(Box::new(move |err| {
            let _ = reply.send(match (err, snapshot) {
                (None, Some(job)) => Ok(job),
                (None, None) => Err(CancelError::NotFound(id)),
                (Some(e), _) => Err(CancelError::Storage(e.to_string())),
            });
        })));
    }

    fn step_exited(&mut self, id: JobId, step: usize, outcome: StepOutcome) {
        let _in_job = job_span::of(&self.state, &id).entered();
        if outcome == StepOutcome::Detached {
            if self.running.remove(&id).is_some() {
                self.active_dirty = true;
            }
            tracing::info!(job_id = %id, step, "step left running in its pod; the next daemon follows it");
            return;
        }
        let Some(run) = self.running.get(&id) else {
            tracing::warn!(job_id = %id, step, "a step ended that the engine was not running");
            return;
        };
        if run.step != step {
            tracing::warn!(job_id = %id, step, expected = run.step, "step index mismatch");
        }
        let stop = *run.stop.borrow();
        let cancelled = stop == Stop::Cancel || self.cancel_requested.contains(&id);
        let at = now();
        let step_name = run.step_name.clone();
        let (step_state, exit_code, error) =
            classify(&outcome, cancelled, stop == Stop::Terminate, &step_name);
        if self.retry_or_fail(
            &id,
            step,
            &outcome,
            step_state,
            exit_code,
            error.as_deref(),
            at,
        ) {
            self.effects.push(Effect::Forget(id));
            return;
        }
        tracing::info!(job_id = %id, step = %step_name, state = %step_state, exit_code, "step ended");
        self.record(Event::StepFinished {
            id: id.clone(),
            step,
            at,
            state: step_state,
            exit_code,
            reason: error.clone(),
        });
        self.effects.push(Effect::Forget(id.clone()));
        // What comes next is a pure decision (oj_core::step_end).
        let steps = self.state.job(&id).map_or(&[][..], |j| &j.steps[..]);
        match oj_core::after_step(steps, step, step_state, error, cancelled, self.terminating) {
            oj_core::AfterStep::StartNext(next) => self.start_step(&id, next),
            oj_core::AfterStep::JobEnds { state, error } => {
                tracing::info!(job_id = %id, state = %state, error = error.as_deref(), "job ended");
                self.record(Event::JobFinished {
                    id,
                    at,
                    state,
                    error,
                });
            }
        }
    }

    /// Starts queued jobs while there is room, leader and not draining.
    fn schedule(&mut self) {
        if !self.is_leader || self.draining || !self.recovered {
            return;
        }
        self.state.advance_clock(now());
        self.start_retries_with_room();
        for id in self.state.pick(&self.limits()) {
            let _in_job = job_span::of(&self.state, &id).entered();
            let at = now();
            self.record(Event::JobStarted { id: id.clone(), at });
            tracing::info!(job_id = %id, "job started");
            self.start_step(&id, 0);
        }
    }

    /// What the runner needs to start step `index`; fails when its `run`
    /// or env fill in too long to start (checked at submit, but a job
    /// queued by an older version may not have been).
    fn step_context(&self, job: &Job, index: usize) -> Result<StepContext, SpecError> {
        let step = &job.spec.steps[index];
        let filled = job.spec.fill_step(job.id.as_str(), index)?;
        let mut env = filled.env;
        env.insert("OJ_JOB_ID".into(), job.id.to_string());
        env.insert("OJ_JOB_NAME".into(), job.name.clone());
        env.insert("OJ_STEP".into(), step.name.clone());
        Ok(StepContext {
            job_id: job.id.clone(),
            job_name: job.name.clone(),
            index,
            attempt: job
                .steps
                .get(index)
                .map_or(1, |s| s.attempts.len() as u32 + 1),
            step_name: step.name.clone(),
            run: filled.run,
            env,
            container: job.spec.step_container(index).cloned(),
            job_resources: job
                .spec
                .container
                .as_ref()
                .and_then(|c| c.resources.clone()),
            step_resources: step.container.as_ref().and_then(|c| c.resources.clone()),
            timeout: step.timeout.unwrap_or(self.cfg.step_timeout),
            work_dir: self.work_dir(job, index),
            log_path: self
                .cfg
                .logs_dir
                .join(job.id.as_str())
                .join(format!("{}.log", step.name)),
            pod: crate::cluster::pod_parts(&job.spec, index),
        })
    }

    fn start_step(&mut self, id: &JobId, index: usize) {
        let Some(job) = self.state.job(id) else {
            return;
        };
        let at = now();
        let ctx = match self.step_context(job, index) {
            Ok(ctx) => ctx,
            Err(e) => return self.fail_unstartable(id, index, at, e.to_string()),
        };
        if ctx.container.is_none() && !self.cfg.allow_shell {
            // Accepted before the policy changed (queued, waiting for its
            // retry, restored from the WAL): the policy holds at the start.
            let error = shell_refused(&ctx.step_name);
            return self.fail_unstartable(id, index, at, error);
        }
        let container = ctx.container.is_some();
        let pod = container.then(|| StepContext::attempt_pod_name(id, index, ctx.attempt));
        let (stop_tx, stop_rx) = watch::channel(Stop::Run);
        let running = Running {
            step: index,
            stop: stop_tx,
            container,
            step_name: ctx.step_name.clone(),
            job_name: ctx.job_name.clone(),
        };
        self.record(Event::StepStarted {
            id: id.clone(),
            step: index,
            at,
            pod,
        });
        self.effects.push(Effect::Spawn {
            ctx: Box::new(ctx),
            running,
            stop: stop_rx,
        });
    }

    /// A step that cannot be started fails, and its job with it; the
    /// daemon goes on.
    fn fail_unstartable(&mut self, id: &JobId, index: usize, at: Timestamp, error: String) {
        tracing::warn!(job_id = %id, step = index, error = %error, "step cannot start; the job fails");
        self.record(Event::StepStarted {
            id: id.clone(),
            step: index,
            at,
            pod: None,
        });
        self.record(Event::StepFinished {
            id: id.clone(),
            step: index,
            at,
            state: JobState::Failed,
            exit_code: None,
            reason: Some(error.clone()),
        });
        self.record(Event::JobFinished {
            id: id.clone(),
            at,
            state: JobState::Failed,
            error: Some(error),
        });
    }

    /// Applies an event to the state (keeping its undo for this turn) and
    /// buffers it for the WAL; queues the notification it calls for.
    fn record(&mut self, event: Event) {
        self.events.before(&event, &self.state);
        match self.state.apply_undoable(&event) {
            Ok(undo) => self.turn.undo.push(undo),
            Err(e) => {
                tracing::error!(error = %e, "internal: an event does not fit the state; ignored");
                return;
            }
        }
        let seq = self.storage.next_seq();
        self.storage.append(&event);
        self.note_for_dependents(&event);
        self.events.staged(seq, &event);
        if matches!(event, Event::JobStarted { .. } | Event::JobFinished { .. }) {
            // Metrics count what is durable: after the commit.
            self.effects.push(Effect::Observe(event.clone()));
        }
        let Some((kind, id)) = event.notification_kind() else {
            return;
        };
        let Some(sink) = &self.notify else { return };
        if !sink.wants(kind) {
            return;
        }
        let Some(job) = self.state.job(id) else {
            return;
        };
        let at = match &event {
            Event::JobStarted { at, .. } | Event::JobFinished { at, .. } => *at,
            _ => now(),
        };
        let n = Notification::for_job(kind, job, at);
        let queued = Event::NotificationQueued {
            notification: Box::new(n.clone()),
        };
        if let Ok(undo) = self.state.apply_undoable(&queued) {
            self.turn.undo.push(undo);
            self.storage.append(&queued);
            self.effects.push(Effect::Notify(Box::new(n)));
        }
    }

    /// One page of jobs as the JSON body of `GET /v1/jobs`.
    fn page(&self, filter: &JobFilter, after: Option<&JobId>, limit: usize) -> JobPage {
        let (jobs, mut more) = self.state.page_filtered(filter, after, limit);
        let mut body = b"{\"jobs\":[".to_vec();
        let mut len = 0;
        for job in &jobs {
            if len > 0 && body.len() > PAGE_BYTES {
                more = true;
                break;
            }
            if len > 0 {
                body.push(b',');
            }
            let shown = (job.state == JobState::Queued)
                .then(|| self.shown(&job.id))
                .flatten();
            let job = shown.as_ref().unwrap_or(job);
            if let Err(e) = serde_json::to_writer(&mut body, &JobView::of(job)) {
                tracing::error!(job_id = %job.id, error = %e, "internal: cannot encode a job");
            }
            len += 1;
        }
        let next = more.then(|| jobs[len - 1].id.clone());
        body.extend_from_slice(b"],\"next\":");
        match &next {
            Some(id) => body.extend_from_slice(format!("\"{id}\"}}").as_bytes()),
            None => body.extend_from_slice(b"null}"),
        }
        JobPage { body, len, next }
    }

    /// Writes again what failed commits could not store, and tries what
    /// else is due (queued jobs), while storage fails or retries wait.
    fn retry_stored(&mut self) {
        self.retry_at = None;
        for cmd in std::mem::take(&mut self.retry) {
            // Internal commands only: none of them stops the engine.
            let _ = self.handle(cmd);
        }
        if self.is_leader && !self.recovered && !self.lead_pending {
            self.recovered = true;
            self.recover();
        }
        self.after_turn();
    }

    /// Schedules, commits the WAL, then performs the effects of the turn —
    /// or, when the commit fails, undoes the turn.
    fn after_turn(&mut self) {
        self.judge_dependents();
        self.prune_if_over_max();
        self.tick_schedules();
        self.schedule();
        let commit = if self.storage.has_pending() {
            // Inline, not through block_in_place: a write and an fdatasync
            // hold this worker for a fraction of a millisecond while the
            // other serves requests, and handing the worker's core to
            // another thread on every turn only added context switches
            // (about 3 per job, no throughput gained in bench/peers.sh).
            // Snapshots, probes and reloads, which can take long, still go
            // through block_in_place.
            self.storage.commit(&self.state).map_err(|e| e.to_string())
        } else if self.trouble.is_some() {
            // Nothing to write: only a real write may end the episode.
            tokio::task::block_in_place(|| self.storage.probe(&self.state))
                .map(|()| Committed::Appended)
                .map_err(|e| e.to_string())
        } else {
            Ok(Committed::Appended)
        };
        match commit {
            Ok(how) => {
                if how == Committed::Rewritten {
                    self.metrics.storage_errors.inc();
                }
                self.storage_works();
                self.turn = Turn::default();
                for effect in std::mem::take(&mut self.effects) {
                    self.perform(effect);
                }
            }
            Err(e) => {
                self.events.discard();
                self.undo_turn(e);
            }
        }
        self.publish();
        self.events
            .commit(&self.state, || self.storage.reserve_seq());
        if self.storage.wal_len() >= SNAPSHOT_EVERY && self.trouble.is_none() {
            match tokio::task::block_in_place(|| self.storage.snapshot(&self.state)) {
                Ok(()) => tracing::debug!("snapshot written"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot write a snapshot; the WAL keeps growing")
                }
            }
        }
    }

    fn perform(&mut self, effect: Effect) {
        match effect {
            Effect::Reply(reply) => reply(None),
            Effect::Submitted => {
                self.metrics.jobs_submitted.inc();
            }
            Effect::RemoveLogs(id) => {
                self.remove_logs(&id);
                self.remove_work_dir(&id);
            }
            Effect::Forget(id) => {
                self.running.remove(&id);
                self.active_dirty = true;
                if self.state.job(&id).is_none_or(|j| j.state.is_terminal()) {
                    self.cancel_requested.remove(&id);
                }
            }
            Effect::Spawn { ctx, running, stop } => {
                // A cancel or drain that came while the start was written.
                if self.cancel_requested.contains(&ctx.job_id) {
                    running.stop.send_replace(Stop::Cancel);
                } else if self.terminating {
                    // Container runners apply shutdown.container_steps to it.
                    running.stop.send_replace(Stop::Terminate);
                }
                self.running.insert(ctx.job_id.clone(), running);
                self.active_dirty = true;
                let runner = if ctx.container.is_some() {
                    self.runners.container.clone()
                } else {
                    self.runners.shell.clone()
                };
                let tx = self.tx.clone();
                let span = job_span::job_span(ctx.job_id.as_str(), &ctx.job_name);
                tokio::spawn(
                    async move {
                        let id = ctx.job_id.clone();
                        let index = ctx.index;
                        let outcome = runner.run(*ctx, stop).await;
                        let _ = tx.send(Command::StepExited {
                            id,
                            step: index,
                            outcome,
                        });
                    }
                    .instrument(span),
                );
            }
            Effect::Notify(n) => {
                if let Some(sink) = &self.notify {
                    let _in_job = job_span::job_span(n.job_id.as_str(), &n.job_name).entered();
                    sink.enqueue(&n);
                }
            }
            Effect::Observe(event) => {
                self.observe_schedule_end(&event);
                self.metrics.observe(&event, &self.state);
                if let Event::JobFinished { id, .. } = &event
                    && self
                        .state
                        .job(id)
                        .is_some_and(|j| j.spec.workspace.is_some())
                {
                    let release = crate::cluster::Release::Job(id.to_string());
                    self.runners.container.release(release);
                }
            }
            Effect::ScheduleFired {
                schedule,
                result,
                count,
            } => self.metrics.schedules.fired(&schedule, result, count),
            Effect::ScheduleGone(name) => self.metrics.schedules.forget(&name),
        }
    }

    /// The turn's commit failed: put memory back as it was, tell callers,
    /// drop every other effect, keep internal events to write again.
    fn undo_turn(&mut self, error: String) {
        let turn = std::mem::take(&mut self.turn);
        for undo in turn.undo.into_iter().rev() {
            self.state.undo(undo);
        }
        if turn.recovered {
            self.recovered = false;
        }
        self.rearm_undone_retries();
        self.sched.undone();
        for effect in std::mem::take(&mut self.effects) {
            if let Effect::Reply(reply) = effect {
                reply(Some(&error));
            }
        }
        self.retry.extend(turn.internal);
        self.metrics.storage_errors.inc();
        if self.trouble.is_none() {
            self.events.status_changed();
        }
        let trouble = self.trouble.get_or_insert_with(|| {
            tracing::error!(
                error = %error,
                "cannot write the WAL: nothing of this turn is kept; submissions get 507, no step starts, and the engine writes again with backoff until it works"
            );
            StorageTrouble {
                failures: 0,
                backoff: RETRY_FIRST,
            }
        });
        trouble.failures += 1;
        tracing::debug!(error = %error, failures = trouble.failures, "WAL write failed again");
        self.retry_at = Some(Instant::now() + trouble.backoff);
        trouble.backoff = (trouble.backoff * 2).min(RETRY_MAX);
        self.storage_error_tx.send_replace(Some(error));
    }

    /// A commit succeeded: end a storage episode, if one was going on.
    fn storage_works(&mut self) {
        if let Some(t) = self.trouble.take() {
            self.events.status_changed();
            tracing::info!(failed_writes = t.failures, "the WAL can be written again");
            self.storage_error_tx.send_replace(None);
        }
        if !self.retry.is_empty() {
            self.retry_at = Some(Instant::now());
        }
    }

    /// Publishes what the API reads without asking the engine.
    fn publish(&mut self) {
        self.publish_queues();
        let counts = self.state.counts();
        self.counts_tx.send_if_modified(|c| {
            let changed = *c != counts;
            *c = counts;
            changed
        });
        if self.active_dirty {
            self.active_dirty = false;
            let mut active: Vec<ActiveStep> = self
                .running
                .iter()
                .map(|(id, r)| ActiveStep {
                    job_id: id.clone(),
                    job_name: r.job_name.clone(),
                    step: r.step_name.clone(),
                    container: r.container,
                })
                .collect();
            active.sort_by(|a, b| a.job_id.cmp(&b.job_id));
            self.active_tx.send_replace(active);
        }
    }
}

/// Sleeps until `at`; for ever when `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How a step ended, from what the runner saw and what the engine asked:
/// a step stopped by a cancel is `cancelled` and one stopped by the drain
/// `interrupted`, whatever its exit status (a trap may exit 0).
fn classify(
    outcome: &StepOutcome,
    cancelled: bool,
    terminated: bool,
    step: &str,
) -> (JobState, Option<i32>, Option<String>) {
    let code = match outcome {
        StepOutcome::Exited(c) => Some(*c),
        _ => None,
    };
    match outcome {
        StepOutcome::TimedOut(d) => (
            JobState::Failed,
            None,
            Some(format!(
                "step {step} timed out after {}",
                humantime::format_duration(*d)
            )),
        ),
        StepOutcome::Error(msg) => (JobState::Failed, None, Some(msg.clone())),
        StepOutcome::Failed { exit_code, error } => {
            (JobState::Failed, Some(*exit_code), Some(error.clone()))
        }
        StepOutcome::Detached => (JobState::Running, None, None),
        _ if cancelled => (JobState::Cancelled, code, None),
        _ if terminated => (
            JobState::Interrupted,
            code,
            Some(format!(
                "the daemon shut down while step {step} ran (stopped after shutdown.drain_timeout)"
            )),
        ),
        // After the cancel check: a cancel deletes the pod, which the
        // runner may well report as deleted.
        StepOutcome::Infra(msg) => (JobState::Failed, None, Some(msg.clone())),
        StepOutcome::Exited(0) => (JobState::Done, Some(0), None),
        StepOutcome::Exited(c) => (
            JobState::Failed,
            Some(*c),
            Some(format!("step {step} exited with code {c}")),
        ),
        StepOutcome::Signaled(sig) => (
            JobState::Failed,
            None,
            Some(format!(
                "step {step} was killed by signal {}",
                signal_name(*sig)
            )),
        ),
    }
}

/// Why a shell step accepted earlier does not start now.
fn shell_refused(step: &str) -> String {
    format!(
        "step {step:?} was not started: it would run in the daemon as a shell step, and jobs.allow_shell = false now; give the step a \"container\" or set jobs.allow_shell = true, then submit the job again"
    )
}

fn now() -> Timestamp {
    Timestamp(SystemTime::now())
}

fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("{sig}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::StepRunner;
    use futures::future::BoxFuture;
    use oj_core::StepSpec;

    /// Exits with the code in `run`, or with "block" waits for a stop request.
    struct FakeRunner;

    impl StepRunner for FakeRunner {
        fn run(
            &self,
            ctx: StepContext,
            mut stop: watch::Receiver<Stop>,
        ) -> BoxFuture<'static, StepOutcome> {
            Box::pin(async move {
                if ctx.run == "block" {
                    let _ = stop.wait_for(|s| *s != Stop::Run).await;
                    return StepOutcome::Signaled(15);
                }
                // "flaky N": fails until its N-th attempt.
                if let Some(n) = ctx.run.strip_prefix("flaky ") {
                    let ok_at: u32 = n.parse().unwrap_or(2);
                    return StepOutcome::Exited(if ctx.attempt >= ok_at { 0 } else { 1 });
                }
                // "infra N": its pod is evicted until its N-th attempt.
                if let Some(n) = ctx.run.strip_prefix("infra ") {
                    if ctx.attempt >= n.parse().unwrap_or(2) {
                        return StepOutcome::Exited(0);
                    }
                    return StepOutcome::Infra("pod was evicted (node pressure)".into());
                }
                StepOutcome::Exited(ctx.run.parse().unwrap_or(0))
            })
        }
    }

    /// A pod runner stand-in: runs until told to detach; re-attaching finishes.
    struct FakePods;

    impl StepRunner for FakePods {
        fn run(
            &self,
            _ctx: StepContext,
            mut stop: watch::Receiver<Stop>,
        ) -> BoxFuture<'static, StepOutcome> {
            Box::pin(async move {
                let _ = stop.wait_for(|s| *s != Stop::Run).await;
                let request = *stop.borrow();
                if matches!(request, Stop::Detach | Stop::Terminate) {
                    StepOutcome::Detached
                } else {
                    StepOutcome::Signaled(15)
                }
            })
        }

        fn reattach(
            &self,
            _ctx: StepContext,
            _stop: watch::Receiver<Stop>,
        ) -> Option<BoxFuture<'static, StepOutcome>> {
            Some(Box::pin(async { StepOutcome::Exited(0) }))
        }
    }

    pub(super) fn spec(runs: &[&str]) -> JobSpec {
        JobSpec {
            name: "t".into(),
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
            steps: runs
                .iter()
                .enumerate()
                .map(|(i, r)| StepSpec {
                    name: format!("s{i}"),
                    run: r.to_string(),
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

    fn start(dir: &std::path::Path, leader: bool) -> (EngineHandle, watch::Sender<bool>) {
        start_with(dir, leader, Retention::default())
    }

    pub(super) fn start_with(
        dir: &std::path::Path,
        leader: bool,
        retention: Retention,
    ) -> (EngineHandle, watch::Sender<bool>) {
        start_engine(dir, leader, retention, true)
    }

    /// A leading engine for a current-thread runtime (paused tokio time
    /// needs one): it does not reload the state on taking the lead, which
    /// blocks in place, and must not be shut down (the final snapshot
    /// blocks in place too); drop its handle instead.
    pub(super) fn start_current_thread(
        dir: &std::path::Path,
        retention: Retention,
    ) -> (EngineHandle, watch::Sender<bool>) {
        start_engine(dir, true, retention, false)
    }

    fn start_engine(
        dir: &std::path::Path,
        leader: bool,
        retention: Retention,
        reload_on_lead: bool,
    ) -> (EngineHandle, watch::Sender<bool>) {
        let (storage, state, _) = Storage::open(dir).unwrap();
        let (leader_tx, leader_rx) = watch::channel(leader);
        let runners = Runners {
            shell: Arc::new(FakeRunner),
            container: Arc::new(FakePods),
        };
        let cfg = EngineConfig {
            max_concurrent: 2,
            allow_shell: true,
            step_timeout: Duration::from_secs(60),
            logs_dir: dir.join("logs"),
            reload_on_lead,
            retention,
            queues: Default::default(),
        };
        let (engine, handle) = Engine::new(
            state,
            storage,
            cfg,
            runners,
            Arc::new(Metrics::new("t", "t")),
            leader_rx,
        );
        tokio::spawn(engine.run());
        (handle, leader_tx)
    }

    pub(super) async fn wait_state(h: &EngineHandle, id: &JobId, want: JobState) -> Job {
        for _ in 0..500 {
            if let Some(j) = h.get(id.clone()).await
                && j.state == want
            {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "job {id} never reached {want}: {:?}",
            h.get(id.clone()).await
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_run_step_by_step_and_stop_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _l) = start(dir.path(), true);
        let ok = h.submit(spec(&["0", "0"])).await.unwrap();
        let bad = h.submit(spec(&["0", "3", "0"])).await.unwrap();
        wait_state(&h, &ok.id, JobState::Done).await;
        let j = wait_state(&h, &bad.id, JobState::Failed).await;
        assert_eq!(j.steps[1].exit_code, Some(3));
        assert_eq!(j.steps[2].state, JobState::Queued);
        assert_eq!(j.error.as_deref(), Some("step s1 exited with code 3"));
        h.shutdown().await.unwrap();
        // Everything acknowledged is on disk.
        let (_, state, _) = Storage::open(dir.path()).unwrap();
        assert_eq!(state.job(&bad.id).unwrap().state, JobState::Failed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_standby_accepts_nothing_and_starts_nothing_until_it_leads() {
        let dir = tempfile::tempdir().unwrap();
        // A queued job from an earlier leader.
        {
            let (mut storage, _, _) = Storage::open(dir.path()).unwrap();
            let job = Job::new(JobId::from_parts(1_795_000_000_000, 0), spec(&["0"]), now());
            storage.append(&Event::JobSubmitted { job: Box::new(job) });
            storage.commit(&State::new()).unwrap();
        }
        let (h, leader) = start(dir.path(), false);
        assert!(matches!(
            h.submit(spec(&["0"])).await,
            Err(SubmitError::NotLeader)
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.counts().await.queued, 1);
        leader.send(true).unwrap();
        let id = JobId::from_parts(1_795_000_000_000, 0);
        wait_state(&h, &id, JobState::Done).await;
        // New ids sort after the stored one.
        let next = h.submit(spec(&["0"])).await.unwrap();
        assert!(next.id > id);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_running_in_a_dead_process_become_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let id = JobId::from_parts(1_795_000_000_000, 0);
        {
            let (mut storage, _, _) = Storage::open(dir.path()).unwrap();
            let job = Job::new(id.clone(), spec(&["block"]), now());
            storage.append(&Event::JobSubmitted { job: Box::new(job) });
            storage.append(&Event::JobStarted {
                id: id.clone(),
                at: now(),
            });
            storage.append(&Event::StepStarted {
                id: id.clone(),
                step: 0,
                at: now(),
                pod: None,
            });
            storage.commit(&State::new()).unwrap();
        }
        let (h, _l) = start(dir.path(), true);
        let j = wait_state(&h, &id, JobState::Interrupted).await;
        assert_eq!(j.steps[0].state, JobState::Interrupted);
        assert!(j.error.unwrap().contains("s0"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn container_steps_are_left_running_by_the_drain_and_followed_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _l) = start(dir.path(), true);
        let mut s = spec(&["0"]);
        s.container = Some(Box::new(oj_core::ContainerSpec {
            image: "alpine".into(),
            resources: None,
            ..Default::default()
        }));
        let job = h.submit(s).await.unwrap();
        let j = wait_state(&h, &job.id, JobState::Running).await;
        assert_eq!(
            j.steps[0].pod.as_deref(),
            Some(format!("oj-{}-0", job.id).as_str())
        );
        assert!(h.active().borrow().iter().all(|a| a.container));
        h.drain();
        h.terminate();
        for _ in 0..200 {
            if h.active().borrow().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(h.active().borrow().is_empty());
        assert_eq!(
            h.get(job.id.clone()).await.unwrap().state,
            JobState::Running
        );
        h.shutdown().await.unwrap();

        let (h2, _l2) = start(dir.path(), true);
        wait_state(&h2, &job.id, JobState::Done).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_step_end_shown_to_a_reader_is_already_on_disk() {
        // A long step runs, so the ends of the short jobs may wait to share
        // an fsync (group commit); what a reader is shown must be durable.
        let dir = tempfile::tempdir().unwrap();
        let (h, _l) = start(dir.path(), true);
        let long = h.submit(spec(&["block"])).await.unwrap();
        wait_state(&h, &long.id, JobState::Running).await;
        for _ in 0..20 {
            let job = h.submit(spec(&["0"])).await.unwrap();
            wait_state(&h, &job.id, JobState::Done).await;
            let (_, on_disk, _) = Storage::open(dir.path()).unwrap();
            assert_eq!(on_disk.job(&job.id).unwrap().state, JobState::Done);
        }
        h.cancel(long.id.clone()).await.unwrap();
        wait_state(&h, &long.id, JobState::Cancelled).await;
        h.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancel_stops_a_running_step_and_drain_terminates_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _l) = start(dir.path(), true);
        let a = h.submit(spec(&["block", "0"])).await.unwrap();
        let b = h.submit(spec(&["block"])).await.unwrap();
        wait_state(&h, &a.id, JobState::Running).await;
        wait_state(&h, &b.id, JobState::Running).await;
        h.cancel(a.id.clone()).await.unwrap();
        let j = wait_state(&h, &a.id, JobState::Cancelled).await;
        assert_eq!(j.steps[1].state, JobState::Cancelled);
        assert!(matches!(
            h.cancel(a.id.clone()).await,
            Err(CancelError::Ended { .. })
        ));

        h.drain();
        assert!(matches!(
            h.submit(spec(&["0"])).await,
            Err(SubmitError::Draining)
        ));
        assert_eq!(h.active().borrow().len(), 1);
        h.terminate();
        wait_state(&h, &b.id, JobState::Interrupted).await;
        assert!(h.active().borrow().is_empty());
    }

    #[test]
    fn step_endings_are_classified_by_cause() {
        let c = |o: StepOutcome, cancel, term| classify(&o, cancel, term, "s");
        assert_eq!(c(StepOutcome::Exited(0), false, false).0, JobState::Done);
        let (st, code, err) = c(StepOutcome::Exited(7), false, false);
        assert_eq!((st, code), (JobState::Failed, Some(7)));
        assert_eq!(err.unwrap(), "step s exited with code 7");
        assert!(
            c(StepOutcome::Signaled(9), false, false)
                .2
                .unwrap()
                .contains("SIGKILL")
        );
        assert_eq!(
            c(StepOutcome::Exited(0), true, false).0,
            JobState::Cancelled
        );
        assert_eq!(
            c(StepOutcome::Signaled(15), true, false).0,
            JobState::Cancelled
        );
        assert_eq!(
            c(StepOutcome::Exited(0), false, true).0,
            JobState::Interrupted
        );
        assert_eq!(
            c(StepOutcome::Signaled(15), false, true).0,
            JobState::Interrupted
        );
        let (st, _, err) = c(StepOutcome::TimedOut(Duration::from_secs(2)), false, false);
        assert_eq!(st, JobState::Failed);
        assert_eq!(err.unwrap(), "step s timed out after 2s");
    }
}
