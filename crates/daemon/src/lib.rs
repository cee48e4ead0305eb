//! The oj daemon: engine, storage, API listeners and lifecycle.
//!
//! [`run`] is load → build → run: the configuration arrives loaded and
//! validated; [`Daemon::build`] checks the machine (preflight, token, state
//! directory, lock, WAL, TLS, sockets) and fails with exit 78/75/1 and one
//! clear line, or returns the built daemon holding every subsystem's
//! handle; [`Daemon::run`] serves, reloads the config on SIGHUP or a changed
//! file (`reload`), and drains on a shutdown request.

pub mod admin;
pub mod api;
mod api_errors;
mod api_events;
mod api_failure;
mod api_queues;
mod api_retention;
mod api_schedules;
mod api_where;
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
use std::time::{Duration, Instant};

use oj_adapters::logging::{LevelControl, LogGuard, LoggingInput};
use oj_config::{Environment, Loaded, NotifyBackend, RuntimeConfig, Secret};
use tokio::sync::watch;

use crate::api::{DaemonInfo, Shared};
use crate::drain::ShutdownTrigger;
use crate::engine::{Engine, EngineConfig};
use crate::lock::LockError;
use crate::reload::{ConfigStatus, LiveSlices, Reloader};
use crate::runner::shell::{KILL_GRACE, ShellRunner};
use crate::runner::{Runners, StepRunner};
use crate::storage::Storage;

mod startup;
use startup::{bind_listeners, open_state};

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
        return Err(Failure::new(EXIT_CONFIG, msg));
    }
    // `listen.tcp` without a token and without insecure_no_auth never gets
    // here: the config crate refuses it when the layers are merged.
    let token = read_token(&loaded)?;
    let state_dir_note = harden::prepare_state_dir(&cfg.daemon.state_dir).map_err(|e| {
        Failure::new(
            EXIT_CONFIG,
            format!(
                "cannot create daemon.state_dir {} ({}): {e}; choose a writable directory (OJ_STATE_DIR) or fix its permissions",
                cfg.daemon.state_dir.display(),
                loaded.origin("daemon.state_dir")
            ),
        )
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
        .map_err(|e| Failure::new(EXIT_RUNTIME, format!("cannot start the async runtime: {e}")))?;
    let result = rt.block_on(async {
        Daemon::build(loaded, env, token, plugins, log_level)
            .await?
            .run()
            .await
    });
    rt.shutdown_timeout(Duration::from_millis(200));
    runner::cgroup::remove_subtree();
    if let Err(f) = &result {
        tracing::error!(code = f.code, "{}", f.message);
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
) -> Result<Option<LogGuard>, Failure> {
    let mut input = LoggingInput::from_loaded(loaded, VERSION);
    input.no_color = no_color;
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
                "cannot read the token file {} (listen.auth_token_file {}): {e}; create it or point the key at the right file",
                path.display(),
                loaded.origin("listen.auth_token_file")
            ),
        )
    })?;
    if token.is_empty() {
        return Err(Failure::new(
            EXIT_CONFIG,
            format!(
                "the token file {} (listen.auth_token_file {}) is empty; write the token into it",
                path.display(),
                loaded.origin("listen.auth_token_file")
            ),
        ));
    }
    Ok(Some(token))
}

/// The TCP listener's limits; the connection cap stays below the open-file
/// limit (already raised by [`harden::process`]), with a warning if lowered.
fn tcp_limits(l: &oj_config::ListenConfig) -> listen::TcpLimits {
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
fn step_base_env(env: &Environment) -> BTreeMap<String, String> {
    env.vars
        .iter()
        .filter(|(k, _)| !k.starts_with("OJ_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The listeners bound in the build phase, not yet serving.
struct Bound {
    unix: Option<(
        tokio::net::UnixListener,
        std::path::PathBuf,
        harden::SocketId,
    )>,
    tcp: Option<tokio::net::TcpListener>,
    admin: Option<(tokio::net::TcpListener, std::net::SocketAddr)>,
    tls: Option<oj_adapters::tls::ServerTls>,
    /// API listeners as URLs, for status and the ready line.
    urls: Vec<String>,
}

/// A built daemon: every subsystem started, each with its handle. `run`
/// serves until asked to stop and drains; a reload touches only
/// `reloader` (which holds the live slices: engine, log level, config watch).
pub struct Daemon {
    requests: watch::Receiver<u32>,
    held: lock::LockHandle,
    leader: watch::Receiver<bool>,
    engine: engine::EngineHandle,
    engine_task: tokio::task::JoinHandle<()>,
    notifier: notify::LiveNotifier,
    servers: Vec<tokio::task::JoinHandle<()>>,
    /// The Unix socket, removed at exit only while it is still ours.
    socket: Option<(std::path::PathBuf, harden::SocketId)>,
    stop_tx: watch::Sender<bool>,
    draining_tx: watch::Sender<bool>,
    reloader: Reloader,
    hangup: tokio::signal::unix::Signal,
    live_config: watch::Receiver<Arc<RuntimeConfig>>,
}

impl Daemon {
    /// The build phase: signals, Kubernetes, lock, state, listeners, engine,
    /// notifier, servers. Nothing here waits for work.
    async fn build(
        loaded: Loaded,
        env: Environment,
        token: Option<Secret>,
        plugins: Plugins,
        log_level: Option<LevelControl>,
    ) -> Result<Daemon, Failure> {
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
        let hangup = reload::hangup_signal().map_err(|e| {
            Failure::new(
                EXIT_RUNTIME,
                format!("cannot install the SIGHUP (reload) handler: {e}"),
            )
        })?;
        // Blocked since `main`'s first instruction; a SIGHUP that came
        // meanwhile is now a reload (this runs on the thread that started
        // the runtime).
        early_signals::unblock_hangup();

        // Kubernetes (pods, lease) when configured; a lease that cannot reach
        // the API is a configuration problem.
        let metrics = Arc::new(metrics::Metrics::new(VERSION, &loaded.profile));
        let kube = k8s::plugins(&cfg, &env, &metrics)
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

        // Orphans of steps come to this process (and are reaped), also as PID 1.
        if !runner::leftovers::become_subreaper() {
            tracing::warn!(
                "cannot become a child subreaper; leftovers of steps are found by a scan of /proc"
            );
        }
        tokio::spawn(runner::leftovers::run_reaper());
        // This daemon's mark (its steps carry it) and its cgroup subtree:
        // the leftover sweeps touch nothing else (see `identity`).
        let mark = identity::load_mark(&state_dir).map_err(|e| {
            Failure::new(
                EXIT_RUNTIME,
                format!(
                    "cannot keep the daemon's mark in {}: {e}; make daemon.state_dir writable",
                    state_dir.join(identity::MARK_FILE).display()
                ),
            )
        })?;
        match runner::cgroup::init(mark) {
            Ok(root) => {
                tracing::info!(cgroup = %root.display(), "leftovers: each shell step runs in its own cgroup (v2), ended with cgroup.kill")
            }
            Err(why) => tracing::info!(
                reason = why,
                "leftovers: no cgroup v2 for steps; what a step leaves is found by a /proc scan"
            ),
        }

        let (storage, state) = open_state(&state_dir)?;
        let bound = bind_listeners(&loaded).await?;

        // Engine, runners, notifier.
        if bound.tls.is_some() {
            metrics.enable_tls();
        }
        let runners = Runners {
            shell: Arc::new(ShellRunner {
                shell: cfg.jobs.shell.clone(),
                base_env: step_base_env(&env),
                kill_grace: KILL_GRACE,
                kill_leftovers: cfg.jobs.kill_leftovers,
            }),
            container: plugins.container_runner.unwrap_or(kube.container_runner),
        };
        let pod_runner = kube.pods;
        let logs_dir = state_dir.join("logs");
        let engine_cfg = EngineConfig {
            max_concurrent: cfg.jobs.max_concurrent.max(1) as usize,
            step_timeout: cfg.jobs.step_timeout,
            logs_dir: logs_dir.clone(),
            reload_on_lead: cfg.lock.strategy == oj_config::LockStrategy::Lease,
            allow_shell: cfg.jobs.allow_shell,
            retention: crate::engine::Retention::from_config(&cfg.jobs),
            queues: crate::engine::configured_queues(&cfg),
        };
        let (mut engine, handle) = Engine::new(
            state,
            storage,
            engine_cfg.clone(),
            runners,
            metrics.clone(),
            leader.clone(),
        );
        if let Some(hook) = kube.on_lead {
            engine.set_on_lead(hook);
        }
        engine.set_schedules(engine::schedules::system_clock(), &cfg.schedules);
        let notifier = start_notifier(&loaded, &mut engine, &handle, &metrics)?;
        let engine_task = tokio::spawn(engine.run());

        // Serve.
        let (draining_tx, draining_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let config_status = ConfigStatus::new(loaded.clone());
        let profile = loaded.profile.clone();
        let info = Arc::new(DaemonInfo {
            version: VERSION.to_string(),
            profile: loaded.profile.clone(),
            instance: cfg.daemon.instance.clone(),
            started,
            listeners: bound.urls.clone(),
            admin: bound.admin.as_ref().map(|(_, a)| format!("http://{a}")),
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
            config: Some(config_status.clone()),
            pod_steps: pod_runner.clone(),
        };
        let admin_state = admin::AdminState {
            engine: handle.clone(),
            leader: leader.clone(),
            draining: draining_rx.clone(),
            metrics: metrics.clone(),
            notifier: notifier.clone(),
            tls: bound.tls.clone(),
        };
        let listeners = bound.urls.clone();
        let tls = bound.tls.clone();
        let socket = bound.unix.as_ref().map(|(_, path, id)| (path.clone(), *id));
        let servers = serve(
            bound,
            shared,
            admin_state,
            &cfg,
            token.as_ref(),
            &stop_rx,
            &metrics,
        );

        let (config_tx, live_config) = watch::channel(Arc::new(cfg.clone()));
        let reloader = Reloader::new(
            loaded,
            env,
            config_status,
            LiveSlices {
                engine: handle.clone(),
                engine_base: engine_cfg,
                log_level,
                notifier: notifier.clone(),
                profile: profile.clone(),
                tls,
                pods: pod_runner,
                config: config_tx,
                metrics: metrics.clone(),
            },
            metrics,
        );
        tracing::info!(
            listeners = %listeners.join(" "),
            lock = lock_name,
            instance = %cfg.daemon.instance,
            state_dir = %state_dir.display(),
            startup_ms = started.elapsed().as_millis() as u64,
            "daemon ready"
        );
        ready::announce(&cfg, VERSION, &profile, &listeners);
        Ok(Daemon {
            requests,
            held,
            leader,
            engine: handle,
            engine_task,
            notifier,
            servers,
            socket,
            stop_tx,
            draining_tx,
            reloader,
            hangup,
            live_config,
        })
    }

    /// The run phase: serve and reload until asked to stop (or until
    /// leadership is lost), then drain.
    async fn run(self) -> Result<i32, Failure> {
        let Daemon {
            requests,
            held,
            leader,
            engine: handle,
            mut engine_task,
            notifier,
            servers,
            socket,
            stop_tx,
            draining_tx,
            reloader,
            hangup,
            live_config,
        } = self;
        let reload_task = tokio::spawn(reloader.run(hangup, stop_tx.subscribe()));
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

        // `shutdown.*` applies live: the drain uses the value running now.
        let (drain_timeout, container_steps) = {
            let live = live_config.borrow();
            (live.shutdown.drain_timeout, live.shutdown.container_steps)
        };
        let drain_started = Instant::now();
        let (deadline, report) = drain::drain(
            &handle,
            &draining_tx,
            requests,
            drain_timeout,
            container_steps,
        )
        .await;
        if let Some(n) = notifier.current() {
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
        let _ = reload_task.await;
        for s in servers {
            let _ = tokio::time::timeout(Duration::from_millis(300), s).await;
        }
        if let Some((path, id)) = socket {
            harden::release_socket(&path, id);
        }
        held.release().await;
        tracing::info!(
            terminated = report.terminated.len(),
            finished_in_window = report.completed_in_window,
            drain_ms = drain_started.elapsed().as_millis() as u64,
            "daemon stopped"
        );
        ready::stopped(drain_started.elapsed(), report.terminated.len());
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
}

/// Starts the notifier for `notify.*` (none for `backend = "none"`) and
/// plugs it into the engine behind a [`notify::LiveNotifier`].
fn start_notifier(
    loaded: &Loaded,
    engine: &mut Engine,
    handle: &engine::EngineHandle,
    metrics: &Arc<metrics::Metrics>,
) -> Result<notify::LiveNotifier, Failure> {
    let cfg = &loaded.config;
    let pending: Vec<_> = engine
        .pending_notifications()
        .iter()
        .map(notify::to_adapter)
        .collect();
    if cfg.notify.backend == NotifyBackend::None {
        // Nothing will deliver what an earlier backend left pending: finish
        // it now, so the WAL and snapshot do not carry it forever.
        for p in &pending {
            handle.ack_notification(&p.id);
        }
    }
    let n = reload::build_notifier(cfg, &loaded.profile, handle, pending, metrics)
        .map_err(|e| Failure::new(EXIT_CONFIG, e.to_string()))?;
    let live = notify::LiveNotifier::new(n);
    engine.set_notifier(Arc::new(notify::NotifierSink(live.clone())));
    Ok(live)
}

/// Spawns a server per bound listener (and the TLS reloader).
fn serve(
    bound: Bound,
    shared: Shared,
    admin_state: admin::AdminState,
    cfg: &RuntimeConfig,
    token: Option<&Secret>,
    stop_rx: &watch::Receiver<bool>,
    metrics: &Arc<metrics::Metrics>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let api = ui::app(api::router(shared), cfg.ui.enabled);
    let max = cfg.listen.max_request_bytes;
    let mut servers = Vec::new();
    if let Some((l, _, _)) = bound.unix {
        servers.push(tokio::spawn(listen::serve_unix(
            l,
            metrics::count_requests(
                listen::wrap(api.clone(), max, None),
                metrics.clone(),
                "unix",
            ),
            listen::TcpLimits::from_config(&cfg.listen, listen::UNIX_MAX_CONNECTIONS),
            stop_rx.clone(),
        )));
    }
    if let Some(l) = bound.tcp {
        let auth = listen::Auth::new(token.map(Secret::expose));
        let router = if cfg.ui.enabled {
            let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
            let gate = ui::Gate::new(auth, bound.tls.is_some(), port, &cfg.ui);
            ui::wrap_tcp(listen::wrap(api.clone(), max, None), gate)
        } else {
            listen::wrap(api.clone(), max, Some(auth))
        };
        servers.push(tokio::spawn(listen::serve_tcp(
            l,
            bound.tls.clone(),
            metrics::count_requests(router, metrics.clone(), "tcp"),
            tcp_limits(&cfg.listen),
            "tcp",
            stop_rx.clone(),
        )));
    }
    if let Some(tls) = &bound.tls {
        let mut stop = stop_rx.clone();
        tls.spawn_reloader(cfg.tls.reload_interval, async move {
            let _ = stop.wait_for(|s| *s).await;
        });
    }
    if let Some((l, local)) = bound.admin {
        let router = metrics::count_requests(admin::router(admin_state), metrics.clone(), "admin");
        servers.push(tokio::spawn(listen::serve_tcp(
            l,
            None,
            router,
            listen::TcpLimits::from_config(&cfg.listen, listen::ADMIN_MAX_CONNECTIONS),
            "admin",
            stop_rx.clone(),
        )));
        tracing::info!(addr = %local, "admin endpoints listening (/healthz /readyz /metrics)");
    }
    servers
}
