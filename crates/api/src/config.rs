//! `GET /v1/config` (SPEC §7.5) and the `config` part of `GET /v1/status`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The body of `GET /v1/config`: the running configuration, secrets
/// redacted, with the layer of every key. Fields in sorted order (the
/// bytes of the `json!` object it replaces).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConfigAnswer {
    /// The configuration tree (the shape of `oj config show --json`).
    #[serde(default)]
    pub config: serde_json::Value,
    /// The config files the daemon read.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// 1 at start, +1 per accepted reload.
    #[serde(default)]
    pub generation: u64,
    #[serde(default)]
    pub last_reload: Option<LastReload>,
    /// Restart-only keys whose value on disk differs from the running one.
    #[serde(default)]
    pub pending_restart: Vec<String>,
    #[serde(default)]
    pub profile: Option<String>,
    /// The layer that set each key (`default`, `file /etc/oj.toml`, `env OJ_…`).
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
}

/// The `config` object of `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConfigSummary {
    #[serde(default)]
    pub generation: u64,
    #[serde(default)]
    pub last_reload: Option<LastReload>,
    #[serde(default)]
    pub pending_restart: Vec<String>,
}

/// The outcome of the last reload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LastReload {
    /// RFC 3339, whole seconds.
    #[serde(default)]
    pub at: String,
    /// Keys a successful reload changed.
    #[serde(default)]
    pub changed: Vec<String>,
    /// Every problem of a rejected reload.
    #[serde(default)]
    pub errors: Vec<String>,
    /// `SIGHUP` or `file changed: PATH`.
    #[serde(default)]
    pub reason: String,
    /// `ok` or `rejected`.
    #[serde(default)]
    pub result: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_answer_keeps_its_bytes() {
        let text = r#"{"config":{"jobs":{"max_concurrent":4}},"files":["/etc/oj.toml"],"generation":1,"last_reload":null,"pending_restart":[],"profile":"desktop","sources":{"jobs.max_concurrent":"file /etc/oj.toml"}}"#;
        let a: ConfigAnswer = serde_json::from_str(text).unwrap();
        assert_eq!(a.profile.as_deref(), Some("desktop"));
        assert_eq!(a.sources["jobs.max_concurrent"], "file /etc/oj.toml");
        assert_eq!(serde_json::to_string(&a).unwrap(), text);
    }
}
