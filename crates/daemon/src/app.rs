//! The daemon's life as types (the shape of linkerd2-proxy's `App`):
//!
//! - [`Daemon::build`] checks the machine and prepares: Kubernetes (a
//!   client, no request), the lock, the state, the listeners (bound, not
//!   serving), the engine (built, not running). It starts no task of the
//!   daemon's own, so a failure here leaves nothing running behind.
//! - [`Daemon::spawn`] starts: the lock's keeper (a lease's election), the
//!   in-cluster checks, the reaper, the notifier, the engine, the servers,
//!   the reloader; then says "ready".
//! - [`RunningDaemon::run`] serves until its shutdown input (or `POST
//!   /v1/shutdown`, or a lost lock) asks it to stop, then drains (all five
//!   phases are [`drain::drain`]) and releases the socket and the lock.
//!
//! Every failure is a [`StartError`]; the binary prints it and picks the
//! exit code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oj_adapters::k8s::preflight::ChecksAtStart;
use oj_adapters::logging::LevelControl;
use oj_config::{Environment, Loaded, NotifyBackend, RuntimeConfig, Secret, ShutdownConfig};
use tokio::signal::unix::Signal;
use tokio::sync::watch;

use crate::api::{DaemonInfo, Shared};
use crate::drain::{ShutdownRequests, ShutdownTrigger};
use crate::engine::{Engine, EngineHandle};
use crate::live::{self, Live, Slices};
use crate::lock::LockError;
use crate::reload::{ConfigStatus, Reloader};
use crate::runner::Runners;
use crate::runner::shell::{KILL_GRACE, ShellRunner};
use crate::startup::{Bound, bind_listeners, open_state};
use crate::{
    Plugins, StartError, VERSION, admin, api, drain, early_signals, engine, harden, identity, k8s,
    listen, lock, metrics, notify, ready, reload, runner, step_base_env, tcp_limits, ui,
};

/// A built daemon: the lock held (a lease: its election built, not yet
/// competing), the state loaded, the listeners bound, the engine built;
/// nothing running yet. [`Daemon::spawn`] starts it.
pub struct Daemon {
    loaded: Loaded,
    env: Environment,
    token: Option<Secret>,
    started: Instant,
    trigger: ShutdownTrigger,
    requests: watch::Receiver<u32>,
    hangup: Signal,
    metrics: Arc<metrics::Metrics>,
    held: lock::LockHandle,
    lock_name: &'static str,
    engine: Engine,
    handle: EngineHandle,
    /// Every live slice of the configuration, published by reloads.
    slices: Slices,
    bound: Bound,
    pods: Option<Arc<k8s::PodStepRunner>>,
    /// The in-cluster checks, run in the background from spawn on.
    cluster_checks: Option<ChecksAtStart>,
    log_level: Option<LevelControl>,
}

/// A running daemon: the handles of what [`Daemon::spawn`] started.
pub struct RunningDaemon {
    trigger: ShutdownTrigger,
    requests: watch::Receiver<u32>,
    held: lock::LockHandle,
    engine: EngineHandle,
    engine_task: tokio::task::JoinHandle<()>,
    notifier: notify::LiveNotifier,
    servers: Vec<tokio::task::JoinHandle<()>>,
    reload_task: tokio::task::JoinHandle<()>,
    /// The Unix socket, removed at exit only while it is still ours.
    socket: Option<(std::path::PathBuf, harden::SocketId)>,
    stop_tx: watch::Sender<bool>,
    draining_tx: watch::Sender<bool>,
    /// `shutdown.*` as it applies when the drain starts.
    shutdown: Live<ShutdownConfig>,
}

impl Daemon {
    /// The build phase: SIGHUP, Kubernetes, lock, state, listeners, engine.
    /// Nothing here starts work or waits for it.
    pub async fn build(
        loaded: Loaded,
        env: Environment,
        token: Option<Secret>,
        plugins: Plugins,
        log_level: Option<LevelControl>,
    ) -> Result<Daemon, StartError> {
        let started = Instant::now();
        let cfg: RuntimeConfig = loaded.config.clone();
        let state_dir = cfg.daemon.state_dir.clone();
        let (trigger, requests) = ShutdownTrigger::new();
        let hangup = reload::hangup_signal().map_err(|e| {
            StartError::Runtime(format!("cannot install the SIGHUP (reload) handler: {e}"))
        })?;
        // Blocked since `main`'s first instruction; a SIGHUP that came
        // meanwhile is now a reload (this runs on the thread that started
        // the runtime).
        early_signals::unblock_hangup();

        // Kubernetes (pods, lease) when configured; a lease that cannot reach
        // the API is a configuration problem.
        let metrics = Arc::new(metrics::Metrics::new(VERSION, &loaded.profile));
        let slices = Slices::new(&cfg);
        let kube = k8s::plugins(&cfg, &slices, &env, &metrics)
            .await
            .map_err(StartError::Config)?;

        // Lock first: nothing below may touch a state_dir another daemon owns.
        let strategy = match (cfg.lock.strategy, plugins.lease, kube.lease) {
            (oj_config::LockStrategy::Lease, Some(lease), _)
            | (oj_config::LockStrategy::Lease, None, Some(lease)) => lease,
            _ => lock::from_config(&cfg).map_err(|e| StartError::Config(e.to_string()))?,
        };
        let lock_name = strategy.name();
        let held = strategy.acquire().await.map_err(|e| match e {
            LockError::Held { .. } => StartError::Locked(e.to_string()),
            _ => StartError::Config(e.to_string()),
        })?;
        let leader = held.leader.clone();

        // Orphans of steps come to this process (and are reaped), also as PID 1.
        if !runner::leftovers::become_subreaper() {
            tracing::warn!(
                "cannot become a child subreaper; leftovers of steps are found by a scan of /proc"
            );
        }
        // This daemon's mark (its steps carry it) and its cgroup subtree:
        // the leftover sweeps touch nothing else (see `identity`).
        let mark = identity::load_mark(&state_dir).map_err(|e| {
            StartError::Runtime(format!(
                "cannot keep the daemon's mark in {}: {e}; make daemon.state_dir writable",
                state_dir.join(identity::MARK_FILE).display()
            ))
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

        // The engine, built around the state and the runners.
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
        let (mut engine, handle) = Engine::new(
            state,
            storage,
            slices.engine(),
            runners,
            metrics.clone(),
            leader,
        );
        if let Some(hook) = kube.on_lead {
            engine.set_on_lead(hook);
        }
        engine.set_schedules(engine::schedules::system_clock(), slices.schedules());
        Ok(Daemon {
            loaded,
            env,
            token,
            started,
            trigger,
            requests,
            hangup,
            metrics,
            held,
            lock_name,
            engine,
            handle,
            slices,
            bound,
            pods: kube.pods,
            cluster_checks: kube.checks,
            log_level,
        })
    }

    /// A handle to the engine (which answers once spawned).
    pub fn engine(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// The API listeners, bound, as URLs.
    pub fn listeners(&self) -> &[String] {
        &self.bound.urls
    }

    /// The spawn phase: the lock's keeper, the in-cluster checks, the
    /// reaper, the notifier, the engine, the servers and the reloader
    /// start; the daemon says it is ready.
    pub fn spawn(self) -> Result<RunningDaemon, StartError> {
        let Daemon {
            loaded,
            env,
            token,
            started,
            trigger,
            requests,
            hangup,
            metrics,
            mut held,
            lock_name,
            mut engine,
            handle,
            slices,
            bound,
            pods,
            cluster_checks,
            log_level,
        } = self;
        let cfg = &loaded.config;
        // A lease is competed for (and held, and renewed) from here on.
        held.start();
        if let Some(checks) = cluster_checks {
            checks.spawn();
        }
        let leader = held.leader.clone();
        let parts = notify::NotifierParts {
            instance: cfg.daemon.instance.clone(),
            profile: loaded.profile.clone(),
            ui_url: cfg.ui.url.clone(),
            engine: handle.clone(),
            metrics: metrics.clone(),
        };
        let notifier = start_notifier(&cfg.notify, &parts, &mut engine)?;
        // What is built from a live slice follows it from now on.
        notifier.follow(slices.notify(), parts);
        if let Some(level) = log_level {
            live::follow(slices.log_level(), move |new| {
                if let Err(e) = level.set(new) {
                    tracing::error!(error = %e, "cannot apply the new log.level; the old one stays");
                }
            });
        }
        if let Some(tls) = &bound.tls {
            follow_tls(tls.clone(), slices.tls());
        }
        tokio::spawn(runner::leftovers::run_reaper());
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
            logs_dir: slices.engine().get().logs_dir.clone(),
            pods: Some(slices.pods()),
            config: Some(config_status.clone()),
            pod_steps: pods.clone(),
        };
        let admin_state = admin::AdminState {
            engine: handle.clone(),
            leader,
            draining: draining_rx,
            metrics: metrics.clone(),
            notifier: notifier.clone(),
            tls: bound.tls.clone(),
        };
        let listeners = bound.urls.clone();
        let socket = bound.unix.as_ref().map(|(_, path, id)| (path.clone(), *id));
        let servers = serve(
            bound,
            shared,
            admin_state,
            cfg,
            token.as_ref(),
            &stop_rx,
            &metrics,
        );

        let shutdown = slices.shutdown();
        let state_dir = cfg.daemon.state_dir.clone();
        let instance = cfg.daemon.instance.clone();
        let announce_cfg = cfg.clone();
        let reloader = Reloader::new(loaded, env, config_status, slices, handle.clone(), metrics);
        let reload_task = tokio::spawn(reloader.run(hangup, stop_tx.subscribe()));
        tracing::info!(
            listeners = %listeners.join(" "),
            lock = lock_name,
            instance = %instance,
            state_dir = %state_dir.display(),
            startup_ms = started.elapsed().as_millis() as u64,
            "daemon ready"
        );
        ready::announce(&announce_cfg, VERSION, &profile, &listeners);
        Ok(RunningDaemon {
            trigger,
            requests,
            held,
            engine: handle,
            engine_task,
            notifier,
            servers,
            reload_task,
            socket,
            stop_tx,
            draining_tx,
            shutdown,
        })
    }
}

impl RunningDaemon {
    /// The run phase: serve and reload until `shutdown` (or the API) asks
    /// to stop, or leadership is lost; then drain, stop the servers and
    /// release the socket and the lock.
    pub async fn run(self, requests_in: ShutdownRequests) -> Result<(), StartError> {
        let RunningDaemon {
            trigger,
            requests,
            held,
            engine: handle,
            mut engine_task,
            notifier,
            servers,
            reload_task,
            socket,
            stop_tx,
            draining_tx,
            shutdown,
        } = self;
        drain::forward(requests_in, trigger);
        let mut requests_rx = requests.clone();
        let mut leader_rx = held.leader.clone();
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
        let shutdown_cfg = shutdown.get();
        let drain_started = Instant::now();
        let report = drain::drain(
            &handle,
            &draining_tx,
            requests,
            &shutdown_cfg,
            notifier.current(),
        )
        .await;
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
        if let Err(e) = report.snapshot {
            return Err(StartError::Runtime(format!(
                "the final snapshot failed: {e}"
            )));
        }
        if engine_failed {
            return Err(StartError::Runtime(
                "the engine stopped unexpectedly (see the daemon log)".into(),
            ));
        }
        if lost_leadership {
            return Err(StartError::Runtime(
                "lost the lock (leadership) while running; drained and stopped".into(),
            ));
        }
        Ok(())
    }
}

/// New connections use a new `tls.*` slice's certificate, key, client CA
/// and minimum version; a set that does not load keeps the old one serving.
fn follow_tls(tls: oj_adapters::tls::ServerTls, slice: Live<oj_config::TlsConfig>) {
    live::follow(slice, move |new| match tls.reconfigure(new) {
        Ok(()) => tracing::info!(
            target: "oj::tls",
            serial = %tls.current_cert().serial,
            "TLS: new tls.* settings in use for new connections"
        ),
        Err(e) => tracing::error!(
            target: "oj::tls",
            error = %e,
            "cannot use the new tls.* settings; still serving the previous ones"
        ),
    });
}

/// Starts the notifier for `notify.*` (none for `backend = "none"`) and
/// plugs it into the engine behind a [`notify::LiveNotifier`].
fn start_notifier(
    notify: &oj_config::NotifyConfig,
    parts: &notify::NotifierParts,
    engine: &mut Engine,
) -> Result<notify::LiveNotifier, StartError> {
    let handle = &parts.engine;
    let pending: Vec<_> = engine
        .pending_notifications()
        .iter()
        .map(notify::to_adapter)
        .collect();
    if notify.backend == NotifyBackend::None {
        // Nothing will deliver what an earlier backend left pending: finish
        // it now, so the WAL and snapshot do not carry it forever.
        for p in &pending {
            handle.ack_notification(&p.id);
        }
    }
    let n = notify::build_notifier(notify, parts, pending)
        .map_err(|e| StartError::Config(e.to_string()))?;
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
