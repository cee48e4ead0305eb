//! What `oj config check` verifies in a cluster, and the daemon warns about
//! at start: the things that break deployments most often and are
//! otherwise found only when the first job fails.
//!
//! - **Permissions**: a `SelfSubjectAccessReview` for every verb on every
//!   resource oj will use ([`super::pods::RBAC_RULES`]) in each namespace it
//!   will use (`pods.namespace`, and `lock.lease.namespace` with the lease
//!   strategy), naming what is missing and the Role rule that adds it.
//! - **The drain fits the pod**: the daemon's own pod (`POD_NAME`,
//!   `POD_NAMESPACE`) must have `terminationGracePeriodSeconds` greater than
//!   `shutdown.drain_timeout` + 2 s, or the kubelet kills the drain.
//! - **The namespace admits step pods**: its LimitRanges (min, max,
//!   maxLimitRequestRatio per container) and ResourceQuotas (required
//!   resources, hard caps) against `pods.resources`.
//!
//! Without a reachable API each check says it was skipped, never that all
//! is well.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{LimitRange, Pod, ResourceQuota};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use kube::api::{Api, ListParams, PostParams};
use oj_config::{Environment, LockStrategy, Quantity, RuntimeConfig};

use super::pods::RBAC_RULES;

/// Time each API request of the checks may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the kubelet needs on top of the drain: the 2 s SIGKILL grace of
/// shell steps and the exit itself.
const DRAIN_MARGIN: Duration = Duration::from_secs(2);

/// What the checks found. `problems` are errors in `oj config check` and
/// warnings at daemon start; `notes` say what was checked or skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

/// Where a key's value came from (`"profile kubernetes"`); empty = unknown.
pub type SourceOf<'a> = &'a (dyn Fn(&str) -> String + Sync);

fn key_with_source(key: &str, source: SourceOf<'_>) -> String {
    match source(key) {
        s if s.is_empty() => key.to_string(),
        s => format!("{key} (from {s})"),
    }
}

/// The namespaces oj will use, and why.
fn namespaces(cfg: &RuntimeConfig) -> Vec<(String, Vec<&'static str>)> {
    let pods = super::resolve_namespace(cfg.pods.namespace.as_deref());
    let mut out: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for (group, resource, _) in RBAC_RULES {
        let uses = match (*group, *resource) {
            ("coordination.k8s.io", "leases") => {
                if cfg.lock.strategy != LockStrategy::Lease {
                    continue;
                }
                super::resolve_namespace(cfg.lock.lease.namespace.as_deref())
            }
            // Asking whether it may ask is pointless: a failed review says so.
            (_, "selfsubjectaccessreviews") => continue,
            _ => pods.clone(),
        };
        out.entry(uses).or_default().push(resource);
    }
    out.into_iter().collect()
}

/// Runs every check against `client`.
pub async fn check_cluster(
    client: kube::Client,
    cfg: &RuntimeConfig,
    env: &Environment,
    source: SourceOf<'_>,
) -> Findings {
    let mut f = Findings::default();
    check_permissions(&client, cfg, &mut f).await;
    check_own_pod(&client, cfg, env, source, &mut f).await;
    check_admission(&client, cfg, source, &mut f).await;
    f
}

/// `None` when the request timed out.
async fn bounded<T>(fut: impl Future<Output = Result<T, kube::Error>>) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(kube::Error::Api(s))) => Err(format!("{} ({} {})", s.message, s.code, s.reason)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(REQUEST_TIMEOUT)
        )),
    }
}

/// May this service account do `verb` on `group/resource` in `namespace`?
async fn may(
    api: &Api<SelfSubjectAccessReview>,
    namespace: &str,
    group: &str,
    resource: &str,
    verb: &str,
) -> Result<bool, String> {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_string()),
                group: Some(group.to_string()),
                resource: Some(resource.to_string()),
                subresource,
                verb: Some(verb.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = bounded(api.create(&PostParams::default(), &review)).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn check_permissions(client: &kube::Client, cfg: &RuntimeConfig, f: &mut Findings) {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut asked = 0;
    for (namespace, resources) in namespaces(cfg) {
        for (group, resource, verbs) in RBAC_RULES {
            if !resources.contains(resource) {
                continue;
            }
            let mut missing = Vec::new();
            for verb in *verbs {
                match may(&api, &namespace, group, resource, verb).await {
                    Ok(true) => asked += 1,
                    Ok(false) => {
                        asked += 1;
                        missing.push(*verb);
                    }
                    Err(e) => {
                        f.warnings.push(format!(
                            "permissions not checked: a SelfSubjectAccessReview failed: {e}; the Role needs `create` on selfsubjectaccessreviews (apiGroup authorization.k8s.io) for `oj config check` to verify the others"
                        ));
                        return;
                    }
                }
            }
            if !missing.is_empty() {
                let group_shown = format!("\"{group}\"");
                f.problems.push(format!(
                    "the service account may not {} {resource} in namespace {namespace}{}; add to the Role bound to it there: {{apiGroups: [{group_shown}], resources: [\"{resource}\"], verbs: [{}]}}",
                    missing.join(", "),
                    why(resource),
                    missing
                        .iter()
                        .map(|v| format!("\"{v}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    f.notes.push(format!(
        "in-cluster: {asked} permissions checked with SelfSubjectAccessReview"
    ));
}

/// What a resource is for, in the RBAC message.
fn why(resource: &str) -> &'static str {
    match resource {
        "pods" => " (container steps run as pods)",
        "pods/log" => " (a container step's output is its pod's log)",
        "leases" => " (lock.strategy = \"lease\")",
        "limitranges" | "resourcequotas" => {
            " (these checks read what the namespace imposes on pods)"
        }
        _ => "",
    }
}

async fn check_own_pod(
    client: &kube::Client,
    cfg: &RuntimeConfig,
    env: &Environment,
    source: SourceOf<'_>,
    f: &mut Findings,
) {
    let Some(name) = env.get("POD_NAME").filter(|n| !n.is_empty()) else {
        f.notes.push(
            "in-cluster: the daemon pod's terminationGracePeriodSeconds was not checked: POD_NAME is not set (give it from the downward API, metadata.name)".into(),
        );
        return;
    };
    let namespace = env
        .get("POD_NAMESPACE")
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| super::resolve_namespace(None));
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pod = match bounded(api.get(name)).await {
        Ok(p) => p,
        Err(e) => {
            f.warnings.push(format!(
                "could not read the daemon's own pod {namespace}/{name} (POD_NAME, POD_NAMESPACE) to compare its terminationGracePeriodSeconds with shutdown.drain_timeout: {e}"
            ));
            return;
        }
    };
    // The API's default when the field is unset.
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    let drain = cfg.shutdown.drain_timeout;
    let needed = drain + DRAIN_MARGIN;
    if Duration::from_secs(u64::try_from(grace).unwrap_or(0)) <= needed {
        f.problems.push(format!(
            "{}: the daemon's pod {namespace}/{name} has terminationGracePeriodSeconds = {grace}, not more than the drain timeout ({}) + 2 s: the kubelet kills the daemon before its drain ends; set terminationGracePeriodSeconds to at least {} in the Deployment or lower shutdown.drain_timeout",
            key_with_source("shutdown.drain_timeout", source),
            humantime::format_duration(drain),
            needed.as_secs() + 1
        ));
    } else {
        f.notes.push(format!(
            "in-cluster: pod {namespace}/{name} terminationGracePeriodSeconds = {grace} leaves room for the drain ({} + 2 s)",
            humantime::format_duration(drain)
        ));
    }
}

/// One of the four amounts every step pod sets.
struct Amount {
    key: &'static str,
    field: &'static str,
    resource: &'static str,
    value: Quantity,
}

fn amounts(cfg: &RuntimeConfig) -> Vec<Amount> {
    let r = &cfg.pods.resources;
    vec![
        Amount {
            key: "pods.resources.requests.cpu",
            field: "requests",
            resource: "cpu",
            value: r.requests.cpu.clone(),
        },
        Amount {
            key: "pods.resources.requests.memory",
            field: "requests",
            resource: "memory",
            value: r.requests.memory.clone(),
        },
        Amount {
            key: "pods.resources.limits.cpu",
            field: "limits",
            resource: "cpu",
            value: r.limits.cpu.clone(),
        },
        Amount {
            key: "pods.resources.limits.memory",
            field: "limits",
            resource: "memory",
            value: r.limits.memory.clone(),
        },
    ]
}

fn parse(q: &K8sQuantity) -> Option<Quantity> {
    q.0.parse().ok()
}

async fn check_admission(
    client: &kube::Client,
    cfg: &RuntimeConfig,
    source: SourceOf<'_>,
    f: &mut Findings,
) {
    let namespace = super::resolve_namespace(cfg.pods.namespace.as_deref());
    let amounts = amounts(cfg);
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &namespace);
    match bounded(ranges.list(&ListParams::default())).await {
        Ok(list) => {
            for lr in &list.items {
                limit_range_problems(lr, &namespace, &amounts, source, &mut f.problems);
            }
            f.notes.push(format!(
                "in-cluster: {} LimitRange(s) in namespace {namespace} checked against pods.resources",
                list.items.len()
            ));
        }
        Err(e) => f.warnings.push(format!(
            "could not list LimitRanges in namespace {namespace} to check pods.resources against them: {e}"
        )),
    }
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &namespace);
    match bounded(quotas.list(&ListParams::default())).await {
        Ok(list) => {
            for q in &list.items {
                quota_problems(q, &namespace, &amounts, source, f);
            }
            f.notes.push(format!(
                "in-cluster: {} ResourceQuota(s) in namespace {namespace} checked against pods.resources",
                list.items.len()
            ));
        }
        Err(e) => f.warnings.push(format!(
            "could not list ResourceQuotas in namespace {namespace} to check pods.resources against them: {e}"
        )),
    }
}

/// Per-container min, max and maxLimitRequestRatio of one LimitRange.
fn limit_range_problems(
    lr: &LimitRange,
    namespace: &str,
    amounts_: &[Amount],
    source: SourceOf<'_>,
    out: &mut Vec<String>,
) {
    let name = lr.metadata.name.clone().unwrap_or_default();
    let items = lr.spec.as_ref().map(|s| s.limits.as_slice()).unwrap_or(&[]);
    for item in items
        .iter()
        .filter(|i| i.type_ == "Container" || i.type_ == "Pod")
    {
        let scope = if item.type_ == "Pod" {
            "Pod"
        } else {
            "Container"
        };
        for a in amounts_ {
            if a.field == "limits"
                && let Some(max) = item.max.as_ref().and_then(|m| m.get(a.resource))
                && parse(max).is_some_and(|m| a.value > m)
            {
                out.push(format!(
                    "{} = {} is above the maximum {} per {scope} of LimitRange {namespace}/{name} ({}): every step pod would be refused; lower it, or ask for a larger LimitRange",
                    key_with_source(a.key, source),
                    a.value,
                    a.resource,
                    max.0
                ));
            }
            if a.field == "requests"
                && let Some(min) = item.min.as_ref().and_then(|m| m.get(a.resource))
                && parse(min).is_some_and(|m| a.value < m)
            {
                out.push(format!(
                    "{} = {} is below the minimum {} per {scope} of LimitRange {namespace}/{name} ({}): every step pod would be refused; raise it",
                    key_with_source(a.key, source),
                    a.value,
                    a.resource,
                    min.0
                ));
            }
        }
        for resource in ["cpu", "memory"] {
            let Some(ratio) = item
                .max_limit_request_ratio
                .as_ref()
                .and_then(|m| m.get(resource))
                .and_then(parse)
            else {
                continue;
            };
            let find = |field: &str| {
                amounts_
                    .iter()
                    .find(|a| a.field == field && a.resource == resource)
                    .map(|a| a.value.value())
            };
            if let (Some(limit), Some(request)) = (find("limits"), find("requests"))
                && request > 0.0
                && limit / request > ratio.value()
            {
                out.push(format!(
                    "pods.resources: the {resource} limit is {:.1} times the request, above the maxLimitRequestRatio {} of LimitRange {namespace}/{name}: every step pod would be refused; raise pods.resources.requests.{resource} or lower pods.resources.limits.{resource}",
                    limit / request,
                    ratio
                ));
            }
        }
    }
}

/// Required resources and hard caps of one ResourceQuota.
fn quota_problems(
    q: &ResourceQuota,
    namespace: &str,
    amounts_: &[Amount],
    source: SourceOf<'_>,
    f: &mut Findings,
) {
    let name = q.metadata.name.clone().unwrap_or_default();
    let hard = q
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let used = q
        .status
        .as_ref()
        .and_then(|s| s.used.clone())
        .unwrap_or_default();
    for (key, limit) in &hard {
        // `cpu` and `memory` in a quota mean requests.
        let (field, resource) = match key.split_once('.') {
            Some((f @ ("requests" | "limits"), r)) => (f, r),
            _ if key == "cpu" || key == "memory" => ("requests", key.as_str()),
            _ => continue,
        };
        let Some(amount) = amounts_
            .iter()
            .find(|a| a.field == field && a.resource == resource)
        else {
            f.problems.push(format!(
                "ResourceQuota {namespace}/{name} requires {key} on every pod, which oj's step pods do not set (they set requests and limits for cpu and memory only): every step pod would be refused; remove {key} from the quota or run the steps in another namespace (pods.namespace)"
            ));
            continue;
        };
        let Some(hard_q) = parse(limit) else { continue };
        if amount.value > hard_q {
            f.problems.push(format!(
                "{} = {} is above the hard {key} of ResourceQuota {namespace}/{name} ({}): no step pod would fit; lower it, or ask for a larger quota",
                key_with_source(amount.key, source),
                amount.value,
                limit.0
            ));
            continue;
        }
        if let Some(u) = used.get(key).and_then(parse)
            && u.value() + amount.value.value() > hard_q.value()
        {
            f.warnings.push(format!(
                "ResourceQuota {namespace}/{name} has {} of {} {key} in use: the next step pod ({} = {}) would be refused until others end",
                u,
                limit.0,
                amount.key,
                amount.value
            ));
        }
    }
}

/// The checks from a blocking caller (`oj config check`): connects with
/// the environment's client config, or says why the checks were skipped.
pub fn check_blocking(cfg: &RuntimeConfig, env: &Environment, source: SourceOf<'_>) -> Findings {
    let mut f = Findings::default();
    if !crate::preflight::kubernetes_api_configured(env) {
        f.notes.push("in-cluster checks skipped: no Kubernetes API configured (KUBERNETES_SERVICE_HOST is not set and there is no kubeconfig); permissions, the pod's grace period and the namespace's LimitRange/ResourceQuota were not verified".into());
        return f;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            f.warnings.push(format!(
                "in-cluster checks skipped: cannot start a runtime: {e}"
            ));
            return f;
        }
    };
    rt.block_on(async {
        let client = match super::connect(env).await {
            Ok((client, _)) => client,
            Err(e) => {
                f.warnings.push(format!("in-cluster checks skipped: {e}"));
                return f;
            }
        };
        // One cheap request first: an API that does not answer is one
        // warning, not one per check.
        if let Err(e) = bounded(client.apiserver_version()).await {
            f.warnings.push(format!(
                "in-cluster checks skipped: the Kubernetes API does not answer: {e}"
            ));
            return f;
        }
        check_cluster(client, cfg, env, source).await
    })
}

/// The checks at daemon start, prepared while the daemon is built and run
/// in the background once it is spawned ([`Self::spawn`]), so that they
/// never delay it; what they find is logged as warnings.
pub struct ChecksAtStart {
    client: kube::Client,
    cfg: RuntimeConfig,
    env: Environment,
}

impl ChecksAtStart {
    /// The checks of `cfg` through `client`; nothing runs yet.
    pub fn new(client: kube::Client, cfg: &RuntimeConfig, env: &Environment) -> ChecksAtStart {
        ChecksAtStart {
            client,
            cfg: cfg.clone(),
            env: env.clone(),
        }
    }

    /// Runs the checks on a task of their own (needs a Tokio runtime).
    pub fn spawn(self) {
        let ChecksAtStart { client, cfg, env } = self;
        tokio::spawn(async move {
            let found = check_cluster(client, &cfg, &env, &|_| String::new()).await;
            for problem in found.problems.iter().chain(&found.warnings) {
                tracing::warn!("in-cluster check: {problem}");
            }
            for note in &found.notes {
                tracing::debug!("{note}");
            }
        });
    }
}
