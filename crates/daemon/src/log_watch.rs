//! Log bytes are pushed, not polled: step output goes straight from the
//! process into its log file (no copy through the daemon), so followers
//! learn that a file grew from the kernel. One inotify instance serves the
//! whole daemon (the per-user limit on instances is low, 128 by default);
//! each followed directory is watched once, however many readers follow it,
//! and its watch is removed when the last one leaves.
//!
//! A reader holds a [`DirWatch`] and awaits [`DirWatch::changed`]: a change
//! counter per directory, so a write that happens while the reader is busy
//! sending is never missed (it only wakes the reader once).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

/// The inotify instance as tokio's reactor wants it.
struct Ino(Inotify);

impl std::os::fd::AsRawFd for Ino {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

struct Entry {
    wd: WatchDescriptor,
    tx: watch::Sender<u64>,
    users: usize,
}

#[derive(Default)]
struct Dirs {
    by_path: HashMap<PathBuf, Entry>,
    by_wd: HashMap<WatchDescriptor, PathBuf>,
}

/// The daemon's inotify instance and its watched directories.
pub struct LogWatch {
    fd: Arc<AsyncFd<Ino>>,
    dirs: Arc<Mutex<Dirs>>,
}

fn lock(dirs: &Mutex<Dirs>) -> std::sync::MutexGuard<'_, Dirs> {
    dirs.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogWatch {
    /// Starts the instance and its reader task; `None` (logged) where
    /// inotify cannot be used: followers then wake on job events and once
    /// a second.
    pub fn start() -> Option<LogWatch> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let made = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(std::io::Error::from)
            .and_then(|ino| {
                // SAFETY: `Ino` owns the inotify fd (an OwnedFd inside
                // nix's Inotify) and returns that same fd for as long as
                // the AsyncFd holds it.
                unsafe { AsyncFd::register(Ino(ino)) }.map_err(std::io::Error::from)
            });
        let fd = match made {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                tracing::warn!(error = %e, "cannot use inotify (see fs.inotify.max_user_instances); log followers look for new output once a second");
                return None;
            }
        };
        let dirs = Arc::new(Mutex::new(Dirs::default()));
        runtime.spawn(read_events(fd.clone(), dirs.clone()));
        Some(LogWatch { fd, dirs })
    }

    /// Watches `dir` (files created, written, moved in; the directory
    /// deleted). `None` when it cannot be watched (it does not exist yet).
    pub fn watch(&self, dir: &Path) -> Option<DirWatch> {
        let mut dirs = lock(&self.dirs);
        if let Some(e) = dirs.by_path.get_mut(dir) {
            e.users += 1;
            let rx = e.tx.subscribe();
            return Some(self.handle(dir, rx));
        }
        let flags = AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_ONLYDIR;
        let wd = self.fd.get_ref().0.add_watch(dir, flags).ok()?;
        let (tx, rx) = watch::channel(0);
        dirs.by_wd.insert(wd, dir.to_path_buf());
        dirs.by_path
            .insert(dir.to_path_buf(), Entry { wd, tx, users: 1 });
        Some(self.handle(dir, rx))
    }

    fn handle(&self, dir: &Path, rx: watch::Receiver<u64>) -> DirWatch {
        DirWatch {
            rx,
            dir: dir.to_path_buf(),
            fd: self.fd.clone(),
            dirs: self.dirs.clone(),
        }
    }
}

/// One reader's watch of a directory.
pub struct DirWatch {
    rx: watch::Receiver<u64>,
    dir: PathBuf,
    fd: Arc<AsyncFd<Ino>>,
    dirs: Arc<Mutex<Dirs>>,
}

impl DirWatch {
    /// Resolves when something in the directory changed since the last
    /// call (or since the watch began); never when the watch is gone.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        let mut dirs = lock(&self.dirs);
        let Some(e) = dirs.by_path.get_mut(&self.dir) else {
            return;
        };
        e.users -= 1;
        if e.users == 0 {
            let wd = e.wd;
            dirs.by_path.remove(&self.dir);
            dirs.by_wd.remove(&wd);
            let _ = self.fd.get_ref().0.rm_watch(wd);
        }
    }
}

async fn read_events(fd: Arc<AsyncFd<Ino>>, dirs: Arc<Mutex<Dirs>>) {
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        match fd.get_ref().0.read_events() {
            Ok(events) => {
                let dirs = lock(&dirs);
                for ev in events {
                    if let Some(path) = dirs.by_wd.get(&ev.wd)
                        && let Some(e) = dirs.by_path.get(path)
                    {
                        e.tx.send_modify(|n| *n += 1);
                    }
                }
            }
            Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read inotify events; log followers wake on job events only");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_write_wakes_every_reader_of_the_directory_once() {
        let dir = tempfile::tempdir().unwrap();
        let lw = LogWatch::start().expect("inotify");
        let mut a = lw.watch(dir.path()).unwrap();
        let mut b = lw.watch(dir.path()).unwrap();
        std::fs::write(dir.path().join("s.log"), "x").unwrap();
        for w in [&mut a, &mut b] {
            tokio::time::timeout(Duration::from_secs(10), w.changed())
                .await
                .expect("woken");
        }
        drop(a);
        assert_eq!(lock(&lw.dirs).by_path[dir.path()].users, 1);
        drop(b);
        assert!(lock(&lw.dirs).by_path.is_empty());
        assert!(lw.watch(&dir.path().join("missing")).is_none());
    }
}
