//! A reload never falls back to less than what runs because a file could
//! not be read whole (issue 30): a config or profile file read at start (or
//! at the last accepted reload) that is now gone, not a regular file (a
//! FIFO, a directory) or empty while it had settings, would otherwise drop
//! its layer — `jobs.allow_shell = false` quietly back to `true`. Such a
//! reload is rejected and what runs is kept.
//!
//! A write in progress (an editor's truncate-then-write, a half-written
//! file, a rename-replace) is waited out: after a failed attempt the files
//! are watched for [`QUIET`]; while they keep changing (up to [`SETTLE`])
//! the reload is tried again once they hold still.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the files must hold still before a failed reload is final.
pub const QUIET: Duration = Duration::from_millis(400);
/// The longest a reload waits for writes in progress to end.
pub const SETTLE: Duration = Duration::from_secs(5);
const LOOK: Duration = Duration::from_millis(50);

/// Device, inode, length, mtime and ctime (ns) of a file.
type Stamp = (u64, u64, u64, i64, i64);

/// The files a reload must find whole, each with whether it had content.
#[derive(Debug, Clone, Default)]
pub struct ReadAtStart(BTreeMap<PathBuf, bool>);

impl ReadAtStart {
    /// The files of an accepted load, as they are on disk now.
    pub fn of(loaded: &oj_config::Loaded) -> ReadAtStart {
        ReadAtStart(
            loaded
                .files
                .iter()
                .chain(&loaded.profile_files)
                .map(|p| {
                    let had = std::fs::metadata(p).is_ok_and(|m| m.len() > 0);
                    (p.clone(), had)
                })
                .collect(),
        )
    }

    /// Every file that cannot be read whole now, as one line each.
    pub fn problems(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|(path, had)| not_whole(path, *had))
            .collect()
    }

    fn stamps(&self) -> Vec<Option<Stamp>> {
        self.0
            .keys()
            .map(|p| {
                std::fs::metadata(p).ok().map(|m| {
                    (
                        m.dev(),
                        m.ino(),
                        m.len(),
                        m.mtime_nsec() + m.mtime() * 1_000_000_000,
                        m.ctime_nsec() + m.ctime() * 1_000_000_000,
                    )
                })
            })
            .collect()
    }

    /// Waits while a write seems to be in progress: returns `true` when the
    /// files changed and then held still for [`QUIET`] (try again), `false`
    /// when nothing changed for [`QUIET`] or [`SETTLE`] passed since `since`.
    pub fn wait_for_writes(&self, since: Instant) -> bool {
        let mut last = self.stamps();
        let mut still_since = Instant::now();
        let mut changed = false;
        while since.elapsed() < SETTLE {
            std::thread::sleep(LOOK);
            let now = self.stamps();
            if now != last {
                last = now;
                still_since = Instant::now();
                changed = true;
            } else if still_since.elapsed() >= QUIET {
                return changed;
            }
        }
        false
    }
}

/// Why `path` (read at start, with content when `had_content`) cannot be
/// read whole now; `None` when it can.
fn not_whole(path: &Path, had_content: bool) -> Option<String> {
    let keep =
        "a reload keeps what runs; restore the file (or restart the daemon to run without it)";
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "config file {} was read at start and is gone; {keep}",
            path.display()
        )),
        Err(e) => Some(format!(
            "config file {} was read at start and cannot be read now: {e}; {keep}",
            path.display()
        )),
        Ok(m) if !m.is_file() => Some(format!(
            "config file {} was read at start and is no longer a regular file (a FIFO, a directory, a device); {keep}",
            path.display()
        )),
        Ok(m) if m.len() == 0 && had_content => Some(format!(
            "config file {} was read at start with settings and is empty now (a write cut short?); {keep}",
            path.display()
        )),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gone_emptied_or_replaced_by_a_fifo_is_not_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[jobs]\nallow_shell = false\n").unwrap();
        let files = ReadAtStart([(p.clone(), true)].into());
        assert!(files.problems().is_empty());
        std::fs::write(&p, "").unwrap();
        assert!(
            files.problems()[0].contains("is empty now"),
            "{:?}",
            files.problems()
        );
        std::fs::remove_file(&p).unwrap();
        assert!(files.problems()[0].contains("is gone"));
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(files.problems()[0].contains("no longer a regular file"));
        // A file that was empty at start may stay empty.
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "").unwrap();
        assert!(ReadAtStart([(p, false)].into()).problems().is_empty());
    }

    #[test]
    fn a_write_in_progress_is_waited_out_and_a_still_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "x").unwrap();
        let files = ReadAtStart([(p.clone(), true)].into());
        let t = Instant::now();
        assert!(!files.wait_for_writes(t), "nothing changes");
        assert!(t.elapsed() >= QUIET && t.elapsed() < SETTLE);
        let writer = {
            let p = p.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                std::fs::write(&p, "[jobs]\n").unwrap();
            })
        };
        assert!(files.wait_for_writes(Instant::now()), "a write came");
        writer.join().unwrap();
    }
}
