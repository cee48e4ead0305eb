//! User-named tables: `queues.<name>.…` and `schedules.<name>.…`. The key
//! table declares them once with a `*` segment (`queues.*.max_concurrent`);
//! this module matches concrete dotted paths against such patterns, checks
//! the names a user chose, and lists the concrete keys a tree holds, so
//! that type checks, provenance, `config show --sources` and `config diff`
//! treat `queues.build.max_concurrent` like any other leaf.

/// The segment of a key pattern that stands for a user-chosen name.
pub const WILDCARD: &str = "*";

/// What a table name may be (SPEC §8.2): `[a-z0-9][a-z0-9_-]{0,62}`.
pub const NAME_RULE: &str =
    "1–63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit";

/// Whether `name` is a valid queue or schedule name.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Whether `pattern` has a `*` segment.
pub fn is_pattern(pattern: &str) -> bool {
    pattern.split('.').any(|s| s == WILDCARD)
}

/// Whether the dotted `path` is an instance of `pattern` (same number of
/// segments; `*` matches any one segment). A pattern matches itself.
pub fn matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('.');
    let mut k = path.split('.');
    loop {
        match (p.next(), k.next()) {
            (None, None) => return true,
            (Some(ps), Some(ks)) if ps == ks || (ps == WILDCARD && !ks.is_empty()) => {}
            _ => return false,
        }
    }
}

/// Whether the first segments of `pattern` match all of `path`, with more
/// segments left in the pattern: `path` is a section above the key.
pub fn is_prefix(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = path.split('.').collect();
    k.len() < p.len()
        && p.iter()
            .zip(&k)
            .all(|(ps, ks)| ps == ks || (*ps == WILDCARD && !ks.is_empty()))
}

/// The section that holds the user's names: `queues` for
/// `queues.*.max_concurrent`.
pub fn table_of(pattern: &str) -> Option<&str> {
    pattern.split_once(".*.").map(|(t, _)| t)
}

/// The concrete keys of `pattern` present in `names_under(table)`:
/// `queues.*.max_concurrent` with names `build`, `deploy` gives
/// `queues.build.max_concurrent`, `queues.deploy.max_concurrent`. A plain
/// key is its own only instance.
pub fn instances(pattern: &str, names_under: impl Fn(&str) -> Vec<String>) -> Vec<String> {
    match pattern.split_once(".*.") {
        None => vec![pattern.to_string()],
        Some((table, leaf)) => names_under(table)
            .into_iter()
            .map(|name| format!("{table}.{name}.{leaf}"))
            .collect(),
    }
}

/// The names under `table` in a JSON config tree.
pub fn names_in(tree: &serde_json::Value, table: &str) -> Vec<String> {
    match crate::render::lookup(tree, table) {
        Some(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_queue_name_rule() {
        for ok in [
            "default",
            "build",
            "a",
            "0",
            "gpu-a100",
            "night_ly",
            &"a".repeat(63),
        ] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "Build", "-x", "_x", "a.b", "a b", "ä", &"a".repeat(64)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn patterns_match_one_segment_per_star() {
        assert!(matches(
            "queues.*.max_concurrent",
            "queues.build.max_concurrent"
        ));
        assert!(matches(
            "queues.*.max_concurrent",
            "queues.*.max_concurrent"
        ));
        assert!(!matches("queues.*.max_concurrent", "queues.max_concurrent"));
        assert!(!matches(
            "queues.*.max_concurrent",
            "queues.a.b.max_concurrent"
        ));
        assert!(!matches(
            "queues.*.max_concurrent",
            "queues..max_concurrent"
        ));
        assert!(matches("log.level", "log.level"));
        assert!(is_prefix("queues.*.max_concurrent", "queues"));
        assert!(is_prefix("queues.*.max_concurrent", "queues.build"));
        assert!(!is_prefix(
            "queues.*.max_concurrent",
            "queues.build.max_concurrent"
        ));
        assert!(!is_prefix("queues.*.max_concurrent", "jobs"));
        assert_eq!(table_of("schedules.*.cron"), Some("schedules"));
        assert_eq!(table_of("log.level"), None);
    }

    #[test]
    fn instances_expand_the_names_present() {
        let tree = serde_json::json!({"queues": {"build": {}, "deploy": {"max_concurrent": 1}}});
        assert_eq!(
            instances("queues.*.max_concurrent", |t| names_in(&tree, t)),
            [
                "queues.build.max_concurrent",
                "queues.deploy.max_concurrent"
            ]
        );
        assert_eq!(
            instances("log.level", |t| names_in(&tree, t)),
            ["log.level"]
        );
    }
}
