//! The oj daemon: engine, storage, API listeners and lifecycle.
//!
//! [`run`] is load → build → spawn → run (see [`app`]): the configuration
//! arrives loaded and validated; [`Daemon::build`] checks the machine
//! (preflight, token, state directory, lock, WAL, TLS, sockets) and binds,
//! but starts nothing; [`Daemon::spawn`] starts the engine, servers and
//! reloader; [`RunningDaemon::run`] serves until the shutdown input asks it
//! to stop, then drains. What stops a start is a typed [`StartError`]; the
//! binary prints it and turns it into an exit code.

pub mod admin;
pub mod api;
mod api_errors;
mod api_events;
mod api_failure;
mod api_queues;
mod api_retention;
mod api_schedules;
mod api_where;
mod app;
pub mod cluster;
mod config_api;
mod conn_slots;
pub mod drain;
pub mod early_signals;
pub mod engine;
pub mod events;
pub mod harden;
pub mod identity;
pub mod job_span;
pub mod k8s;
pub mod listen;
pub mod live;
pub mod lock;
mod log_watch;
pub mod metrics;
pub mod notify;
pub mod ready;
pub mod reload;
mod reload_guard;
pub mod runner;
pub mod storage;
pub mod ui;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oj_adapters::logging::{LogGuard, LoggingInput};
use oj_config::{Environment, Loaded, Secret};

use crate::runner::StepRunner;
use crate::storage::Storage;

mod startup;
pub use app::{Daemon, RunningDaemon};
pub use drain::ShutdownRequests;

/// Longest Unix socket path (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The version reported by `/v1/status` and `oj_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the daemon did not start, or stopped on a failure. The message is
/// the one line the user reads (what is wrong and what to do); the kind
/// decides the exit code, which only the binary chooses (SPEC §1: 78 for
/// a configuration problem, 75 when another daemon holds the lock or the
/// socket, 1 for the rest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The configuration, or the machine as it configures it, is wrong.
    #[error("{0}")]
    Config(String),
    /// Another daemon holds the lock or the socket.
    #[error("{0}")]
    Locked(String),
    /// Anything else: the runtime, the state, a listener; or a failure
    /// while running (the final snapshot, a lost lock).
    #[error("{0}")]
    Runtime(String),
}

impl StartError {
    /// The kind as a word, for the daemon's own log.
    pub fn kind(&self) -> &'static str {
        match self {
            StartError::Config(_) => "config",
            StartError::Locked(_) => "locked",
            StartError::Runtime(_) => "runtime",
        }
    }
}

/// Optional runners and strategies other crates plug in (the Kubernetes
/// pod runner, the lease). Empty = shell steps only, `file`/`none` locks.
#[derive(Default)]
pub struct Plugins {
    pub container_runner: Option<Arc<dyn StepRunner>>,
    pub lease: Option<Box<dyn lock::LockStrategy>>,
}

/// Runs the daemon in the foreground until SIGTERM or SIGINT (or `POST
/// /v1/shutdown`) stops it and its drain ends.
pub fn run(loaded: Loaded, env: Environment) -> Result<(), StartError> {
    run_with(loaded, env, Plugins::default())
}

/// [`run`] with plugged-in runners / lock strategies.
pub fn run_with(loaded: Loaded, env: Environment, plugins: Plugins) -> Result<(), StartError> {
    // Before anything is created: umask 077, non-dumpable, nofile raised.
    let hardening = harden::process();
    let cfg = &loaded.config;
    let report = oj_adapters::preflight::check(&loaded, &env, oj_adapters::preflight::Mode::Start);
    if !report.errors.is_empty() {
        let mut msg = format!(
            "cannot start the daemon ({} problem{}); fix the settings below (`oj config check` shows the same)",
            report.errors.len(),
            if report.errors.len() == 1 { "" } else { "s" }
        );
        for e in &report.errors {
            msg.push_str(&format!("\n  error: {e}"));
        }
        return Err(StartError::Config(msg));
    }
    // `listen.tcp` without a token and without insecure_no_auth never gets
    // here: the config crate refuses it when the layers are merged.
    let token = read_token(&loaded)?;
    let state_dir_note = harden::prepare_state_dir(&cfg.daemon.state_dir).map_err(|e| {
        StartError::Config(format!(
            "cannot create daemon.state_dir {} ({}): {e}; choose a writable directory (OJ_STATE_DIR) or fix its permissions",
            cfg.daemon.state_dir.display(),
            loaded.origin("daemon.state_dir")
        ))
    })?;
    let guard = setup_logging(&loaded, token.as_ref(), env.get("NO_COLOR").is_some())?;
    let log_level = guard.as_ref().map(LogGuard::level_control);
    for w in report
        .warnings
        .iter()
        .chain(&hardening.problems)
        .chain(&state_dir_note)
    {
        tracing::warn!("{w}");
    }
    ready::print_warnings(&report.warnings);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("oj-daemon")
        .build()
        .map_err(|e| StartError::Runtime(format!("cannot start the async runtime: {e}")))?;
    let result = rt.block_on(async {
        // Before anything else: an early SIGTERM is a drain, never fatal.
        let shutdown = drain::signal_requests().map_err(|e| {
            StartError::Runtime(format!("cannot install the SIGTERM/SIGINT handlers: {e}"))
        })?;
        Daemon::build(loaded, env, token, plugins, log_level)
            .await?
            .spawn()?
            .run(shutdown)
            .await
    });
    rt.shutdown_timeout(Duration::from_millis(200));
    runner::cgroup::remove_subtree();
    if let Err(e) = &result {
        tracing::error!(kind = e.kind(), "{e}");
    }
    drop(guard);
    result
}

/// Sets up the daemon's own log (`log.*`); the token read from a file is
/// scrubbed from every line like the configured secrets.
fn setup_logging(
    loaded: &Loaded,
    token: Option<&Secret>,
    no_color: bool,
) -> Result<Option<LogGuard>, StartError> {
    let mut input = LoggingInput::from_loaded(loaded, VERSION);
    input.no_color = no_color;
    if let Some(t) = token {
        input.add_secret(t.clone());
    }
    match oj_adapters::logging::init(&input) {
        Ok(guard) => Ok(Some(guard)),
        Err(oj_adapters::logging::LoggingError::AlreadySet(_)) => Ok(None),
        Err(e) => Err(StartError::Config(e.to_string())),
    }
}

/// The TCP token: `listen.auth_token`, else the content of `auth_token_file`
/// (see `Secret::from_file_contents`). Only TCP needs one: with
/// `listen.tcp` off, a token file the profile names need not exist.
fn read_token(loaded: &Loaded) -> Result<Option<Secret>, StartError> {
    let l = &loaded.config.listen;
    if l.tcp.is_none() {
        return Ok(None);
    }
    if let Some(t) = &l.auth_token {
        return Ok(Some(t.trimmed()));
    }
    let Some(path) = &l.auth_token_file else {
        return Ok(None);
    };
    let token = Secret::read_file(path).map_err(|e| {
        StartError::Config(format!(
            "cannot read the token file {} (listen.auth_token_file {}): {e}; create it or point the key at the right file",
            path.display(),
            loaded.origin("listen.auth_token_file")
        ))
    })?;
    if token.is_empty() {
        return Err(StartError::Config(format!(
            "the token file {} (listen.auth_token_file {}) is empty; write the token into it",
            path.display(),
            loaded.origin("listen.auth_token_file")
        )));
    }
    Ok(Some(token))
}

/// The TCP listener's limits; the connection cap stays below the open-file
/// limit (already raised by [`harden::process`]), with a warning if lowered.
pub(crate) fn tcp_limits(l: &oj_config::ListenConfig) -> listen::TcpLimits {
    // The Unix socket's and the admin port's caps come off the top.
    let others = (listen::UNIX_MAX_CONNECTIONS + listen::ADMIN_MAX_CONNECTIONS) as u64;
    let nofile = harden::nofile().map(|n| n.saturating_sub(others));
    let (max, lowered) = listen::effective_max_connections(l.max_connections, nofile);
    if lowered {
        tracing::warn!(
            configured = l.max_connections,
            effective = max,
            "listen.max_connections is above what the open-file limit (ulimit -n) leaves for TCP clients; using the lower cap"
        );
    }
    listen::TcpLimits::from_config(l, max)
}

/// The environment steps start from: the daemon's, minus `OJ_*` (the
/// daemon's own settings, which may hold secrets).
pub(crate) fn step_base_env(env: &Environment) -> BTreeMap<String, String> {
    env.vars
        .iter()
        .filter(|(k, _)| !k.starts_with("OJ_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
