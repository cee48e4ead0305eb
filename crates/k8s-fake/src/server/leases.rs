//! `coordination.k8s.io/v1` Leases: create, get, replace (409 on a stale
//! resourceVersion), delete.

use super::*;

pub(super) fn create_lease(shared: &Arc<Shared>, ns: &str, body: &Bytes) -> Response {
    let mut lease: Lease = match serde_json::from_slice(body) {
        Ok(l) => l,
        Err(e) => {
            return bad_request(format!(
                "the body of the request was not a valid Lease: {e}"
            ));
        }
    };
    let name = lease.metadata.name.clone().unwrap_or_default();
    if !valid_dns1123_subdomain(&name) {
        return invalid(
            Kind::Leases,
            &name,
            format!("metadata.name: Invalid value: {name:?}"),
        );
    }
    if lease.metadata.namespace.as_deref().is_some_and(|n| n != ns) {
        return bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        );
    }
    if lease
        .metadata
        .resource_version
        .as_deref()
        .is_some_and(|v| !v.is_empty())
    {
        return bad_request("resourceVersion should not be set on objects to be created".into());
    }
    let mut state = shared.lock();
    if state.leases.contains_key(&(ns.to_string(), name.clone())) {
        return status_response(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("leases.coordination.k8s.io \"{name}\" already exists"),
            Some((&name, "coordination.k8s.io", "leases")),
        );
    }
    lease.metadata.namespace = Some(ns.to_string());
    lease.metadata.uid = Some(state.next_uid());
    lease.metadata.creation_timestamp = Some(Time(Timestamp::now()));
    let lease = shared.store_lease(&mut state, lease, "ADDED");
    drop(state);
    shared.bump();
    json_response(
        StatusCode::CREATED,
        &serde_json::to_value(&lease).unwrap_or_default(),
    )
}

pub(super) fn get_lease(shared: &Arc<Shared>, ns: &str, name: &str) -> Response {
    let state = shared.lock();
    match state.leases.get(&(ns.to_string(), name.to_string())) {
        Some(l) => Json(serde_json::to_value(l).unwrap_or_default()).into_response(),
        None => not_found(Kind::Leases, name),
    }
}

pub(super) fn replace_lease(shared: &Arc<Shared>, ns: &str, name: &str, body: &Bytes) -> Response {
    let mut lease: Lease = match serde_json::from_slice(body) {
        Ok(l) => l,
        Err(e) => {
            return bad_request(format!(
                "the body of the request was not a valid Lease: {e}"
            ));
        }
    };
    if lease.metadata.name.as_deref() != Some(name) {
        return bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            lease.metadata.name.as_deref().unwrap_or("")
        ));
    }
    let mut state = shared.lock();
    let Some(current) = state.leases.get(&(ns.to_string(), name.to_string())) else {
        return not_found(Kind::Leases, name);
    };
    let sent = lease.metadata.resource_version.clone().unwrap_or_default();
    if !sent.is_empty() && Some(&sent) != current.metadata.resource_version.as_ref() {
        return status_response(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some((name, "coordination.k8s.io", "leases")),
        );
    }
    lease.metadata.namespace = Some(ns.to_string());
    lease.metadata.uid = current.metadata.uid.clone();
    lease.metadata.creation_timestamp = current.metadata.creation_timestamp.clone();
    let lease = shared.store_lease(&mut state, lease, "MODIFIED");
    drop(state);
    shared.bump();
    Json(serde_json::to_value(&lease).unwrap_or_default()).into_response()
}

pub(super) fn delete_lease(shared: &Arc<Shared>, ns: &str, name: &str) -> Response {
    let mut state = shared.lock();
    let Some(mut lease) = state.leases.remove(&(ns.to_string(), name.to_string())) else {
        return not_found(Kind::Leases, name);
    };
    let rv = state.next_rv();
    lease.metadata.resource_version = Some(rv.to_string());
    let object = serde_json::to_value(&lease).unwrap_or_default();
    let event = Event {
        rv,
        kind: Kind::Leases,
        namespace: ns.to_string(),
        name: name.to_string(),
        labels: lease.metadata.labels.clone().unwrap_or_default(),
        event_type: "DELETED",
        object: object.clone(),
    };
    shared.emit(&mut state, event);
    drop(state);
    shared.bump();
    Json(object).into_response()
}

// ----- list and watch ----------------------------------------------------------
