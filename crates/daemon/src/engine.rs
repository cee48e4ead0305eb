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
    NotificationKind, State, StepStatus, Timestamp,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::job_span;
mod admission;
mod commit;
mod errors;
mod handle;
mod leader;
mod queues;
mod retention;
mod retry;
mod steps;
mod submit_meta;
mod workdir;

pub use queues::{QueueInfo, QueueOpError, ReleaseError, configured_queues, removed_queues_in_use};
pub mod schedules;

pub use errors::{CancelError, SubmitError};
pub use handle::EngineHandle;
pub use retention::{PruneError, PruneFilter, RemoveError, Retention};
pub use submit_meta::{SubmitMeta, Submitted};

use crate::live::Live;
use crate::metrics::Metrics;
use crate::runner::{Runners, StepOutcome, Stop};
use crate::storage::Storage;
use commit::{Effect, StorageTrouble, Turn};
#[cfg(test)]
use steps::classify;

/// Jobs a list page holds when the client does not say.
pub const PAGE_DEFAULT: usize = 100;
/// The most jobs one list page holds.
pub const PAGE_MAX: usize = 1000;
/// A page stops early once its JSON passes this many bytes (the rest is on
/// the next page), so one request's memory does not grow with job sizes.
const PAGE_BYTES: usize = 1 << 20;

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
#[derive(Debug, Clone, PartialEq)]
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

impl EngineConfig {
    /// The engine's slice of `cfg`: the one builder, at start and at every
    /// reload ([`crate::live::Slices`]).
    pub fn of(cfg: &oj_config::RuntimeConfig) -> EngineConfig {
        EngineConfig {
            max_concurrent: cfg.jobs.max_concurrent.max(1) as usize,
            step_timeout: cfg.jobs.step_timeout,
            logs_dir: cfg.daemon.state_dir.join("logs"),
            reload_on_lead: cfg.lock.strategy == oj_config::LockStrategy::Lease,
            allow_shell: cfg.jobs.allow_shell,
            retention: Retention::from_config(&cfg.jobs),
            queues: configured_queues(cfg),
        }
    }
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
    /// Release, pause, resume, the queue list (SPEC §8.2).
    Queue(queues::QueueCommand),
    /// `GET /v1/schedules`, `POST /v1/schedules/{name}/…`.
    Schedule(schedules::ScheduleCommand),
}

struct Running {
    step: usize,
    stop: watch::Sender<Stop>,
    container: bool,
    step_name: String,
    job_name: String,
}

/// The engine task's state.
pub struct Engine {
    state: State,
    storage: Storage,
    /// `jobs.*` and `queues.*` as they apply now: read per use.
    cfg: Live<EngineConfig>,
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
    /// `schedules.*` as it applies now; a new value reconfigures `sched`.
    sched_cfg: Live<schedules::ScheduleConfigs>,
    /// Publishes each durable turn's changes (crate::events).
    events: crate::events::Publisher,
}

impl Engine {
    /// Builds the engine around replayed state; run it with [`Engine::run`].
    pub fn new(
        state: State,
        storage: Storage,
        cfg: Live<EngineConfig>,
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
            sched_cfg: Live::fixed(Default::default()),
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

    /// The wall clock schedules fire by, and the configured schedules
    /// (`schedules.*`, which a reload may change).
    pub fn set_schedules(
        &mut self,
        clock: schedules::Clock,
        configs: Live<schedules::ScheduleConfigs>,
    ) {
        self.sched = schedules::Scheduler::new(clock, &configs.get());
        self.sched_cfg = configs;
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
                // A reload's new `jobs.*` / `queues.*`: every use reads it
                // already; a turn starts what the new limits make room for.
                _ = self.cfg.changed() => {
                    self.after_turn();
                    continue;
                }
                configs = self.sched_cfg.changed() => {
                    self.configure_schedules(&configs);
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
            Command::Schedule(cmd) => self.handle_schedule(cmd),
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
}

/// Sleeps until `at`; for ever when `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn now() -> Timestamp {
    Timestamp(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{StepContext, StepRunner};
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
            crate::live::Live::fixed(cfg),
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
