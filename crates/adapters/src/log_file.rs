//! The daemon's log file: the live file is exactly `log.file.path`, so
//! `tail -F ~/.local/state/oj/daemon.log` and log shippers that follow a
//! path find it; at the start of each period (`log.file.rotation`, UTC) the
//! live file is renamed with the period it covered as a suffix
//! (`daemon.log.2026-12-01`, hourly `daemon.log.2026-12-01-08`) and a new
//! live file is opened; then the oldest rotated files are deleted so that
//! at most `log.file.max_files` rotated files remain (next to the live one).
//!
//! Why not tracing-appender's rolling appender: it writes the *dated* name
//! (`daemon.2026-12-01.log`) as the live file, so the configured path never
//! exists. This writer does only the file part; it is still wrapped in
//! `tracing_appender::non_blocking`, so the daemon never waits on the disk.
//!
//! Rotation is checked before each write, against an injectable clock. A
//! file left by an earlier run is rotated at start when it belongs to an
//! earlier period (judged by its modification time). Pruning only ever
//! touches names this writer makes (`<name>.<stamp>` and `<name>.<stamp>.<n>`)
//! and the `<stem>.<stamp>.<ext>` names of earlier oj versions.
//!
//! The live file is opened without following a symbolic link (`O_NOFOLLOW`)
//! and must be a regular file: a link planted at `log.file.path` in a
//! directory others can write (`/tmp`) would otherwise make the daemon —
//! often root — append to any file it names. Such a path is an error that
//! says so; nothing is written through it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oj_config::LogRotation;

/// The wall clock; injected so tests can cross a period boundary.
pub type Clock = Box<dyn Fn() -> SystemTime + Send>;

/// A `Write` that appends to `path` and rotates it by period.
pub struct RotatingFile {
    path: PathBuf,
    rotation: LogRotation,
    max_files: usize,
    clock: Clock,
    file: File,
    /// The period the live file belongs to (`None` with `never`).
    period: Option<String>,
    /// When that period ends: until then a write only compares two times.
    period_ends: Option<SystemTime>,
    /// A rotation failed once: said on stderr, not on every line.
    warned: bool,
}

impl std::fmt::Debug for RotatingFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingFile")
            .field("path", &self.path)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl RotatingFile {
    /// Opens (appends to) `path`, creating its directory; a file there from
    /// an earlier period is rotated first, then old files are pruned.
    pub fn open(path: &Path, rotation: LogRotation, max_files: usize) -> io::Result<RotatingFile> {
        RotatingFile::open_with_clock(path, rotation, max_files, Box::new(SystemTime::now))
    }

    /// [`RotatingFile::open`] with an explicit clock.
    pub fn open_with_clock(
        path: &Path,
        rotation: LogRotation,
        max_files: usize,
        clock: Clock,
    ) -> io::Result<RotatingFile> {
        if path.file_name().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "does not name a file",
            ));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let now = clock();
        let period = period_of(rotation, now);
        // A live file from an earlier period: it is history now.
        if let (Some(current), Ok(meta)) = (&period, std::fs::symlink_metadata(path))
            && meta.is_file()
            && meta.len() > 0
            && let Ok(modified) = meta.modified()
            && let Some(old) = period_of(rotation, modified)
            && &old < current
        {
            std::fs::rename(path, free_rotated_name(path, &old))?;
        }
        let file = open_append(path)?;
        let this = RotatingFile {
            path: path.to_path_buf(),
            rotation,
            max_files: max_files.max(1),
            clock,
            file,
            period,
            period_ends: period_end(rotation, now),
            warned: false,
        };
        this.prune();
        Ok(this)
    }

    /// Rotates when the clock has entered a later period than the live file's.
    fn rotate_if_due(&mut self) {
        let Some(ends) = self.period_ends else { return };
        let t = (self.clock)();
        if t < ends {
            return;
        }
        self.period_ends = period_end(self.rotation, t);
        let (Some(current), Some(now)) = (&self.period, period_of(self.rotation, t)) else {
            return;
        };
        if &now <= current {
            return;
        }
        let old = self.period.replace(now).unwrap_or_default();
        let _ = self.file.flush();
        let rotated = free_rotated_name(&self.path, &old);
        let result = std::fs::rename(&self.path, &rotated).and_then(|()| open_append(&self.path));
        match result {
            Ok(file) => {
                self.file = file;
                self.prune();
            }
            Err(e) if !self.warned => {
                // The log itself cannot carry this: it is the log.
                self.warned = true;
                eprintln!(
                    "oj: cannot rotate the log file {} to {} ({e}); still writing to it (log.file.path)",
                    self.path.display(),
                    rotated.display()
                );
            }
            Err(_) => {}
        }
    }

    /// Deletes the oldest rotated files so that at most `max_files` of them
    /// remain (the live file is not counted).
    fn prune(&self) {
        let mut rotated = rotated_files(&self.path);
        let keep = self.max_files;
        if rotated.len() <= keep {
            return;
        }
        // Oldest first: by the period stamp in the name (what the file's
        // age is; mtimes of files written in one second tie), then by
        // modification time, then by name.
        rotated.sort_by_key(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            let stamp = name.as_deref().and_then(stamp_in).map(str::to_string);
            let modified = std::fs::metadata(p)
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            (stamp, modified, p.clone())
        });
        let excess = rotated.len() - keep;
        for old in rotated.into_iter().take(excess) {
            let _ = std::fs::remove_file(old);
        }
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.rotate_if_due();
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Opens the live file for appending: never through a symbolic link, never
/// anything but a regular file (a FIFO would block, a device is not a log).
fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file (a FIFO, a device or a directory); point log.file.path at a regular file",
        )
    };
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file() && !m.file_type().is_symlink()) {
        return Err(not_regular());
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                io::Error::new(
                    e.kind(),
                    "it is a symbolic link, which oj does not follow for its log file (a link planted in a shared directory could make the daemon write anywhere); remove the link or point log.file.path at a regular file",
                )
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

/// The `YYYY-MM-DD` (or `YYYY-MM-DD-HH`) stamp in a rotated file's name.
fn stamp_in(name: &str) -> Option<&str> {
    let b = name.as_bytes();
    let shape = |i: usize, pat: &[u8]| {
        pat.iter().enumerate().all(|(k, p)| {
            b.get(i + k).is_some_and(|c| {
                if *p == b'9' {
                    c.is_ascii_digit()
                } else {
                    c == p
                }
            })
        })
    };
    let start = (0..b.len()).find(|&i| shape(i, b"9999-99-99"))?;
    let len = if shape(start + 10, b"-99") { 13 } else { 10 };
    name.get(start..start + len)
}

/// The period stamp of `t` in UTC: `2026-12-01` (daily), `2026-12-01-08`
/// (hourly), none with `never`. Stamps of one rotation sort by time.
pub fn period_of(rotation: LogRotation, t: SystemTime) -> Option<String> {
    let ts = humantime::format_rfc3339_seconds(t).to_string(); // 2026-12-01T08:24:07Z
    match rotation {
        LogRotation::Never => None,
        LogRotation::Daily => Some(ts[..10].to_string()),
        LogRotation::Hourly => Some(format!("{}-{}", &ts[..10], &ts[11..13])),
    }
}

/// When the period that `t` is in ends (UTC days and hours are whole
/// multiples of 86 400 and 3 600 Unix seconds); none with `never`.
fn period_end(rotation: LogRotation, t: SystemTime) -> Option<SystemTime> {
    let len = match rotation {
        LogRotation::Never => return None,
        LogRotation::Daily => 86_400,
        LogRotation::Hourly => 3_600,
    };
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(UNIX_EPOCH + Duration::from_secs((secs / len + 1) * len))
}

/// The name the live file gets when its period `stamp` ends:
/// `daemon.log.2026-12-01`, or with `.1`, `.2`… when that name is taken.
pub fn rotated_name(path: &Path, stamp: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".");
    name.push(stamp);
    PathBuf::from(name)
}

fn free_rotated_name(path: &Path, stamp: &str) -> PathBuf {
    let first = rotated_name(path, stamp);
    if !first.exists() {
        return first;
    }
    (1u32..)
        .map(|n| {
            let mut name = first.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        })
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// Whether `s` is a period stamp (`2026-12-01` or `2026-12-01-08`).
fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    let date = b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    date && (b.len() == 10
        || (b.len() == 13 && b[10] == b'-' && b[11..].iter().all(u8::is_ascii_digit)))
}

/// The rotated files of `path` in its directory: `<name>.<stamp>[.<n>]`,
/// and `<stem>.<stamp>.<ext>` as written by oj before the live file kept
/// its name.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() && !e.is_empty() => (s, e),
        _ => (name, "log"),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter(|e| {
            let Some(n) = e.file_name().to_str().map(str::to_owned) else {
                return false;
            };
            let ours = n
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|rest| {
                    let (stamp, counter) = match rest.split_once('.') {
                        Some((s, c)) => (s, Some(c)),
                        None => (rest, None),
                    };
                    is_stamp(stamp)
                        && counter
                            .is_none_or(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
                });
            let legacy = n
                .strip_prefix(stem)
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|rest| rest.strip_suffix(ext))
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(is_stamp);
            ours || legacy
        })
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).expect("a time")
    }

    fn clock(now: &Arc<Mutex<SystemTime>>) -> Clock {
        let now = now.clone();
        Box::new(move || *now.lock().expect("clock"))
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn stamps_sort_by_time_and_are_recognised() {
        assert_eq!(
            period_of(LogRotation::Daily, at("2026-12-01T23:59:59Z")).as_deref(),
            Some("2026-12-01")
        );
        assert_eq!(
            period_of(LogRotation::Hourly, at("2026-12-01T08:00:00Z")).as_deref(),
            Some("2026-12-01-08")
        );
        assert_eq!(period_of(LogRotation::Never, SystemTime::now()), None);
        assert_eq!(
            period_end(LogRotation::Daily, at("2026-12-01T23:59:59Z")),
            Some(at("2026-12-02T00:00:00Z"))
        );
        assert_eq!(
            period_end(LogRotation::Hourly, at("2026-12-01T08:00:00Z")),
            Some(at("2026-12-01T09:00:00Z"))
        );
        assert!(is_stamp("2026-12-01") && is_stamp("2026-12-01-08"));
        assert!(!is_stamp("2026-12-1") && !is_stamp("notes") && !is_stamp("2026-12-01-8"));
    }

    #[test]
    fn the_live_file_keeps_its_name_and_rotation_renames_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("daemon.log");
        let now = Arc::new(Mutex::new(at("2026-12-01T23:59:59Z")));
        let mut f =
            RotatingFile::open_with_clock(&path, LogRotation::Daily, 7, clock(&now)).expect("open");
        f.write_all(b"before midnight\n").expect("write");
        assert_eq!(names(dir.path()), ["daemon.log"]);
        *now.lock().expect("clock") += Duration::from_secs(2);
        f.write_all(b"after midnight\n").expect("write");
        f.flush().expect("flush");
        assert_eq!(names(dir.path()), ["daemon.log", "daemon.log.2026-12-01"]);
        let live = std::fs::read_to_string(&path).expect("live");
        let old = std::fs::read_to_string(dir.path().join("daemon.log.2026-12-01")).expect("old");
        assert_eq!(
            (live.as_str(), old.as_str()),
            ("after midnight\n", "before midnight\n")
        );
    }

    #[test]
    fn stamps_are_found_in_new_and_old_names() {
        assert_eq!(stamp_in("daemon.log.2026-11-01"), Some("2026-11-01"));
        assert_eq!(
            stamp_in("daemon.log.2026-11-01-08.1"),
            Some("2026-11-01-08")
        );
        assert_eq!(stamp_in("daemon.2026-10-01.log"), Some("2026-10-01"));
        assert_eq!(stamp_in("daemon.log.notes"), None);
    }

    #[test]
    fn max_files_counts_rotated_files_and_prunes_only_log_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for day in 1..=5 {
            std::fs::write(d.join(format!("daemon.log.2026-11-0{day}")), "old\n").expect("w");
        }
        // Written by earlier oj versions: pruned too.
        std::fs::write(d.join("daemon.2026-10-01.log"), "older\n").expect("w");
        for keep in ["daemon.lock", "daemon.log.notes", "daemon.wal"] {
            std::fs::write(d.join(keep), "x").expect("w");
        }
        let path = d.join("daemon.log");
        let now = Arc::new(Mutex::new(at("2026-12-01T10:00:00Z")));
        let mut f =
            RotatingFile::open_with_clock(&path, LogRotation::Daily, 3, clock(&now)).expect("open");
        f.write_all(b"x\n").expect("write");
        let left = names(d);
        assert_eq!(rotated_files(&path).len(), 3, "{left:?}");
        for keep in [
            "daemon.lock",
            "daemon.log.notes",
            "daemon.wal",
            "daemon.log",
        ] {
            assert!(left.iter().any(|n| n == keep), "{keep} kept: {left:?}");
        }
        assert!(
            !left.iter().any(|n| n == "daemon.2026-10-01.log"),
            "{left:?}"
        );
    }

    #[test]
    fn a_file_from_an_earlier_period_is_rotated_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("daemon.log");
        std::fs::write(&path, "yesterday\n").expect("w");
        let modified = std::fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime");
        let tomorrow = modified + Duration::from_secs(86_400);
        let mut f =
            RotatingFile::open_with_clock(&path, LogRotation::Daily, 7, Box::new(move || tomorrow))
                .expect("open");
        f.write_all(b"today\n").expect("write");
        let stamp = period_of(LogRotation::Daily, modified).expect("stamp");
        let old = std::fs::read_to_string(rotated_name(&path, &stamp)).expect("rotated");
        assert_eq!(old, "yesterday\n");
        assert_eq!(std::fs::read_to_string(&path).expect("live"), "today\n");
    }

    /// Issue 30 item 12: a planted link is not followed.
    #[test]
    fn a_symlink_at_the_path_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("victim");
        std::fs::write(&target, "precious\n").unwrap();
        let path = dir.path().join("daemon.log");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = RotatingFile::open(&path, LogRotation::Never, 1).expect_err("refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = RotatingFile::open(&path, LogRotation::Never, 1).expect_err("refused");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn never_appends_to_the_one_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("oj.log");
        for line in ["one\n", "two\n"] {
            let mut f = RotatingFile::open(&path, LogRotation::Never, 1).expect("open");
            f.write_all(line.as_bytes()).expect("write");
        }
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "one\ntwo\n");
        assert_eq!(names(dir.path()), ["oj.log"]);
    }
}
