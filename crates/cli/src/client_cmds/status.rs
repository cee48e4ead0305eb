//! `oj status`: the daemon's `GET /v1/status`, as the body it sent
//! (`--json`) or as a table of what it says.

use std::time::Duration;

use oj_api::{ConfigSummary, JobState, Leftovers, Listener, Status};
use oj_config::{Environment, LoadOptions};
use serde_json::Value;

use super::{connect, emit, emit_line, runtime};
use crate::api_client::Endpoint;
use crate::cli::StatusArgs;
use crate::exit::{self, Failure};
use crate::table;

pub fn status(args: StatusArgs, opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    let (_loaded, client) = connect(opts, env)?;
    runtime()?.block_on(async {
        if args.json {
            // Exactly the body of GET /v1/status.
            let resp = client
                .get_stream("/v1/status")
                .await
                .map_err(|e| e.into_failure(&client))?;
            let body = resp
                .text()
                .await
                .map_err(|e| client.transport_error(&e).into_failure(&client))?;
            emit_line(&body);
            return Ok(exit::OK);
        }
        let status: Status = client
            .get_json("/v1/status")
            .await
            .map_err(|e| e.into_failure(&client))?;
        emit(render_status(&status, client.endpoint()).as_bytes());
        Ok(exit::OK)
    })
}

/// One listener of `/v1/status`: a URL as it is; a described one (kind and
/// address, whatever field names a daemon uses) as `tcp 0.0.0.0:7777 (tls)`.
fn listener_text(l: &Listener) -> String {
    let l = match l {
        Listener::Url(url) => return url.clone(),
        Listener::Described(l @ Value::Object(_)) => l,
        Listener::Described(other) => return other.to_string(),
    };
    let pick = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| l.get(*k).and_then(Value::as_str))
            .map(str::to_string)
    };
    let kind = pick(&["kind", "type", "scheme", "transport", "name"]);
    let addr = pick(&["addr", "address", "path", "url", "socket", "bind"]);
    if kind.is_none() && addr.is_none() {
        return l.to_string();
    }
    let mut out = [kind, addr]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    if l.get("tls").and_then(Value::as_bool) == Some(true) {
        out.push_str(" (tls)");
    }
    out
}

fn render_status(v: &Status, endpoint: &Endpoint) -> String {
    let s = |field: &Option<String>| field.clone().unwrap_or_else(|| "-".into());
    let uptime = v
        .uptime_s
        .map(|u| table::human_duration(Duration::from_secs(u)))
        .unwrap_or_else(|| "-".into());
    let leader = match v.leader {
        Some(true) => "leader",
        Some(false) => "standby (another instance holds the lock; no job runs here)",
        None => "-",
    };
    let draining = match v.draining {
        Some(true) => "yes (no new jobs are accepted)",
        Some(false) => "no",
        None => "-",
    };
    let listeners = match &v.listeners {
        Some(items) if !items.is_empty() => items
            .iter()
            .map(listener_text)
            .collect::<Vec<_>>()
            .join(", "),
        _ => "-".into(),
    };
    let jobs = match &v.jobs {
        Some(counts) => JobState::ALL
            .iter()
            .map(|state| format!("{state} {}", counts.get(*state)))
            .collect::<Vec<_>>()
            .join(", "),
        None => "-".into(),
    };
    let rows = [
        ("daemon", endpoint.display()),
        ("version", s(&v.version)),
        ("profile", s(&v.profile)),
        ("instance", s(&v.instance)),
        ("uptime", uptime),
        ("role", leader.to_string()),
        ("draining", draining.to_string()),
        ("listeners", listeners),
        ("jobs", jobs),
        ("leftovers", leftovers_text(v.leftovers.as_ref())),
        ("config", config_status_text(v.config.as_ref())),
    ];
    let mut out = String::new();
    for (k, val) in rows {
        out.push_str(&format!("{k:<10} {val}\n"));
    }
    out
}

/// How a step's leftovers are ended: `cgroup`, `process-scan (why)`, `off`.
fn leftovers_text(l: Option<&Leftovers>) -> String {
    let mode = l.and_then(|l| l.mode.as_deref());
    let reason = l.and_then(|l| l.reason.as_deref());
    match (mode, reason) {
        (Some("cgroup"), _) => {
            "cgroup (each shell step in its own cgroup v2, ended with cgroup.kill)".into()
        }
        (Some(m), Some(why)) => format!("{m} ({why})"),
        (Some(m), None) => m.to_string(),
        (None, _) => "-".into(),
    }
}

/// `generation 3, last reload ok at … (SIGHUP), pending restart: listen.tcp`.
fn config_status_text(c: Option<&ConfigSummary>) -> String {
    let Some(c) = c else {
        return "-".into();
    };
    let mut parts = vec![format!("generation {}", c.generation)];
    match &c.last_reload {
        Some(r) => {
            let field = |v: &str| if v.is_empty() { "?" } else { v }.to_string();
            let mut text = format!(
                "last reload {} at {} ({})",
                field(&r.result),
                field(&r.at),
                field(&r.reason)
            );
            if let Some(first) = r.errors.first() {
                text.push_str(&format!(": {first}"));
            }
            parts.push(text);
        }
        None => parts.push("never reloaded".into()),
    }
    if !c.pending_restart.is_empty() {
        parts.push(format!("pending restart: {}", c.pending_restart.join(", ")));
    }
    parts.join("; ")
}
