//! Start-up hardening: what the daemon does to itself and to its state
//! directory before it serves anyone, and how it owns its Unix socket.
//!
//! Why: the daemon holds secrets (the TCP token, webhook keys, job `env`
//! values in the WAL) and runs code for whoever reaches its API. Files that
//! follow the caller's umask, a state directory left open by a tmpfs or an
//! `emptyDir`, a socket that a second daemon silently takes over, or an
//! environment a step can read from `/proc` would each hand that power to
//! someone else. Everything here is done once, at start, and explained in
//! docs/security.md.

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::stat::{Mode, umask};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Mode of every directory oj creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file oj creates (and of the socket).
pub const FILE_MODE: u32 = 0o600;

/// How long the probe of an existing socket may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What [`process`] did, for the log once logging is up.
#[derive(Debug, Default)]
pub struct ProcessHardening {
    /// The soft `RLIMIT_NOFILE` after raising it (`None` if unknown).
    pub nofile: Option<u64>,
    /// Why a step could not be taken (logged as a warning).
    pub problems: Vec<String>,
}

/// Hardens the process itself; call first, before any file is created.
///
/// * umask 077: every file and directory created from now on — by oj or
///   by a library such as the log appender — is private to the daemon's
///   user, whatever umask the daemon was started with. Steps inherit it.
/// * not dumpable (`PR_SET_DUMPABLE 0`): a process of the same user (a
///   shell step) can neither read `/proc/<pid>/environ` or `mem` (the
///   token, `OJ_*` secrets) nor attach a debugger; no core dump holds the
///   secrets either. `exec` resets it, so steps stay ordinary processes.
/// * the soft open-file limit raised to the hard limit, so a busy TCP
///   listener does not starve the Unix socket and the WAL.
pub fn process() -> ProcessHardening {
    let mut out = ProcessHardening::default();
    umask(Mode::from_bits_truncate(0o077));
    if let Err(e) = set_non_dumpable() {
        out.problems.push(format!(
            "cannot mark the daemon non-dumpable (prctl PR_SET_DUMPABLE): {e}; steps running as the same user can read the daemon's environment"
        ));
    }
    match raise_nofile() {
        Ok(n) => out.nofile = Some(n),
        Err(e) => out.problems.push(format!(
            "cannot raise the open-file limit (RLIMIT_NOFILE): {e}; the TCP connection cap is derived from the current limit"
        )),
    }
    out
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_non_dumpable() -> nix::Result<()> {
    nix::sys::prctl::set_dumpable(false)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_non_dumpable() -> nix::Result<()> {
    Ok(())
}

/// The current soft `RLIMIT_NOFILE`.
pub fn nofile() -> Option<u64> {
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Soft `RLIMIT_NOFILE` := hard; returns the new soft limit.
fn raise_nofile() -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= hard {
        return Ok(soft);
    }
    // An unlimited hard limit cannot be the soft one on Linux (nr_open caps
    // it); a million descriptors is more than the daemon will ever need.
    let target = if hard == nix::sys::resource::RLIM_INFINITY {
        1 << 20
    } else {
        hard
    };
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => Ok(target),
        Err(_) if target != hard => Ok(soft),
        Err(e) => Err(e),
    }
}

/// Creates `dir` (and missing parents) with mode 0700, whatever the umask.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    // One mkdir in the common case (a job's log directory under an existing
    // `logs/`); parents only when that fails for want of them.
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir),
        Err(e) => Err(e),
    }
}

/// Creates the state directory 0700, or tightens an existing one that
/// group or others may enter (a tmpfs, an `emptyDir`, a `mkdir` under
/// umask 000). Returns the warning to log when it tightened one.
pub fn prepare_state_dir(dir: &Path) -> std::io::Result<Option<String>> {
    if !dir.exists() {
        create_private_dir_all(dir)?;
        // A parent that existed is left alone; the directory itself is ours.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
        return Ok(None);
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if !is_open_to_others(mode) {
        return Ok(None);
    }
    match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)) {
        Ok(()) => Ok(Some(format!(
            "daemon.state_dir {} was open to other users (mode {mode:04o}); tightened it to 0700 — it holds the WAL with every job's env, the socket and the logs",
            dir.display()
        ))),
        // Not the owner (a volume mounted root:fsGroup): the directory is
        // usable, the files in it are private anyway; say so and go on.
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Ok(Some(format!(
            "daemon.state_dir {} is open to other users (mode {mode:04o}) and this user cannot tighten it ({e}); the files in it are created 0600, but make the directory 0700 (or owned by the daemon's user)",
            dir.display()
        ))),
        Err(e) => Err(e),
    }
}

/// Group or others have any permission.
pub fn is_open_to_others(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// The identity of the socket file this daemon bound: another file at the
/// same path later (a second daemon's) is not ours to remove. The inode
/// with its change time, since tmpfs reuses inode numbers at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketId {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
}

impl SocketId {
    fn of(meta: &std::fs::Metadata) -> SocketId {
        SocketId {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Why the Unix socket could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Something answers at the path (exit 75).
    #[error(
        "another oj daemon{} is serving the Unix socket {}; stop it first (`oj daemon stop`{}) or give this daemon another listen.unix_socket",
        pid.map(|p| format!(" (PID {p})")).unwrap_or_default(),
        path.display(),
        pid.map(|p| format!(", or kill {p}")).unwrap_or_default()
    )]
    InUse { path: PathBuf, pid: Option<u32> },
    /// Anything else (exit 1).
    #[error("cannot listen on the Unix socket {} (listen.unix_socket): {reason}", path.display())]
    Io { path: PathBuf, reason: String },
}

/// Binds the Unix socket at `path`, mode 0600.
///
/// A socket file already there is probed: if something answers, the path
/// belongs to a live daemon and this one does not start ([`SocketError::InUse`],
/// naming the PID from its `/v1/status`, else from the kernel's peer
/// credentials); if nothing answers it is stale and replaced. The socket is
/// created under umask 077 (see [`process`]), so it is never connectable
/// by others, not even between `bind` and `chmod`.
pub async fn claim_socket(path: &Path) -> Result<(UnixListener, SocketId), SocketError> {
    let io = |reason: String| SocketError::Io {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match probe(path).await {
            Probe::Answers(pid) => {
                return Err(SocketError::InUse {
                    path: path.to_path_buf(),
                    pid,
                });
            }
            Probe::Stale => std::fs::remove_file(path)
                .map_err(|e| io(format!("cannot remove the stale socket: {e}")))?,
            Probe::Unknown(e) => {
                return Err(io(format!(
                    "a socket is there but cannot be probed ({e}); remove it if no daemon uses it"
                )));
            }
        },
        Ok(_) => {
            return Err(io(
                "a file that is not a socket is in the way; remove it or set listen.unix_socket elsewhere".into(),
            ));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(e.to_string())),
    }
    if let Some(dir) = path.parent() {
        create_private_dir_all(dir).map_err(|e| io(format!("cannot create its directory: {e}")))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        if e.kind() == ErrorKind::AddrInUse {
            // Lost a race with a daemon starting at the same moment.
            SocketError::InUse {
                path: path.to_path_buf(),
                pid: None,
            }
        } else {
            io(e.to_string())
        }
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))
        .map_err(|e| io(format!("cannot set mode 0600: {e}")))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| io(e.to_string()))?;
    Ok((listener, SocketId::of(&meta)))
}

/// Removes the socket file at exit, only if it is still the one this
/// daemon bound (same device and inode).
pub fn release_socket(path: &Path, id: SocketId) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if SocketId::of(&meta) == id => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove the Unix socket");
            }
        }
        Ok(_) => tracing::warn!(
            path = %path.display(),
            "the Unix socket file was replaced by someone else; leaving it in place"
        ),
        Err(_) => {}
    }
}

enum Probe {
    /// Something accepted the connection; its PID if known.
    Answers(Option<u32>),
    /// Nothing listens (connection refused).
    Stale,
    /// Cannot tell (permission denied, …).
    Unknown(std::io::Error),
}

async fn probe(path: &Path) -> Probe {
    let stream = match tokio::time::timeout(PROBE_TIMEOUT, UnixStream::connect(path)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => return Probe::Stale,
        Ok(Err(e)) if e.kind() == ErrorKind::NotFound => return Probe::Stale,
        Ok(Err(e)) => return Probe::Unknown(e),
        // A listener whose backlog is full still exists.
        Err(_) => return Probe::Answers(None),
    };
    let peer_pid = stream
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .and_then(|p| u32::try_from(p).ok());
    let status_pid = tokio::time::timeout(PROBE_TIMEOUT, status_pid(stream))
        .await
        .ok()
        .flatten();
    Probe::Answers(status_pid.or(peer_pid))
}

/// The `pid` of the other daemon's `GET /v1/status`.
async fn status_pid(mut stream: UnixStream) -> Option<u32> {
    stream
        .write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut response)
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&response);
    let (_, body) = text.split_once("\r\n\r\n")?;
    let status: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    status
        .get("pid")?
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_state_dir_is_tightened_and_a_new_one_is_private() {
        let root = tempfile::tempdir().unwrap();
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let warning = prepare_state_dir(&open).unwrap().expect("a warning");
        assert!(
            warning.contains("0777") && warning.contains("0700"),
            "{warning}"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&open), 0o700);
        assert_eq!(prepare_state_dir(&open).unwrap(), None, "already private");

        let new = root.path().join("a/b/state");
        assert_eq!(prepare_state_dir(&new).unwrap(), None);
        assert_eq!(mode(&new), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
    }

    #[tokio::test]
    async fn a_live_socket_is_refused_with_its_pid_and_a_stale_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let (first, id) = claim_socket(&path).await.unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // The listener answers (the kernel accepts into the backlog): in use,
        // and the peer credentials name this process.
        match claim_socket(&path).await {
            Err(SocketError::InUse { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        // Nobody listens any more: stale, replaced by a new socket.
        let (_second, id2) = claim_socket(&path).await.unwrap();
        assert_ne!(id, id2);
        // The first daemon's exit must not remove the second one's socket.
        release_socket(&path, id);
        assert!(path.exists());
        release_socket(&path, id2);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_file_in_the_way_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        std::fs::write(&path, b"data").unwrap();
        assert!(matches!(
            claim_socket(&path).await,
            Err(SocketError::Io { .. })
        ));
        assert!(path.exists());
    }
}
