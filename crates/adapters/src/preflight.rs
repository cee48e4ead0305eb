//! What the machine must provide for what the configuration enables: run by
//! `oj config check` and at every daemon start (the "build" step of parse,
//! build, run). Only enabled features are checked: no certificate is needed
//! while `tls.enabled = false`.

use std::path::Path;

use oj_config::{Environment, Loaded, LockStrategy, NotifyBackend};

/// Whether a missing Kubernetes API is a warning (`config check`) or an
/// error (daemon start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Check,
    Start,
}

/// Problems found, each naming the key, its layer and what to do.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// What was checked or skipped (in-cluster checks), for `check` to print.
    pub notes: Vec<String>,
}

/// Checks the environment the configuration needs.
pub fn check(loaded: &Loaded, env: &Environment, mode: Mode) -> Report {
    let c = &loaded.config;
    let mut r = Report::default();
    let src = |k: &str| format!("{k} ({})", loaded.origin(k));
    let in_kubernetes = loaded.base == oj_config::BuiltinProfile::Kubernetes;

    if let Err(e) = check_dir_writable(&c.daemon.state_dir) {
        r.errors.push(format!(
            "{}: state directory {} {e}; choose a writable directory (OJ_STATE_DIR) or fix its permissions",
            src("daemon.state_dir"),
            c.daemon.state_dir.display()
        ));
    }

    if c.listen.tcp.is_some()
        && c.listen.auth_token.is_none()
        && let Some(path) = &c.listen.auth_token_file
    {
        match oj_config::Secret::read_file(path) {
            Ok(t) if t.is_empty() => r.errors.push(format!(
                "{}: token file {} is empty; write the token into it",
                src("listen.auth_token_file"),
                path.display()
            )),
            Ok(_) => {}
            Err(e) => r.errors.push(format!(
                "{}: cannot read token file {}: {e}; {}",
                src("listen.auth_token_file"),
                path.display(),
                if in_kubernetes {
                    "create it (kubectl create secret generic oj-token --from-file=token=…, mounted at /etc/oj/secret) or set listen.auth_token_file to the right path"
                } else {
                    "write the token into it (e.g. openssl rand -hex 32 > FILE; chmod 600 FILE), or set listen.auth_token_file to the right path"
                }
            )),
        }
    }

    if mode == Mode::Check
        && let Some(m) = open_state_dir_mode(&c.daemon.state_dir)
    {
        r.warnings.push(format!(
            "{}: state directory {} is open to other users (mode {m:04o}) although it holds the WAL with every job's env; the daemon tightens it to 0700 at start, or run `chmod 700 {}`",
            src("daemon.state_dir"),
            c.daemon.state_dir.display(),
            c.daemon.state_dir.display()
        ));
    }
    r.warnings.extend(short_tokens(loaded));

    if c.tls.enabled && c.listen.tcp.is_some() {
        let tls = crate::tls::check_files(&c.tls, std::time::SystemTime::now());
        r.errors.extend(tls.errors.iter().map(|p| {
            let m = keyed(p, loaded);
            // Kubernetes words only for those who run oj in a cluster.
            if in_kubernetes && m.contains("does not exist") {
                format!("{m}; in a pod: is the TLS Secret mounted at /etc/oj/tls?")
            } else {
                m
            }
        }));
        r.warnings
            .extend(tls.warnings.iter().map(|p| keyed(p, loaded)));
    }

    // Builds the webhook sender as the daemon would (URL, signing key or
    // its file, headers), so `check` passes only what will start.
    if let Err(e) = crate::notify::check(&c.notify) {
        r.errors.push(match e.key() {
            Some(key) => format!("{key} ({}){}", loaded.origin(&key), e.detail()),
            None => e.to_string(),
        });
    }

    if c.notify.backend == NotifyBackend::Desktop
        && cfg!(target_os = "linux")
        && !crate::notify::session_bus_available(env)
    {
        r.warnings.push(format!(
            "{}: \"desktop\" but no D-Bus session bus is reachable (DBUS_SESSION_BUS_ADDRESS / $XDG_RUNTIME_DIR/bus); notifications will fail — use notify.backend = \"log\" or \"webhook\" on a headless machine",
            src("notify.backend")
        ));
    }

    if c.lock.strategy == LockStrategy::Lease && !kubernetes_api_configured(env) {
        let msg = format!(
            "{}: \"lease\" needs the Kubernetes API, but neither KUBERNETES_SERVICE_HOST (in a pod) nor a kubeconfig (KUBECONFIG, ~/.kube/config) is present; use lock.strategy = \"file\" outside a cluster",
            src("lock.strategy")
        );
        match mode {
            Mode::Check => r.warnings.push(msg),
            Mode::Start => r.errors.push(msg),
        }
    }

    crate::schedule_check::check(loaded, mode, std::time::SystemTime::now(), &mut r);

    // In a cluster: RBAC, the pod's grace period, LimitRange/ResourceQuota
    // (the daemon runs the same checks in the background after it starts).
    // A laptop config with no cluster in sight gets no cluster talk at all;
    // a cluster config without an API is told the checks were skipped.
    let cluster_config = loaded.base == oj_config::BuiltinProfile::Kubernetes
        || c.lock.strategy == LockStrategy::Lease;
    if mode == Mode::Check && (cluster_config || kubernetes_api_configured(env)) {
        let cluster =
            crate::k8s::preflight::check_blocking(c, env, &|k| loaded.source(k).to_string());
        // A laptop whose kubeconfig happens to point at some cluster is
        // warned; a config meant for a cluster fails the check.
        let targets_cluster = loaded.base == oj_config::BuiltinProfile::Kubernetes
            || env.get("KUBERNETES_SERVICE_HOST").is_some()
            || c.lock.strategy == LockStrategy::Lease;
        if targets_cluster {
            r.errors.extend(cluster.problems);
        } else {
            r.warnings.extend(cluster.problems);
        }
        r.warnings.extend(cluster.warnings);
        r.notes.extend(cluster.notes);
    }
    r
}

/// The mode of an existing state directory that group or others may use.
fn open_state_dir_mode(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Warnings for tokens shorter than [`oj_config::MIN_TOKEN_BYTES`]: the
/// daemon's (inline or from its file, when TCP listens) and the client's.
fn short_tokens(loaded: &Loaded) -> Vec<String> {
    let c = &loaded.config;
    let mut found: Vec<(&str, usize)> = Vec::new();
    if c.listen.tcp.is_some() {
        if let Some(t) = &c.listen.auth_token {
            found.push(("listen.auth_token", t.trimmed().expose().len()));
        } else if let Some(path) = &c.listen.auth_token_file
            && let Ok(t) = oj_config::Secret::read_file(path)
            && !t.is_empty()
        {
            found.push(("listen.auth_token_file", t.expose().len()));
        }
    }
    if let Some(t) = &c.client.token {
        found.push(("client.token", t.trimmed().expose().len()));
    }
    found
        .into_iter()
        .filter(|(_, len)| *len > 0 && *len < oj_config::MIN_TOKEN_BYTES)
        .map(|(key, len)| {
            format!(
                "{key} (from {}): the token is {len} bytes, shorter than {} — easy to guess for anyone who can reach the port; use a random one, e.g. `openssl rand -hex 32`",
                loaded.source(key),
                oj_config::MIN_TOKEN_BYTES
            )
        })
        .collect()
}

/// In-cluster config or a kubeconfig file.
pub fn kubernetes_api_configured(env: &Environment) -> bool {
    if env.get("KUBERNETES_SERVICE_HOST").is_some() {
        return true;
    }
    if let Some(k) = env.get("KUBECONFIG") {
        return k
            .split(':')
            .any(|p| !p.is_empty() && Path::new(p).is_file());
    }
    env.get("HOME")
        .is_some_and(|h| Path::new(h).join(".kube/config").is_file())
}

/// The directory exists (or can be created) and accepts a new file.
fn check_dir_writable(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        // A symbolic link to nothing (the directory or one of the ancestors
        // to be created) makes the creation fail with "File exists".
        let mut p = Some(dir);
        while let Some(path) = p.filter(|p| !p.exists()) {
            if let Ok(target) = std::fs::read_link(path) {
                return Err(format!(
                    "cannot be created: {} is a symbolic link to {}, which does not exist; \
                     create that directory, or remove the link",
                    path.display(),
                    target.display()
                ));
            }
            p = path.parent();
        }
        // Not created here (check has no side effects): the nearest existing
        // ancestor must accept a new directory.
        let mut ancestor = dir.parent();
        while let Some(a) = ancestor {
            if a.exists() {
                return probe_write(a).map_err(|e| {
                    format!("cannot be created ({} is not writable: {e})", a.display())
                });
            }
            ancestor = a.parent();
        }
        return Err("cannot be created".into());
    }
    if !dir.is_dir() {
        return Err("is not a directory".into());
    }
    probe_write(dir).map_err(|e| format!("is not writable: {e}"))
}

fn probe_write(dir: &Path) -> std::io::Result<()> {
    tempfile_in(dir).map(|_| ())
}

fn tempfile_in(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".oj-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// A TLS finding with its key's layer: `tls.cert (from profile
/// kubernetes) = /etc/oj/tls/tls.crt: does not exist`.
fn keyed(p: &crate::tls::Problem, loaded: &Loaded) -> String {
    format!("{} ({}){}", p.key, loaded.origin(p.key), p.detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(sets: &[&str]) -> (Loaded, Environment) {
        let env = Environment::new([("HOME", "/nonexistent-home")], "h");
        let opts = oj_config::LoadOptions {
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        (oj_config::load(&opts, &env).expect("loads"), env)
    }

    fn notify_errors(sets: &[&str]) -> Vec<String> {
        let (loaded, env) = loaded(sets);
        check(&loaded, &env, Mode::Check)
            .errors
            .into_iter()
            .filter(|e| e.contains("notify."))
            .collect()
    }

    #[test]
    fn a_notify_error_names_its_key_then_the_keys_layer() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "not-a-key").unwrap();
        let secret = notify_errors(&[
            "notify.backend=webhook",
            "notify.webhook.url=https://example.com/hook",
            &format!("notify.webhook.secret_file={}", key_file.display()),
        ]);
        assert_eq!(secret.len(), 1, "{secret:?}");
        let want = format!(
            "notify.webhook.secret_file (from flag --set) ({}) is not a Standard Webhooks signing key: ",
            key_file.display()
        );
        assert!(secret[0].starts_with(&want), "{secret:?}");
        // A message that does not begin with its key is left as it is.
        assert_eq!(
            notify_errors(&[
                "notify.backend=webhook",
                "notify.webhook.url=https://example.com/hook",
                "notify.webhook.secret_file=/nonexistent/key",
            ]),
            [
                "cannot read notify.webhook.secret_file /nonexistent/key: No such file or directory (os error 2); check the path and its permissions"
            ]
        );
    }
}
