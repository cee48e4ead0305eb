//! PersistentVolumeClaims, with the semantics oj relies on: a global
//! `resourceVersion`, `409 AlreadyExists` on a duplicate create, `409
//! Conflict` on a stale replace, label selectors on list, and deletion
//! that waits for the pods using the claim (the `kubernetes.io/pvc-protection`
//! finalizer: the claim keeps a `deletionTimestamp` until no pod of its
//! namespace that has not terminated mounts it). Also the validation the API server applies to
//! what oj passes through to pods (annotation keys, node selector, tolerations).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use crate::selector::LabelSelector;
use crate::server::{
    json_response, status_response, valid_dns1123_subdomain, valid_label_key, valid_label_value,
};
use crate::{FakeKube, Shared, State};

const PLURAL: &str = "persistentvolumeclaims";
const PROTECTION: &str = "kubernetes.io/pvc-protection";

/// Serves the claim paths; `None` for any other path.
pub(crate) fn route(
    shared: &Arc<Shared>,
    method: &Method,
    segments: &[&str],
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Option<Response> {
    let response = match (method.clone(), segments) {
        (Method::POST, ["api", "v1", "namespaces", ns, PLURAL]) => create(shared, ns, body),
        (Method::GET, ["api", "v1", "namespaces", ns, PLURAL]) => list(shared, ns, query),
        (Method::GET, ["api", "v1", "namespaces", ns, PLURAL, name]) => get(shared, ns, name),
        (Method::PUT, ["api", "v1", "namespaces", ns, PLURAL, name]) => {
            replace(shared, ns, name, body)
        }
        (Method::DELETE, ["api", "v1", "namespaces", ns, PLURAL, name]) => delete(shared, ns, name),
        _ => return None,
    };
    Some(response)
}

fn not_found(name: &str) -> Response {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{PLURAL} \"{name}\" not found"),
        Some((name, "", PLURAL)),
    )
}

fn invalid(name: &str, message: String) -> Response {
    status_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("PersistentVolumeClaim \"{name}\" is invalid: {message}"),
        Some((name, "", PLURAL)),
    )
}

fn to_json(pvc: &PersistentVolumeClaim) -> serde_json::Value {
    serde_json::to_value(pvc).unwrap_or_default()
}

/// Whether a pod of `ns` that has not terminated mounts claim `name` (the
/// pvc-protection controller ignores pods in a terminal phase).
fn in_use(state: &State, ns: &str, name: &str) -> bool {
    state
        .pods
        .iter()
        .filter(|((n, _), _)| n == ns)
        .filter(|(_, e)| {
            let phase = e.pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .any(|(_, e)| mounts(&e.pod, name))
}

fn mounts(pod: &Pod, claim: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| {
            vs.iter().any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == claim)
            })
        })
}

/// Removes claims being deleted that no pod mounts any more (what the
/// pvc-protection controller does once their last pod is gone).
fn finish_deletions(state: &mut State) {
    let done: Vec<(String, String)> = state
        .pvcs
        .iter()
        .filter(|(_, p)| p.metadata.deletion_timestamp.is_some())
        .filter(|((ns, name), _)| !in_use(state, ns, name))
        .map(|(k, _)| k.clone())
        .collect();
    for key in done {
        state.pvcs.remove(&key);
    }
}

fn check_claim(pvc: &PersistentVolumeClaim) -> Result<(), String> {
    let Some(spec) = &pvc.spec else {
        return Err("spec: Required value".into());
    };
    if spec.access_modes.as_ref().is_none_or(|m| m.is_empty()) {
        return Err("spec.accessModes: Required value: at least 1 access mode is required".into());
    }
    for m in spec.access_modes.iter().flatten() {
        if !matches!(
            m.as_str(),
            "ReadWriteOnce" | "ReadOnlyMany" | "ReadWriteMany" | "ReadWriteOncePod"
        ) {
            return Err(format!(
                "spec.accessModes: Unsupported value: {m:?}: supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""
            ));
        }
    }
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    match storage {
        None => Err("spec.resources[storage]: Required value".into()),
        Some(q) if q.0.parse::<oj_config::Quantity>().is_err() => Err(format!(
            "spec.resources[storage]: Invalid value: {:?}: quantities must match the regular expression",
            q.0
        )),
        Some(_) => Ok(()),
    }
}

fn create(shared: &Arc<Shared>, ns: &str, body: &Bytes) -> Response {
    let mut pvc: PersistentVolumeClaim = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the body of the request was not a valid PersistentVolumeClaim: {e}"),
                None,
            );
        }
    };
    let name = pvc.metadata.name.clone().unwrap_or_default();
    if !valid_dns1123_subdomain(&name) {
        return invalid(
            &name,
            format!("metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain"),
        );
    }
    if pvc.metadata.namespace.as_deref().is_some_and(|n| n != ns) {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
            None,
        );
    }
    for (k, v) in pvc.metadata.labels.iter().flatten() {
        if !valid_label_key(k) || !valid_label_value(v) {
            return invalid(
                &name,
                format!("metadata.labels: Invalid value: {k:?}={v:?}"),
            );
        }
    }
    if let Err(m) = check_claim(&pvc) {
        return invalid(&name, m);
    }
    let mut state = shared.lock();
    finish_deletions(&mut state);
    let key = (ns.to_string(), name.clone());
    if state.pvcs.contains_key(&key) {
        return status_response(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{PLURAL} \"{name}\" already exists"),
            Some((&name, "", PLURAL)),
        );
    }
    pvc.metadata.namespace = Some(ns.to_string());
    pvc.metadata.uid = Some(state.next_uid());
    pvc.metadata.creation_timestamp = Some(Time(Timestamp::now()));
    pvc.metadata.finalizers = Some(vec![PROTECTION.into()]);
    pvc.metadata.resource_version = Some(state.next_rv().to_string());
    // WaitForFirstConsumer: Pending until a pod uses it; the fake binds at once.
    pvc.status = Some(PersistentVolumeClaimStatus {
        phase: Some("Bound".into()),
        access_modes: pvc.spec.as_ref().and_then(|s| s.access_modes.clone()),
        ..Default::default()
    });
    state.pvcs.insert(key, pvc.clone());
    drop(state);
    shared.bump();
    json_response(StatusCode::CREATED, &to_json(&pvc))
}

fn get(shared: &Arc<Shared>, ns: &str, name: &str) -> Response {
    let mut state = shared.lock();
    finish_deletions(&mut state);
    match state.pvcs.get(&(ns.to_string(), name.to_string())) {
        Some(p) => json_response(StatusCode::OK, &to_json(p)),
        None => not_found(name),
    }
}

fn list(shared: &Arc<Shared>, ns: &str, query: &HashMap<String, String>) -> Response {
    let selector =
        match LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or("")) {
            Ok(s) => s,
            Err(e) => {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("unable to parse requirement: {}", e.0),
                    None,
                );
            }
        };
    let mut state = shared.lock();
    finish_deletions(&mut state);
    let items: Vec<serde_json::Value> = state
        .pvcs
        .iter()
        .filter(|((n, _), _)| n == ns)
        .filter(|(_, p)| selector.matches(&p.metadata.labels.clone().unwrap_or_default()))
        .map(|(_, p)| to_json(p))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaimList",
            "metadata": { "resourceVersion": state.rv.to_string() },
            "items": items,
        }),
    )
}

fn replace(shared: &Arc<Shared>, ns: &str, name: &str, body: &Bytes) -> Response {
    let mut pvc: PersistentVolumeClaim = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the body of the request was not a valid PersistentVolumeClaim: {e}"),
                None,
            );
        }
    };
    let mut state = shared.lock();
    let key = (ns.to_string(), name.to_string());
    let Some(current) = state.pvcs.get(&key) else {
        return not_found(name);
    };
    if pvc.metadata.resource_version != current.metadata.resource_version {
        return status_response(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {PLURAL} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some((name, "", PLURAL)),
        );
    }
    if pvc.spec != current.spec {
        return invalid(
            name,
            "spec: Forbidden: spec is immutable after creation except resources.requests".into(),
        );
    }
    pvc.metadata.uid = current.metadata.uid.clone();
    pvc.metadata.creation_timestamp = current.metadata.creation_timestamp.clone();
    pvc.status = current.status.clone();
    pvc.metadata.resource_version = Some(state.next_rv().to_string());
    state.pvcs.insert(key, pvc.clone());
    drop(state);
    shared.bump();
    json_response(StatusCode::OK, &to_json(&pvc))
}

fn delete(shared: &Arc<Shared>, ns: &str, name: &str) -> Response {
    let mut state = shared.lock();
    let key = (ns.to_string(), name.to_string());
    let Some(mut pvc) = state.pvcs.get(&key).cloned() else {
        return not_found(name);
    };
    pvc.metadata.resource_version = Some(state.next_rv().to_string());
    if pvc.metadata.deletion_timestamp.is_none() {
        pvc.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    }
    if in_use(&state, ns, name) {
        // Kept (with its finalizer) until the last pod using it is gone.
        state.pvcs.insert(key, pvc.clone());
    } else {
        state.pvcs.remove(&key);
    }
    drop(state);
    shared.bump();
    json_response(StatusCode::OK, &to_json(&pvc))
}

/// What the API server refuses in the fields oj passes through to a pod:
/// annotation keys, node selector labels, tolerations.
pub(crate) fn check_pod(pod: &Pod) -> Result<(), String> {
    for k in pod.metadata.annotations.iter().flatten().map(|(k, _)| k) {
        if !valid_label_key(k) {
            return Err(format!(
                "metadata.annotations: Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.'"
            ));
        }
    }
    let Some(spec) = &pod.spec else {
        return Ok(());
    };
    for (k, v) in spec.node_selector.iter().flatten() {
        if !valid_label_key(k) || !valid_label_value(v) {
            return Err(format!("spec.nodeSelector: Invalid value: {k:?}={v:?}"));
        }
    }
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        let op = t.operator.as_deref().unwrap_or("Equal");
        let bad = match op {
            "Exists" => t
                .value
                .as_deref()
                .is_some_and(|v| !v.is_empty())
                .then(|| "value must be empty when `operator` is 'Exists'".to_string()),
            "Equal" if t.key.as_deref().unwrap_or("").is_empty() => {
                Some("operator must be Exists when `key` is empty".into())
            }
            "Equal" => None,
            other => Some(format!("Unsupported value: {other:?}")),
        };
        if let Some(m) = bad {
            return Err(format!(
                "spec.tolerations[{i}].operator: Invalid value: {m}"
            ));
        }
        if t.toleration_seconds.is_some() && t.effect.as_deref() != Some("NoExecute") {
            return Err(format!(
                "spec.tolerations[{i}].effect: Invalid value: effect must be 'NoExecute' when `tolerationSeconds` is set"
            ));
        }
    }
    if let Some(p) = &spec.priority_class_name
        && !valid_dns1123_subdomain(p)
    {
        return Err(format!("spec.priorityClassName: Invalid value: {p:?}"));
    }
    Ok(())
}

impl FakeKube {
    /// The claim `namespace/name`, if it exists (also while being deleted).
    pub fn pvc(&self, namespace: &str, name: &str) -> Option<PersistentVolumeClaim> {
        let mut state = self.shared.lock();
        finish_deletions(&mut state);
        state
            .pvcs
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Every claim of `namespace`, by name.
    pub fn pvcs(&self, namespace: &str) -> Vec<PersistentVolumeClaim> {
        let mut state = self.shared.lock();
        finish_deletions(&mut state);
        state
            .pvcs
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Stores a claim directly, as if someone else (an earlier daemon) had
    /// created it.
    pub fn insert_pvc(&self, namespace: &str, mut pvc: PersistentVolumeClaim) {
        let mut state = self.shared.lock();
        pvc.metadata.namespace = Some(namespace.to_string());
        pvc.metadata
            .uid
            .get_or_insert_with(|| format!("pvc-{}", state.uid + 1));
        state.uid += 1;
        pvc.metadata.creation_timestamp = Some(Time(Timestamp::now()));
        pvc.metadata.resource_version = Some(state.next_rv().to_string());
        let name = pvc.metadata.name.clone().unwrap_or_default();
        state.pvcs.insert((namespace.to_string(), name), pvc);
        drop(state);
        self.shared.bump();
    }
}
