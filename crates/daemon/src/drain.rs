//! Lifecycle end: how a shutdown is requested (SIGTERM, SIGINT,
//! `POST /v1/shutdown`, `oj daemon stop`) and the drain of SPEC §3.9:
//!
//! 1. at once: readiness and submissions fail (`draining`), no job starts;
//! 2. running shell steps may finish until `shutdown.drain_timeout`;
//! 3. then the rest get SIGTERM (SIGKILL 2 s later) and end `interrupted`;
//!    container steps are left running in their pods, or, with
//!    `shutdown.container_steps = "cancel"`, waited for like shell steps
//!    and then their pods deleted (the steps end `interrupted`);
//! 4. pending notifications get what is left of the window;
//! 5. the final snapshot is written (the caller then releases the lock).
//!
//! A second request skips straight to 3. An idle daemon goes through all of
//! it without waiting. All five phases are [`drain`]; the daemon's run
//! phase only waits for the first request, then calls it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use oj_adapters::notify::Notifier;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::engine::{ActiveStep, EngineHandle};
use crate::runner::shell::KILL_GRACE;

/// Counts shutdown requests; cheap to clone.
#[derive(Clone)]
pub struct ShutdownTrigger {
    tx: Arc<watch::Sender<u32>>,
}

impl ShutdownTrigger {
    pub fn new() -> (ShutdownTrigger, watch::Receiver<u32>) {
        let (tx, rx) = watch::channel(0);
        (ShutdownTrigger { tx: Arc::new(tx) }, rx)
    }

    /// Asks for a shutdown (the first starts the drain, the second terminates).
    pub fn request(&self, why: &str) {
        let n = *self.tx.borrow() + 1;
        if n == 1 {
            tracing::info!(reason = why, "shutdown requested: draining");
        } else {
            tracing::warn!(
                reason = why,
                "second shutdown request: terminating running steps now"
            );
        }
        self.tx.send_modify(|c| *c += 1);
        crate::ready::stopping(why, n);
    }
}

/// Shutdown requests from outside the API, the daemon's shutdown input:
/// each item is one request with its reason (the first drains, the second
/// terminates). [`signal_requests`] in the binary; a channel in a test.
pub type ShutdownRequests = BoxStream<'static, &'static str>;

/// SIGTERM and SIGINT as shutdown requests. The handlers are installed at
/// once (so call this before building the daemon): a signal that comes
/// early is never fatal, it waits in the stream until the daemon runs.
pub fn signal_requests() -> std::io::Result<ShutdownRequests> {
    let term = signal(SignalKind::terminate())?;
    let int = signal(SignalKind::interrupt())?;
    let requests = futures::stream::unfold((term, int), |(mut term, mut int)| async move {
        let why = tokio::select! {
            Some(()) = term.recv() => "SIGTERM",
            Some(()) = int.recv() => "SIGINT",
            else => return None,
        };
        Some((why, (term, int)))
    });
    Ok(requests.boxed())
}

/// Hands every request of `input` to `trigger`, until the input ends.
pub fn forward(mut input: ShutdownRequests, trigger: ShutdownTrigger) {
    tokio::spawn(async move {
        while let Some(why) = input.next().await {
            trigger.request(why);
        }
    });
}

fn describe(steps: &[ActiveStep]) -> String {
    if steps.is_empty() {
        return "nothing".into();
    }
    steps
        .iter()
        .map(|s| {
            format!(
                "{} ({}) step {}{}",
                s.job_id,
                s.job_name,
                s.step,
                if s.container { " [pod]" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The steps the drain waits for and then stops: shell steps, and
/// container steps too with `shutdown.container_steps = "cancel"`.
fn stoppable(active: &[ActiveStep], cancel_pods: bool) -> Vec<ActiveStep> {
    active
        .iter()
        .filter(|s| cancel_pods || !s.container)
        .cloned()
        .collect()
}

/// How the drain ended, for the last log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Steps that finished on their own during the window.
    pub completed_in_window: bool,
    /// Steps that were terminated.
    pub terminated: Vec<ActiveStep>,
    /// The final snapshot (phase 5), or why it failed.
    pub snapshot: Result<(), String>,
}

/// Runs the five phases: stop accepting, wait, terminate, deliver pending
/// notifications with what is left of the window (`notifier`: the one in
/// use), write the final snapshot (the engine stops after it).
pub async fn drain(
    engine: &EngineHandle,
    draining: &watch::Sender<bool>,
    requests: watch::Receiver<u32>,
    shutdown: &oj_config::ShutdownConfig,
    notifier: Option<Notifier>,
) -> DrainReport {
    let (deadline, mut report) = stop_steps(
        engine,
        draining,
        requests,
        shutdown.drain_timeout,
        shutdown.container_steps,
    )
    .await;
    if let Some(n) = notifier {
        let left = n.depth();
        tracing::info!(
            phase = "4/5 notifications",
            pending = left,
            "drain: delivering pending notifications"
        );
        let until =
            deadline.max(Instant::now() + Duration::from_millis(if left > 0 { 500 } else { 0 }));
        n.shutdown(until).await;
    }
    tracing::info!(phase = "5/5 snapshot", "drain: writing the final snapshot");
    report.snapshot = engine.shutdown().await;
    report
}

/// Phases 1–3. Returns the end of the drain window.
async fn stop_steps(
    engine: &EngineHandle,
    draining: &watch::Sender<bool>,
    mut requests: watch::Receiver<u32>,
    drain_timeout: Duration,
    container_steps: oj_config::ContainerStepsOnDrain,
) -> (Instant, DrainReport) {
    let cancel_pods = container_steps == oj_config::ContainerStepsOnDrain::Cancel;
    let shell_steps = |active: &[ActiveStep]| stoppable(active, cancel_pods);
    let started = Instant::now();
    let deadline = started + drain_timeout;
    draining.send_replace(true);
    engine.drain();
    let mut active = engine.active();
    let running = shell_steps(&active.borrow_and_update());
    tracing::info!(
        phase = "1/5 stop accepting",
        running = %describe(&running),
        drain_timeout = %humantime::format_duration(drain_timeout),
        "drain: readiness and submissions now fail; queued jobs stay queued"
    );
    let mut skip = false;
    if !running.is_empty() {
        tracing::info!(phase = "2/5 wait", running = %describe(&running), "drain: waiting for running steps to finish");
        loop {
            let now_running = shell_steps(&active.borrow_and_update());
            if now_running.is_empty() {
                break;
            }
            tokio::select! {
                changed = active.changed() => {
                    if changed.is_err() { break; }
                    let left = shell_steps(&active.borrow());
                    if !left.is_empty() {
                        tracing::info!(phase = "2/5 wait", running = %describe(&left), "drain: still running");
                    }
                }
                () = tokio::time::sleep_until(deadline) => break,
                _ = requests.wait_for(|n| *n >= 2) => { skip = true; break; }
            }
        }
    }
    let left = shell_steps(&active.borrow_and_update());
    let mut report = DrainReport {
        completed_in_window: left.is_empty() && !skip,
        terminated: Vec::new(),
        snapshot: Ok(()),
    };
    if !left.is_empty() {
        tracing::warn!(
            phase = "3/5 terminate",
            steps = %describe(&left),
            reason = if skip { "second shutdown request" } else { "drain timeout passed" },
            "drain: sending SIGTERM to the process groups of the steps still running (SIGKILL in 2s); their jobs end interrupted"
        );
        engine.terminate();
        // The group's grace, then the grace of what the steps left running.
        let limit = Instant::now() + KILL_GRACE * 2 + Duration::from_secs(2);
        loop {
            if shell_steps(&active.borrow_and_update()).is_empty() {
                break;
            }
            tokio::select! {
                changed = active.changed() => if changed.is_err() { break },
                () = tokio::time::sleep_until(limit) => {
                    tracing::error!(steps = %describe(&shell_steps(&active.borrow())), "drain: steps did not end after SIGKILL");
                    break;
                }
            }
        }
        report.terminated = left;
    }
    let pods = active
        .borrow()
        .iter()
        .filter(|s| s.container)
        .cloned()
        .collect::<Vec<_>>();
    if !pods.is_empty() && !cancel_pods {
        tracing::info!(steps = %describe(&pods), "drain: container steps are left running in their pods; the next daemon follows them");
    }
    (deadline, report)
}
