//! Client commands (`oj run`, `exec`, `job …`, `status`, `daemon stop`):
//! each builds what it needs from the configuration, talks to the daemon
//! over its API (SPEC §3.2) and turns the answer into output and an exit
//! code (SPEC §1).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use oj_config::{Environment, LoadOptions, Loaded};
use oj_core::{JobSpec, StepSpec};
use reqwest::StatusCode;
use serde_json::Value;

use crate::api_client::{ApiClient, ApiError, Endpoint};
use crate::cli::{ExecArgs, JobCommand, RunArgs, StatusArgs};
use crate::config_cmds;
use crate::exit::{self, Failure};
use crate::follow;
use crate::runbooks;
use crate::table;
use crate::term::{Stream, Style};

/// The job and step states of SPEC §3.2.
pub const STATES: [&str; 6] = [
    "queued",
    "running",
    "done",
    "failed",
    "cancelled",
    "interrupted",
];

/// A small single-threaded runtime: a client command does one thing at a time.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))
}

pub(crate) fn connect(
    opts: &LoadOptions,
    env: &Environment,
) -> Result<(Loaded, ApiClient), Failure> {
    let loaded = config_cmds::load_for_client(opts, env)?;
    let client = ApiClient::from_loaded(&loaded)?;
    Ok((loaded, client))
}

/// Writes to stdout; a closed pipe (`oj job logs ID | head`) ends the
/// command quietly, as for any Unix filter.
pub(crate) fn emit(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(exit::OK);
    }
}

pub(crate) fn emit_line(s: &str) {
    let mut line = String::with_capacity(s.len() + 1);
    line.push_str(s);
    if !s.ends_with('\n') {
        line.push('\n');
    }
    emit(line.as_bytes());
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Escapes a job id for use as one URL path segment.
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Maps a failed call about one job: 404 is "no job <id>".
pub(crate) fn job_failure(client: &ApiClient, id: &str, e: ApiError) -> Failure {
    match e {
        ApiError::Status {
            status: StatusCode::NOT_FOUND,
            ..
        } => Failure::runtime(format!(
            "no job {id} on the daemon at {}; `oj job list` shows the jobs it knows",
            client.endpoint().display()
        )),
        other => other.into_failure(client),
    }
}

// ---------------------------------------------------------------- status

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
        let v = client
            .get_json("/v1/status")
            .await
            .map_err(|e| e.into_failure(&client))?;
        emit(render_status(&v, client.endpoint()).as_bytes());
        Ok(exit::OK)
    })
}

/// One listener of `/v1/status` as `tcp 0.0.0.0:7777 (tls)`, whatever
/// field names the daemon uses for kind and address.
fn listener_text(l: &Value) -> String {
    let pick = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| str_field(l, k))
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

fn render_status(v: &Value, endpoint: &Endpoint) -> String {
    let s = |k: &str| match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    };
    let uptime = v
        .get("uptime_s")
        .and_then(Value::as_f64)
        .map(|u| table::human_duration(Duration::from_secs_f64(u.max(0.0))))
        .unwrap_or_else(|| "-".into());
    let leader = match v.get("leader").and_then(Value::as_bool) {
        Some(true) => "leader",
        Some(false) => "standby (another instance holds the lock; no job runs here)",
        None => "-",
    };
    let draining = match v.get("draining").and_then(Value::as_bool) {
        Some(true) => "yes (no new jobs are accepted)",
        Some(false) => "no",
        None => "-",
    };
    let listeners = match v.get("listeners") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|l| match l {
                Value::String(s) => s.clone(),
                Value::Object(_) => listener_text(l),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => "-".into(),
    };
    let jobs = match v.get("jobs") {
        Some(Value::Object(counts)) => {
            let mut parts: Vec<String> = Vec::new();
            for state in STATES {
                if let Some(n) = counts.get(state) {
                    parts.push(format!("{state} {n}"));
                }
            }
            for (k, n) in counts {
                if !STATES.contains(&k.as_str()) {
                    parts.push(format!("{k} {n}"));
                }
            }
            parts.join(", ")
        }
        _ => "-".into(),
    };
    let rows = [
        ("daemon", endpoint.display()),
        ("version", s("version")),
        ("profile", s("profile")),
        ("instance", s("instance")),
        ("uptime", uptime),
        ("role", leader.to_string()),
        ("draining", draining.to_string()),
        ("listeners", listeners),
        ("jobs", jobs),
        ("leftovers", leftovers_text(v.get("leftovers"))),
        ("config", config_status_text(v.get("config"))),
    ];
    let mut out = String::new();
    for (k, val) in rows {
        out.push_str(&format!("{k:<10} {val}\n"));
    }
    out
}

/// How a step's leftovers are ended: `cgroup`, `process-scan (why)`, `off`.
fn leftovers_text(l: Option<&Value>) -> String {
    let mode = l.and_then(|l| l.get("mode")).and_then(Value::as_str);
    let reason = l.and_then(|l| l.get("reason")).and_then(Value::as_str);
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
fn config_status_text(c: Option<&Value>) -> String {
    let Some(c) = c.filter(|c| c.is_object()) else {
        return "-".into();
    };
    let mut parts = vec![format!(
        "generation {}",
        c.get("generation").and_then(Value::as_u64).unwrap_or(0)
    )];
    match c.get("last_reload").filter(|r| r.is_object()) {
        Some(r) => {
            let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
            let mut text = format!(
                "last reload {} at {} ({})",
                field("result"),
                field("at"),
                field("reason")
            );
            if let Some(first) = r
                .get("errors")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
            {
                text.push_str(&format!(": {}", first.as_str().unwrap_or_default()));
            }
            parts.push(text);
        }
        None => parts.push("never reloaded".into()),
    }
    let pending: Vec<&str> = c
        .get("pending_restart")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !pending.is_empty() {
        parts.push(format!("pending restart: {}", pending.join(", ")));
    }
    parts.join("; ")
}

// ---------------------------------------------------------------- daemon config

/// The running daemon's configuration, from `GET /v1/config`.
pub struct DaemonConfig {
    pub view: oj_config::render::View,
    /// The profile and config files the daemon read.
    pub profile: Option<String>,
    pub files: Vec<std::path::PathBuf>,
}

impl DaemonConfig {
    /// Options that read what the daemon reads from disk: its profile and
    /// files, unless the command line names others.
    pub fn options_on_disk(&self, opts: &LoadOptions) -> LoadOptions {
        let mut o = opts.clone();
        if o.profile.is_none() {
            o.profile = self.profile.clone();
        }
        if o.config_files.is_empty() {
            o.config_files = self.files.clone();
        }
        o
    }
}

pub fn daemon_config(opts: &LoadOptions, env: &Environment) -> Result<DaemonConfig, Failure> {
    let (_loaded, client) = connect(opts, env)?;
    let v = runtime()?.block_on(async {
        client
            .get_json("/v1/config")
            .await
            .map_err(|e| e.into_failure(&client))
    })?;
    // Layer names as the daemon displays them, typed again here at the edge.
    let sources = v
        .get("sources")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, l)| Some((k.clone(), l.as_str()?.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default();
    let profile = v.get("profile").and_then(Value::as_str).map(str::to_string);
    let generation = v.get("generation").and_then(Value::as_u64).unwrap_or(0);
    let files = v
        .get("files")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(std::path::PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(DaemonConfig {
        view: oj_config::render::View {
            tree: v.get("config").cloned().unwrap_or(Value::Null),
            sources,
            header: format!(
                "running daemon {}: profile {}, config generation {generation}",
                client.endpoint().display(),
                profile.as_deref().unwrap_or("?")
            ),
        },
        profile,
        files,
    })
}

// ---------------------------------------------------------------- daemon stop

pub fn daemon_stop(opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    let loaded = config_cmds::load_for_client(opts, env)?;
    let client = ApiClient::fresh_connections(&loaded)?;
    let addr = client.endpoint().display();
    // Over a Unix socket the daemon runs on this machine: its pid (from
    // /v1/status, else daemon.lock) lets us wait for the process itself, not
    // only for its socket, so a new daemon can start as soon as we return.
    let is_local = matches!(client.endpoint(), Endpoint::Unix(_));
    let lock_pid = match client.endpoint() {
        Endpoint::Unix(p)
            if Some(p) == loaded.config.unix_socket_path().as_ref()
                && loaded.config.lock.strategy == oj_config::LockStrategy::File =>
        {
            read_lock_pid(&loaded.config.daemon.state_dir.join("daemon.lock"))
        }
        _ => None,
    };
    let drain = loaded.config.shutdown.drain_timeout;
    // The drain may take drain_timeout, then 2 s of SIGTERM grace, then the
    // snapshot; a daemon elsewhere may have a longer timeout than ours.
    let bound = drain.max(Duration::from_secs(25)) + Duration::from_secs(30);
    runtime()?.block_on(async {
        let before = client
            .get_json("/v1/status")
            .await
            .map_err(|e| e.into_failure(&client))?;
        let running = before
            .pointer("/jobs/running")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        // Told, not asked: the event stream ends when the daemon's engine
        // has stopped. Opened before the request, so that end is not missed.
        let events = crate::events_client::EventStream::open(&client, "/v1/events").await;
        client
            .post_json("/v1/shutdown", &Value::Object(Default::default()))
            .await
            .map_err(|e| match e {
                ApiError::Status {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message,
                } if before.get("leader").and_then(Value::as_bool) == Some(false) => {
                    Failure::runtime(format!(
                        "the daemon at {addr} is on standby and refused the stop request \
                         ({message}); send it SIGTERM instead (kill, or delete its pod)"
                    ))
                }
                other => other.into_failure(&client),
            })?;
        let status_pid = before
            .get("pid")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0);
        let local_pid = if is_local {
            status_pid.or(lock_pid)
        } else {
            None
        };
        let started = Instant::now();
        if running > 0 {
            eprintln!(
                "oj: the daemon at {addr} is draining: {running} running job{} may finish \
                 within its shutdown.drain_timeout before being interrupted",
                if running == 1 { "" } else { "s" }
            );
        }
        let mut last_running = running;
        if let Ok(mut events) = events {
            let end = tokio::time::timeout(bound, async {
                // Status events carry the running count while it drains.
                while let Ok(ev) = events.next().await {
                    if ev.kind == "status"
                        && let Some(n) = ev.json().pointer("/jobs/running").and_then(Value::as_u64)
                    {
                        last_running = n;
                    }
                }
            })
            .await;
            if end.is_err() {
                return Err(Failure::runtime(format!(
                    "the daemon at {addr} still answers {}s after the stop request \
                     ({last_running} job(s) running); check its log, or stop it with SIGTERM",
                    bound.as_secs()
                )));
            }
        }
        if let Some(pid) = local_pid {
            let limit = Duration::from_secs(15);
            match crate::events_client::process_exit(pid, limit).await {
                Some(_) => {}
                // No pidfd (Linux before 5.3): look every 20 ms.
                None => {
                    let deadline = Instant::now() + limit;
                    while process_alive(pid) && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            if process_alive(pid) {
                return Err(Failure::runtime(format!(
                    "the daemon (pid {pid}) closed its socket but has not exited after 15s; \
                     check its log"
                )));
            }
        }
        let took = table::human_duration(started.elapsed());
        match local_pid {
            Some(pid) => eprintln!("oj: daemon stopped (pid {pid}, {addr}) after {took}"),
            None => eprintln!("oj: daemon at {addr} stopped after {took}"),
        }
        Ok(exit::OK)
    })
}

/// The pid the `file` lock strategy writes into `daemon.lock`.
fn read_lock_pid(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: i32 = text.split_whitespace().next()?.parse().ok()?;
    (pid > 0 && pid != std::process::id() as i32).then_some(pid)
}

/// Whether `pid` is a live process (a zombie awaiting its parent counts
/// as gone: it has finished).
fn process_alive(pid: i32) -> bool {
    // EPERM: it exists but belongs to someone else; only ESRCH means gone.
    if let Err(nix::errno::Errno::ESRCH) =
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
    {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // Field 3 follows the parenthesised command name.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => true,
    }
}

// ---------------------------------------------------------------- run / exec

/// Parses `--var K=V` flags; a later value for the same name wins.
pub fn parse_vars(raw: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut vars = BTreeMap::new();
    for item in raw {
        match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                vars.insert(k.trim().to_string(), v.to_string());
            }
            _ => {
                return Err(Failure::usage(format!(
                    "--var {item:?} is not NAME=VALUE; write e.g. --var target=x86_64-unknown-linux-gnu"
                )));
            }
        }
    }
    Ok(vars)
}

pub fn run(args: RunArgs, opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    let vars = parse_vars(&args.vars)?;
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::runtime(format!("cannot read the current directory: {e}")))?;
    // Everything about the runbook is checked before the daemon is contacted.
    let mut spec = runbooks::resolve(&args.name, &vars, args.file.as_deref(), &cwd)?;
    args.queueing
        .apply(&mut spec, std::time::SystemTime::now())?;
    let (_loaded, client) = connect(opts, env)?;
    args.placement
        .apply(&mut spec, client.endpoint(), env, &cwd)?;
    runtime()?.block_on(submit(
        &client,
        &spec,
        args.placement.idempotency_key.as_deref(),
        args.wait,
        Style::detect(Stream::Stderr, env),
    ))
}

/// Quotes one word for `/bin/sh` so it reaches the command unchanged.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'-' | b'.' | b'/' | b':' | b',' | b'+' | b'=' | b'@' | b'%'
                )
        });
    if safe {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// A command line as one `/bin/sh` string.
pub fn shell_join(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `/usr/bin/make` → `make`.
fn basename(cmd: &str) -> &str {
    cmd.trim_end_matches('/').rsplit('/').next().unwrap_or(cmd)
}

/// A step name safe as a file name (SPEC §3.2), from any job name.
fn step_name_for(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(oj_core::spec::MAX_STEP_NAME)
        .collect();
    if oj_core::spec::is_safe_step_name(&cleaned)
        && cleaned.chars().any(|c| c.is_ascii_alphanumeric())
    {
        cleaned
    } else {
        "main".into()
    }
}

/// The one-step job spec of `oj exec`.
pub fn exec_spec(name: Option<&str>, command: &[String]) -> Result<JobSpec, Failure> {
    let Some(first) = command.first() else {
        return Err(Failure::usage(
            "oj exec needs a command after --, e.g. oj exec -- make test",
        ));
    };
    if first.trim().is_empty() {
        return Err(Failure::usage(format!(
            "the command after -- is empty ({first:?}); give the program to run, e.g. oj exec -- make test"
        )));
    }
    let name = match name {
        Some(n) if !n.trim().is_empty() => n.to_string(),
        Some(_) => return Err(Failure::usage("--name must not be empty")),
        None => {
            let b = basename(first);
            if b.is_empty() {
                first.clone()
            } else {
                b.to_string()
            }
        }
    };
    let spec = JobSpec {
        name: name.clone(),
        queue: "default".into(),
        dir: None,
        labels: Default::default(),
        env: BTreeMap::new(),
        notify: None,
        container: None,
        retry: None,
        priority: 0,
        after: Vec::new(),
        hold: false,
        not_before: None,
        steps: vec![StepSpec {
            name: step_name_for(&name),
            run: shell_join(command),
            timeout: None,
            container: None,
            retry: None,
            secrets: Default::default(),
        }],
        workspace: None,
        secrets: Default::default(),
    };
    spec.validate()
        .map_err(|e| Failure::usage(format!("cannot submit this command: {e}")))?;
    Ok(spec)
}

pub fn exec(args: ExecArgs, opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    let mut spec = exec_spec(args.name.as_deref(), &args.command)?;
    args.queueing
        .apply(&mut spec, std::time::SystemTime::now())?;
    let cwd = crate::where_cmds::working_dir(&args.placement)?;
    let (_loaded, client) = connect(opts, env)?;
    args.placement
        .apply(&mut spec, client.endpoint(), env, &cwd)?;
    runtime()?.block_on(submit(
        &client,
        &spec,
        args.placement.idempotency_key.as_deref(),
        args.wait,
        Style::detect(Stream::Stderr, env),
    ))
}

/// Submits a job, prints its id, and with `wait` follows it to the end.
async fn submit(
    client: &ApiClient,
    spec: &JobSpec,
    idempotency_key: Option<&str>,
    wait: bool,
    style: Style,
) -> Result<i32, Failure> {
    let body = serde_json::to_value(spec)
        .map_err(|e| Failure::runtime(format!("cannot encode the job spec: {e}")))?;
    let key = idempotency_key
        .map(crate::where_cmds::idempotency_header)
        .transpose()?;
    let job = client
        .post_json_keyed("/v1/jobs", &body, key.as_deref())
        .await
        .map_err(|e| match e {
            ApiError::Status {
                status: StatusCode::BAD_REQUEST,
                message,
            } => Failure::usage(format!("the daemon refused job {:?}: {message}", spec.name)),
            other => other.into_failure(client),
        })?;
    let Some(id) = str_field(&job, "id").map(str::to_string) else {
        return Err(Failure::runtime(format!(
            "the daemon at {} accepted the job but sent no job id; is it an oj daemon of the same version?",
            client.endpoint().display()
        )));
    };
    emit_line(&id);
    follow_submitted(client, &id, wait, style).await
}

/// After a job was submitted (its id printed): with `wait`, follows it to
/// the end and exits as `--wait` does.
pub(crate) async fn follow_submitted(
    client: &ApiClient,
    id: &str,
    wait: bool,
    style: Style,
) -> Result<i32, Failure> {
    let id = id.to_string();
    if !wait {
        return Ok(exit::OK);
    }
    // Ctrl-C stops the waiting, not the job: say so, and how to stop it.
    tokio::select! {
        job = follow::follow(client, &id, style) => follow::finish(&id, &job?, style),
        _ = tokio::signal::ctrl_c() => Err(Failure::new(
            INTERRUPTED,
            format!(
                "stopped waiting; job {id} keeps running in the daemon \
                 (`oj job logs {id} --follow` to watch it, `oj job cancel {id}` to stop it)"
            ),
        )),
    }
}

/// The conventional exit code of a command ended by Ctrl-C (128 + SIGINT).
const INTERRUPTED: i32 = 130;

// ---------------------------------------------------------------- job …

pub fn job(cmd: JobCommand, opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    // A bad --status is a usage error before anything else happens.
    if let JobCommand::List {
        status: Some(s), ..
    } = &cmd
        && !STATES.contains(&s.as_str())
    {
        return Err(Failure::usage(format!(
            "--status {s:?} is not a job state; use one of: {}",
            STATES.join(", ")
        )));
    }
    let (_loaded, client) = connect(opts, env)?;
    let rt = runtime()?;
    let out = Style::detect(Stream::Stdout, env);
    let err = Style::detect(Stream::Stderr, env);
    match cmd {
        JobCommand::List {
            json,
            status,
            limit,
            filters,
        } => rt.block_on(job_list(
            &client,
            json,
            status.as_deref(),
            limit,
            &filters,
            out,
        )),
        JobCommand::Rerun {
            id,
            from_step,
            wait,
        } => rt.block_on(crate::where_cmds::rerun(
            &client,
            &id,
            from_step.as_deref(),
            wait,
            err,
        )),
        JobCommand::Show { id, json } => rt.block_on(job_show(&client, &id, json, out)),
        JobCommand::Logs { id, follow } => rt.block_on(job_logs(&client, &id, follow, err)),
        JobCommand::Wait { ids, timeout } => {
            rt.block_on(follow::wait_all(&client, &ids, timeout, err))
        }
        JobCommand::Cancel { id } => rt.block_on(job_cancel(&client, &id)),
        JobCommand::Release { ids } => rt.block_on(crate::queue_cmds::release(&client, &ids)),
        JobCommand::Rm { ids } => rt.block_on(crate::job_cleanup::rm(&client, &ids)),
        JobCommand::Prune { older_than, state } => rt.block_on(crate::job_cleanup::prune(
            &client,
            older_than.as_deref(),
            state.as_deref(),
        )),
    }
}

/// Newest first, whatever order the daemon used.
fn sort_newest_first(jobs: &mut [Value]) {
    let key = |j: &Value| str_field(j, "created_at").and_then(table::parse_time);
    jobs.sort_by_key(|j| std::cmp::Reverse(key(j)));
}

/// The most a daemon gives in one page (`GET /v1/jobs?limit=`).
const MAX_PAGE: u64 = 1000;

/// Walks `GET /v1/jobs` page by page (`?limit=N&after=ID`, following
/// `next`) until `limit` jobs or the last page. A daemon that answers
/// without `next` (the first release) sends everything in one page.
async fn list_jobs(
    client: &ApiClient,
    status: Option<&str>,
    limit: Option<u64>,
    filters: &str,
) -> Result<Vec<Value>, Failure> {
    let mut jobs: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let want = limit.map_or(MAX_PAGE, |l| (l - jobs.len() as u64).min(MAX_PAGE));
        let mut path = format!("/v1/jobs?limit={want}");
        if let Some(s) = status {
            path.push_str(&format!("&status={s}"));
        }
        path.push_str(filters);
        if let Some(a) = &after {
            path.push_str(&format!("&after={}", path_segment(a)));
        }
        let page = client
            .get_json(&path)
            .await
            .map_err(|e| e.into_failure(client))?;
        let items = page
            .get("jobs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let got = items.len();
        jobs.extend(items);
        if limit.is_some_and(|l| jobs.len() as u64 >= l) {
            break;
        }
        match page.get("next").and_then(Value::as_str) {
            // A `next` that does not move on would loop forever: stop there.
            Some(next) if got > 0 && after.as_deref() != Some(next) => {
                after = Some(next.to_string());
            }
            _ => break,
        }
    }
    if let Some(l) = limit {
        // An old daemon may ignore `limit`: newest first, then cut.
        sort_newest_first(&mut jobs);
        jobs.truncate(l as usize);
    }
    Ok(jobs)
}

async fn job_list(
    client: &ApiClient,
    json: bool,
    status: Option<&str>,
    limit: Option<u64>,
    filters: &crate::where_cmds::ListFilters,
    style: Style,
) -> Result<i32, Failure> {
    let query = filters.query(SystemTime::now());
    let mut jobs = list_jobs(client, status, limit, &query).await?;
    sort_newest_first(&mut jobs);
    if json {
        emit_line(&pretty(&serde_json::json!({ "jobs": jobs })));
        return Ok(exit::OK);
    }
    if jobs.is_empty() && !filters.is_empty() {
        eprintln!("{}", crate::where_cmds::nothing_matches(filters));
        return Ok(exit::OK);
    }
    if jobs.is_empty() {
        match status {
            Some(s) => eprintln!("no {s} jobs"),
            None => eprintln!("no jobs yet; submit one with `oj run NAME` or `oj exec -- CMD`"),
        }
        return Ok(exit::OK);
    }
    emit(render_job_list(&jobs, SystemTime::now(), style).as_bytes());
    Ok(exit::OK)
}

/// Columns of `oj job list`; NAME and ERROR give up room on a narrow terminal.
const LIST_HEADER: [&str; 6] = ["ID", "NAME", "STATE", "CREATED", "DURATION", "ERROR"];
const LIST_STATE_COL: usize = 2;

fn render_job_list(jobs: &[Value], now: SystemTime, style: Style) -> String {
    let extra = crate::where_cmds::list_columns(jobs);
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let mut row = vec![
                str_field(j, "id").unwrap_or("?").to_string(),
                str_field(j, "name").unwrap_or("?").to_string(),
                crate::queue_cmds::state_text(j),
                str_field(j, "created_at")
                    .map(table::short_time)
                    .unwrap_or_else(|| "-".into()),
                table::run_time(str_field(j, "started_at"), str_field(j, "ended_at"), now),
                str_field(j, "error")
                    .map(one_line)
                    .unwrap_or_else(|| "-".into()),
            ];
            row.extend(extra.iter().map(|(_, cell)| cell(j)));
            row
        })
        .collect();
    let mut header = LIST_HEADER.to_vec();
    header.extend(extra.iter().map(|(h, _)| *h));
    // Free-text columns give up room, the widest first.
    let mut shrinkable = vec![5, 1];
    shrinkable.extend(LIST_HEADER.len()..header.len());
    render_with_states(&header, &rows, LIST_STATE_COL, &shrinkable, style)
}

/// An error as one table cell: its lines joined.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A table fitted to the terminal, with the state column coloured.
fn render_with_states(
    header: &[&str],
    rows: &[Vec<String>],
    state_col: usize,
    shrinkable: &[usize],
    style: Style,
) -> String {
    let paint = |col: usize, raw: &str, shown: String| {
        if col == state_col {
            style.paint(crate::term::state_color(raw), &shown)
        } else {
            shown
        }
    };
    table::render_fitted(
        header,
        rows,
        &table::Fit {
            width: style.width,
            shrinkable,
            paint: Some(&paint),
        },
    )
}

async fn job_show(client: &ApiClient, id: &str, json: bool, style: Style) -> Result<i32, Failure> {
    let path = format!("/v1/jobs/{}", path_segment(id));
    let job = client
        .get_json(&path)
        .await
        .map_err(|e| job_failure(client, id, e))?;
    if json {
        emit_line(&pretty(&job));
    } else {
        emit(render_job(&job, SystemTime::now(), style).as_bytes());
    }
    Ok(exit::OK)
}

fn render_job(job: &Value, now: SystemTime, style: Style) -> String {
    let f = |k: &str| str_field(job, k);
    let mut out = String::new();
    let mut field = |k: &str, v: String| {
        out.push_str(&format!("{k:<9} {}\n", table::escape_for_terminal(&v)));
    };
    field("id", f("id").unwrap_or("?").into());
    field("name", f("name").unwrap_or("?").into());
    // The state is escaped before it is painted: the colour codes are ours.
    let state = table::escape_for_terminal(f("state").unwrap_or("?")).into_owned();
    out.push_str(&format!("{:<9} {}\n", "state", style.state(&state)));
    let mut field = |k: &str, v: String| {
        out.push_str(&format!("{k:<9} {}\n", table::escape_for_terminal(&v)));
    };
    if let Some(e) = f("error") {
        field("error", e.into());
    }
    for (k, v) in crate::queue_cmds::show_fields(job) {
        field(k, v);
    }
    for (k, v) in crate::where_cmds::show_fields(job) {
        field(k, v);
    }
    field(
        "created",
        f("created_at")
            .map(table::short_time)
            .unwrap_or_else(|| "-".into()),
    );
    if let Some(t) = f("started_at") {
        field("started", table::short_time(t));
    }
    if let Some(t) = f("ended_at") {
        field("ended", table::short_time(t));
    }
    field(
        "duration",
        table::run_time(f("started_at"), f("ended_at"), now),
    );
    let steps = job
        .get("steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !steps.is_empty() {
        let has_pod = steps.iter().any(|s| str_field(s, "pod").is_some());
        let rows: Vec<Vec<String>> = steps
            .iter()
            .map(|s| {
                let mut row = vec![
                    str_field(s, "name").unwrap_or("?").to_string(),
                    str_field(s, "state").unwrap_or("?").to_string(),
                    s.get("exit_code")
                        .filter(|c| !c.is_null())
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".into()),
                    str_field(s, "started_at")
                        .map(table::short_time)
                        .unwrap_or_else(|| "-".into()),
                    table::run_time(str_field(s, "started_at"), str_field(s, "ended_at"), now),
                ];
                if has_pod {
                    row.push(str_field(s, "pod").unwrap_or("-").to_string());
                }
                row
            })
            .collect();
        let mut header = vec!["STEP", "STATE", "EXIT", "STARTED", "DURATION"];
        if has_pod {
            header.push("POD");
        }
        out.push('\n');
        out.push_str(&render_with_states(&header, &rows, 1, &[], style));
        out.push_str(&crate::job_cleanup::render_attempts(&steps, now));
    }
    out
}

/// `oj job logs ID [-f]`. Without `--follow` it prints the log as it is;
/// with it, it streams until the job ends and exits as `--wait` does.
async fn job_logs(
    client: &ApiClient,
    id: &str,
    follow: bool,
    style: Style,
) -> Result<i32, Failure> {
    if follow {
        let job = follow::follow(client, id, style).await?;
        return follow::finish(id, &job, style);
    }
    let path = format!("/v1/jobs/{}/logs", path_segment(id));
    let mut resp = client
        .get_stream(&path)
        .await
        .map_err(|e| job_failure(client, id, e))?;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => emit(&chunk),
            Ok(None) => return Ok(exit::OK),
            Err(e) => return Err(follow::broken_stream(client, id, &e).await),
        }
    }
}

async fn job_cancel(client: &ApiClient, id: &str) -> Result<i32, Failure> {
    let path = format!("/v1/jobs/{}/cancel", path_segment(id));
    client
        .post_json(&path, &Value::Object(Default::default()))
        .await
        .map_err(|e| match e {
            ApiError::Status {
                status: StatusCode::CONFLICT,
                message,
            } => Failure::runtime(format!(
                "job {id} cannot be cancelled: {}",
                if message.is_empty() {
                    "it has already ended".into()
                } else {
                    message
                }
            )),
            other => job_failure(client, id, other),
        })?;
    eprintln!("oj: cancel requested for job {id}; `oj job show {id}` shows its state");
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// What /bin/sh makes of a quoted command line: one argument per line.
    fn through_sh(words: &[&str]) -> Vec<String> {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let script = format!("printf '%s\\n' {}", shell_join(&words));
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{script}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn shell_quoting_keeps_every_word_intact() {
        let words = [
            "plain",
            "two words",
            "it's",
            "$HOME",
            "`id`",
            "a;b|c&d",
            "*",
            "back\\slash",
            "\"dq\"",
            "tab\there",
            "ünï",
            "--flag=x",
        ];
        assert_eq!(through_sh(&words), words);
    }

    #[test]
    fn shell_quoting_leaves_plain_words_alone() {
        assert_eq!(shell_quote("cargo"), "cargo");
        assert_eq!(shell_quote("/usr/bin/make"), "/usr/bin/make");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn exec_spec_names_the_job_after_the_command() {
        let spec = exec_spec(None, &["/usr/bin/env".into(), "A=1".into(), "sh".into()]).unwrap();
        assert_eq!(spec.name, "env");
        assert_eq!(spec.steps.len(), 1);
        assert_eq!(spec.steps[0].run, "/usr/bin/env A=1 sh");
        let spec = exec_spec(Some("my job!"), &["true".into()]).unwrap();
        assert_eq!(spec.name, "my job!");
        assert!(oj_core::spec::is_safe_step_name(&spec.steps[0].name));
        assert_eq!(exec_spec(None, &[]).unwrap_err().code, exit::USAGE);
    }

    #[test]
    fn vars_need_an_equals_sign() {
        let v = parse_vars(&["a=1".into(), "b=x=y".into(), "a=2".into()]).unwrap();
        assert_eq!(v.get("a").map(String::as_str), Some("2"));
        assert_eq!(v.get("b").map(String::as_str), Some("x=y"));
        assert_eq!(
            parse_vars(&["novalue".into()]).unwrap_err().code,
            exit::USAGE
        );
        assert_eq!(parse_vars(&["=v".into()]).unwrap_err().code, exit::USAGE);
    }

    #[test]
    fn job_list_is_newest_first_with_readable_columns() {
        let mut jobs = vec![
            serde_json::json!({"id": "old", "name": "a", "state": "done",
                "created_at": "2026-11-26T08:00:00.000Z",
                "started_at": "2026-11-26T08:00:00.000Z", "ended_at": "2026-11-26T08:00:02.000Z"}),
            serde_json::json!({"id": "new", "name": "b", "state": "queued",
                "created_at": "2026-11-26T09:00:00.000Z"}),
        ];
        sort_newest_first(&mut jobs);
        let out = render_job_list(&jobs, SystemTime::now(), Style::default());
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("ID"), "{out}");
        assert!(lines[1].starts_with("new"), "{out}");
        assert!(
            lines[2].starts_with("old") && lines[2].contains("2.0s"),
            "{out}"
        );
        assert!(lines[1].contains("2026-11-26 09:00:00"), "{out}");
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("abc-123"), "abc-123");
        assert_eq!(path_segment("a/b?c"), "a%2Fb%3Fc");
    }
}
