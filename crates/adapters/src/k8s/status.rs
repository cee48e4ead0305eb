//! What a step pod's status says, in oj's words: its phase, the container's
//! exit code and reason, and whether a pod that has not started is stuck
//! (an image that cannot be pulled, a pod the scheduler cannot place). Pure
//! functions of the pod and the clock, so each verdict is tested without a
//! cluster and the runner only acts on them.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStateWaiting, Pod};
use tokio::time::Instant;

use super::pods::CONTAINER_NAME;

/// The waiting reasons of a container whose image cannot be pulled.
pub const IMAGE_PULL_REASONS: &[&str] = &["ErrImagePull", "ImagePullBackOff", "InvalidImageName"];

pub fn phase_of(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into())
}

pub fn is_terminal(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed")
}

fn step_container_state(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerState> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .find(|s| s.name == CONTAINER_NAME)
        .or_else(|| statuses.first())?
        .state
        .as_ref()
}

fn terminated(pod: &Pod) -> Option<&ContainerStateTerminated> {
    step_container_state(pod)?.terminated.as_ref()
}

fn waiting(pod: &Pod) -> Option<&ContainerStateWaiting> {
    step_container_state(pod)?.waiting.as_ref()
}

pub fn exit_code_of(pod: &Pod) -> Option<i32> {
    terminated(pod).map(|t| t.exit_code)
}

/// The terminated container's reason (`OOMKilled`, `Error`, …).
pub fn termination_reason(pod: &Pod) -> Option<String> {
    terminated(pod)
        .and_then(|t| t.reason.clone())
        .filter(|r| !r.is_empty())
}

pub fn deadline_exceeded(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("DeadlineExceeded")
}

/// The memory limit of the step container, for the OOMKilled hint.
fn memory_limit(pod: &Pod) -> Option<String> {
    let c = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == CONTAINER_NAME)?;
    c.resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")
        .map(|q| q.0.clone())
}

/// Why a failed pod failed, in words (the step's error).
pub fn failure_of(pod: &Pod, name: &str, timeout: Duration) -> String {
    let status = pod.status.as_ref();
    if deadline_exceeded(pod) {
        return format!(
            "pod {name} exceeded its activeDeadlineSeconds (step timeout {})",
            humantime::format_duration(timeout)
        );
    }
    match terminated(pod) {
        Some(t) => {
            let mut msg = format!("pod {name} failed: exit code {}", t.exit_code);
            if let Some(r) = t.reason.as_deref().filter(|r| !r.is_empty()) {
                msg.push_str(&format!(" ({r})"));
            }
            if let Some(m) = t.message.as_deref().filter(|m| !m.trim().is_empty()) {
                msg.push_str(&format!(": {}", m.trim()));
            }
            if t.reason.as_deref() == Some("OOMKilled") {
                let limit = memory_limit(pod).unwrap_or_else(|| "unset".into());
                msg.push_str(&format!(
                    "; the container used more memory than its limit ({limit}): raise container.resources.limits.memory of the step or pods.resources.limits.memory"
                ));
            }
            msg
        }
        None => {
            let reason = status.and_then(|s| s.reason.clone()).unwrap_or_default();
            let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
            format!("pod {name} failed: {reason} {message}")
                .trim_end()
                .to_string()
        }
    }
}

/// Why the cluster, not the command, ended a pod, in words: evicted by the
/// kubelet, preempted, its node lost or shut down, evicted for a drain
/// (SPEC §8.5: the retry class `infra`). `None` when nothing says so.
pub fn disruption(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let message = |m: Option<&str>| {
        m.map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| format!(" ({m})"))
            .unwrap_or_default()
    };
    // The kubelet's own word first: an eviction also carries a
    // DisruptionTarget condition (TerminationByKubelet).
    let by_reason = match status.reason.as_deref() {
        Some("Evicted") => Some("was evicted by the kubelet"),
        Some("NodeLost") => Some("was lost with its node (node lost)"),
        Some("Shutdown" | "Terminated" | "NodeShutdown") => {
            Some("was terminated by its node's shutdown")
        }
        Some("Preempting") => {
            Some("was preempted by the scheduler to make room for a higher-priority pod")
        }
        _ => None,
    };
    if let Some(why) = by_reason {
        return Some(format!("{why}{}", message(status.message.as_deref())));
    }
    let target = status.conditions.as_ref().and_then(|cs| {
        cs.iter()
            .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
    });
    if let Some(c) = target {
        let why = match c.reason.as_deref().unwrap_or("") {
            "PreemptionByScheduler" | "PreemptionByKubeScheduler" => {
                "was preempted by the scheduler to make room for a higher-priority pod"
            }
            "DeletionByTaintManager" => {
                "was deleted because its node became unreachable or was tainted NoExecute (node lost)"
            }
            "DeletionByPodGC" => "was deleted because its node is gone (node lost)",
            "EvictionByEvictionAPI" => "was evicted through the Eviction API (a node drain)",
            "TerminationByKubelet" => {
                "was terminated by the kubelet (node pressure or node shutdown)"
            }
            _ => "was disrupted by the cluster",
        };
        let reason = c.reason.as_deref().unwrap_or("DisruptionTarget");
        return Some(format!("{why} [{reason}]{}", message(c.message.as_deref())));
    }
    None
}

/// The scheduler's verdict on a pod it could not place.
fn unschedulable(pod: &Pod) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    Some(format!(
        "{}: {}",
        c.reason.as_deref().unwrap_or("Unschedulable"),
        c.message.as_deref().unwrap_or("").trim()
    ))
}

/// Why a pod that has not started is stuck, with what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stuck {
    ImagePull(String),
    Pending(String),
}

impl Stuck {
    pub fn message(&self) -> &str {
        match self {
            Stuck::ImagePull(m) | Stuck::Pending(m) => m,
        }
    }
}

/// Watches the clocks of a pod that has not started: how long its image
/// has failed to pull, how long it has been `Pending`.
#[derive(Debug, Clone)]
pub struct StuckClock {
    pull_grace: Duration,
    pending_timeout: Duration,
    /// When `Pending` started counting (the pod's age is subtracted).
    pending_since: Instant,
    pull_failing_since: Option<Instant>,
}

impl StuckClock {
    /// `age` = how old the pod already is (after a daemon restart).
    pub fn new(
        now: Instant,
        age: Duration,
        pull_grace: Duration,
        pending_timeout: Duration,
    ) -> Self {
        StuckClock {
            pull_grace,
            pending_timeout,
            pending_since: now.checked_sub(age).unwrap_or(now),
            pull_failing_since: None,
        }
    }

    /// `Err` when the pod is stuck; `Ok(Some(t))` = look again at `t` even
    /// if nothing changes; `Ok(None)` = nothing to time.
    pub fn judge(&mut self, pod: &Pod, name: &str, now: Instant) -> Result<Option<Instant>, Stuck> {
        if phase_of(pod) != "Pending" {
            self.pull_failing_since = None;
            return Ok(None);
        }
        let wait = waiting(pod);
        let pulling = wait
            .and_then(|w| w.reason.as_deref())
            .filter(|r| IMAGE_PULL_REASONS.contains(r));
        let mut next = self.pending_since + self.pending_timeout;
        match pulling {
            Some(reason) => {
                let since = *self.pull_failing_since.get_or_insert(now);
                if now >= since + self.pull_grace {
                    let image = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.first())
                        .and_then(|c| c.image.clone())
                        .unwrap_or_default();
                    let detail = wait
                        .and_then(|w| w.message.as_deref())
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    return Err(Stuck::ImagePull(format!(
                        "pod {name} cannot pull image {image:?}: {reason}{detail} (for {}, pods.image_pull_grace); check the image name and tag, and the registry credentials (imagePullSecrets of pods.service_account)",
                        humantime::format_duration(self.pull_grace)
                    )));
                }
                next = next.min(since + self.pull_grace);
            }
            None => self.pull_failing_since = None,
        }
        if now >= self.pending_since + self.pending_timeout {
            let why = unschedulable(pod)
                .or_else(|| {
                    wait.map(|w| {
                        format!(
                            "container waiting: {} {}",
                            w.reason.as_deref().unwrap_or(""),
                            w.message.as_deref().unwrap_or("")
                        )
                        .trim_end()
                        .to_string()
                    })
                })
                .unwrap_or_else(|| "no reason reported".into());
            return Err(Stuck::Pending(format!(
                "pod {name} was still Pending after {} (pods.pending_timeout): {why}; lower the step's resources, add capacity to the cluster, or raise pods.pending_timeout",
                humantime::format_duration(self.pending_timeout)
            )));
        }
        Ok(Some(next))
    }
}

/// How old `pod` is by its creationTimestamp (zero when unknown).
pub fn pod_age(pod: &Pod) -> Duration {
    let Some(created) = pod.metadata.creation_timestamp.as_ref() else {
        return Duration::ZERO;
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let age = now.duration_since(created.0);
    Duration::try_from(age).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStatus, PodCondition, PodSpec, PodStatus,
    };

    fn pending(waiting_reason: Option<&str>, unschedulable: Option<&str>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: CONTAINER_NAME.into(),
                    image: Some("nope:1".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                conditions: unschedulable.map(|m| {
                    vec![PodCondition {
                        type_: "PodScheduled".into(),
                        status: "False".into(),
                        reason: Some("Unschedulable".into()),
                        message: Some(m.into()),
                        ..Default::default()
                    }]
                }),
                container_statuses: waiting_reason.map(|r| {
                    vec![ContainerStatus {
                        name: CONTAINER_NAME.into(),
                        state: Some(ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: Some(r.into()),
                                message: Some("pull access denied".into()),
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn clock(now: Instant) -> StuckClock {
        StuckClock::new(
            now,
            Duration::ZERO,
            Duration::from_secs(120),
            Duration::from_secs(900),
        )
    }

    #[test]
    fn an_image_that_cannot_be_pulled_fails_after_the_grace_only() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        let pod = pending(Some("ImagePullBackOff"), None);
        assert_eq!(
            c.judge(&pod, "p", t0),
            Ok(Some(t0 + Duration::from_secs(120)))
        );
        assert!(c.judge(&pod, "p", t0 + Duration::from_secs(119)).is_ok());
        let err = c
            .judge(&pod, "p", t0 + Duration::from_secs(120))
            .unwrap_err();
        let m = err.message();
        assert!(
            m.contains("ImagePullBackOff")
                && m.contains("\"nope:1\"")
                && m.contains("pods.image_pull_grace"),
            "{m}"
        );
    }

    #[test]
    fn a_pull_that_recovers_resets_the_grace() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        assert!(
            c.judge(&pending(Some("ErrImagePull"), None), "p", t0)
                .is_ok()
        );
        assert!(
            c.judge(
                &pending(Some("ContainerCreating"), None),
                "p",
                t0 + Duration::from_secs(60)
            )
            .is_ok()
        );
        // Failing again starts a new grace.
        assert!(
            c.judge(
                &pending(Some("ErrImagePull"), None),
                "p",
                t0 + Duration::from_secs(150)
            )
            .is_ok()
        );
        assert!(
            c.judge(
                &pending(Some("ErrImagePull"), None),
                "p",
                t0 + Duration::from_secs(269)
            )
            .is_ok()
        );
    }

    #[test]
    fn an_unschedulable_pod_fails_after_the_pending_timeout_with_the_scheduler_message() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        let pod = pending(
            None,
            Some("0/3 nodes are available: 3 Insufficient memory."),
        );
        assert!(c.judge(&pod, "p", t0 + Duration::from_secs(899)).is_ok());
        let err = c
            .judge(&pod, "p", t0 + Duration::from_secs(900))
            .unwrap_err();
        assert!(matches!(err, Stuck::Pending(_)));
        assert!(
            err.message()
                .contains("Unschedulable: 0/3 nodes are available: 3 Insufficient memory."),
            "{}",
            err.message()
        );
    }

    #[test]
    fn the_pod_age_counts_against_the_pending_timeout() {
        let t0 = Instant::now();
        let mut c = StuckClock::new(
            t0,
            Duration::from_secs(850),
            Duration::from_secs(120),
            Duration::from_secs(900),
        );
        assert!(
            c.judge(&pending(None, None), "p", t0 + Duration::from_secs(50))
                .is_err()
        );
    }
}
