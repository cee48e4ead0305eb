//! The commands about the daemon itself: `oj daemon stop` (ask it to
//! drain, then wait for it to be gone) and the running configuration that
//! `oj config show --daemon` and `oj config diff` read from `GET /v1/config`.

use std::path::Path;
use std::time::{Duration, Instant};

use oj_api::{ConfigAnswer, ErrorCode, EventKind, ShutdownAnswer, Status};
use oj_config::{Environment, LoadOptions};

use super::{connect, runtime};
use crate::api_client::{ApiClient, Endpoint};
use crate::config_cmds;
use crate::exit::{self, Failure};
use crate::table;

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
    let answer: ConfigAnswer = runtime()?.block_on(async {
        client
            .get_json("/v1/config")
            .await
            .map_err(|e| e.into_failure(&client))
    })?;
    Ok(DaemonConfig {
        view: oj_config::render::View {
            header: format!(
                "running daemon {}: profile {}, config generation {}",
                client.endpoint().display(),
                answer.profile.as_deref().unwrap_or("?"),
                answer.generation
            ),
            tree: answer.config,
            // Layer names as the daemon displays them, typed again here at the edge.
            sources: answer
                .sources
                .into_iter()
                .filter_map(|(k, l)| Some((k, l.parse().ok()?)))
                .collect(),
        },
        profile: answer.profile,
        files: answer.files,
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
        let before: Status = client
            .get_json("/v1/status")
            .await
            .map_err(|e| e.into_failure(&client))?;
        let running = before.jobs.map_or(0, |counts| counts.running);
        // Told, not asked: the event stream ends when the daemon's engine
        // has stopped. Opened before the request, so that end is not missed.
        let events = crate::events_client::EventStream::open(&client, "/v1/events").await;
        client
            .post_json::<ShutdownAnswer, _>("/v1/shutdown", &serde_json::json!({}))
            .await
            .map_err(|e| match e.refusal(&[ErrorCode::Standby]) {
                Ok(body) => Failure::runtime(format!(
                    "the daemon at {addr} is on standby and refused the stop request \
                     ({}); send it SIGTERM instead (kill, or delete its pod)",
                    body.error
                )),
                Err(other) => other.into_failure(&client),
            })?;
        let status_pid = before
            .pid
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
                    if ev.event_kind() == EventKind::Status
                        && let Some(Status {
                            jobs: Some(counts), ..
                        }) = ev.data_as::<Status>()
                    {
                        last_running = counts.running;
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
