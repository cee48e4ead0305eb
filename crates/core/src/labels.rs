//! Job labels in Kubernetes label syntax (SPEC §8.1): a key is an optional
//! DNS-subdomain prefix (≤ 253) and `/`, then a name (≤ 63); a value is at
//! most 63 characters. Names and values start and end with an ASCII letter
//! or digit and hold letters, digits, `-`, `_` and `.` in between; a prefix
//! is lowercase letters, digits, `-` and `.`, its dot-separated parts
//! starting and ending alphanumeric. An empty value is allowed, as in
//! Kubernetes.

use std::collections::BTreeMap;

/// Longest label name (the part after the prefix) and value.
pub const MAX_LABEL_NAME: usize = 63;
/// Longest prefix of a label key (a DNS subdomain).
pub const MAX_LABEL_PREFIX: usize = 253;
/// Most labels one job may carry (keeps a job's size and the index bounded).
pub const MAX_LABELS: usize = 64;

/// Why a label is refused; the message names the key (and the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error(
        "label key {key:?}: {why}; a key is [prefix/]name, the name at most 63 characters of A-Z a-z 0-9 - _ . starting and ending with a letter or digit, the optional prefix a DNS subdomain (e.g. example.com/tier)"
    )]
    BadKey { key: String, why: String },
    #[error(
        "label {key:?}: value {value:?} {why}; a value is empty or at most 63 characters of A-Z a-z 0-9 - _ . starting and ending with a letter or digit"
    )]
    BadValue {
        key: String,
        value: String,
        why: String,
    },
    #[error("{count} labels; a job may have at most {MAX_LABELS}")]
    TooMany { count: usize },
}

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Checks a name or value segment: ≤ 63, alnum ends, `[-_.A-Za-z0-9]` inside.
fn segment_problem(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() > MAX_LABEL_NAME {
        return Some(format!(
            "is {} characters, at most {MAX_LABEL_NAME} are allowed",
            b.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Some(format!("contains {c:?}, which is not allowed"));
    }
    if !b.is_empty() && (!alnum(b[0]) || !alnum(b[b.len() - 1])) {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

fn prefix_problem(p: &str) -> Option<String> {
    if p.is_empty() {
        return Some("has an empty prefix before '/'".into());
    }
    if p.len() > MAX_LABEL_PREFIX {
        return Some(format!(
            "has a prefix of {} characters, at most {MAX_LABEL_PREFIX} are allowed",
            p.len()
        ));
    }
    for part in p.split('.') {
        let b = part.as_bytes();
        let ok = !b.is_empty()
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && alnum(b[0])
            && alnum(b[b.len() - 1]);
        if !ok {
            return Some(format!(
                "has the prefix {p:?}, which is not a DNS subdomain (lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit)"
            ));
        }
    }
    None
}

/// Checks one label key.
pub fn check_key(key: &str) -> Result<(), LabelError> {
    let bad = |why: String| LabelError::BadKey {
        key: key.to_string(),
        why,
    };
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && let Some(why) = prefix_problem(p)
    {
        return Err(bad(why));
    }
    if name.is_empty() {
        return Err(bad("has an empty name".into()));
    }
    if let Some(why) = segment_problem(name) {
        return Err(bad(format!("name {name:?} {why}")));
    }
    Ok(())
}

/// Checks one label value (of `key`, for the message).
pub fn check_value(key: &str, value: &str) -> Result<(), LabelError> {
    match segment_problem(value) {
        None => Ok(()),
        Some(why) => Err(LabelError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            why,
        }),
    }
}

/// Checks every label of a job.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), LabelError> {
    if labels.len() > MAX_LABELS {
        return Err(LabelError::TooMany {
            count: labels.len(),
        });
    }
    for (k, v) in labels {
        check_key(k)?;
        check_value(k, v)?;
    }
    Ok(())
}

/// Parses `K=V` (the CLI's `-l` and the API's `label=`); `None` without `=`.
/// The pair is not checked: see [`check_key`] and [`check_value`].
pub fn split_pair(s: &str) -> Option<(&str, &str)> {
    s.split_once('=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allowed_character_class_is_accepted() {
        for key in [
            "a",
            "A",
            "9",
            "tier",
            "Tier.Name_with-all9",
            "example.com/tier",
            "a-1.b-2.example/x",
            "0.9/Z",
        ] {
            assert_eq!(check_key(key), Ok(()), "{key}");
        }
        for value in ["", "a", "Z9", "v1.2_3-rc", &"x".repeat(63)] {
            assert_eq!(check_value("k", value), Ok(()), "{value}");
        }
        let max_key = format!("{}/{}", "p".repeat(253), "n".repeat(63));
        assert_eq!(check_key(&max_key), Ok(()));
    }

    #[test]
    fn bad_keys_are_named_with_the_reason() {
        for (key, want) in [
            ("", "empty name"),
            ("-a", "start and end"),
            ("a-", "start and end"),
            ("a b", "' '"),
            ("é", "'é'"),
            ("Example.com/x", "DNS subdomain"),
            ("/x", "empty prefix"),
            ("a..b/x", "DNS subdomain"),
            ("-a.com/x", "DNS subdomain"),
            ("a.com/", "empty name"),
            ("a/b/c", "'/'"),
        ] {
            let err = check_key(key).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&format!("{key:?}")) && text.contains(want),
                "{key}: {text}"
            );
        }
        let long = "n".repeat(64);
        assert!(check_key(&long).unwrap_err().to_string().contains("64"));
        let long_prefix = format!("{}/n", "p".repeat(254));
        assert!(
            check_key(&long_prefix)
                .unwrap_err()
                .to_string()
                .contains("254")
        );
    }

    #[test]
    fn bad_values_name_key_and_value() {
        for v in ["-x", "x.", "a b", "x/y", &"v".repeat(64)] {
            let err = check_value("tier", v).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("\"tier\"") && text.contains(&format!("{v:?}")),
                "{text}"
            );
        }
    }

    #[test]
    fn too_many_labels_are_refused() {
        let many: BTreeMap<String, String> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert_eq!(
            check_labels(&many),
            Err(LabelError::TooMany {
                count: MAX_LABELS + 1
            })
        );
        assert_eq!(split_pair("a=b=c"), Some(("a", "b=c")));
        assert_eq!(split_pair("ab"), None);
    }
}
