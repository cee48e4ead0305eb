//! The HTTP side of the fake: one handler that records the request, applies
//! injected faults, then routes the REST paths kube-rs uses for pods, pod
//! logs, leases, access reviews, LimitRanges and ResourceQuotas, answering
//! errors with real `Status` bodies.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State as AxState};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::SinkExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use crate::selector::{FieldSelector, LabelSelector};
use crate::{Event, Kind, OpenGuard, RecordedRequest, Shared};

mod access_review;
mod leases;
mod pod_logs;

use access_review::access_review;
use leases::{create_lease, delete_lease, get_lease, replace_lease};
use pod_logs::pod_log;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let fault = {
        let mut state = shared.lock();
        let mut hit = None;
        for f in state.faults.iter_mut() {
            let method_ok = f
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()));
            let query_ok = f
                .query_contains
                .as_deref()
                .is_none_or(|q| uri.query().is_some_and(|have| have.contains(q)));
            if method_ok && query_ok && path.contains(&f.path_contains) && f.times != Some(0) {
                if let Some(n) = f.times.as_mut() {
                    *n -= 1;
                }
                hit = Some((f.status, f.delay, f.respond_normally));
                break;
            }
        }
        hit
    };
    let response = if let Some((_, delay, true)) = fault {
        let response = route(&shared, &method, &uri, &body).await;
        tokio::time::sleep(delay).await;
        response
    } else if let Some((status, delay, false)) = fault {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let reason = match status {
            409 => "Conflict",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        status_response(code, reason, "injected failure (k8s-fake)".into(), None)
    } else {
        route(&shared, &method, &uri, &body).await
    };
    shared.lock().requests.push(RecordedRequest {
        method: method.to_string(),
        path,
        query: uri.query().map(str::to_string),
        status: response.status().as_u16(),
    });
    response
}

async fn route(shared: &Arc<Shared>, method: &Method, uri: &Uri, body: &Bytes) -> Response {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let query: HashMap<String, String> = Query::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
    if let Some(r) = crate::volumes::route(shared, method, &segments, &query, body) {
        return r;
    }
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["version"]) => Json(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-k8s-fake", "platform": "linux/amd64"
        }))
        .into_response(),
        // pods
        (Method::POST, ["api", "v1", "namespaces", ns, "pods"]) => create_pod(shared, ns, body),
        (Method::GET, ["api", "v1", "namespaces", ns, "pods"]) => {
            list_or_watch(shared, Kind::Pods, Some(ns), &query)
        }
        (Method::GET, ["api", "v1", "pods"]) => list_or_watch(shared, Kind::Pods, None, &query),
        (Method::GET, ["api", "v1", "namespaces", ns, "pods", name]) => get_pod(shared, ns, name),
        (Method::PATCH, ["api", "v1", "namespaces", ns, "pods", name]) => {
            patch_pod(shared, ns, name, body)
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "limitranges"]) => {
            list_plain(shared, ns, "LimitRangeList", |s, ns| {
                items_in(&s.limit_ranges, ns)
            })
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "resourcequotas"]) => {
            list_plain(shared, ns, "ResourceQuotaList", |s, ns| {
                items_in(&s.resource_quotas, ns)
            })
        }
        (
            Method::POST,
            [
                "apis",
                "authorization.k8s.io",
                "v1",
                "selfsubjectaccessreviews",
            ],
        ) => access_review(shared, body),
        (Method::DELETE, ["api", "v1", "namespaces", ns, "pods", name]) => {
            delete_pod(shared, ns, name)
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "pods", name, "log"]) => {
            pod_log(shared, ns, name, &query)
        }
        // leases
        (
            Method::POST,
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
            ],
        ) => create_lease(shared, ns, body),
        (
            Method::GET,
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
            ],
        ) => list_or_watch(shared, Kind::Leases, Some(ns), &query),
        (
            Method::GET,
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
                name,
            ],
        ) => get_lease(shared, ns, name),
        (
            Method::PUT,
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
                name,
            ],
        ) => replace_lease(shared, ns, name, body),
        (
            Method::DELETE,
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
                name,
            ],
        ) => delete_lease(shared, ns, name),
        _ => status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "the server could not find the requested resource ({method} {})",
                uri.path()
            ),
            None,
        ),
    }
}

struct Json(serde_json::Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        json_response(StatusCode::OK, &self.0)
    }
}

pub(crate) fn json_response(code: StatusCode, value: &serde_json::Value) -> Response {
    let mut text = serde_json::to_vec(value).unwrap_or_default();
    text.push(b'\n');
    (code, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// A `meta/v1 Status` error body, as the API server sends it.
pub(crate) fn status_response(
    code: StatusCode,
    reason: &str,
    message: String,
    details: Option<(&str, &str, &str)>,
) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some((name, group, kind)) = details {
        let mut d = json!({ "name": name, "kind": kind });
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        body["details"] = d;
    }
    json_response(code, &body)
}

fn not_found(kind: Kind, name: &str) -> Response {
    let (group, plural) = names(kind);
    let what = if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    };
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{what} \"{name}\" not found"),
        Some((name, group, plural)),
    )
}

fn names(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Pods => ("", "pods"),
        Kind::Leases => ("coordination.k8s.io", "leases"),
    }
}

fn bad_request(message: String) -> Response {
    status_response(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

fn invalid(kind: Kind, name: &str, message: String) -> Response {
    let (group, plural) = names(kind);
    let what = if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    };
    status_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{what} \"{name}\" is invalid: {message}"),
        Some((name, group, plural)),
    )
}

/// DNS-1123 subdomain, as pod and lease names must be.
pub(crate) fn valid_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A label value: ≤ 63 chars, alphanumerics with `-_.` inside.
pub(crate) fn valid_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric())
}

/// A label key: optional DNS-subdomain prefix and `/`, then a name like a value (non-empty).
pub(crate) fn valid_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(valid_dns1123_subdomain) && !name.is_empty() && valid_label_value(name)
}

fn check_labels(labels: Option<&std::collections::BTreeMap<String, String>>) -> Result<(), String> {
    for (k, v) in labels.into_iter().flatten() {
        if !valid_label_key(k) {
            return Err(format!(
                "metadata.labels: Invalid value: {k:?}: not a valid label key"
            ));
        }
        if !valid_label_value(v) {
            return Err(format!(
                "metadata.labels: Invalid value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (max 63 characters)"
            ));
        }
    }
    Ok(())
}

// ----- pods ------------------------------------------------------------------

fn create_pod(shared: &Arc<Shared>, ns: &str, body: &Bytes) -> Response {
    let mut pod: Pod = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return bad_request(format!("the body of the request was not a valid Pod: {e}")),
    };
    let name = match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(n), _) if !n.is_empty() => n.clone(),
        (_, Some(prefix)) => {
            let suffix = shared.lock().uid + 1;
            format!("{prefix}{suffix:05x}")
        }
        _ => {
            return invalid(
                Kind::Pods,
                "",
                "metadata.name: Required value: name or generateName is required".into(),
            );
        }
    };
    if pod.metadata.namespace.as_deref().is_some_and(|n| n != ns) {
        return bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        );
    }
    if !valid_dns1123_subdomain(&name) {
        return invalid(
            Kind::Pods,
            &name,
            format!(
                "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        );
    }
    if let Err(m) = check_labels(pod.metadata.labels.as_ref()) {
        return invalid(Kind::Pods, &name, m);
    }
    if let Err(m) = crate::volumes::check_pod(&pod) {
        return invalid(Kind::Pods, &name, m);
    }
    if pod
        .metadata
        .resource_version
        .as_deref()
        .is_some_and(|v| !v.is_empty())
    {
        return bad_request("resourceVersion should not be set on objects to be created".into());
    }
    let Some(spec) = pod.spec.as_ref() else {
        return invalid(Kind::Pods, &name, "spec: Required value".into());
    };
    if spec.containers.is_empty() {
        return invalid(Kind::Pods, &name, "spec.containers: Required value".into());
    }
    for (i, c) in spec.containers.iter().enumerate() {
        if c.image.as_deref().unwrap_or("").is_empty() {
            return invalid(
                Kind::Pods,
                &name,
                format!("spec.containers[{i}].image: Required value"),
            );
        }
    }
    let mut state = shared.lock();
    if state.pods.contains_key(&(ns.to_string(), name.clone())) {
        return status_response(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("pods \"{name}\" already exists"),
            Some((&name, "", "pods")),
        );
    }
    pod.metadata.name = Some(name.clone());
    if let Err(message) = crate::admission::admit_pod(&state, ns, &pod) {
        return status_response(
            StatusCode::FORBIDDEN,
            "Forbidden",
            message,
            Some((&name, "", "pods")),
        );
    }
    pod.metadata.namespace = Some(ns.to_string());
    pod.metadata.uid = Some(state.next_uid());
    pod.metadata.creation_timestamp = Some(Time(Timestamp::now()));
    pod.status = Some(PodStatus {
        phase: Some("Pending".into()),
        ..Default::default()
    });
    let pod = shared.store_pod(&mut state, pod, "ADDED");
    drop(state);
    shared.bump();
    json_response(
        StatusCode::CREATED,
        &serde_json::to_value(&pod).unwrap_or_default(),
    )
}

fn get_pod(shared: &Arc<Shared>, ns: &str, name: &str) -> Response {
    let state = shared.lock();
    match state.pods.get(&(ns.to_string(), name.to_string())) {
        Some(e) => Json(serde_json::to_value(&e.pod).unwrap_or_default()).into_response(),
        None => not_found(Kind::Pods, name),
    }
}

pub(crate) fn delete_pod(shared: &Arc<Shared>, ns: &str, name: &str) -> Response {
    let mut state = shared.lock();
    let Some(entry) = state.pods.remove(&(ns.to_string(), name.to_string())) else {
        return not_found(Kind::Pods, name);
    };
    let mut pod = entry.pod;
    let rv = state.next_rv();
    pod.metadata.resource_version = Some(rv.to_string());
    pod.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let object = serde_json::to_value(&pod).unwrap_or_default();
    let event = Event {
        rv,
        kind: Kind::Pods,
        namespace: ns.to_string(),
        name: name.to_string(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        event_type: "DELETED",
        object: object.clone(),
    };
    shared.emit(&mut state, event);
    drop(state);
    shared.bump();
    Json(object).into_response()
}

/// RFC 7386 JSON merge patch (what `kubectl patch --type merge` sends).
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match patch {
        serde_json::Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Some(obj) = target.as_object_mut() {
                for (k, v) in fields {
                    if v.is_null() {
                        obj.remove(k);
                    } else {
                        merge_patch(obj.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// A merge patch of a pod's metadata (labels, annotations); the spec of a
/// pod is immutable, as on a real API server.
fn patch_pod(shared: &Arc<Shared>, ns: &str, name: &str, body: &Bytes) -> Response {
    let patch: serde_json::Value = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return bad_request(format!("the patch is not valid JSON: {e}")),
    };
    if patch.get("spec").is_some() {
        return invalid(
            Kind::Pods,
            name,
            "spec: Forbidden: pod updates may not change fields other than image, activeDeadlineSeconds, tolerations".into(),
        );
    }
    let mut state = shared.lock();
    let Some(entry) = state.pods.get(&(ns.to_string(), name.to_string())) else {
        return not_found(Kind::Pods, name);
    };
    let current = entry.pod.clone();
    if let Some(sent) = patch
        .pointer("/metadata/resourceVersion")
        .and_then(|v| v.as_str())
        && Some(sent) != current.metadata.resource_version.as_deref()
    {
        return status_response(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on pods \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some((name, "", "pods")),
        );
    }
    let mut value = serde_json::to_value(&current).unwrap_or_default();
    merge_patch(&mut value, &patch);
    let mut pod: Pod = match serde_json::from_value(value) {
        Ok(p) => p,
        Err(e) => return bad_request(format!("the patched object is not a valid Pod: {e}")),
    };
    if let Err(m) = check_labels(pod.metadata.labels.as_ref()) {
        return invalid(Kind::Pods, name, m);
    }
    pod.metadata.name = current.metadata.name.clone();
    pod.metadata.namespace = current.metadata.namespace.clone();
    pod.metadata.uid = current.metadata.uid.clone();
    pod.status = current.status.clone();
    let pod = shared.store_pod(&mut state, pod, "MODIFIED");
    drop(state);
    shared.bump();
    Json(serde_json::to_value(&pod).unwrap_or_default()).into_response()
}

// ----- what `oj config check` reads --------------------------------------------

fn items_in<T: serde::Serialize>(
    map: &std::collections::BTreeMap<(String, String), T>,
    ns: &str,
) -> Vec<serde_json::Value> {
    map.iter()
        .filter(|((n, _), _)| n == ns)
        .map(|(_, v)| serde_json::to_value(v).unwrap_or_default())
        .collect()
}

fn list_plain(
    shared: &Arc<Shared>,
    ns: &str,
    kind: &str,
    items: impl Fn(&crate::State, &str) -> Vec<serde_json::Value>,
) -> Response {
    let state = shared.lock();
    Json(json!({
        "apiVersion": "v1",
        "kind": kind,
        "metadata": { "resourceVersion": state.rv.to_string() },
        "items": items(&state, ns),
    }))
    .into_response()
}

fn list_or_watch(
    shared: &Arc<Shared>,
    kind: Kind,
    ns: Option<&str>,
    query: &HashMap<String, String>,
) -> Response {
    let labels =
        match LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or("")) {
            Ok(s) => s,
            Err(e) => return bad_request(format!("unable to parse labelSelector: {}", e.0)),
        };
    let fields =
        match FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or("")) {
            Ok(s) => s,
            Err(e) => return bad_request(e.0),
        };
    let ns: Option<String> = ns.map(str::to_string);
    let matches =
        move |e_ns: &str, e_name: &str, e_labels: &std::collections::BTreeMap<String, String>| {
            ns.as_deref().is_none_or(|n| n == e_ns)
                && labels.matches(e_labels)
                && fields.matches(e_ns, e_name)
        };
    let (list_kind, api_version) = match kind {
        Kind::Pods => ("PodList", "v1"),
        Kind::Leases => ("LeaseList", "coordination.k8s.io/v1"),
    };
    let watch = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    let state = shared.lock();
    if !watch {
        let items: Vec<serde_json::Value> = match kind {
            Kind::Pods => state
                .pods
                .iter()
                .filter(|((n, name), e)| {
                    matches(n, name, &e.pod.metadata.labels.clone().unwrap_or_default())
                })
                .map(|(_, e)| serde_json::to_value(&e.pod).unwrap_or_default())
                .collect(),
            Kind::Leases => state
                .leases
                .iter()
                .filter(|((n, name), l)| {
                    matches(n, name, &l.metadata.labels.clone().unwrap_or_default())
                })
                .map(|(_, l)| serde_json::to_value(l).unwrap_or_default())
                .collect(),
        };
        return Json(json!({
            "apiVersion": api_version,
            "kind": list_kind,
            "metadata": { "resourceVersion": state.rv.to_string() },
            "items": items,
        }))
        .into_response();
    }

    // Watch: replay (synthetic ADDED for "0"/unset, else history after the
    // given version), then live events; subscribing under the lock keeps the
    // order gap-free.
    let from: Option<u64> = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(v) => match v.parse() {
            Ok(n) => Some(n),
            Err(_) => return bad_request(format!("invalid resourceVersion {v:?}")),
        },
    };
    let mut live = shared.events.subscribe();
    let mut initial: Vec<(u64, serde_json::Value)> = Vec::new();
    match from {
        None => {
            let objects: Vec<(u64, serde_json::Value)> = match kind {
                Kind::Pods => state
                    .pods
                    .iter()
                    .filter(|((n, name), e)| {
                        matches(n, name, &e.pod.metadata.labels.clone().unwrap_or_default())
                    })
                    .map(|(_, e)| {
                        (
                            rv_of(&e.pod.metadata.resource_version),
                            serde_json::to_value(&e.pod).unwrap_or_default(),
                        )
                    })
                    .collect(),
                Kind::Leases => state
                    .leases
                    .iter()
                    .filter(|((n, name), l)| {
                        matches(n, name, &l.metadata.labels.clone().unwrap_or_default())
                    })
                    .map(|(_, l)| {
                        (
                            rv_of(&l.metadata.resource_version),
                            serde_json::to_value(l).unwrap_or_default(),
                        )
                    })
                    .collect(),
            };
            for (rv, object) in objects {
                initial.push((rv, json!({ "type": "ADDED", "object": object })));
            }
        }
        Some(from) => {
            for e in state
                .history
                .iter()
                .filter(|e| e.rv > from && e.kind == kind)
            {
                if matches(&e.namespace, &e.name, &e.labels) {
                    initial.push((e.rv, json!({ "type": e.event_type, "object": e.object })));
                }
            }
        }
    }
    let mut last = from
        .unwrap_or(state.rv)
        .max(initial.iter().map(|(rv, _)| *rv).max().unwrap_or(0));
    drop(state);
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, Infallible>>(64);
    let counters = shared.clone();
    tokio::spawn(async move {
        let _open = (kind == Kind::Pods).then(|| {
            OpenGuard::new(
                &counters.watches.pod_watches,
                Some(&counters.watches.pod_watches_peak),
            )
        });
        let closed = tx.clone();
        let body = async {
            for (_, line) in initial {
                if tx.send(Ok(line_bytes(&line))).await.is_err() {
                    return;
                }
            }
            loop {
                // A client that went away is noticed even while nothing changes.
                let next = tokio::select! {
                    e = live.recv() => e,
                    _ = client_gone(&closed) => return,
                };
                match next {
                    Ok(e) => {
                        if e.kind != kind
                            || e.rv <= last
                            || !matches(&e.namespace, &e.name, &e.labels)
                        {
                            continue;
                        }
                        last = e.rv;
                        let line = json!({ "type": e.event_type, "object": e.object });
                        if tx.send(Ok(line_bytes(&line))).await.is_err() {
                            return;
                        }
                    }
                    // Too slow a reader: end the watch; the client re-watches from its last version.
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(timeout, body).await;
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(rx),
    )
        .into_response()
}

/// Resolves once the receiving side of a response body is dropped.
async fn client_gone(tx: &futures::channel::mpsc::Sender<Result<Bytes, Infallible>>) {
    while !tx.is_closed() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rv_of(v: &Option<String>) -> u64 {
    v.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn line_bytes(v: &serde_json::Value) -> Bytes {
    let mut text = serde_json::to_vec(v).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert!(valid_dns1123_subdomain("oj-abc-0"));
        assert!(!valid_dns1123_subdomain("oj-ABC-0"));
        assert!(!valid_dns1123_subdomain("-oj"));
        assert!(valid_label_value(""));
        assert!(valid_label_value("a.b_c-d"));
        assert!(!valid_label_value("-a"));
        assert!(!valid_label_value(&"a".repeat(64)));
        assert!(valid_label_key("oj.dev/job-id"));
        assert!(!valid_label_key("oj.dev/"));
    }
}
