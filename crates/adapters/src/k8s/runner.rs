//! Runs a container step as a pod: create it (or attach to the one a
//! previous daemon created — a step is never started twice), follow it with
//! a watch until it ends, stream its log into the step log, read the exit
//! code, and delete it unless `pods.keep_finished`. Cancelling deletes it.
//!
//! Also the restart side of §3.8: [`PodRunner::find_running`] finds a job's
//! pods by label, and [`PodRunner::cleanup_orphans`] removes oj's pods whose
//! job the daemon does not know.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use futures::{AsyncReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, WatchEvent, WatchParams};
use oj_config::PodsConfig;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pods::{self, CONTAINER_NAME, LABEL_MANAGED_BY, MANAGED_BY_VALUE, PodInput};

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
}

/// How [`PodRunner::run_with`] treats an existing or missing pod, and when
/// it stops following without deleting.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only follow an existing pod, never create one (re-attaching after a
    /// restart: if the pod is gone its step may already have run, so it must
    /// not run again).
    pub attach_only: bool,
    /// Fires to stop following and leave the pod running (daemon shutdown:
    /// the next daemon re-attaches).
    pub detach: CancellationToken,
}

/// Creates and follows step pods in one namespace.
#[derive(Clone)]
pub struct PodRunner {
    api: Api<Pod>,
    namespace: String,
    cfg: PodsConfig,
    /// Extra time past the step timeout before oj gives up on a pod the
    /// cluster did not end (activeDeadlineSeconds is the real limit).
    grace: Duration,
}

impl std::fmt::Debug for PodRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodRunner")
            .field("namespace", &self.namespace)
            .finish()
    }
}

fn phase_of(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into())
}

fn is_terminal(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed")
}

fn exit_code_of(pod: &Pod) -> Option<i32> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let status = statuses
        .iter()
        .find(|s| s.name == CONTAINER_NAME)
        .or_else(|| statuses.first())?;
    status
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

/// Why a failed pod failed, in words.
fn failure_of(pod: &Pod, name: &str, timeout: Duration) -> String {
    let status = pod.status.as_ref();
    if status.and_then(|s| s.reason.as_deref()) == Some("DeadlineExceeded") {
        return format!(
            "pod {name} exceeded its activeDeadlineSeconds (step timeout {})",
            humantime::format_duration(timeout)
        );
    }
    let terminated = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.name == CONTAINER_NAME)
                .or_else(|| cs.first())
        })
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    match terminated {
        Some(t) => {
            let mut msg = format!("pod {name} failed: exit code {}", t.exit_code);
            if let Some(r) = t
                .reason
                .as_deref()
                .filter(|r| !r.is_empty() && *r != "Error")
            {
                msg.push_str(&format!(" ({r})"));
            }
            msg
        }
        None => {
            let reason = status.and_then(|s| s.reason.clone()).unwrap_or_default();
            let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
            format!("pod {name} failed: {} {}", reason, message)
                .trim_end()
                .to_string()
        }
    }
}

impl PodRunner {
    pub fn new(client: kube::Client, namespace: impl Into<String>, cfg: PodsConfig) -> Self {
        let namespace = namespace.into();
        PodRunner {
            api: Api::namespaced(client, &namespace),
            namespace,
            cfg,
            grace: Duration::from_secs(60),
        }
    }

    /// Changes how long past the step timeout oj waits for the cluster to end a pod.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn config(&self) -> &PodsConfig {
        &self.cfg
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
        let name = pods::pod_name(&input.job_id, input.step_index);
        let mut result = StepResult {
            exit_code: None,
            succeeded: false,
            pod_name: name.clone(),
            error: None,
            attached: false,
            cancelled: false,
            detached: false,
            deadline_exceeded: false,
        };
        let fail = |mut r: StepResult, e: String| {
            r.error = Some(e);
            r
        };
        let pod = match pods::build_pod(&input, &self.cfg, &self.namespace) {
            Ok(p) => p,
            Err(e) => return fail(result, e.to_string()),
        };

        // Attach or create.
        let existing = tokio::select! {
            _ = cancel.cancelled() => { result.cancelled = true; return fail(result, "cancelled before the pod was created".into()); }
            r = self.api.get_opt(&name) => r,
        };
        let current = match existing {
            Ok(Some(p)) => {
                result.attached = true;
                p
            }
            Ok(None) if opts.attach_only => {
                return fail(
                    result,
                    format!(
                        "pod {}/{name} of this step no longer exists, so its result is unknown; the step is not started again",
                        self.namespace
                    ),
                );
            }
            Ok(None) => match self.api.create(&PostParams::default(), &pod).await {
                Ok(p) => p,
                Err(kube::Error::Api(s)) if s.code == 409 => match self.api.get_opt(&name).await {
                    Ok(Some(p)) => {
                        result.attached = true;
                        p
                    }
                    Ok(None) => {
                        return fail(
                            result,
                            format!("pod {}/{name} vanished while being created", self.namespace),
                        );
                    }
                    Err(e) => {
                        return fail(
                            result,
                            format!("could not read pod {}/{name}: {e}", self.namespace),
                        );
                    }
                },
                Err(e) => {
                    return fail(
                        result,
                        format!("could not create pod {}/{name}: {e}", self.namespace),
                    );
                }
            },
            Err(e) => {
                return fail(
                    result,
                    format!("could not read pod {}/{name}: {e}", self.namespace),
                );
            }
        };
        let managed = current
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_MANAGED_BY))
            .is_some_and(|v| v == MANAGED_BY_VALUE);
        if !managed {
            return fail(
                result,
                format!(
                    "a pod named {}/{name} exists and is not managed by oj (no {LABEL_MANAGED_BY}={MANAGED_BY_VALUE} label); delete it or use another namespace",
                    self.namespace
                ),
            );
        }
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
        ));
        let deadline = Instant::now() + input.timeout + self.grace;
        let outcome = self
            .follow(&name, current, &phase_tx, &cancel, &opts.detach, deadline)
            .await;
        drop(phase_tx);

        match outcome {
            Follow::Ended(pod) => {
                // The log stream ends with the container; give it a moment to drain.
                let _ = tokio::time::timeout(Duration::from_secs(10), logs).await;
                let phase = phase_of(&pod);
                result.exit_code = exit_code_of(&pod);
                result.succeeded = phase == "Succeeded";
                if !result.succeeded {
                    result.deadline_exceeded =
                        pod.status.as_ref().and_then(|s| s.reason.as_deref())
                            == Some("DeadlineExceeded");
                    result.error = Some(failure_of(&pod, &name, input.timeout));
                }
                if !self.cfg.keep_finished {
                    self.delete(&name).await;
                }
                result
            }
            Follow::Cancelled => {
                logs.abort();
                self.delete(&name).await;
                result.cancelled = true;
                fail(
                    result,
                    format!("cancelled; pod {}/{name} deleted", self.namespace),
                )
            }
            Follow::TimedOut => {
                logs.abort();
                self.delete(&name).await;
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
            Follow::Gone => {
                let _ = tokio::time::timeout(Duration::from_secs(2), logs).await;
                fail(
                    result,
                    format!(
                        "pod {}/{name} was deleted before it finished",
                        self.namespace
                    ),
                )
            }
        }
    }

    /// Watches the pod until it ends, is deleted, the step is cancelled or the deadline passes.
    async fn follow(
        &self,
        name: &str,
        current: Pod,
        phase_tx: &watch::Sender<String>,
        cancel: &CancellationToken,
        detach: &CancellationToken,
        deadline: Instant,
    ) -> Follow {
        let mut pod = current;
        loop {
            let phase = phase_of(&pod);
            phase_tx.send_replace(phase.clone());
            if is_terminal(&phase) {
                return Follow::Ended(Box::new(pod));
            }
            let rv = pod
                .metadata
                .resource_version
                .clone()
                .unwrap_or_else(|| "0".into());
            let wp = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(290);
            let stream = tokio::select! {
                _ = cancel.cancelled() => return Follow::Cancelled,
                _ = detach.cancelled() => return Follow::Detached,
                _ = tokio::time::sleep_until(deadline) => return Follow::TimedOut,
                s = self.api.watch(&wp, &rv) => s,
            };
            match stream {
                Ok(stream) => {
                    let mut stream = stream.boxed();
                    loop {
                        let next = tokio::select! {
                                    _ = cancel.cancelled() => return Follow::Cancelled,
                        _ = detach.cancelled() => return Follow::Detached,
                                    _ = tokio::time::sleep_until(deadline) => return Follow::TimedOut,
                                    n = stream.try_next() => n,
                                };
                        match next {
                            Ok(Some(WatchEvent::Added(p))) | Ok(Some(WatchEvent::Modified(p))) => {
                                let phase = phase_of(&p);
                                phase_tx.send_replace(phase.clone());
                                pod = p;
                                if is_terminal(&phase) {
                                    return Follow::Ended(Box::new(pod));
                                }
                            }
                            Ok(Some(WatchEvent::Deleted(p))) => {
                                // A pod deleted after it ended still has its result.
                                return if is_terminal(&phase_of(&p)) {
                                    Follow::Ended(Box::new(p))
                                } else {
                                    Follow::Gone
                                };
                            }
                            Ok(Some(WatchEvent::Bookmark(b))) => {
                                pod.metadata.resource_version = Some(b.metadata.resource_version);
                            }
                            Ok(Some(WatchEvent::Error(e))) => {
                                tracing::debug!(pod = %name, code = e.code, message = %e.message, "watch error; re-reading the pod");
                                break;
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::debug!(pod = %name, error = %e, "watch stream broke; re-reading the pod");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(pod = %name, error = %e, "could not watch the step pod; retrying");
                    tokio::select! {
                            _ = cancel.cancelled() => return Follow::Cancelled,
                    _ = detach.cancelled() => return Follow::Detached,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                }
            }
            // Re-read before watching again: the version may be too old (410)
            // and the pod may have ended or gone while we were not watching.
            match self.api.get_opt(name).await {
                Ok(Some(p)) => pod = p,
                Ok(None) => return Follow::Gone,
                Err(e) => {
                    tracing::warn!(pod = %name, error = %e, "could not read the step pod; retrying");
                    tokio::select! {
                            _ = cancel.cancelled() => return Follow::Cancelled,
                    _ = detach.cancelled() => return Follow::Detached,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                }
            }
        }
    }

    async fn delete(&self, name: &str) {
        match self.api.delete(name, &DeleteParams::default()).await {
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

    /// Deletes oj's pods whose job is not in `known_job_ids` (left by a
    /// job the daemon no longer has); returns the names deleted.
    pub async fn cleanup_orphans(
        &self,
        known_job_ids: &HashSet<String>,
    ) -> Result<Vec<String>, kube::Error> {
        let list = self
            .api
            .list(&ListParams::default().labels(pods::MANAGED_SELECTOR))
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
    Ended(Box<Pod>),
    Cancelled,
    TimedOut,
    Gone,
    Detached,
}

/// Copies the pod's log into `path` once the container has started. The
/// file always holds the log from its start: after a broken stream it is
/// rewritten from a fresh request, so nothing is doubled.
async fn follow_logs(
    api: Api<Pod>,
    name: String,
    path: std::path::PathBuf,
    mut phase: watch::Receiver<String>,
) {
    if let Some(dir) = path.parent() {
        // Private like everything in the state directory (0700 / 0600).
        let _ = tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .await;
    }
    let mut file = match tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .await
    {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the step log");
            return;
        }
    };
    let params = LogParams {
        follow: true,
        container: Some(CONTAINER_NAME.into()),
        ..Default::default()
    };
    loop {
        // No log exists before the container starts.
        let started = phase.wait_for(|p| p != "Pending").await.map(|p| p.clone());
        let terminal_before = match &started {
            Ok(p) => is_terminal(p),
            // The runner is done and dropped the channel: one last full read.
            Err(_) => true,
        };
        let _ = file.set_len(0).await;
        let _ = file.seek(std::io::SeekFrom::Start(0)).await;
        match api.log_stream(&name, &params).await {
            Ok(stream) => {
                let mut stream = Box::pin(stream);
                let mut buf = vec![0u8; 16 * 1024];
                let mut broke = false;
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            if file.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => {
                            broke = true;
                            break;
                        }
                    }
                }
                let _ = file.flush().await;
                if !broke {
                    // The stream ends when the container does; wait for the
                    // phase to confirm, else re-read (the stream was cut).
                    if terminal_before {
                        return;
                    }
                    let ended = tokio::time::timeout(
                        Duration::from_secs(3),
                        phase.wait_for(|p| is_terminal(p)),
                    )
                    .await;
                    match ended {
                        Ok(_) => return,
                        Err(_) => continue,
                    }
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return,
            Err(e) => {
                tracing::debug!(pod = %name, error = %e, "pod log not available yet; retrying");
                if terminal_before {
                    // One more try after a pause, then give up.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if let Ok(text) = api
                        .logs(
                            &name,
                            &LogParams {
                                container: Some(CONTAINER_NAME.into()),
                                ..Default::default()
                            },
                        )
                        .await
                    {
                        let _ = file.write_all(text.as_bytes()).await;
                        let _ = file.flush().await;
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
