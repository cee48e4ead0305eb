//! The daemon's Kubernetes plug-ins, built on `oj_adapters::k8s`: container
//! steps as pods behind the [`StepRunner`] seam, and the `lease` lock behind
//! the [`LockStrategy`] seam. The adapters hold the Kubernetes logic (pod
//! shape, watch, logs, client-go lease rules); this file only translates
//! between them and the engine's vocabulary.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use oj_adapters::k8s::preflight::ChecksAtStart;
use oj_adapters::k8s::{LeaseLock, PodInput, PodRunner, RunOptions, StepResult};
use oj_config::{ContainerStepsOnDrain, Environment, PodsConfig, RuntimeConfig, ShutdownConfig};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::engine::LeadHook;
use crate::live::{Live, Slices};
use crate::lock::{LockError, LockHandle, LockStrategy};
use crate::runner::{StepContext, StepOutcome, StepRunner, Stop, shell};

/// How long the leader's clean-up of orphan pods may hold back the first jobs.
const CLEANUP_LIMIT: Duration = Duration::from_secs(30);

/// Container steps as pods.
pub struct PodStepRunner {
    /// `pods.*` as it applies now (a reload publishes a new one; a step
    /// keeps the runner it started with). `None`: the runner is fixed.
    pods: Option<Live<PodsConfig>>,
    /// The runner of the `pods.*` it was built from (rebuilt on the first
    /// use after a reload).
    runner: std::sync::Mutex<(Option<Arc<PodsConfig>>, PodRunner)>,
    /// Builds the runner for a reloaded `pods.*` (none in tests).
    client: Option<kube::Client>,
    /// `daemon.instance`, the owner label of the pods (restart-only).
    instance: Option<String>,
    shell: Vec<String>,
    /// `shutdown.container_steps`: what the end of the drain does to a pod.
    shutdown: Live<ShutdownConfig>,
    /// Held (written) while the workspace sweep after a restart runs;
    /// a step reads it before creating or finding its job's workspace.
    sweeping: Arc<tokio::sync::RwLock<()>>,
}

/// A pod runner for `pods` (its namespace resolved), owned by `instance`.
fn pod_runner(client: &kube::Client, pods: &PodsConfig, instance: Option<&String>) -> PodRunner {
    let namespace = oj_adapters::k8s::resolve_namespace(pods.namespace.as_deref());
    let runner = PodRunner::new(client.clone(), namespace, pods.clone());
    match instance {
        Some(instance) => runner.with_instance(instance.clone()),
        None => runner,
    }
}

impl PodStepRunner {
    /// A runner that never changes (tests): its pods are left running by
    /// the drain unless [`Self::on_drain`] says otherwise.
    pub fn new(runner: PodRunner, shell: Vec<String>) -> PodStepRunner {
        PodStepRunner {
            pods: None,
            runner: std::sync::Mutex::new((None, runner)),
            client: None,
            instance: None,
            shell,
            shutdown: Live::fixed(ShutdownConfig {
                drain_timeout: Duration::ZERO,
                container_steps: ContainerStepsOnDrain::Detach,
            }),
            sweeping: Arc::new(tokio::sync::RwLock::new(())),
        }
    }

    /// A runner that follows the live `pods.*` and `shutdown.*` slices;
    /// its pods carry `instance` as their owner.
    pub fn live(
        client: kube::Client,
        pods: Live<PodsConfig>,
        shutdown: Live<ShutdownConfig>,
        shell: Vec<String>,
        instance: String,
    ) -> PodStepRunner {
        let now = pods.get();
        let runner = pod_runner(&client, &now, Some(&instance));
        PodStepRunner {
            pods: Some(pods),
            runner: std::sync::Mutex::new((Some(now), runner)),
            client: Some(client),
            instance: Some(instance),
            shell,
            shutdown,
            sweeping: Arc::new(tokio::sync::RwLock::new(())),
        }
    }

    /// Sets what the end of the drain does to running step pods, for good
    /// (a runner built with [`Self::new`]).
    pub fn on_drain(mut self, on_drain: ContainerStepsOnDrain) -> PodStepRunner {
        self.shutdown = Live::fixed(ShutdownConfig {
            container_steps: on_drain,
            ..(*self.shutdown.get()).clone()
        });
        self
    }

    /// Whether job `job_id`'s workspace claim still exists.
    pub async fn workspace_exists(&self, job_id: &str) -> Result<bool, String> {
        self.current().workspaces().exists(job_id).await
    }

    /// The runner for the `pods.*` in effect now.
    fn current(&self) -> PodRunner {
        let mut built = self.runner.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(live), Some(client)) = (&self.pods, &self.client) {
            let now = live.get();
            if !built.0.as_ref().is_some_and(|b| Arc::ptr_eq(b, &now)) {
                tracing::info!("pods: new pods.* settings for steps started from now on");
                *built = (
                    Some(now.clone()),
                    pod_runner(client, &now, self.instance.as_ref()),
                );
            }
        }
        built.1.clone()
    }

    fn input(&self, ctx: &StepContext) -> PodInput {
        PodInput {
            job_id: ctx.job_id.to_string(),
            job_name: ctx.job_name.clone(),
            step_index: ctx.index,
            step_name: ctx.step_name.clone(),
            image: ctx
                .container
                .as_ref()
                .map(|c| c.image.clone())
                .unwrap_or_default(),
            shell: self.shell.clone(),
            command: ctx.run.clone(),
            env: ctx.env.clone(),
            timeout: ctx.timeout,
            job_resources: ctx.job_resources.clone(),
            step_resources: ctx.step_resources.clone(),
            extras: ctx.pod.extras.clone(),
        }
    }

    fn follow(
        &self,
        ctx: StepContext,
        stop: watch::Receiver<Stop>,
        attach_only: bool,
    ) -> BoxFuture<'static, StepOutcome> {
        let runner = self.current();
        let mut input = self.input(&ctx);
        let on_drain = self.shutdown.get().container_steps;
        let sweeping = self.sweeping.clone();
        Box::pin(async move {
            if let Some(ws) = &ctx.pod.workspace {
                // Not while the sweep after a restart decides what to delete.
                let _sweep_done = sweeping.read().await;
                match runner
                    .workspaces()
                    .ensure(ctx.job_id.as_str(), &ctx.job_name, ws)
                    .await
                {
                    Ok(claim) => input.extras.workspace_claim = Some(claim),
                    Err(e) => {
                        shell::append_note(&ctx.log_path, &e);
                        return StepOutcome::Infra(format!("step {}: {e}", ctx.step_name));
                    }
                }
            }
            let cancel = CancellationToken::new();
            let detach = CancellationToken::new();
            let opts = RunOptions {
                attach_only,
                detach: detach.clone(),
                attempt: ctx.attempt,
            };
            let run = runner.run_with(input, &ctx.log_path, cancel.clone(), opts);
            let result = with_stop(run, stop, cancel, detach, on_drain).await;
            outcome(&ctx, result)
        })
    }
}

/// Drives `run` while turning the engine's stop requests into the runner's
/// tokens: cancel deletes the pod; detach leaves it running; the end of the
/// drain does what `shutdown.container_steps` says.
async fn with_stop(
    run: impl std::future::Future<Output = StepResult>,
    mut stop: watch::Receiver<Stop>,
    cancel: CancellationToken,
    detach: CancellationToken,
    on_drain: ContainerStepsOnDrain,
) -> StepResult {
    tokio::pin!(run);
    let mut engine_gone = false;
    loop {
        tokio::select! {
            r = &mut run => return r,
            changed = stop.changed(), if !engine_gone => {
                if changed.is_err() {
                    engine_gone = true;
                    continue;
                }
                match *stop.borrow_and_update() {
                    Stop::Run => {}
                    Stop::Cancel => cancel.cancel(),
                    Stop::Terminate if on_drain == ContainerStepsOnDrain::Cancel => cancel.cancel(),
                    Stop::Terminate | Stop::Detach => detach.cancel(),
                }
            }
        }
    }
}

fn outcome(ctx: &StepContext, r: StepResult) -> StepOutcome {
    if r.detached {
        return StepOutcome::Detached;
    }
    if r.cancelled {
        return StepOutcome::Signaled(15);
    }
    if r.succeeded {
        return StepOutcome::Exited(0);
    }
    if r.deadline_exceeded {
        return StepOutcome::TimedOut(ctx.timeout);
    }
    // The cluster, not the command, ended it: retried when `retry.on` has
    // `infra`. Not for a pod followed again after a restart: it may have
    // run, and an attempt that may have run is never repeated silently.
    if r.infra && !r.attached {
        let why = r
            .error
            .unwrap_or_else(|| format!("pod {} could not run", r.pod_name));
        return StepOutcome::Infra(format!("step {}: {why}", ctx.step_name));
    }
    match (r.exit_code, r.error) {
        (Some(code), Some(e)) if code != 0 => StepOutcome::Failed {
            exit_code: code,
            error: format!("step {}: {e}", ctx.step_name),
        },
        (Some(code), None) if code != 0 => StepOutcome::Exited(code),
        (_, Some(e)) => StepOutcome::Error(format!("step {}: {e}", ctx.step_name)),
        (_, None) => StepOutcome::Error(format!(
            "step {}: pod {} did not succeed",
            ctx.step_name, r.pod_name
        )),
    }
}

impl StepRunner for PodStepRunner {
    fn run(
        &self,
        ctx: StepContext,
        stop: watch::Receiver<Stop>,
    ) -> BoxFuture<'static, StepOutcome> {
        self.follow(ctx, stop, false)
    }

    fn reattach(
        &self,
        ctx: StepContext,
        stop: watch::Receiver<Stop>,
    ) -> Option<BoxFuture<'static, StepOutcome>> {
        // Only follow the existing pod: if it is gone, the step's result is
        // unknown and it must not run a second time.
        Some(self.follow(ctx, stop, true))
    }

    fn release(&self, release: crate::cluster::Release) {
        let runner = self.current();
        let keep_finished = runner.config().keep_finished;
        match release {
            crate::cluster::Release::Job(_) if keep_finished => {}
            crate::cluster::Release::Job(job_id) => {
                tokio::spawn(async move {
                    if let Err(e) = runner.workspaces().delete(&job_id).await {
                        tracing::warn!(job_id = %job_id, error = %e, "could not delete the job's workspace; it is deleted at the next restart");
                    }
                });
            }
            crate::cluster::Release::Sweep { unfinished, known } => {
                let known_ids = known.clone();
                let keep = if keep_finished { known } else { unfinished };
                // Taken now, before any step of this leadership can ask for
                // a workspace: none is created while the list is judged.
                let Ok(guard) = self.sweeping.clone().try_write_owned() else {
                    return;
                };
                tokio::spawn(async move {
                    let sweep = runner.workspaces();
                    let swept = sweep.sweep(&keep, &known_ids);
                    match tokio::time::timeout(CLEANUP_LIMIT, swept).await {
                        Ok(Ok(deleted)) if !deleted.is_empty() => {
                            tracing::info!(count = deleted.len(), claims = %deleted.join(" "), "deleted the workspaces of jobs that ended")
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "could not clean up the workspaces of ended jobs")
                        }
                        Err(_) => tracing::warn!(
                            "cleaning up the workspaces of ended jobs timed out; continuing"
                        ),
                    }
                    drop(guard);
                });
            }
        }
    }
}

/// Checks each container step of `spec` as its pod would be built:
/// `pods.resources`, then the job's, then the step's `container.resources`,
/// requests never above limits. The message names the step (k8s helper).
pub fn validate_spec(spec: &oj_core::JobSpec, pods: &oj_config::PodsConfig) -> Result<(), String> {
    let job = spec.container.as_ref().and_then(|c| c.resources.as_ref());
    for (index, step) in spec.steps.iter().enumerate() {
        if spec.step_container(index).is_none() {
            continue;
        }
        let own = step.container.as_ref().and_then(|c| c.resources.as_ref());
        oj_adapters::k8s::pods::merge_resources(pods, job, own, &step.name)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Container steps when no Kubernetes API can be reached: they fail with the
/// reason (which places were tried).
pub struct UnreachableCluster {
    pub reason: String,
}

impl StepRunner for UnreachableCluster {
    fn run(
        &self,
        ctx: StepContext,
        _stop: watch::Receiver<Stop>,
    ) -> BoxFuture<'static, StepOutcome> {
        let reason = self.reason.clone();
        Box::pin(async move {
            shell::append_note(&ctx.log_path, &reason);
            StepOutcome::Error(format!(
                "step {}: container steps need the Kubernetes runner, but it has no Kubernetes API: {reason}",
                ctx.step_name
            ))
        })
    }
}

/// `lock.strategy = "lease"`: standby until the Lease is held; leadership
/// follows it; the lease is released (empty holder) on a clean exit.
///
/// `acquire` touches no lease: it builds the election (acquire, then renew
/// every `retry_period`) as one unstarted task, which the daemon's spawn
/// phase starts ([`LockHandle::start`]). The lease is therefore held only
/// by a running renewal loop: however long spawn follows build (at once in
/// `main`), nothing is held that could lapse meanwhile. Taking the lease in
/// `acquire` instead would need spawn within `renew_deadline` of it.
pub struct LeaseStrategy {
    pub lock: LeaseLock,
}

impl LockStrategy for LeaseStrategy {
    fn name(&self) -> &'static str {
        "lease"
    }

    fn acquire(self: Box<Self>) -> BoxFuture<'static, Result<LockHandle, LockError>> {
        Box::pin(async move {
            let (leader_tx, leader_rx) = watch::channel(false);
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let lock = self.lock;
            let election = async move {
                tracing::info!(
                    lease = %lock.name(),
                    namespace = %lock.namespace(),
                    identity = %lock.identity(),
                    "standby until the lease is held"
                );
                let stopped = async move {
                    let _ = stop_rx.await;
                };
                match lock.run(leader_tx, stopped).await {
                    Ok(()) => tracing::info!("lease released"),
                    Err(lost) => tracing::warn!(error = %lost, "the lease had been lost"),
                }
            };
            Ok(LockHandle::kept(leader_rx, Box::pin(election), stop_tx))
        })
    }
}

/// What the Kubernetes side contributes to a daemon.
pub struct KubePlugins {
    pub container_runner: Arc<dyn StepRunner>,
    /// The same runner, typed, for the API's workspace checks (none
    /// without an API).
    pub pods: Option<Arc<PodStepRunner>>,
    pub lease: Option<Box<dyn LockStrategy>>,
    /// Deletes pods of unknown jobs once leader (lease strategy only).
    pub on_lead: Option<LeadHook>,
    /// The in-cluster checks of `oj config check`, to run as warnings in
    /// the background once the daemon is spawned (none without an API).
    pub checks: Option<ChecksAtStart>,
}

/// Builds the plug-ins from the config and the environment: a client when
/// an API is configured (in-cluster or kubeconfig), the pod runner, and the
/// lease when `lock.strategy = "lease"` (whose failure to connect is fatal).
/// Part of the daemon's build phase: it sends the API no request and starts
/// no task of the daemon's (the in-cluster checks and the lease's election
/// wait for spawn; the kube client's own request buffer is idle until then).
pub async fn plugins(
    cfg: &RuntimeConfig,
    slices: &Slices,
    env: &Environment,
    metrics: &Arc<crate::metrics::Metrics>,
) -> Result<KubePlugins, String> {
    let lease_wanted = cfg.lock.strategy == oj_config::LockStrategy::Lease;
    // Without any configuration `connect` fails at once, without touching
    // the network; its error lists the places it looked (k8s helper).
    let configured = oj_adapters::preflight::kubernetes_api_configured(env);
    let client = match oj_adapters::k8s::connect(env).await {
        Ok((client, source)) => {
            tracing::info!(source = %source, "Kubernetes API configured");
            client
        }
        Err(e) if lease_wanted => {
            return Err(format!(
                "lock.strategy = \"lease\" needs the Kubernetes API: {e}"
            ));
        }
        Err(e) => {
            if configured {
                tracing::warn!(error = %e, "no Kubernetes API: container steps will fail");
            } else {
                tracing::debug!(error = %e, "no Kubernetes API configured: container steps will fail");
            }
            return Ok(KubePlugins {
                container_runner: Arc::new(UnreachableCluster {
                    reason: e.to_string(),
                }),
                pods: None,
                lease: None,
                on_lead: None,
                checks: None,
            });
        }
    };
    let checks = ChecksAtStart::new(client.clone(), cfg, env);
    let step_runner = Arc::new(PodStepRunner::live(
        client.clone(),
        slices.pods(),
        slices.shutdown(),
        cfg.jobs.shell.clone(),
        cfg.daemon.instance.clone(),
    ));
    let pods = step_runner.current();
    let container_runner: Arc<dyn StepRunner> = step_runner.clone();
    if !lease_wanted {
        return Ok(KubePlugins {
            container_runner,
            pods: Some(step_runner),
            lease: None,
            on_lead: None,
            checks: Some(checks),
        });
    }
    metrics.init_lease_renewals();
    let renewals = metrics.clone();
    let lock = LeaseLock::from_config(client, &cfg.lock.lease, cfg.daemon.instance.clone())
        .on_renewal(Arc::new(move |result| renewals.lease_renewal(result)));
    let on_lead: LeadHook = Arc::new(move |known: HashSet<String>| {
        let pods = pods.clone();
        Box::pin(async move {
            match tokio::time::timeout(CLEANUP_LIMIT, pods.cleanup_orphans(&known)).await {
                Ok(Ok(deleted)) if !deleted.is_empty() => {
                    tracing::info!(count = deleted.len(), pods = %deleted.join(" "), "deleted pods of unknown jobs")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not clean up pods of unknown jobs"),
                Err(_) => tracing::warn!("cleaning up pods of unknown jobs timed out; continuing"),
            }
        })
    });
    Ok(KubePlugins {
        container_runner,
        pods: Some(step_runner),
        lease: Some(Box::new(LeaseStrategy { lock })),
        on_lead: Some(on_lead),
        checks: Some(checks),
    })
}
