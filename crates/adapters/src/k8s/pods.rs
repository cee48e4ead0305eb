//! The pod of a container step, built as a pure function of the step, its
//! `container` blocks and `pods.*`, so the exact shape §3.8 promises (name,
//! labels, restartPolicy, deadline, merged resources) is tested without a
//! cluster and the runner only has to create what this returns.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource, Pod, PodSpec,
    ResourceRequirements, SecretKeySelector, Toleration as K8sToleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use oj_config::{PodsConfig, Quantity};
pub use oj_core::{ContainerResources, ResourceAmounts};
use oj_core::{ContainerSpec, PodOverlay, SecretRef, WORKSPACE_MOUNT};
use sha2::{Digest, Sha256};

/// `app.kubernetes.io/managed-by=oj` on every pod oj creates.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "oj";
/// The job id (sanitised as a label value).
pub const LABEL_JOB_ID: &str = "oj.dev/job-id";
/// The step name (sanitised as a label value).
pub const LABEL_STEP: &str = "oj.dev/step";
/// The `daemon.instance` that owns the pod (sanitised): another oj
/// instance in the same namespace leaves it alone.
pub const LABEL_INSTANCE: &str = "oj.dev/instance";
/// Which run of the step this pod is (1 = the first).
pub const LABEL_ATTEMPT: &str = "oj.dev/attempt";
/// The exact `daemon.instance`, which the label may have had to shorten.
pub const ANNOTATION_INSTANCE: &str = "oj.dev/instance";
/// Annotations keep the exact values, which labels may have had to shorten.
pub const ANNOTATION_JOB_ID: &str = "oj.dev/job-id";
pub const ANNOTATION_JOB_NAME: &str = "oj.dev/job-name";
pub const ANNOTATION_STEP: &str = "oj.dev/step";
pub const ANNOTATION_STEP_INDEX: &str = "oj.dev/step-index";
/// The label selector of every pod oj manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=oj";
/// The name of the single container of a step pod.
pub const CONTAINER_NAME: &str = "step";
/// `terminationGracePeriodSeconds` of a step pod: the time its container
/// gets between SIGTERM and SIGKILL when oj deletes the pod (cancel, step
/// timeout, `shutdown.container_steps = "cancel"`), like the 2 s a shell
/// step gets, but long enough for a container runtime.
pub const STEP_TERMINATION_GRACE_SECONDS: i64 = 10;

/// Longest Kubernetes name / label value.
const MAX_LABEL: usize = 63;

/// The API calls oj makes, as `(apiGroup, resource, verbs)`: the Role in
/// `deploy/` must grant exactly these.
pub const RBAC_RULES: &[(&str, &str, &[&str])] = &[
    (
        "",
        "pods",
        &["create", "get", "list", "watch", "patch", "delete"],
    ),
    ("", "pods/log", &["get"]),
    // A job's `workspace`: created before its first pod, read again after
    // a restart, listed to clean up those of finished jobs, deleted with the job.
    (
        "",
        "persistentvolumeclaims",
        &["create", "get", "list", "delete"],
    ),
    (
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update"],
    ),
    // `oj config check` and the daemon start ask the API what they may do.
    (
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        &["create"],
    ),
    // ... and read what the namespace imposes on pods.
    ("", "limitranges", &["list"]),
    ("", "resourcequotas", &["list"]),
];

/// Who owns a step pod, and which run of the step it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOwner {
    /// `daemon.instance`.
    pub instance: String,
    /// 1 for the first run of the step.
    pub attempt: u32,
}

impl Default for PodOwner {
    fn default() -> Self {
        PodOwner {
            instance: String::new(),
            attempt: 1,
        }
    }
}

/// The label selector of the pods `instance` manages.
pub fn instance_selector(instance: &str) -> String {
    format!(
        "{MANAGED_SELECTOR},{LABEL_INSTANCE}={}",
        label_value(instance)
    )
}

/// The owning instance's label value on a pod, if it has one.
pub fn pod_instance_label(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_INSTANCE))
        .map(String::as_str)
}

/// Everything about one container step the pod depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInput {
    pub job_id: String,
    pub job_name: String,
    /// 0-based position of the step in the job.
    pub step_index: usize,
    pub step_name: String,
    pub image: String,
    /// `jobs.shell`; the command runs as `shell + [command]`. Empty = `["/bin/sh", "-c"]`.
    pub shell: Vec<String>,
    /// The step's `run` string.
    pub command: String,
    pub env: BTreeMap<String, String>,
    /// The step timeout; becomes `activeDeadlineSeconds`.
    pub timeout: Duration,
    /// The job-level `container.resources`.
    pub job_resources: Option<ContainerResources>,
    /// The step's own `container.resources`.
    pub step_resources: Option<ContainerResources>,
    /// Pass-through fields, secrets and the workspace (SPEC §8.5).
    pub extras: PodExtras,
}

/// What a step pod carries beyond oj's own fields (SPEC §8.5).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodExtras {
    /// The job's `container`: its pass-through fields overlay `pods.*`.
    pub job_container: Option<ContainerSpec>,
    /// The step's own `container`, overlaid last.
    pub step_container: Option<ContainerSpec>,
    /// Env name → Secret key, as `valueFrom.secretKeyRef` (oj never reads the value).
    pub secrets: BTreeMap<String, SecretRef>,
    /// The job's workspace claim, mounted at `/workspace` (the working directory).
    pub workspace_claim: Option<String>,
}

/// The name of the volume that mounts a job's workspace.
pub const WORKSPACE_VOLUME: &str = "workspace";

/// Why a step's pod cannot be built; each names the step.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PodBuildError {
    #[error(
        "step {step:?}: resources.requests.{resource} ({request}) is above resources.limits.{resource} ({limit}) after overlaying the job's and the step's container.resources on pods.resources; lower the request or raise the limit"
    )]
    RequestAboveLimit {
        step: String,
        resource: &'static str,
        request: String,
        limit: String,
    },
    #[error("step {step:?}: the container has an empty image; set container.image in the runbook")]
    EmptyImage { step: String },
}

/// The effective requests and limits of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedResources {
    pub requests_cpu: Quantity,
    pub requests_memory: Quantity,
    pub limits_cpu: Quantity,
    pub limits_memory: Quantity,
}

/// `pods.resources` overlaid field by field by the job's, then the step's,
/// `container.resources`; requests must not exceed limits afterwards.
pub fn merge_resources(
    cfg: &PodsConfig,
    job: Option<&ContainerResources>,
    step: Option<&ContainerResources>,
    step_name: &str,
) -> Result<MergedResources, PodBuildError> {
    let base = &cfg.resources;
    let mut m = MergedResources {
        requests_cpu: base.requests.cpu.clone(),
        requests_memory: base.requests.memory.clone(),
        limits_cpu: base.limits.cpu.clone(),
        limits_memory: base.limits.memory.clone(),
    };
    for layer in [job, step].into_iter().flatten() {
        if let Some(r) = &layer.requests {
            overlay(&mut m.requests_cpu, &r.cpu);
            overlay(&mut m.requests_memory, &r.memory);
        }
        if let Some(l) = &layer.limits {
            overlay(&mut m.limits_cpu, &l.cpu);
            overlay(&mut m.limits_memory, &l.memory);
        }
    }
    for (resource, request, limit) in [
        ("cpu", &m.requests_cpu, &m.limits_cpu),
        ("memory", &m.requests_memory, &m.limits_memory),
    ] {
        if request > limit {
            return Err(PodBuildError::RequestAboveLimit {
                step: step_name.to_string(),
                resource,
                request: request.to_string(),
                limit: limit.to_string(),
            });
        }
    }
    Ok(m)
}

fn overlay(target: &mut Quantity, value: &Option<Quantity>) {
    if let Some(v) = value {
        *target = v.clone();
    }
}

/// The pod of a container step, in `namespace`, with no owning instance
/// (see [`build_owned_pod`]).
pub fn build_pod(
    input: &PodInput,
    cfg: &PodsConfig,
    namespace: &str,
) -> Result<Pod, PodBuildError> {
    build_owned_pod(input, cfg, namespace, &PodOwner::default())
}

/// The pod of a container step, in `namespace`, labelled for its `owner`.
pub fn build_owned_pod(
    input: &PodInput,
    cfg: &PodsConfig,
    namespace: &str,
    owner: &PodOwner,
) -> Result<Pod, PodBuildError> {
    if input.image.trim().is_empty() {
        return Err(PodBuildError::EmptyImage {
            step: input.step_name.clone(),
        });
    }
    let res = merge_resources(
        cfg,
        input.job_resources.as_ref(),
        input.step_resources.as_ref(),
        &input.step_name,
    )?;
    let q = |q: &Quantity| K8sQuantity(q.as_str().to_string());
    let resources = ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q(&res.requests_cpu)),
            ("memory".to_string(), q(&res.requests_memory)),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".to_string(), q(&res.limits_cpu)),
            ("memory".to_string(), q(&res.limits_memory)),
        ])),
        ..Default::default()
    };
    let mut command = if input.shell.is_empty() {
        vec!["/bin/sh".to_string(), "-c".to_string()]
    } else {
        input.shell.clone()
    };
    command.push(input.command.clone());
    let mut env: Vec<EnvVar> = input
        .env
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        })
        .collect();
    let extras = &input.extras;
    env.extend(extras.secrets.iter().map(|(name, r)| EnvVar {
        name: name.clone(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.secret.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }));
    let overlay = PodOverlay::merge(
        cfg,
        extras.job_container.as_ref(),
        extras.step_container.as_ref(),
    );
    // oj's own labels and annotations are set last: a pass-through key
    // cannot replace them (and is refused before it gets here).
    let mut labels = overlay.labels;
    let mut annotations = overlay.annotations;
    let own_labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (LABEL_JOB_ID.to_string(), label_value(&input.job_id)),
        (LABEL_STEP.to_string(), label_value(&input.step_name)),
        (LABEL_INSTANCE.to_string(), label_value(&owner.instance)),
        (LABEL_ATTEMPT.to_string(), owner.attempt.to_string()),
    ]);
    let own_annotations = BTreeMap::from([
        (ANNOTATION_JOB_ID.to_string(), input.job_id.clone()),
        (ANNOTATION_JOB_NAME.to_string(), input.job_name.clone()),
        (ANNOTATION_STEP.to_string(), input.step_name.clone()),
        (
            ANNOTATION_STEP_INDEX.to_string(),
            input.step_index.to_string(),
        ),
        (ANNOTATION_INSTANCE.to_string(), owner.instance.clone()),
    ]);
    labels.extend(own_labels);
    annotations.extend(own_annotations);
    let tolerations: Vec<K8sToleration> = overlay
        .tolerations
        .iter()
        .map(|t| K8sToleration {
            key: t.key.clone(),
            operator: t.operator.clone(),
            value: t.value.clone(),
            effect: t.effect.clone(),
            toleration_seconds: t.toleration_seconds,
        })
        .collect();
    let (volumes, mounts, working_dir) = match &extras.workspace_claim {
        Some(claim) => (
            Some(vec![Volume {
                name: WORKSPACE_VOLUME.into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: Some(false),
                }),
                ..Default::default()
            }]),
            Some(vec![VolumeMount {
                name: WORKSPACE_VOLUME.into(),
                mount_path: WORKSPACE_MOUNT.into(),
                ..Default::default()
            }]),
            Some(WORKSPACE_MOUNT.to_string()),
        ),
        None => (None, None, None),
    };
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(attempt_pod_name(
                &input.job_id,
                input.step_index,
                owner.attempt,
            )),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(deadline_seconds(input.timeout)),
            termination_grace_period_seconds: Some(STEP_TERMINATION_GRACE_SECONDS),
            service_account_name: cfg.service_account.clone(),
            // A step runs whatever the runbook says: without a service
            // account chosen for it, it gets no API token at all rather
            // than the namespace's default one.
            automount_service_account_token: cfg.service_account.is_none().then_some(false),
            node_selector: (!overlay.node_selector.is_empty()).then_some(overlay.node_selector),
            tolerations: (!tolerations.is_empty()).then_some(tolerations),
            priority_class_name: overlay.priority_class_name,
            volumes,
            containers: vec![Container {
                name: CONTAINER_NAME.into(),
                image: Some(input.image.clone()),
                image_pull_policy: Some(cfg.image_pull_policy.as_str().into()),
                command: Some(command),
                env: (!env.is_empty()).then_some(env),
                resources: Some(resources),
                volume_mounts: mounts,
                working_dir,
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    })
}

/// Whole seconds, rounded up, at least 1 (0 would be rejected by the API).
fn deadline_seconds(timeout: Duration) -> i64 {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

/// `oj-<job-id>-<step-index>` as a DNS-1123 label (≤ 63 chars). A job id
/// that had to be changed to fit keeps a hash of the original, so two
/// different ids never share a pod name.
pub fn pod_name(job_id: &str, step_index: usize) -> String {
    pod_name_with(job_id, format!("-{step_index}"))
}

/// The pod of run `attempt` of a step: [`pod_name`] for the first run,
/// `oj-<job-id>-<step-index>-<attempt>` for a retry, so a retry never
/// mistakes the pod of an earlier run (kept, or not yet deleted) for its own.
pub fn attempt_pod_name(job_id: &str, step_index: usize, attempt: u32) -> String {
    if attempt <= 1 {
        return pod_name(job_id, step_index);
    }
    pod_name_with(job_id, format!("-{step_index}-{attempt}"))
}

pub(crate) fn pod_name_with(job_id: &str, suffix: String) -> String {
    let budget = MAX_LABEL - "oj-".len() - suffix.len();
    let mut clean = String::with_capacity(job_id.len());
    for c in job_id.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (clean.is_empty() || clean.ends_with('-')) {
            continue;
        }
        clean.push(c);
    }
    while clean.ends_with('-') {
        clean.pop();
    }
    let middle = if clean == job_id && clean.len() <= budget {
        clean
    } else {
        let hash = short_hash(job_id);
        let keep = budget - hash.len() - 1;
        let mut prefix: String = clean.chars().take(keep).collect();
        while prefix.ends_with('-') {
            prefix.pop();
        }
        if prefix.is_empty() {
            hash
        } else {
            format!("{prefix}-{hash}")
        }
    };
    format!("oj-{middle}{suffix}")
}

/// `text` as a valid label value (≤ 63 chars of `[A-Za-z0-9._-]`, starting
/// and ending alphanumeric); changed values keep a hash of the original.
pub fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed == text && trimmed.len() <= MAX_LABEL {
        return trimmed.to_string();
    }
    if text.is_empty() {
        return String::new();
    }
    let hash = short_hash(text);
    let keep = MAX_LABEL - hash.len() - 1;
    let prefix: String = trimmed.chars().take(keep).collect();
    let prefix = prefix.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if prefix.is_empty() {
        hash
    } else {
        format!("{prefix}-{hash}")
    }
}

/// The label selector of one job's pods.
pub fn job_selector(job_id: &str) -> String {
    format!("{MANAGED_SELECTOR},{LABEL_JOB_ID}={}", label_value(job_id))
}

/// The job id a pod belongs to: the exact annotation, else the label.
pub fn pod_job_id(pod: &Pod) -> Option<String> {
    let meta = &pod.metadata;
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_JOB_ID))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(LABEL_JOB_ID)))
        .cloned()
}

fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Whether `name` is a DNS-1123 label (what pod names must be for oj).
pub fn is_dns1123_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LABEL
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `v` is a valid label value.
pub fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= MAX_LABEL
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric())
}
