//! Single-instance guarantee behind one interface, [`LockStrategy`]:
//! `file` (an advisory lock on `state_dir/daemon.lock` with the holder's
//! PID inside), `none`, and `lease` (built in `crate::k8s` over the
//! Kubernetes adapter).
//!
//! Leadership is a `watch<bool>`: `file` and `none` are leader from the
//! start; a lease strategy starts as standby (`false`), flips to `true` when
//! it holds the lease and back to `false` if it loses it, and the daemon
//! reacts (no job starts while not leader; losing leadership drains).
//!
//! Taking a lock is part of the daemon's build phase and starts no task. A
//! lock that must be kept by a task (the lease's election and renewal loop)
//! hands that task over unstarted in its [`LockHandle`]; the spawn phase
//! starts it with [`LockHandle::start`].

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub const LOCK_FILE: &str = "daemon.lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the file lock (exit 75).
    #[error(
        "another oj daemon{} holds the lock {}; stop it first (`oj daemon stop`, or kill {}) or give this one another daemon.state_dir",
        pid.map(|p| format!(" (PID {p})")).unwrap_or_default(),
        path.display(),
        pid.map(|p| format!("PID {p}")).unwrap_or_else(|| "the process holding it".into())
    )]
    Held { path: PathBuf, pid: Option<u32> },
    /// The lock file cannot be opened or written (exit 78).
    #[error("cannot use the lock file {}: {source}; check daemon.state_dir and its permissions", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The strategy cannot run here (exit 78).
    #[error("{0}")]
    Unavailable(String),
}

/// What a lock runs on release (a file lock empties and unlocks its file).
pub type ReleaseFn = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A held (or competed-for) lock.
pub struct LockHandle {
    /// `true` while this daemon may run jobs.
    pub leader: watch::Receiver<bool>,
    /// Kept alive while the lock is held (dropping it ends a background task).
    _leader_tx: Option<watch::Sender<bool>>,
    /// The task that keeps the lock (a lease's election), if it needs one.
    keeper: Option<Keeper>,
    release: Option<ReleaseFn>,
}

/// The task that keeps a lock held, built by [`LockStrategy::acquire`] and
/// started by [`LockHandle::start`]. It runs until `stop` fires (or ends on
/// its own, e.g. when a lease is lost) and gives the lock up on its way out.
struct Keeper {
    stop: oneshot::Sender<()>,
    /// Built, not started: a future does nothing until it is spawned.
    built: Option<BoxFuture<'static, ()>>,
    running: Option<JoinHandle<()>>,
}

impl LockHandle {
    /// A handle that is leader for as long as it lives; `release` runs on exit.
    pub fn always_leader(release: Option<ReleaseFn>) -> LockHandle {
        let (tx, rx) = watch::channel(true);
        LockHandle {
            leader: rx,
            _leader_tx: Some(tx),
            keeper: None,
            release,
        }
    }

    /// A handle whose leadership is driven by a task (a lease elector):
    /// `keep` drives `leader` and ends, giving the lock up, once `stop`
    /// fires. It does not run before [`Self::start`].
    pub fn kept(
        leader: watch::Receiver<bool>,
        keep: BoxFuture<'static, ()>,
        stop: oneshot::Sender<()>,
    ) -> LockHandle {
        LockHandle {
            leader,
            _leader_tx: None,
            keeper: Some(Keeper {
                stop,
                built: Some(keep),
                running: None,
            }),
            release: None,
        }
    }

    /// Starts the task that keeps the lock, if it has one (the spawn phase);
    /// a second call does nothing.
    pub fn start(&mut self) {
        if let Some(keeper) = &mut self.keeper
            && let Some(keep) = keeper.built.take()
        {
            keeper.running = Some(tokio::spawn(keep));
        }
    }

    /// Gives the lock up (clean exit): stops its keeper and waits for it
    /// (a keeper never started held nothing), then runs `release`.
    pub async fn release(mut self) {
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.stop.send(());
            if let Some(task) = keeper.running
                && let Err(e) = task.await
            {
                tracing::warn!(error = %e, "the task keeping the lock failed");
            }
        }
        if let Some(r) = self.release.take() {
            r().await;
        }
    }
}

/// A way of making sure only one daemon runs jobs.
pub trait LockStrategy: Send {
    /// `file`, `none`, `lease`.
    fn name(&self) -> &'static str;
    /// Takes the lock (or prepares to compete for it). Fails at once when it
    /// can never be had, e.g. a live daemon holds the file lock. Starts no
    /// task: one that keeps the lock goes into the handle, unstarted.
    fn acquire(self: Box<Self>) -> BoxFuture<'static, Result<LockHandle, LockError>>;
}

/// `lock.strategy = "none"`: always leader.
pub struct NoLock;

impl LockStrategy for NoLock {
    fn name(&self) -> &'static str {
        "none"
    }

    fn acquire(self: Box<Self>) -> BoxFuture<'static, Result<LockHandle, LockError>> {
        Box::pin(async { Ok(LockHandle::always_leader(None)) })
    }
}

/// `lock.strategy = "file"`: `flock` on `state_dir/daemon.lock`. The kernel
/// drops the lock when the process dies, so a file left by `kill -9` never
/// blocks the next daemon.
pub struct FileLock {
    pub path: PathBuf,
}

impl FileLock {
    pub fn in_dir(state_dir: &Path) -> FileLock {
        FileLock {
            path: state_dir.join(LOCK_FILE),
        }
    }

    /// Takes the lock now, writing this process's PID into the file.
    pub fn try_acquire(&self) -> Result<File, LockError> {
        let io = |source| LockError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    path: self.path.clone(),
                    pid: read_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(file)
    }
}

/// The PID the holder wrote; it may be writing it right now, so retry briefly.
fn read_pid(file: &mut File) -> Option<u32> {
    for _ in 0..10 {
        let mut s = String::new();
        if file.seek(SeekFrom::Start(0)).is_ok()
            && file.read_to_string(&mut s).is_ok()
            && let Ok(pid) = s.trim().parse()
        {
            return Some(pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl LockStrategy for FileLock {
    fn name(&self) -> &'static str {
        "file"
    }

    fn acquire(self: Box<Self>) -> BoxFuture<'static, Result<LockHandle, LockError>> {
        Box::pin(async move {
            let file = self.try_acquire()?;
            let path = self.path.clone();
            Ok(LockHandle::always_leader(Some(Box::new(move || {
                Box::pin(async move {
                    // Empty the file before unlocking so nobody reads a stale PID.
                    let _ = file.set_len(0);
                    let _ = file.unlock();
                    drop(file);
                    tracing::info!(path = %path.display(), "lock released");
                })
            }))))
        })
    }
}

/// The strategy `lock.strategy` names.
pub fn from_config(cfg: &oj_config::RuntimeConfig) -> Result<Box<dyn LockStrategy>, LockError> {
    match cfg.lock.strategy {
        oj_config::LockStrategy::File => Ok(Box::new(FileLock::in_dir(&cfg.daemon.state_dir))),
        oj_config::LockStrategy::None => Ok(Box::new(NoLock)),
        oj_config::LockStrategy::Lease => Err(LockError::Unavailable(
            "lock.strategy = \"lease\" is not available in this build (the Kubernetes lease is not wired in); use lock.strategy = \"file\" or \"none\"".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::in_dir(dir.path());
        let held = lock.try_acquire().unwrap();
        // A second open file description conflicts, as another process would.
        match FileLock::in_dir(dir.path()).try_acquire() {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(held);
        // Released (as when the holder dies): the file left behind does not
        // block. (Retry: a child forked by a parallel test holds a copy of the
        // descriptor until its exec closes it.)
        let again = (0..50).find_map(|_| {
            let r = FileLock::in_dir(dir.path()).try_acquire().ok();
            if r.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r
        });
        assert!(again.is_some());
    }

    #[test]
    fn the_message_names_the_pid() {
        let e = LockError::Held {
            path: "/x/daemon.lock".into(),
            pid: Some(42),
        };
        assert!(e.to_string().contains("PID 42"), "{e}");
    }
}
