//! The oj daemon: engine, storage, API listeners and lifecycle.
//!
//! [`run`] is parse → build → run: the configuration arrives parsed and
//! validated; the build phase checks the machine (preflight, token, state
//! directory, lock, WAL, TLS, sockets) and fails with exit 78/75/1 and one
//! clear line; the run phase serves until a shutdown request and drains.

pub mod admin;
pub mod api;
mod api_retention;
pub mod drain;
pub mod engine;
pub mod k8s;
pub mod listen;
pub mod lock;
pub mod metrics;
pub mod notify;
pub mod runner;
pub mod storage;

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oj_adapters::logging::{LogGuard, LoggingInput};
use oj_config::{Environment, Loaded, NotifyBackend, RuntimeConfig, Secret};
use tokio::sync::watch;

use crate::api::{DaemonInfo, Shared};
use crate::drain::ShutdownTrigger;
use crate::engine::{Engine, EngineConfig};
use crate::lock::LockError;
use crate::runner::shell::{KILL_GRACE, ShellRunner};
use crate::runner::{Runners, StepRunner};
use crate::storage::Storage;

/// Exit codes (SPEC §1).
pub const EXIT_OK: i32 = 0;
pub const EXIT_RUNTIME: i32 = 1;
pub const EXIT_LOCKED: i32 = 75;
pub const EXIT_CONFIG: i32 = 78;

/// Longest Unix socket path (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The version reported by `/v1/status` and `oj_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A reason not to start (or to stop), with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
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

/// Runs the daemon in the foreground until it is stopped; returns the exit code.
pub fn run(loaded: Loaded, env: Environment) -> i32 {
    run_with(loaded, env, Plugins::default())
}

/// [`run`] with plugged-in runners / lock strategies.
pub fn run_with(loaded: Loaded, env: Environment, plugins: Plugins) -> i32 {
    match start(loaded, env, plugins) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("oj: {}", f.message);
            f.code
        }
    }
}

fn start(loaded: Loaded, env: Environment, plugins: Plugins) -> Result<i32, Failure> {
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
        return Err(Failure::new(EXIT_CONFIG, msg));
    }
    // `listen.tcp` without a token and without insecure_no_auth never gets
    // here: the config crate refuses it when the layers are merged.
    let token = read_token(&loaded)?;
    create_state_dir(&cfg.daemon.state_dir).map_err(|e| {
        Failure::new(
            EXIT_CONFIG,
            format!(
                "cannot create daemon.state_dir {} (from {}): {e}; choose a writable directory (OJ_STATE_DIR) or fix its permissions",
                cfg.daemon.state_dir.display(),
                loaded.source("daemon.state_dir")
            ),
        )
    })?;
    let guard = setup_logging(&loaded, token.as_ref())?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("oj-daemon")
        .build()
        .map_err(|e| Failure::new(EXIT_RUNTIME, format!("cannot start the async runtime: {e}")))?;
    let result = rt.block_on(daemon_main(loaded, env, token, plugins));
    rt.shutdown_timeout(Duration::from_millis(200));
    if let Err(f) = &result {
        tracing::error!(code = f.code, "{}", f.message);
    }
    drop(guard);
    result
}

/// Sets up the daemon's own log (`log.*`); the token read from a file is
/// scrubbed from every line like the configured secrets.
fn setup_logging(loaded: &Loaded, token: Option<&Secret>) -> Result<Option<LogGuard>, Failure> {
    let mut input = LoggingInput::from_loaded(loaded, VERSION);
    if let Some(t) = token {
        input.add_secret(t.clone());
    }
    match oj_adapters::logging::init(&input) {
        Ok(guard) => Ok(Some(guard)),
        Err(oj_adapters::logging::LoggingError::AlreadySet(_)) => Ok(None),
        Err(e) => Err(Failure::new(EXIT_CONFIG, e.to_string())),
    }
}

/// The TCP token: `listen.auth_token`, else the content of `auth_token_file`
/// (see `Secret::from_file_contents`). Only TCP needs one: with
/// `listen.tcp` off, a token file the profile names need not exist.
fn read_token(loaded: &Loaded) -> Result<Option<Secret>, Failure> {
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
        Failure::new(
            EXIT_CONFIG,
            format!(
                "cannot read the token file {} (listen.auth_token_file from {}): {e}; create it or point the key at the right file",
                path.display(),
                loaded.source("listen.auth_token_file")
            ),
        )
    })?;
    if token.is_empty() {
        return Err(Failure::new(
            EXIT_CONFIG,
            format!(
                "the token file {} (listen.auth_token_file from {}) is empty; write the token into it",
                path.display(),
                loaded.source("listen.auth_token_file")
            ),
        ));
    }
    Ok(Some(token))
}

/// Creates the state directory with mode 0700 (existing ones are left as they are).
fn create_state_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The environment steps start from: the daemon's, minus `OJ_*` (the
/// daemon's own settings, which may hold secrets).
fn step_base_env(env: &Environment) -> BTreeMap<String, String> {
    env.vars
        .iter()
        .filter(|(k, _)| !k.starts_with("OJ_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn daemon_main(
    loaded: Loaded,
    env: Environment,
    token: Option<Secret>,
    plugins: Plugins,
) -> Result<i32, Failure> {
    let started = Instant::now();
    let cfg: RuntimeConfig = loaded.config.clone();
    let state_dir = cfg.daemon.state_dir.clone();
    let (trigger, requests) = ShutdownTrigger::new();
    drain::listen_for_signals(trigger.clone()).map_err(|e| {
        Failure::new(
            EXIT_RUNTIME,
            format!("cannot install the SIGTERM/SIGINT handlers: {e}"),
        )
    })?;

    // Kubernetes (pods, lease) when configured; a lease that cannot reach
    // the API is a configuration problem.
    let kube = k8s::plugins(&cfg, &env)
        .await
        .map_err(|e| Failure::new(EXIT_CONFIG, e))?;

    // Lock first: nothing below may touch a state_dir another daemon owns.
    let strategy = match (cfg.lock.strategy, plugins.lease, kube.lease) {
        (oj_config::LockStrategy::Lease, Some(lease), _)
        | (oj_config::LockStrategy::Lease, None, Some(lease)) => lease,
        _ => lock::from_config(&cfg).map_err(|e| Failure::new(EXIT_CONFIG, e.to_string()))?,
    };
    let lock_name = strategy.name();
    let held = strategy.acquire().await.map_err(|e| match e {
        LockError::Held { .. } => Failure::new(EXIT_LOCKED, e.to_string()),
        _ => Failure::new(EXIT_CONFIG, e.to_string()),
    })?;
    let leader = held.leader.clone();

    let (storage, state, replay) = tokio::task::block_in_place(|| Storage::open(&state_dir))
        .map_err(|e| Failure::new(EXIT_RUNTIME, format!("cannot load the daemon's state: {e}")))?;
    for problem in &replay.skipped {
        tracing::warn!(problem = %problem, "skipped a WAL record that does not fit");
    }
    if replay.torn_tail {
        tracing::warn!(
            "the last WAL record was torn (the daemon died while writing it); it was dropped"
        );
    }
    tracing::info!(
        jobs = state.jobs().count(),
        wal_records = replay.wal_records,
        snapshot_seq = replay.snapshot_seq,
        "state loaded"
    );

    // TLS and listeners.
    let tls = match (&cfg.listen.tcp, cfg.tls.enabled) {
        (Some(_), true) => Some(
            oj_adapters::tls::ServerTls::build(&cfg.tls)
                .map_err(|e| Failure::new(EXIT_CONFIG, e.to_string()))?,
        ),
        _ => None,
    };
    let mut listeners = Vec::new();
    let unix = match cfg.unix_socket_path() {
        Some(path) if path.as_os_str().len() > MAX_SOCKET_PATH => {
            return Err(Failure::new(
                EXIT_CONFIG,
                format!(
                    "the Unix socket path {} is {} bytes long, above the system's limit of {MAX_SOCKET_PATH}; set listen.unix_socket to a shorter absolute path or use a shorter daemon.state_dir",
                    path.display(),
                    path.as_os_str().len()
                ),
            ));
        }
        Some(path) => {
            let l = listen::bind_unix(&path).map_err(|e| {
                Failure::new(
                    EXIT_RUNTIME,
                    format!(
                        "cannot listen on the Unix socket {} (listen.unix_socket): {e}",
                        path.display()
                    ),
                )
            })?;
            listeners.push(format!("unix://{}", path.display()));
            Some((l, path))
        }
        None => None,
    };
    let tcp = match &cfg.listen.tcp {
        Some(addr) => {
            let (l, local) = listen::bind_tcp(addr).await.map_err(|e| {
                Failure::new(
                    EXIT_RUNTIME,
                    format!(
                        "cannot listen on {addr} (listen.tcp from {}): {e}; choose a free address",
                        loaded.source("listen.tcp")
                    ),
                )
            })?;
            listeners.push(format!(
                "{}://{local}",
                if tls.is_some() { "https" } else { "http" }
            ));
            Some(l)
        }
        None => None,
    };
    let admin = match &cfg.admin.addr {
        Some(addr) => {
            let (l, local) = listen::bind_tcp(addr).await.map_err(|e| {
                Failure::new(
                    EXIT_RUNTIME,
                    format!(
                        "cannot listen on {addr} (admin.addr from {}): {e}; choose a free address",
                        loaded.source("admin.addr")
                    ),
                )
            })?;
            Some((l, local))
        }
        None => None,
    };

    // Engine, runners, notifier.
    let metrics = Arc::new(metrics::Metrics::new(VERSION, &loaded.profile));
    let runners = Runners {
        shell: Arc::new(ShellRunner {
            shell: cfg.jobs.shell.clone(),
            base_env: step_base_env(&env),
            kill_grace: KILL_GRACE,
        }),
        container: plugins.container_runner.unwrap_or(kube.container_runner),
    };
    let logs_dir = state_dir.join("logs");
    let (mut engine, handle) = Engine::new(
        state,
        storage,
        EngineConfig {
            max_concurrent: cfg.jobs.max_concurrent.max(1) as usize,
            step_timeout: cfg.jobs.step_timeout,
            logs_dir: logs_dir.clone(),
            reload_on_lead: cfg.lock.strategy == oj_config::LockStrategy::Lease,
            retention: crate::engine::Retention::from_config(&cfg.jobs),
        },
        runners,
        metrics.clone(),
        leader.clone(),
    );
    if let Some(hook) = kube.on_lead {
        engine.set_on_lead(hook);
    }
    let notifier = if cfg.notify.backend == NotifyBackend::None {
        // Nothing will deliver what an earlier backend left pending: finish
        // it now, so the WAL and snapshot do not carry it forever.
        for pending in engine.pending_notifications() {
            handle.ack_notification(&pending.id);
        }
        None
    } else {
        let ack_handle = handle.clone();
        let n = oj_adapters::notify::Notifier::start(
            cfg.notify.clone(),
            oj_adapters::notify::NotifyContext {
                instance: cfg.daemon.instance.clone(),
                profile: loaded.profile.clone(),
            },
            engine
                .pending_notifications()
                .iter()
                .map(notify::to_adapter)
                .collect(),
            Box::new(move |id: &str| ack_handle.ack_notification(id)),
        )
        .map_err(|e| Failure::new(EXIT_CONFIG, e.to_string()))?;
        engine.set_notifier(Arc::new(notify::NotifierSink(n.clone())));
        Some(n)
    };
    let mut engine_task = tokio::spawn(engine.run());

    // Serve.
    let (draining_tx, draining_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let info = Arc::new(DaemonInfo {
        version: VERSION.to_string(),
        profile: loaded.profile.clone(),
        instance: cfg.daemon.instance.clone(),
        started,
        listeners: listeners.clone(),
        admin: admin.as_ref().map(|(_, a)| format!("http://{a}")),
        lock: lock_name.to_string(),
    });
    let shared = Shared {
        engine: handle.clone(),
        info,
        leader: leader.clone(),
        draining: draining_rx.clone(),
        shutdown: trigger.clone(),
        logs_dir,
        pods: Some(Arc::new(cfg.pods.clone())),
    };
    let api = api::router(shared);
    let max = cfg.listen.max_request_bytes;
    let mut servers = Vec::new();
    if let Some((l, path)) = unix {
        servers.push(tokio::spawn(listen::serve_unix(
            l,
            path,
            listen::wrap(api.clone(), max, None),
            stop_rx.clone(),
        )));
    }
    if let Some(l) = tcp {
        let auth = listen::Auth::new(token.as_ref().map(Secret::expose));
        servers.push(tokio::spawn(listen::serve_tcp(
            l,
            tls.clone(),
            listen::wrap(api.clone(), max, Some(auth)),
            stop_rx.clone(),
        )));
    }
    if let Some(tls) = &tls {
        let mut stop = stop_rx.clone();
        tls.spawn_reloader(cfg.tls.reload_interval, async move {
            let _ = stop.wait_for(|s| *s).await;
        });
    }
    if let Some((l, local)) = admin {
        let router = admin::router(admin::AdminState {
            engine: handle.clone(),
            leader: leader.clone(),
            draining: draining_rx.clone(),
            metrics: metrics.clone(),
            notifier: notifier.clone(),
        });
        servers.push(tokio::spawn(listen::serve_tcp(
            l,
            None,
            router,
            stop_rx.clone(),
        )));
        tracing::info!(addr = %local, "admin endpoints listening (/healthz /readyz /metrics)");
    }
    tracing::info!(
        listeners = %listeners.join(" "),
        lock = lock_name,
        instance = %cfg.daemon.instance,
        state_dir = %state_dir.display(),
        startup_ms = started.elapsed().as_millis() as u64,
        "daemon ready"
    );

    // Run until asked to stop, or until leadership is lost.
    let mut requests_rx = requests.clone();
    let mut leader_rx = leader.clone();
    let mut was_leader = *leader_rx.borrow();
    let mut leader_open = true;
    let mut engine_failed = false;
    let lost_leadership = loop {
        tokio::select! {
            _ = requests_rx.wait_for(|n| *n >= 1) => break false,
            res = &mut engine_task => {
                // The engine never stops on its own; if it did, nothing works.
                tracing::error!(error = ?res.err(), "the engine stopped unexpectedly; exiting");
                engine_failed = true;
                break false;
            }
            changed = leader_rx.changed(), if leader_open => {
                if changed.is_err() {
                    // The strategy ended; keep running with the last state.
                    leader_open = false;
                    continue;
                }
                let now = *leader_rx.borrow_and_update();
                if was_leader && !now {
                    tracing::error!("leadership lost: draining and exiting");
                    break true;
                }
                was_leader = now;
            }
        }
    };

    let drain_started = Instant::now();
    let (deadline, report) =
        drain::drain(&handle, &draining_tx, requests, cfg.shutdown.drain_timeout).await;
    if let Some(n) = notifier {
        let left = n.depth();
        tracing::info!(
            phase = "4/5 notifications",
            pending = left,
            "drain: delivering pending notifications"
        );
        let until = deadline.max(
            tokio::time::Instant::now() + Duration::from_millis(if left > 0 { 500 } else { 0 }),
        );
        n.shutdown(until).await;
    }
    tracing::info!(phase = "5/5 snapshot", "drain: writing the final snapshot");
    let snap = handle.shutdown().await;
    if !engine_failed {
        let _ = engine_task.await;
    }
    stop_tx.send_replace(true);
    for s in servers {
        let _ = tokio::time::timeout(Duration::from_millis(300), s).await;
    }
    held.release().await;
    let terminated = report.terminated.len();
    tracing::info!(
        terminated,
        finished_in_window = report.completed_in_window,
        drain_ms = drain_started.elapsed().as_millis() as u64,
        "daemon stopped"
    );
    if let Err(e) = snap {
        return Err(Failure::new(
            EXIT_RUNTIME,
            format!("the final snapshot failed: {e}"),
        ));
    }
    if engine_failed {
        return Err(Failure::new(
            EXIT_RUNTIME,
            "the engine stopped unexpectedly (see the daemon log)",
        ));
    }
    if lost_leadership {
        return Err(Failure::new(
            EXIT_RUNTIME,
            "lost the lock (leadership) while running; drained and stopped",
        ));
    }
    Ok(EXIT_OK)
}
