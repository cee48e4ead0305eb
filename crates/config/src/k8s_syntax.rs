//! Kubernetes syntax of what oj passes through to step pods (SPEC §8.5):
//! label and annotation keys, label values, tolerations, priority class
//! names. Shared by `config check` (`pods.*`, exit 78) and by job specs
//! (`container` fields and `secrets`, 400), so both say the same thing.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The label key oj marks every pod it manages with.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The prefix of oj's own labels and annotations.
pub const OJ_PREFIX: &str = "oj.dev/";
/// Longest label value or name part of a key.
const MAX_NAME: usize = 63;
/// Longest DNS subdomain (a key prefix, a secret name).
const MAX_SUBDOMAIN: usize = 253;
/// Total size of a pod's annotations the API server accepts.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// One toleration of a step pod, as `pods.tolerations` and the `container`
/// field write it (snake_case, like the rest of oj's keys).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Toleration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Equal` (the default) or `Exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule`, `NoExecute`; unset = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// Only with `effect = "NoExecute"`: how long the pod stays on a node
    /// that gains the taint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// Whether `name` is a DNS-1123 subdomain (secret names, key prefixes).
pub fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SUBDOMAIN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Why `v` is not a label value, if it is not one.
pub fn label_value_error(v: &str) -> Option<String> {
    if v.is_empty() {
        return None;
    }
    if v.len() > MAX_NAME {
        return Some(format!(
            "the value {v:?} is {} characters; a label value has at most {MAX_NAME}",
            v.len()
        ));
    }
    let ok = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric();
    (!ok).then(|| {
        format!(
            "the value {v:?} is not a label value: use A-Z a-z 0-9 - _ . and start and end with a letter or digit"
        )
    })
}

/// Why `k` is not a label or annotation key (an optional DNS prefix of at
/// most 253 characters and `/`, then a name of at most 63), if it is not one.
pub fn key_error(k: &str) -> Option<String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && !is_dns1123_subdomain(p)
    {
        return Some(format!(
            "the key {k:?} has the prefix {p:?}, which is not a DNS subdomain (lowercase a-z 0-9 - . , at most {MAX_SUBDOMAIN} characters)"
        ));
    }
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    (!name_ok).then(|| {
        format!(
            "the key {k:?} is not a Kubernetes label key: its name part must be 1-{MAX_NAME} characters of A-Z a-z 0-9 - _ . starting and ending with a letter or digit, after an optional DNS prefix and '/'"
        )
    })
}

/// Whether `k` is one oj sets itself: refused in what users pass through,
/// since oj finds its pods by these.
pub fn is_reserved_key(k: &str) -> bool {
    k.starts_with(OJ_PREFIX) || k == MANAGED_BY_LABEL
}

fn reserved(k: &str) -> String {
    format!(
        "the key {k:?} is oj's own (keys under {OJ_PREFIX} and {MANAGED_BY_LABEL} mark the pods oj manages); use another key"
    )
}

/// Problems of a pass-through table or list, each as `(field, message)`,
/// `field` relative to where the caller found them (`labels`,
/// `node_selector."gpu"`, `tolerations[1]`…).
pub fn check_pass_through(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    node_selector: &BTreeMap<String, String>,
    tolerations: Option<&[Toleration]>,
    priority_class_name: Option<&str>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in labels {
        let field = format!("labels.{k:?}");
        if let Some(e) = key_error(k) {
            out.push((field, e));
        } else if is_reserved_key(k) {
            out.push((field, reserved(k)));
        } else if let Some(e) = label_value_error(v) {
            out.push((field, e));
        }
    }
    let mut annotation_bytes = 0usize;
    for (k, v) in annotations {
        annotation_bytes = annotation_bytes.saturating_add(k.len() + v.len());
        let field = format!("annotations.{k:?}");
        if let Some(e) = key_error(k) {
            out.push((field, e));
        } else if is_reserved_key(k) {
            out.push((field, reserved(k)));
        }
    }
    if annotation_bytes > MAX_ANNOTATIONS_BYTES {
        out.push((
            "annotations".into(),
            format!(
                "the annotations are {annotation_bytes} bytes together; Kubernetes accepts at most {MAX_ANNOTATIONS_BYTES}"
            ),
        ));
    }
    for (k, v) in node_selector {
        let field = format!("node_selector.{k:?}");
        if let Some(e) = key_error(k).or_else(|| label_value_error(v)) {
            out.push((field, e));
        }
    }
    for (i, t) in tolerations.unwrap_or_default().iter().enumerate() {
        if let Some(e) = toleration_error(t) {
            out.push((format!("tolerations[{i}]"), e));
        }
    }
    if let Some(p) = priority_class_name
        && !is_dns1123_subdomain(p)
    {
        out.push((
            "priority_class_name".into(),
            format!(
                "{p:?} is not a PriorityClass name (lowercase a-z 0-9 - . , at most {MAX_SUBDOMAIN} characters)"
            ),
        ));
    }
    out
}

/// Why a toleration would be refused by the API server, if it would be.
pub fn toleration_error(t: &Toleration) -> Option<String> {
    let operator = t.operator.as_deref().unwrap_or("Equal");
    if !matches!(operator, "Equal" | "Exists") {
        return Some(format!(
            "operator {operator:?} is not \"Equal\" or \"Exists\""
        ));
    }
    let key = t.key.as_deref().unwrap_or("");
    if key.is_empty() {
        if operator != "Exists" {
            return Some(
                "a toleration without a key must have operator \"Exists\" (it then tolerates every taint)"
                    .into(),
            );
        }
    } else if let Some(e) = key_error(key) {
        return Some(e);
    }
    let value = t.value.as_deref().unwrap_or("");
    if operator == "Exists" && !value.is_empty() {
        return Some(format!(
            "operator \"Exists\" takes no value (found {value:?}); remove the value or use \"Equal\""
        ));
    }
    if let Some(e) = label_value_error(value) {
        return Some(e);
    }
    let effect = t.effect.as_deref().unwrap_or("");
    if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Some(format!(
            "effect {effect:?} is not one of \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\" (or unset for all)"
        ));
    }
    if t.toleration_seconds.is_some() && effect != "NoExecute" {
        return Some(
            "toleration_seconds applies only with effect \"NoExecute\"; set that effect or remove toleration_seconds"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        assert_eq!(key_error("kueue.x-k8s.io/queue-name"), None);
        assert_eq!(key_error("team"), None);
        assert!(key_error("Kueue.io/q").is_some());
        assert!(key_error("a/").is_some());
        assert!(key_error("-x").is_some());
        assert!(key_error(&"x".repeat(64)).is_some());
        assert!(key_error("a/b/c").is_some());
        assert_eq!(label_value_error(""), None);
        assert_eq!(label_value_error("team-a.1"), None);
        assert!(label_value_error("team a").is_some());
        assert!(label_value_error(&"v".repeat(64)).is_some());
        assert!(is_reserved_key("oj.dev/job-id"));
        assert!(is_reserved_key("app.kubernetes.io/managed-by"));
        assert!(!is_reserved_key("app.kubernetes.io/part-of"));
    }

    #[test]
    fn pass_through_problems_name_the_field() {
        let labels = BTreeMap::from([
            ("oj.dev/step".to_string(), "x".to_string()),
            ("ok".to_string(), "bad value".to_string()),
        ]);
        let problems = check_pass_through(
            &labels,
            &BTreeMap::new(),
            &BTreeMap::from([("gpu".to_string(), "a100".to_string())]),
            Some(&[Toleration {
                key: Some("gpu".into()),
                operator: Some("Exists".into()),
                value: Some("yes".into()),
                ..Default::default()
            }]),
            Some("High"),
        );
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "labels.\"oj.dev/step\"",
                "labels.\"ok\"",
                "tolerations[0]",
                "priority_class_name"
            ]
        );
        assert!(problems[0].1.contains("oj's own"), "{problems:?}");
    }

    #[test]
    fn tolerations_are_checked_like_the_api_server() {
        let t = |key: Option<&str>, op: Option<&str>, effect: Option<&str>, secs: Option<i64>| {
            toleration_error(&Toleration {
                key: key.map(Into::into),
                operator: op.map(Into::into),
                value: None,
                effect: effect.map(Into::into),
                toleration_seconds: secs,
            })
        };
        assert_eq!(
            t(
                Some("nvidia.com/gpu"),
                Some("Exists"),
                Some("NoSchedule"),
                None
            ),
            None
        );
        assert_eq!(t(None, Some("Exists"), None, None), None);
        assert!(t(None, None, None, None).is_some());
        assert!(t(Some("k"), Some("In"), None, None).is_some());
        assert!(t(Some("k"), None, Some("NoRun"), None).is_some());
        assert!(t(Some("k"), None, Some("NoSchedule"), Some(30)).is_some());
        assert_eq!(t(Some("k"), None, Some("NoExecute"), Some(30)), None);
    }
}
