//! Runs a container step as a pod: create it (or attach to the one a
//! previous daemon created — a step is never started twice), follow it
//! through the daemon's one shared pod watch ([`super::watch`]) until it
//! ends, stream its log into the step log ([`super::logs`]), read the exit
//! code, and delete it unless `pods.keep_finished`. Cancelling deletes it.
//! A pod that cannot run fails fast with its reason: an image that cannot
//! be pulled for `pods.image_pull_grace`, a pod still `Pending` after
//! `pods.pending_timeout` (with the scheduler's message).
//!
//! Also the restart side of §3.8: [`PodRunner::find_running`] finds a job's
//! pods by label, and [`PodRunner::cleanup_orphans`] removes oj's pods whose
//! job the daemon does not know.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use oj_config::PodsConfig;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::logs::follow_logs;
use super::pods::{
    self, ANNOTATION_INSTANCE, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY_VALUE, PodInput,
    PodOwner,
};
use super::status::{self, StuckClock, is_terminal, phase_of};
use super::watch::{FALLBACK_POLL, PodState, PodWatch};

/// How long a finished step waits for its log to be complete before the
/// pod is deleted anyway.
const LOG_DRAIN: Duration = Duration::from_secs(30);

/// How a container step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// The container's exit code, when it terminated.
    pub exit_code: Option<i32>,
    /// True when the pod phase was `Succeeded`.
    pub succeeded: bool,
    pub pod_name: String,
    /// Why the step failed (pod failure, API error, cancellation), for the job's `error`.
    pub error: Option<String>,
    /// True when an existing pod was followed instead of creating one.
    pub attached: bool,
    /// True when the step was cancelled (its pod deleted).
    pub cancelled: bool,
    /// True when oj stopped following and left the pod running
    /// ([`RunOptions::detach`]); the pod's result is not known yet.
    pub detached: bool,
    /// True when the pod ran past its `activeDeadlineSeconds` (the step timeout).
    pub deadline_exceeded: bool,
    /// The terminated container's reason (`OOMKilled`, `Error`, …).
    pub reason: Option<String>,
    /// True when the cluster, not the command, ended the step: the pod
    /// could not pull its image, was never scheduled, or was deleted.
    pub infra: bool,
}

/// How [`PodRunner::run_with`] treats an existing or missing pod, and when
/// it stops following without deleting.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Only follow an existing pod, never create one (re-attaching after a
    /// restart: if the pod is gone its step may already have run, so it must
    /// not run again). An existing pod labelled for another instance is
    /// adopted: it was the previous daemon's, whose pod name differed.
    pub attach_only: bool,
    /// Fires to stop following and leave the pod running (daemon shutdown:
    /// the next daemon re-attaches).
    pub detach: CancellationToken,
    /// Which run of the step this is (1 = the first); the pod's `oj.dev/attempt`.
    pub attempt: u32,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            attach_only: false,
            detach: CancellationToken::new(),
            attempt: 1,
        }
    }
}

/// Creates and follows step pods in one namespace.
#[derive(Clone)]
pub struct PodRunner {
    api: Api<Pod>,
    namespace: String,
    instance: String,
    cfg: PodsConfig,
    /// Extra time past the step timeout before oj gives up on a pod the
    /// cluster did not end (activeDeadlineSeconds is the real limit).
    grace: Duration,
    /// The one watch every step shares, opened with the first step.
    watch: Arc<OnceLock<PodWatch>>,
}

impl std::fmt::Debug for PodRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodRunner")
            .field("namespace", &self.namespace)
            .field("instance", &self.instance)
            .finish()
    }
}

impl PodRunner {
    pub fn new(client: kube::Client, namespace: impl Into<String>, cfg: PodsConfig) -> Self {
        let namespace = namespace.into();
        PodRunner {
            api: Api::namespaced(client, &namespace),
            namespace,
            instance: String::new(),
            cfg,
            grace: Duration::from_secs(60),
            watch: Arc::new(OnceLock::new()),
        }
    }

    /// The `daemon.instance` that owns the pods this runner creates; it
    /// watches, follows and cleans up only those.
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = instance.into();
        self.watch = Arc::new(OnceLock::new());
        self
    }

    /// Changes how long past the step timeout oj waits for the cluster to end a pod.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn config(&self) -> &PodsConfig {
        &self.cfg
    }

    /// The workspace claims of this runner's namespace and instance.
    pub fn workspaces(&self) -> super::workspace::Workspaces {
        super::workspace::Workspaces::new(
            self.api.clone().into_client(),
            &self.namespace,
            &self.instance,
        )
    }

    /// The label selector of this instance's pods (the shared watch's).
    pub fn selector(&self) -> String {
        pods::instance_selector(&self.instance)
    }

    fn pod_watch(&self) -> &PodWatch {
        self.watch
            .get_or_init(|| PodWatch::start(self.api.clone(), &self.selector()))
    }

    /// Runs one container step to its end. Never panics and never creates a
    /// second pod for the same job and step: an existing pod is followed.
    pub async fn run(
        &self,
        input: PodInput,
        log_path: &Path,
        cancel: CancellationToken,
    ) -> StepResult {
        self.run_with(input, log_path, cancel, RunOptions::default())
            .await
    }

    /// Follows the step's existing pod to its end (after a restart); a
    /// missing pod is an error, never a new pod.
    pub async fn attach(
        &self,
        input: PodInput,
        log_path: &Path,
        cancel: CancellationToken,
    ) -> StepResult {
        let opts = RunOptions {
            attach_only: true,
            ..Default::default()
        };
        self.run_with(input, log_path, cancel, opts).await
    }

    /// [`Self::run`] with [`RunOptions`].
    pub async fn run_with(
        &self,
        input: PodInput,
        log_path: &Path,
        cancel: CancellationToken,
        opts: RunOptions,
    ) -> StepResult {
        let name = pods::attempt_pod_name(&input.job_id, input.step_index, opts.attempt);
        let mut result = StepResult {
            exit_code: None,
            succeeded: false,
            pod_name: name.clone(),
            error: None,
            attached: false,
            cancelled: false,
            detached: false,
            deadline_exceeded: false,
            reason: None,
            infra: false,
        };
        let fail = |mut r: StepResult, e: String| {
            r.error = Some(e);
            r
        };
        let owner = PodOwner {
            instance: self.instance.clone(),
            attempt: opts.attempt.max(1),
        };
        let pod = match pods::build_owned_pod(&input, &self.cfg, &self.namespace, &owner) {
            Ok(p) => p,
            Err(e) => return fail(result, e.to_string()),
        };
        // Start the shared watch before creating, so it sees the pod from the start.
        let watch = self.pod_watch().clone();
        let obtained = tokio::select! {
            _ = cancel.cancelled() => {
                result.cancelled = true;
                return fail(result, "cancelled before the pod was created".into());
            }
            r = self.obtain(&name, &pod, opts.attach_only) => r,
        };
        let current = match obtained {
            Ok((p, attached)) => {
                result.attached = attached;
                p
            }
            Err(e) => return fail(result, e),
        };
        let current = match self.claim(current, &name, opts.attach_only).await {
            Ok(p) => p,
            Err(e) => return fail(result, e),
        };
        if result.attached {
            tracing::info!(pod = %name, namespace = %self.namespace, "following an existing step pod");
        } else {
            tracing::info!(pod = %name, namespace = %self.namespace, "created step pod");
        }

        let (phase_tx, phase_rx) = watch::channel(phase_of(&current));
        let logs = tokio::spawn(follow_logs(
            self.api.clone(),
            name.clone(),
            log_path.to_path_buf(),
            phase_rx,
            // Re-attaching continues the step log where the last daemon left it.
            result.attached,
        ));
        let deadline = Instant::now() + input.timeout + self.grace;
        let outcome = self
            .follow(
                &watch,
                &name,
                current,
                &phase_tx,
                &cancel,
                &opts.detach,
                deadline,
            )
            .await;
        drop(phase_tx);

        match outcome {
            Follow::Ended(pod) => {
                // The log is complete before the pod goes.
                let _ = tokio::time::timeout(LOG_DRAIN, logs).await;
                let phase = phase_of(&pod);
                result.exit_code = status::exit_code_of(&pod);
                result.reason = status::termination_reason(&pod);
                result.succeeded = phase == "Succeeded";
                if !result.succeeded {
                    result.deadline_exceeded = status::deadline_exceeded(&pod);
                    result.error = Some(status::failure_of(&pod, &name, input.timeout));
                    // Evicted, preempted, node lost: the cluster ended it (SPEC §8.5).
                    if let Some(cause) = status::disruption(&pod) {
                        result.infra = true;
                        result.deadline_exceeded = false;
                        result.error = Some(format!(
                            "pod {}/{name} {cause}; the command did not fail",
                            self.namespace
                        ));
                    }
                }
                if !self.cfg.keep_finished {
                    self.delete(&name, false).await;
                }
                result
            }
            Follow::Cancelled { started } => {
                logs.abort();
                // A pod whose container never started has nothing to stop.
                self.delete(&name, !started).await;
                result.cancelled = true;
                fail(
                    result,
                    format!("cancelled; pod {}/{name} deleted", self.namespace),
                )
            }
            Follow::Stuck(why) => {
                logs.abort();
                self.delete(&name, true).await;
                result.infra = true;
                fail(result, format!("{why}; deleted the pod"))
            }
            Follow::TimedOut => {
                logs.abort();
                self.delete(&name, false).await;
                fail(
                    result,
                    format!(
                        "pod {}/{name} did not finish within the step timeout ({}) plus {}; deleted it",
                        self.namespace,
                        humantime::format_duration(input.timeout),
                        humantime::format_duration(self.grace)
                    ),
                )
            }
            Follow::Detached => {
                logs.abort();
                result.detached = true;
                fail(
                    result,
                    format!(
                        "stopped following pod {}/{name}; it keeps running",
                        self.namespace
                    ),
                )
            }
            Follow::Gone(last) => {
                let _ = tokio::time::timeout(Duration::from_secs(2), logs).await;
                result.infra = true;
                let cause = last
                    .as_deref()
                    .and_then(status::disruption)
                    .unwrap_or_else(|| {
                        "was deleted before it finished, by someone other than oj".into()
                    });
                fail(result, format!("pod {}/{name} {cause}", self.namespace))
            }
        }
    }

    /// The step's pod: read first (it exists when an earlier daemon started
    /// the step), else created (a `409 AlreadyExists` race also ends in
    /// reading it). `bool` = it existed already. With `attach_only` a
    /// missing pod is an error.
    async fn obtain(
        &self,
        name: &str,
        pod: &Pod,
        attach_only: bool,
    ) -> Result<(Pod, bool), String> {
        let ns = &self.namespace;
        let read = |e: kube::Error| format!("could not read pod {ns}/{name}: {e}");
        match self.api.get_opt(name).await {
            Ok(Some(p)) => return Ok((p, true)),
            Ok(None) if attach_only => {
                return Err(format!(
                    "pod {ns}/{name} of this step no longer exists, so its result is unknown; the step is not started again"
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(read(e)),
        }
        match self.api.create(&PostParams::default(), pod).await {
            Ok(p) => Ok((p, false)),
            Err(kube::Error::Api(s)) if s.code == 409 => match self.api.get_opt(name).await {
                Ok(Some(p)) => Ok((p, true)),
                Ok(None) => Err(format!("pod {ns}/{name} vanished while being created")),
                Err(e) => Err(read(e)),
            },
            Err(kube::Error::Api(s)) if s.code == 403 && s.reason == "Forbidden" => Err(format!(
                "could not create pod {ns}/{name}: {}; the namespace's LimitRange or ResourceQuota refuses the step's resources (pods.resources, container.resources), or the Role lacks `create` on pods — `oj config check` in the daemon's pod says which",
                s.message
            )),
            Err(e) => Err(format!("could not create pod {ns}/{name}: {e}")),
        }
    }

    /// Checks that an existing pod is oj's and this instance's. A pod of
    /// another instance is refused, except when re-attaching after a
    /// restart: then it was this daemon's predecessor's (whose
    /// `daemon.instance`, e.g. `$POD_NAME`, differed) and is adopted by
    /// relabelling it, so the shared watch sees it.
    async fn claim(&self, pod: Pod, name: &str, attach_only: bool) -> Result<Pod, String> {
        let ns = &self.namespace;
        let labels = pod.metadata.labels.as_ref();
        let managed = labels
            .and_then(|l| l.get(LABEL_MANAGED_BY))
            .is_some_and(|v| v == MANAGED_BY_VALUE);
        if !managed {
            return Err(format!(
                "a pod named {ns}/{name} exists and is not managed by oj (no {LABEL_MANAGED_BY}={MANAGED_BY_VALUE} label); delete it or use another namespace"
            ));
        }
        let mine = pods::label_value(&self.instance);
        match pods::pod_instance_label(&pod) {
            Some(owner) if owner == mine => return Ok(pod),
            Some(owner) if !attach_only => {
                return Err(format!(
                    "pod {ns}/{name} belongs to another oj instance ({LABEL_INSTANCE}={owner}, this one is {mine:?}); two daemons with the same job ids share pods.namespace — give each its own namespace"
                ));
            }
            _ => {}
        }
        let patch = serde_json::json!({
            "metadata": {
                "labels": { LABEL_INSTANCE: mine },
                "annotations": { ANNOTATION_INSTANCE: self.instance },
            }
        });
        match self
            .api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(p) => {
                tracing::info!(pod = %name, from = ?pods::pod_instance_label(&pod), instance = %self.instance, "adopted the step pod of an earlier daemon");
                Ok(p)
            }
            Err(e) => Err(format!(
                "could not adopt pod {ns}/{name} (relabel {LABEL_INSTANCE}={mine}): {e}"
            )),
        }
    }

    /// Follows the pod through the shared watch until it ends, is deleted,
    /// is stuck, the step is cancelled or the deadline passes.
    #[allow(clippy::too_many_arguments)]
    async fn follow(
        &self,
        watch: &PodWatch,
        name: &str,
        current: Pod,
        phase_tx: &watch::Sender<String>,
        cancel: &CancellationToken,
        detach: &CancellationToken,
        deadline: Instant,
    ) -> Follow {
        let mut updates = watch.subscribe(&current);
        // The watch may already know a newer state than `current` (it can
        // run ahead of the create/read that returned `current`): read it
        // at the first turn of the loop.
        updates.mark_changed();
        let mut clock = StuckClock::new(
            Instant::now(),
            status::pod_age(&current),
            self.cfg.image_pull_grace,
            self.cfg.pending_timeout,
        );
        let mut pod = Arc::new(current);
        let mut started = false;
        let mut poll = tokio::time::interval(FALLBACK_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let phase = phase_of(&pod);
            started |= phase != "Pending";
            phase_tx.send_replace(phase.clone());
            if is_terminal(&phase) {
                return Follow::Ended(pod);
            }
            let recheck = match clock.judge(&pod, name, Instant::now()) {
                Ok(at) => at,
                Err(stuck) => return Follow::Stuck(stuck.message().to_string()),
            };
            let recheck = recheck.unwrap_or(deadline);
            tokio::select! {
                _ = cancel.cancelled() => return Follow::Cancelled { started },
                _ = detach.cancelled() => return Follow::Detached,
                _ = tokio::time::sleep_until(deadline) => return Follow::TimedOut,
                _ = tokio::time::sleep_until(recheck) => {}
                // Checked on every tick (not as a select precondition): the
                // watch may start failing while this step waits.
                _ = poll.tick() => {
                    if watch.is_failing() {
                        // The shared watch is down: read the pod directly.
                        match self.api.get_opt(name).await {
                            Ok(Some(p)) => watch.offer(p),
                            Ok(None) => return Follow::Gone(Some(pod)),
                            Err(e) => tracing::debug!(pod = %name, error = %e, "could not read the step pod"),
                        }
                    }
                }
                changed = updates.changed() => {
                    if changed.is_err() {
                        // The slot closed after its last state (Gone) was read.
                        return Follow::Gone(Some(pod));
                    }
                    let state = updates.borrow_and_update().clone();
                    match state {
                        PodState::Present(p) => pod = p,
                        // A pod deleted after it ended still has its result.
                        PodState::Gone(p) if is_terminal(&phase_of(&p)) => return Follow::Ended(p),
                        PodState::Gone(p) => return Follow::Gone(Some(p)),
                    }
                }
            }
        }
    }

    async fn delete(&self, name: &str, at_once: bool) {
        let params = if at_once {
            DeleteParams::default().grace_period(0)
        } else {
            DeleteParams::default()
        };
        match self.api.delete(name, &params).await {
            Ok(_) => tracing::debug!(pod = %name, "deleted step pod"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(pod = %name, namespace = %self.namespace, error = %e, "could not delete the step pod")
            }
        }
    }

    /// The pods of a job that still exist (running or finished but kept),
    /// found by label; after a restart the daemon follows them with
    /// [`Self::run`] (which attaches) instead of starting the steps again.
    pub async fn find_running(&self, job_id: &str) -> Result<Vec<Pod>, kube::Error> {
        let list = self
            .api
            .list(&ListParams::default().labels(&pods::job_selector(job_id)))
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter(|p| pods::pod_job_id(p).is_none_or(|id| id == job_id))
            .collect())
    }

    /// Deletes this instance's pods whose job is not in `known_job_ids`
    /// (left by a job the daemon no longer has); returns the names deleted.
    /// Pods of other instances are never touched.
    pub async fn cleanup_orphans(
        &self,
        known_job_ids: &HashSet<String>,
    ) -> Result<Vec<String>, kube::Error> {
        let list = self
            .api
            .list(&ListParams::default().labels(&self.selector()))
            .await?;
        let mut deleted = Vec::new();
        for pod in list.items {
            let known = pods::pod_job_id(&pod).is_some_and(|id| known_job_ids.contains(&id));
            if known {
                continue;
            }
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            tracing::info!(pod = %name, namespace = %self.namespace, "deleting a step pod of an unknown job");
            match self.api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => deleted.push(name),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}

enum Follow {
    Ended(Arc<Pod>),
    Cancelled {
        started: bool,
    },
    Stuck(String),
    TimedOut,
    /// The pod vanished before it ended; its last known version.
    Gone(Option<Arc<Pod>>),
    Detached,
}
