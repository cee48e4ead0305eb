//! How a step runs. The engine decides *what* runs and records what
//! happened; a [`StepRunner`] only runs one step to its end and reports how
//! it ended. Shell steps use [`shell::ShellRunner`]; container steps go to
//! whatever runner is plugged in as `Runners::container` (the Kubernetes pod
//! runner; until then [`NoContainerRunner`] fails them with a clear reason).

pub mod leftovers;
pub mod shell;
mod workdir;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use oj_core::{ContainerResources, ContainerSpec, JobId};
use tokio::sync::watch;

/// What the engine asks of a running step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep running.
    Run,
    /// The user cancelled the job: stop the step (SIGTERM, SIGKILL 2 s later).
    Cancel,
    /// The drain timeout passed: stop the step (SIGTERM, SIGKILL 2 s later).
    /// A container step's runner applies `shutdown.container_steps`
    /// instead: detach (as [`Stop::Detach`]) or delete the pod.
    Terminate,
    /// The daemon is exiting and leaves this (container) step running:
    /// stop following it and return [`StepOutcome::Detached`]; the next
    /// daemon follows it again through [`StepRunner::reattach`].
    Detach,
}

/// Everything a runner needs to run one step, templates already filled.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub job_id: JobId,
    pub job_name: String,
    /// Index of the step in the job (0-based).
    pub index: usize,
    /// Which run of the step this is (1 = the first; more after retries).
    /// A container runner must not mistake an earlier attempt's pod for
    /// this one's.
    pub attempt: u32,
    pub step_name: String,
    /// The command (`jobs.shell + [run]`, or the container's command).
    pub run: String,
    /// The step's environment on top of the daemon's base environment.
    pub env: BTreeMap<String, String>,
    /// Set for container steps.
    pub container: Option<ContainerSpec>,
    /// The job-level `container.resources` (overlaid on `pods.resources`).
    pub job_resources: Option<ContainerResources>,
    /// The step's own `container.resources` (overlaid last).
    pub step_resources: Option<ContainerResources>,
    pub timeout: Duration,
    /// The working directory of a shell step (`None` for container steps:
    /// the daemon's own, which a pod never sees).
    pub work_dir: Option<WorkDir>,
    /// `state_dir/logs/<job-id>/<step>.log`; the runner appends the output here.
    pub log_path: PathBuf,
}

/// Where a shell step runs (SPEC §8.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkDir {
    /// The job's `dir`: it must exist when the step starts, or the step fails.
    Given(PathBuf),
    /// The job's scratch `state_dir/work/<job-id>/`, created (mode 0700)
    /// by the first step that needs it and deleted with the job's logs.
    Scratch(PathBuf),
}

impl StepContext {
    /// The pod name of a container step: `oj-<job-id>-<step-index>`.
    pub fn pod_name(job_id: &JobId, index: usize) -> String {
        format!("oj-{job_id}-{index}")
    }

    /// The pod of run `attempt` of a container step (a retry gets its own).
    pub fn attempt_pod_name(job_id: &JobId, index: usize, attempt: u32) -> String {
        oj_adapters::k8s::pods::attempt_pod_name(job_id.as_str(), index, attempt)
    }
}

/// How a step ended, as the runner saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The process exited with this code.
    Exited(i32),
    /// The process was killed by this signal.
    Signaled(i32),
    /// The step ran past its timeout and was killed.
    TimedOut(Duration),
    /// The step could not run at all (spawn failure, no container runner, …).
    Error(String),
    /// The step exited non-zero and the runner knows more than the code
    /// (a container's `OOMKilled`): `error` becomes the job's error.
    Failed { exit_code: i32, error: String },
    /// The step's command is not to blame: its pod was evicted, deleted,
    /// never scheduled, or its image could not be pulled (the message says
    /// which). The engine retries it when the step's `retry.on` has
    /// `infra`; otherwise the step fails with this message. Container
    /// runners report it; shell steps never do.
    Infra(String),
    /// The runner stopped following a step that goes on running (after
    /// [`Stop::Detach`]); nothing is recorded, the job stays `running`.
    Detached,
}

/// Runs steps of one kind.
pub trait StepRunner: Send + Sync + 'static {
    /// Runs the step to its end. `stop` changes when the engine wants the
    /// step stopped; the runner then stops it and still reports how it ended.
    fn run(&self, ctx: StepContext, stop: watch::Receiver<Stop>)
    -> BoxFuture<'static, StepOutcome>;

    /// Follows a step an earlier daemon process started (pods outlive the
    /// daemon). `None` = this runner cannot; the step ends `interrupted`.
    fn reattach(
        &self,
        ctx: StepContext,
        stop: watch::Receiver<Stop>,
    ) -> Option<BoxFuture<'static, StepOutcome>> {
        let _ = (ctx, stop);
        None
    }
}

/// The runners the engine uses.
#[derive(Clone)]
pub struct Runners {
    pub shell: Arc<dyn StepRunner>,
    pub container: Arc<dyn StepRunner>,
}

/// The container runner used until a Kubernetes runner is plugged in.
pub struct NoContainerRunner;

/// The reason a container step fails without a Kubernetes runner.
pub const NO_CONTAINER_RUNNER: &str = "container steps need the Kubernetes runner, which is not available in this daemon; remove `container` from the step (and the job) to run it as a shell step";

impl StepRunner for NoContainerRunner {
    fn run(
        &self,
        ctx: StepContext,
        _stop: watch::Receiver<Stop>,
    ) -> BoxFuture<'static, StepOutcome> {
        Box::pin(async move {
            shell::append_note(&ctx.log_path, NO_CONTAINER_RUNNER);
            StepOutcome::Error(format!("step {}: {NO_CONTAINER_RUNNER}", ctx.step_name))
        })
    }
}
