//! What the API server's admission plug-ins do to a new pod in a namespace
//! with a `LimitRange` or a `ResourceQuota`: refuse it with `403 Forbidden`
//! and the same words the real plug-ins use, so that `oj`'s errors are
//! tested against what a cluster says. Only what `oj` can trip is modelled:
//! per-container min/max, and quotas that require or cap requests/limits
//! (summed over the namespace's pods that have not ended).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use oj_config::Quantity;

use crate::State;

/// `Err(message)` when an admission plug-in would refuse `pod` in `ns`.
pub(crate) fn admit_pod(state: &State, ns: &str, pod: &Pod) -> Result<(), String> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let forbidden = |why: String| format!("pods \"{name}\" is forbidden: {why}");
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    for ((lr_ns, _), lr) in &state.limit_ranges {
        if lr_ns != ns {
            continue;
        }
        let limits = lr.spec.as_ref().map(|s| s.limits.as_slice()).unwrap_or(&[]);
        for item in limits.iter().filter(|i| i.type_ == "Container") {
            for c in containers {
                check_bounds(c, item.min.as_ref(), item.max.as_ref()).map_err(forbidden)?;
            }
        }
    }
    for ((q_ns, q_name), q) in &state.resource_quotas {
        if q_ns != ns {
            continue;
        }
        let hard = q
            .spec
            .as_ref()
            .and_then(|s| s.hard.clone())
            .unwrap_or_default();
        check_quota(state, ns, q_name, &hard, containers).map_err(forbidden)?;
    }
    Ok(())
}

fn quantity(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Option<Quantity> {
    q.0.parse().ok()
}

type Bounds = BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>;

fn amount(c: &Container, field: &str, resource: &str) -> Option<Quantity> {
    let r = c.resources.as_ref()?;
    let list = if field == "limits" {
        &r.limits
    } else {
        &r.requests
    };
    list.as_ref()?.get(resource).and_then(quantity)
}

fn check_bounds(c: &Container, min: Option<&Bounds>, max: Option<&Bounds>) -> Result<(), String> {
    for (resource, bound) in max.into_iter().flatten() {
        let Some(bound_q) = quantity(bound) else {
            continue;
        };
        match amount(c, "limits", resource) {
            None => {
                return Err(format!(
                    "maximum {resource} usage per Container is {}.  No limit is specified",
                    bound.0
                ));
            }
            Some(limit) if limit > bound_q => {
                return Err(format!(
                    "maximum {resource} usage per Container is {}, but limit is {limit}",
                    bound.0
                ));
            }
            Some(_) => {}
        }
    }
    for (resource, bound) in min.into_iter().flatten() {
        let Some(bound_q) = quantity(bound) else {
            continue;
        };
        match amount(c, "requests", resource) {
            Some(request) if request < bound_q => {
                return Err(format!(
                    "minimum {resource} usage per Container is {}, but request is {request}",
                    bound.0
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The sum of `field.resource` over `containers`.
fn total(containers: &[Container], field: &str, resource: &str) -> f64 {
    containers
        .iter()
        .filter_map(|c| amount(c, field, resource))
        .map(|q| q.value())
        .sum()
}

fn check_quota(
    state: &State,
    ns: &str,
    quota: &str,
    hard: &Bounds,
    containers: &[Container],
) -> Result<(), String> {
    for (key, limit) in hard {
        // `cpu` / `memory` in a quota mean requests.
        let (field, resource) = match key.split_once('.') {
            Some((f @ ("requests" | "limits"), r)) => (f, r),
            _ if key == "cpu" || key == "memory" => ("requests", key.as_str()),
            _ => continue,
        };
        let Some(limit_q) = quantity(limit) else {
            continue;
        };
        let missing: Vec<&str> = containers
            .iter()
            .filter(|c| amount(c, field, resource).is_none())
            .map(|c| c.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "failed quota: {quota}: must specify {key} for: {}",
                missing.join(",")
            ));
        }
        let used: f64 = state
            .pods
            .iter()
            .filter(|((p_ns, _), _)| p_ns == ns)
            .filter(|(_, e)| {
                !matches!(
                    e.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .map(|(_, e)| {
                let cs = e
                    .pod
                    .spec
                    .as_ref()
                    .map(|s| s.containers.as_slice())
                    .unwrap_or(&[]);
                total(cs, field, resource)
            })
            .sum();
        let requested = total(containers, field, resource);
        if used + requested > limit_q.value() {
            return Err(format!(
                "exceeded quota: {quota}, requested: {key}={}, used: {key}={}, limited: {key}={}",
                shown(requested, resource),
                shown(used, resource),
                limit.0
            ));
        }
    }
    Ok(())
}

/// A summed amount as a short quantity string.
fn shown(v: f64, resource: &str) -> String {
    if resource == "cpu" {
        format!("{}m", (v * 1000.0).round() as i64)
    } else {
        format!("{}", v.round() as i64)
    }
}
