//! `GET /v1/status` (also the data of the `status` event) and `POST
//! /v1/shutdown`.
//!
//! Every field of [`Status`] is optional on reading: `oj status` shows `-`
//! for what an older (or a stranger) daemon does not say.

use oj_core::JobCounts;
use serde::{Deserialize, Serialize};

use crate::config::ConfigSummary;

/// The body of `GET /v1/status`. Fields in sorted order: the bytes are
/// those of the `json!` object it replaces.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Status {
    /// The admin listener's address (metrics, health), if any.
    #[serde(default)]
    pub admin: Option<String>,
    /// The running config's generation and last reload (none without a config view).
    #[serde(default)]
    pub config: Option<ConfigSummary>,
    #[serde(default)]
    pub draining: Option<bool>,
    #[serde(default)]
    pub instance: Option<String>,
    /// Jobs per state (written with sorted keys, as before).
    #[serde(default, serialize_with = "crate::sorted_keys")]
    pub jobs: Option<JobCounts>,
    /// Whether this instance holds the lock (`false`: a standby).
    #[serde(default)]
    pub leader: Option<bool>,
    /// How a step's leftover processes are ended.
    #[serde(default)]
    pub leftovers: Option<Leftovers>,
    /// API listeners as URLs (`unix:///…`, `http://…`, `https://…`).
    #[serde(default)]
    pub listeners: Option<Vec<Listener>>,
    #[serde(default)]
    pub lock: Option<String>,
    #[serde(default)]
    pub pid: Option<i64>,
    #[serde(default)]
    pub profile: Option<String>,
    /// The last storage error while writes fail.
    #[serde(default)]
    pub storage_error: Option<String>,
    #[serde(default)]
    pub uptime_s: Option<u64>,
    #[serde(default)]
    pub version: Option<String>,
}

/// One API listener: a URL from this daemon; anything else (an object
/// naming kind and address) is kept as it came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Listener {
    Url(String),
    Described(serde_json::Value),
}

/// `{"mode": "cgroup" | "process-scan" | "off", "reason"?: "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Leftovers {
    #[serde(default)]
    pub mode: Option<String>,
    /// Why steps go without cgroups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer to `POST /v1/shutdown` (202): `{"draining": true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShutdownAnswer {
    #[serde(default)]
    pub draining: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body as a daemon of this release sends it (`curl --unix-socket`).
    const REAL: &str = r#"{"admin":null,"config":{"generation":2,"last_reload":{"at":"2026-12-07T10:00:00Z","changed":["log.level"],"errors":[],"reason":"SIGHUP","result":"ok"},"pending_restart":["listen.tcp"]},"draining":false,"instance":"host-1","jobs":{"cancelled":0,"done":3,"failed":0,"interrupted":0,"queued":1,"running":2},"leader":true,"leftovers":{"mode":"process-scan","reason":"no cgroup v2"},"listeners":["unix:///run/oj/daemon.sock","https://0.0.0.0:7777"],"lock":"file","pid":4242,"profile":"desktop","storage_error":null,"uptime_s":12,"version":"0.1.0"}"#;

    #[test]
    fn a_real_status_body_parses_and_writes_back_the_same_bytes() {
        let s: Status = serde_json::from_str(REAL).unwrap();
        assert_eq!(s.leader, Some(true));
        assert_eq!(s.jobs.unwrap().running, 2);
        assert_eq!(s.listeners.as_ref().unwrap().len(), 2);
        let c = s.config.as_ref().unwrap();
        assert_eq!(c.generation, 2);
        assert_eq!(c.pending_restart, ["listen.tcp"]);
        assert_eq!(c.last_reload.as_ref().unwrap().result, "ok");
        assert_eq!(
            s.leftovers.as_ref().unwrap().reason.as_deref(),
            Some("no cgroup v2")
        );
        assert_eq!(serde_json::to_string(&s).unwrap(), REAL);
    }

    #[test]
    fn a_sparse_or_strange_status_still_parses() {
        let s: Status = serde_json::from_str(
            r#"{"version":"test","jobs":{},"listeners":[{"kind":"tcp","addr":"x"}],"extra":1}"#,
        )
        .unwrap();
        assert_eq!(s.version.as_deref(), Some("test"));
        assert_eq!(s.jobs, Some(JobCounts::default()));
        assert!(matches!(s.listeners.unwrap()[0], Listener::Described(_)));
        assert_eq!(s.leader, None);
    }
}
