//! `SelfSubjectAccessReview`: answers from the RBAC rules a test set (all
//! allowed when none).

use super::*;

/// `SelfSubjectAccessReview`: allowed when a rule of [`crate::State::rbac`]
/// grants the verb (or no rules are set).
pub(super) fn access_review(shared: &Arc<Shared>, body: &Bytes) -> Response {
    let review: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("the body is not a SelfSubjectAccessReview: {e}")),
    };
    let Some(attrs) = review.pointer("/spec/resourceAttributes") else {
        return invalid(
            Kind::Pods,
            "",
            "spec.resourceAttributes: Required value (the fake answers resource reviews only)"
                .into(),
        );
    };
    let field = |k: &str| {
        attrs
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (namespace, group, verb) = (field("namespace"), field("group"), field("verb"));
    let resource = match field("subresource").as_str() {
        "" => field("resource"),
        sub => format!("{}/{sub}", field("resource")),
    };
    let allowed = match &shared.lock().rbac {
        None => true,
        Some(rules) => rules
            .iter()
            .any(|r| r.allows(&namespace, &group, &resource, &verb)),
    };
    let mut answer = review.clone();
    answer["apiVersion"] = json!("authorization.k8s.io/v1");
    answer["kind"] = json!("SelfSubjectAccessReview");
    answer["status"] = if allowed {
        json!({ "allowed": true, "reason": "allowed by the fake's RBAC rules" })
    } else {
        json!({ "allowed": false })
    };
    json_response(StatusCode::CREATED, &answer)
}

// ----- leases ----------------------------------------------------------------
