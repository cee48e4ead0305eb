//! Live reload (SPEC §7.7): on SIGHUP, or when a config file read at start
//! changes while `daemon.watch_config` holds, the daemon loads and validates
//! the whole configuration again through the same path as at start
//! (`oj_config::load` with the start's options and environment, then the
//! preflight). An invalid result changes nothing. A valid one is split by
//! the table of live keys (`oj_config::keys::LIVE`): live keys go to each
//! subsystem's slice at once; the others keep their start values and are
//! listed as pending a restart.
//!
//! Files are watched by polling their metadata through the path (following
//! symlinks), not with inotify: a ConfigMap update swaps the `..data`
//! symlink of the mounted directory, which an inotify watch on the file's
//! old inode never sees, and a stat of a few files twice a second costs
//! nothing and needs no dependency.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use oj_config::{Environment, Layer, Loaded, RuntimeConfig, keys, render};
use serde_json::Value;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use crate::engine::EngineHandle;
use crate::live::Slices;
use crate::metrics::Metrics;

/// How often the watched files' metadata is read.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The outcome of the last reload.
#[derive(Debug, Clone)]
pub struct LastReload {
    pub at: SystemTime,
    pub accepted: bool,
    /// `SIGHUP` or `file changed: PATH`.
    pub reason: String,
    /// Every problem of a rejected reload (no secrets: config errors never hold one).
    pub errors: Vec<String>,
    /// Keys a successful reload changed.
    pub changed: Vec<String>,
}

/// The configuration the daemon runs with, as `GET /v1/config` and `oj
/// status` show it.
#[derive(Debug, Clone)]
pub struct ConfigState {
    /// 1 at start, +1 per accepted reload.
    pub generation: u64,
    /// What is in effect: the last accepted config, with restart-only keys
    /// at the values the daemon started with.
    pub running: Arc<Loaded>,
    /// Restart-only keys whose value on disk differs from the running one.
    pub pending_restart: Vec<String>,
    pub last_reload: Option<LastReload>,
}

/// Shared, read-mostly view of [`ConfigState`].
#[derive(Clone)]
pub struct ConfigStatus(Arc<RwLock<ConfigState>>);

impl ConfigStatus {
    pub fn new(loaded: Loaded) -> ConfigStatus {
        ConfigStatus(Arc::new(RwLock::new(ConfigState {
            generation: 1,
            running: Arc::new(loaded),
            pending_restart: Vec::new(),
            last_reload: None,
        })))
    }

    /// The configuration in effect now (cheap: shared, not copied). A
    /// handler that needs a live key reads it here per request.
    pub fn running(&self) -> Arc<Loaded> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .running
            .clone()
    }

    pub fn snapshot(&self) -> ConfigState {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut ConfigState)) {
        f(&mut self.0.write().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Loads the configuration again, decides what applies, applies it.
pub struct Reloader {
    env: Environment,
    /// The configuration the daemon started with: restart-only keys stay here.
    started: Loaded,
    status: ConfigStatus,
    /// Where the running configuration goes: every subsystem's slice.
    slices: Slices,
    /// Asked which removed queues still hold jobs.
    engine: EngineHandle,
    metrics: Arc<Metrics>,
    /// Restart-only keys already logged as pending (logged once each).
    announced: Vec<String>,
    /// The files the last accepted load read: a reload must find them whole.
    read: crate::reload_guard::ReadAtStart,
}

impl Reloader {
    pub fn new(
        started: Loaded,
        env: Environment,
        status: ConfigStatus,
        slices: Slices,
        engine: EngineHandle,
        metrics: Arc<Metrics>,
    ) -> Reloader {
        Reloader {
            env,
            status,
            slices,
            engine,
            metrics,
            announced: Vec::new(),
            read: crate::reload_guard::ReadAtStart::of(&started),
            started,
        }
    }

    /// One reload; returns whether it was accepted.
    pub fn reload(&mut self, reason: &str) -> bool {
        tracing::info!(reason, "reloading the configuration");
        let since = std::time::Instant::now();
        loop {
            match self.attempt() {
                Ok(new) => {
                    self.read = crate::reload_guard::ReadAtStart::of(&new);
                    self.accept(new, reason);
                    return true;
                }
                // A write in progress is waited out, then tried again.
                Err(_) if self.read.wait_for_writes(since) => {
                    tracing::info!("config files changed while reloading; trying again");
                }
                Err(errors) => {
                    self.reject(errors, reason);
                    return false;
                }
            }
        }
    }

    /// Loads and checks the configuration once; a file read at start that
    /// cannot be read whole fails it (see [`crate::reload_guard`]).
    fn attempt(&self) -> Result<Loaded, Vec<String>> {
        let problems = self.read.problems();
        if !problems.is_empty() {
            return Err(problems);
        }
        oj_config::load(&self.started.options, &self.env)
            .map_err(|errors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>())
            .and_then(|loaded| {
                let report = oj_adapters::preflight::check(
                    &loaded,
                    &self.env,
                    oj_adapters::preflight::Mode::Start,
                );
                let mut errors = report.errors;
                errors.extend(crate::engine::removed_queues_in_use(
                    &self.status.running().config,
                    &loaded.config,
                    &self.engine,
                ));
                if errors.is_empty() {
                    Ok(loaded)
                } else {
                    Err(errors)
                }
            })
    }

    fn reject(&mut self, errors: Vec<String>, reason: &str) {
        for e in &errors {
            tracing::error!(reason, "config reload rejected: {e}");
        }
        tracing::error!(
            problems = errors.len(),
            "the new configuration is invalid; nothing changed (fix it and reload again)"
        );
        let generation = self.status.snapshot().generation;
        self.status.update(|s| {
            s.last_reload = Some(LastReload {
                at: SystemTime::now(),
                accepted: false,
                reason: reason.to_string(),
                errors,
                changed: Vec::new(),
            })
        });
        self.metrics.config_reloaded(false, generation);
    }

    fn accept(&mut self, new: Loaded, reason: &str) {
        let before = self.status.snapshot();
        let (running, pending) = running_config(&self.started, &new);
        let changed = changed_keys(&before.running.config, &running.config);
        for key in &pending {
            if !self.announced.contains(key) {
                tracing::warn!(key = %key, "config key changed on disk but applies only at a restart; restart the daemon to use it");
                self.announced.push(key.clone());
            }
        }
        self.announced.retain(|k| pending.contains(k));
        // Each subsystem reads its slice per use; those that build
        // something from it (log filter, TLS, notifier) follow it.
        self.slices.publish(&running.config);
        if !changed.is_empty() {
            tracing::info!(changed = %changed.join(" "), "config reloaded: live keys applied");
        }
        let generation = before.generation + 1;
        self.status.update(|s| {
            s.generation = generation;
            s.running = Arc::new(running);
            s.pending_restart = pending;
            s.last_reload = Some(LastReload {
                at: SystemTime::now(),
                accepted: true,
                reason: reason.to_string(),
                errors: Vec::new(),
                changed,
            });
        });
        self.metrics.config_reloaded(true, generation);
    }

    /// The files whose change triggers a reload (none when watching is
    /// off): the config and user profile files read, and the default file even while it does not exist
    /// (creating it is a change too) unless `OJ_CONFIG` replaces it.
    fn watched(&self) -> Vec<PathBuf> {
        let running = self.status.running();
        if !running.config.daemon.watch_config {
            return Vec::new();
        }
        let mut files = running.files.clone();
        files.extend(running.profile_files.iter().cloned());
        if !self.env.vars.contains_key(oj_config::OJ_CONFIG)
            && let Some(default) = oj_config::default_config_file(&self.env, running.base)
            && !files.contains(&default)
        {
            files.push(default);
        }
        files
    }

    /// Reloads on SIGHUP and on file changes until `stop` turns true.
    pub async fn run(mut self, mut hangup: Signal, mut stop: watch::Receiver<bool>) {
        let mut watcher = FileWatch::new(self.watched());
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reason = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                Some(()) = hangup.recv() => "SIGHUP".to_string(),
                // Stat and load are blocking file I/O: keep them off the
                // other tasks' way (the daemon's runtime is multi-threaded).
                _ = tick.tick() => match tokio::task::block_in_place(|| watcher.poll()) {
                    Some(path) => format!("file changed: {}", path.display()),
                    None => continue,
                },
            };
            tokio::task::block_in_place(|| self.reload(&reason));
            // Watch what the configuration now says (files, watch_config),
            // from the metadata as it is now.
            watcher = FileWatch::new(self.watched());
        }
    }
}

/// Installs the SIGHUP handler (SIGHUP would otherwise end the process).
pub fn hangup_signal() -> std::io::Result<Signal> {
    signal(SignalKind::hangup())
}

/// The configuration in effect after a reload to `new`: restart-only keys
/// keep the values (and sources) the daemon started with. Returns it with
/// the restart-only keys whose value differs.
fn running_config(started: &Loaded, new: &Loaded) -> (Loaded, Vec<String>) {
    let mut config = started.config.clone();
    take_live(&mut config, &new.config);
    let mut sources = new.sources.clone();
    let mut pending = Vec::new();
    for key in changed_keys(&started.config, &new.config) {
        if keys::applies_live(&key) {
            continue;
        }
        restore_sources(&mut sources, &started.sources, &key);
        pending.push(key);
    }
    let running = Loaded {
        config,
        sources,
        ..new.clone()
    };
    (running, pending)
}

/// Copies into `running` the values of `new` that apply live: the fields
/// of the table of live keys (`oj_config::keys::LIVE`, and the client-only
/// keys, which a daemon does not use). A test holds the two together.
fn take_live(running: &mut RuntimeConfig, new: &RuntimeConfig) {
    running.log.level = new.log.level.clone();
    running.notify = new.notify.clone();
    running.tls.cert = new.tls.cert.clone();
    running.tls.key = new.tls.key.clone();
    running.tls.client_ca = new.tls.client_ca.clone();
    running.tls.min_version = new.tls.min_version;
    running.pods = new.pods.clone();
    running.jobs.max_concurrent = new.jobs.max_concurrent;
    running.jobs.step_timeout = new.jobs.step_timeout;
    running.jobs.allow_shell = new.jobs.allow_shell;
    running.jobs.keep_finished = new.jobs.keep_finished;
    running.jobs.max_finished = new.jobs.max_finished;
    running.shutdown = new.shutdown.clone();
    running.queues = new.queues.clone();
    running.schedules = new.schedules.clone();
    running.client = new.client.clone();
}

fn restore_sources(
    sources: &mut BTreeMap<String, Layer>,
    start: &BTreeMap<String, Layer>,
    key: &str,
) {
    let under = |k: &String| k == key || k.starts_with(&format!("{key}."));
    sources.retain(|k, _| !under(k));
    sources.extend(
        start
            .iter()
            .filter(|(k, _)| under(k))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
}

/// The keys (from the key table, so every key counts, whoever added it)
/// whose values differ between two configurations.
pub fn changed_keys(a: &RuntimeConfig, b: &RuntimeConfig) -> Vec<String> {
    let a = serde_json::to_value(a).unwrap_or(Value::Null);
    let b = serde_json::to_value(b).unwrap_or(Value::Null);
    let mut changed: Vec<String> = keys::KEYS
        .iter()
        .filter(|k| !k.name.contains('*'))
        .filter(|k| render::lookup(&a, k.name) != render::lookup(&b, k.name))
        .map(|k| k.name.to_string())
        .collect();
    changed.extend(changed_named_keys(&a, &b));
    changed
}

/// The changed keys of user-named tables (`queues.*.max_concurrent`): per
/// name, each leaf that differs, and `queues.<name>` for a table that came
/// or went.
fn changed_named_keys(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let names = |v: &Value, table: &str| -> std::collections::BTreeSet<String> {
        render::lookup(v, table)
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    for k in keys::KEYS.iter().filter(|k| k.name.contains(".*.")) {
        let (table, leaf) = k.name.split_once(".*.").unwrap_or((k.name, ""));
        let (in_a, in_b) = (names(a, table), names(b, table));
        for name in in_a.union(&in_b) {
            let whole = format!("{table}.{name}");
            if in_a.contains(name) != in_b.contains(name) {
                if !out.contains(&whole) {
                    out.push(whole);
                }
                continue;
            }
            let key = format!("{whole}.{leaf}");
            if render::lookup(a, &key) != render::lookup(b, &key) {
                out.push(key);
            }
        }
    }
    out
}

/// What identifies a file's content without reading it: through symlinks,
/// so a swapped `..data` link (a new inode) counts as a change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stamp {
    Present {
        dev: u64,
        ino: u64,
        len: u64,
        mtime_ns: i64,
        ctime_ns: i64,
    },
    Missing,
}

fn stamp(path: &std::path::Path) -> Stamp {
    match std::fs::metadata(path) {
        Ok(m) => Stamp::Present {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        },
        Err(_) => Stamp::Missing,
    }
}

/// Polls the stamps of the config files; a change is reported once the new
/// stamp held for two polls, so a file still being written is not read half-done.
struct FileWatch {
    files: Vec<(PathBuf, Stamp, Option<Stamp>)>,
}

impl FileWatch {
    fn new(paths: Vec<PathBuf>) -> FileWatch {
        FileWatch {
            files: paths
                .into_iter()
                .map(|p| {
                    let s = stamp(&p);
                    (p, s, None)
                })
                .collect(),
        }
    }

    fn poll(&mut self) -> Option<PathBuf> {
        let mut changed = None;
        for (path, known, seen) in &mut self.files {
            let now = stamp(path);
            if now == *known {
                *seen = None;
            } else if seen.as_ref() == Some(&now) {
                *known = now;
                *seen = None;
                changed.get_or_insert_with(|| path.clone());
            } else {
                *seen = Some(now);
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(sets: &[&str]) -> Loaded {
        let env = Environment::new([("HOME", "/nonexistent-home")], "h");
        let opts = oj_config::LoadOptions {
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        oj_config::load(&opts, &env).expect("loads")
    }

    #[test]
    fn restart_only_keys_keep_their_start_values_and_are_pending() {
        let started = load(&[]);
        let new = load(&[
            "jobs.max_concurrent=9",
            "listen.max_request_bytes=2048",
            "log.level=debug",
        ]);
        let (running, pending) = running_config(&started, &new);
        assert_eq!(running.config.jobs.max_concurrent, 9);
        assert_eq!(running.config.log.level, "debug");
        assert_eq!(
            running.config.listen.max_request_bytes,
            started.config.listen.max_request_bytes
        );
        assert_eq!(
            running.source("listen.max_request_bytes"),
            started.source("listen.max_request_bytes")
        );
        assert_eq!(pending, vec!["listen.max_request_bytes".to_string()]);
    }

    /// `take_live` copies exactly what the table of live keys names: on
    /// a pair of configurations that differ in keys of every live entry
    /// (and in restart-only ones), each changed key ends at the new value
    /// when it applies live, at the start value otherwise.
    #[test]
    fn take_live_follows_the_table_of_live_keys() {
        let started = load(&[]);
        let new = load(&[
            "log.level=debug",
            "log.format=json",
            "notify.backend=log",
            "tls.cert=/c.pem",
            "tls.key=/k.pem",
            "tls.client_ca=/ca.pem",
            "tls.min_version=1.3",
            "tls.reload_interval=7s",
            "pods.namespace=elsewhere",
            "jobs.max_concurrent=9",
            "jobs.step_timeout=5s",
            "jobs.allow_shell=false",
            "jobs.keep_finished=1h",
            "jobs.max_finished=5",
            "jobs.kill_leftovers=false",
            "shutdown.drain_timeout=3s",
            "queues.build.max_concurrent=2",
            "listen.max_request_bytes=2048",
            "daemon.instance=other",
        ]);
        let mut running = started.config.clone();
        take_live(&mut running, &new.config);
        let tree = |c: &RuntimeConfig| serde_json::to_value(c).unwrap();
        let (a, b, r) = (tree(&started.config), tree(&new.config), tree(&running));
        let changed = changed_keys(&started.config, &new.config);
        for key in &changed {
            let want = if keys::applies_live(key) { &b } else { &a };
            assert_eq!(
                render::lookup(&r, key),
                render::lookup(want, key),
                "{key} (live: {})",
                keys::applies_live(key)
            );
        }
        for entry in keys::LIVE.iter().filter(|e| **e != "schedules.") {
            let prefix = entry.trim_end_matches('.');
            assert!(
                changed.iter().any(|k| k.starts_with(prefix)),
                "the pair changes no key of {entry}"
            );
        }
        assert!(changed.iter().any(|k| !keys::applies_live(k)));
    }

    #[test]
    fn a_swapped_symlink_is_a_change_once_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        std::fs::write(&a, "x").unwrap();
        std::fs::write(&b, "y").unwrap();
        let link = dir.path().join("config.toml");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let mut w = FileWatch::new(vec![link.clone()]);
        assert_eq!(w.poll(), None);
        let tmp = dir.path().join("tmp-link");
        std::os::unix::fs::symlink(&b, &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
        assert_eq!(w.poll(), None, "first sight of the new stamp waits");
        assert_eq!(w.poll(), Some(link.clone()));
        assert_eq!(w.poll(), None, "reported once");
    }
}
