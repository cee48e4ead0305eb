//! Persistence: an append-only write-ahead log of [`Event`]s plus a periodic
//! snapshot of the whole [`State`].
//!
//! Files in `state_dir`: `wal.jsonl` (one `{"seq":N,"event":{…}}` a line)
//! and `snapshot.json` (`{"format":1,"seq":N,"state":{…}}`). A batch of
//! events is written and fsynced before the engine acknowledges any of them
//! (group commit). A snapshot is written to a temporary file, fsynced and
//! renamed over the old one (then the directory is fsynced), and only then
//! is the WAL truncated; replay skips WAL records at or below the snapshot's
//! `seq`, so a crash between those steps replays nothing twice. A torn last
//! line (a crash in the middle of a write) is dropped, not fatal.
//!
//! A write that fails (a full disk) is cut back: the file is truncated to
//! its last complete record before anything else is appended, so the next
//! commit, once there is space again, lands on a clean line. Before every
//! commit the WAL is checked to still be the file the daemon opened: if it
//! was deleted, replaced or changed by someone else, the whole state
//! (including the batch being committed) is written as a fresh snapshot and
//! a new, empty WAL starts beside it. The snapshot is watched the same way
//! (its path must still name the file last written): a deleted or replaced
//! snapshot is written again at the next commit, or at the periodic check
//! ([`Storage::verify`]) when nothing is committed. A WAL that starts past
//! record 1 with no snapshot beside it is refused at open: starting would
//! lose every job the snapshot held. Both files are created 0600: the WAL
//! holds job environments.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oj_core::Event;
use oj_core::state::{Snapshot, State};
use serde::{Deserialize, Serialize};

pub const WAL_FILE: &str = "wal.jsonl";
pub const SNAPSHOT_FILE: &str = "snapshot.json";
/// Space kept for deletions on a full disk (see [`Storage::release_reserve`]).
pub const RESERVE_FILE: &str = "space.reserve";
/// The reserve's size: room for thousands of removal records.
pub const RESERVE_BYTES: u64 = 1 << 20;
const SNAPSHOT_FORMAT: u32 = 1;

/// What can stop the storage from opening or writing.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "the snapshot {} is missing, but the WAL beside it starts at record {first_seq}: it only holds the changes since a snapshot, so starting without it would lose every job the snapshot held (and retention would delete their logs). Restore {} from a backup, or move wal.jsonl away too to start with no jobs",
        path.display(), path.display()
    )]
    MissingSnapshot { path: PathBuf, first_seq: u64 },
    #[error(
        "{} is not a snapshot this version of oj can read ({reason}). The WAL beside it only holds the changes since that snapshot, so starting without it loses every job it held. Keep a copy of both files first (cp -a {} {}.bad), then restore the snapshot from a backup, or move snapshot.json and wal.jsonl away together to start with no jobs",
        path.display(), path.display(), path.display()
    )]
    BadSnapshot { path: PathBuf, reason: String },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Serialize)]
struct RecordOut<'a> {
    seq: u64,
    event: &'a Event,
}

#[derive(Deserialize)]
struct RecordIn {
    seq: u64,
    event: Event,
}

#[derive(Serialize)]
struct SnapshotOut<'a> {
    format: u32,
    seq: u64,
    state: SnapshotRef<'a>,
}

/// A [`State`] serialized as a [`Snapshot`] without copying it first.
struct SnapshotRef<'a>(&'a State);

impl Serialize for SnapshotRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Snapshot", 2)?;
        st.serialize_field("jobs", &Seq(|| self.0.jobs()))?;
        st.serialize_field("notifications", &Seq(|| self.0.notifications()))?;
        st.end()
    }
}

/// Serializes what an iterator yields as a JSON array.
struct Seq<F>(F);

impl<F, I> Serialize for Seq<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
    }
}

/// Files of the state directory: readable by the daemon's user only.
const FILE_MODE: u32 = 0o600;

#[derive(Deserialize)]
struct SnapshotIn {
    format: u32,
    seq: u64,
    state: Snapshot,
}

/// What replay found, for the startup log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub snapshot_seq: u64,
    pub wal_records: usize,
    /// Records that did not parse or apply (logged, skipped).
    pub skipped: Vec<String>,
    /// A torn last line was cut off.
    pub torn_tail: bool,
}

/// The open WAL; the engine owns it.
pub struct Storage {
    dir: PathBuf,
    wal: File,
    /// Device and inode of `wal`: the file the WAL's path must still name.
    wal_id: (u64, u64),
    wal_path: PathBuf,
    /// Device and inode of the snapshot last written (or read at open):
    /// the file the snapshot's path must still name.
    snap_id: Option<(u64, u64)>,
    buf: Vec<u8>,
    /// Events in `buf`.
    buffered: usize,
    next_seq: u64,
    /// Records in the WAL since the last snapshot.
    wal_len: usize,
    /// Bytes of the WAL that are complete, committed records.
    good_len: u64,
    /// A failed write may have left a fragment past `good_len` that could
    /// not be cut yet.
    needs_cut: bool,
}

/// How a commit went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Appended to the WAL.
    Appended,
    /// The WAL had been deleted or replaced under the daemon: the state was
    /// written as a fresh snapshot and a new WAL started.
    Rewritten,
}

impl Storage {
    /// Opens (creating if needed) the WAL and snapshot in `dir` and rebuilds
    /// the state they hold.
    pub fn open(dir: &Path) -> Result<(Storage, State, ReplayReport), StorageError> {
        let mut report = ReplayReport::default();
        let snap_path = dir.join(SNAPSHOT_FILE);
        let (mut state, snap_seq) = match std::fs::read(&snap_path) {
            Ok(bytes) => {
                let snap: SnapshotIn =
                    serde_json::from_slice(&bytes).map_err(|e| StorageError::BadSnapshot {
                        path: snap_path.clone(),
                        reason: e.to_string(),
                    })?;
                if snap.format != SNAPSHOT_FORMAT {
                    return Err(StorageError::BadSnapshot {
                        path: snap_path,
                        reason: format!("format {} (expected {SNAPSHOT_FORMAT})", snap.format),
                    });
                }
                (State::from_snapshot(snap.state), snap.seq)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (State::new(), 0),
            Err(e) => return Err(io_err("read the snapshot", &snap_path)(e)),
        };
        report.snapshot_seq = snap_seq;
        if snap_seq > 0 {
            // Written by an older oj under the umask: tighten it.
            std::fs::set_permissions(&snap_path, std::fs::Permissions::from_mode(FILE_MODE))
                .map_err(io_err("set the mode of", &snap_path))?;
        }

        let wal_path = dir.join(WAL_FILE);
        let mut wal = open_wal(&wal_path, false)?;
        let mut last_seq = snap_seq;
        let mut first_seq: Option<u64> = None;
        let mut good_len: u64 = 0;
        let mut wal_len = 0;
        {
            let mut reader = BufReader::new(&mut wal);
            reader
                .seek(SeekFrom::Start(0))
                .map_err(io_err("read the WAL", &wal_path))?;
            let mut line = Vec::new();
            let mut offset: u64 = 0;
            let mut pending_bad: Option<(u64, String)> = None;
            loop {
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .map_err(io_err("read the WAL", &wal_path))?;
                if n == 0 {
                    break;
                }
                let start = offset;
                offset += n as u64;
                if let Some((at, why)) = pending_bad.take() {
                    // A bad line followed by more lines is corruption, not a torn write.
                    report.skipped.push(format!("WAL byte {at}: {why}"));
                }
                let complete = line.last() == Some(&b'\n');
                let text = if complete { &line[..n - 1] } else { &line[..] };
                if text.iter().all(u8::is_ascii_whitespace) {
                    if complete {
                        good_len = offset;
                    }
                    continue;
                }
                match serde_json::from_slice::<RecordIn>(text) {
                    Ok(rec) if complete => {
                        good_len = offset;
                        wal_len += 1;
                        first_seq.get_or_insert(rec.seq);
                        if rec.seq <= last_seq {
                            continue; // already in the snapshot
                        }
                        last_seq = rec.seq;
                        report.wal_records += 1;
                        if let Err(e) = state.apply(&rec.event) {
                            report.skipped.push(format!("WAL record {}: {e}", rec.seq));
                        }
                    }
                    Ok(_) => pending_bad = Some((start, "incomplete last line".into())),
                    Err(e) => pending_bad = Some((start, e.to_string())),
                }
            }
            if pending_bad.is_some() {
                report.torn_tail = true;
            }
        }
        if let Some(first_seq) = first_seq
            && snap_seq == 0
            && first_seq > 1
        {
            return Err(StorageError::MissingSnapshot {
                path: snap_path,
                first_seq,
            });
        }
        if report.torn_tail {
            // Cut the torn tail so the next append starts on a fresh line.
            wal.set_len(good_len)
                .map_err(io_err("truncate the torn end of the WAL", &wal_path))?;
            wal.sync_all().map_err(io_err("sync the WAL", &wal_path))?;
        }
        if !report.torn_tail {
            good_len = wal
                .metadata()
                .map_err(io_err("read the WAL", &wal_path))?
                .len();
        }
        // Reading left the heap full of freed parse buffers: give them back,
        // so a restarted daemon holds about what a fresh one with the same
        // jobs would.
        release_free_heap();
        Ok((
            Storage {
                dir: dir.to_path_buf(),
                wal_id: file_id(&wal, &wal_path)?,
                snap_id: path_id(&snap_path),
                wal,
                wal_path,
                buf: Vec::with_capacity(64 * 1024),
                buffered: 0,
                next_seq: last_seq + 1,
                wal_len,
                good_len,
                needs_cut: false,
            },
            state,
            report,
        ))
    }

    /// Buffers one event; nothing is durable until [`Storage::commit`].
    pub fn append(&mut self, event: &Event) {
        let rec = RecordOut {
            seq: self.next_seq,
            event,
        };
        match serde_json::to_writer(&mut self.buf, &rec) {
            Ok(()) => {
                self.buf.push(b'\n');
                self.next_seq += 1;
                self.buffered += 1;
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a WAL event; it is lost"),
        }
    }

    /// The sequence number the next appended event gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Takes a sequence number for something published outside the WAL
    /// (a status change): the next record, commit or snapshot makes it
    /// durable. Only between turns (nothing buffered), so a failed commit
    /// rolls back exactly its own records.
    pub fn reserve_seq(&mut self) -> u64 {
        if self.buffered > 0 {
            return self.next_seq.saturating_sub(1);
        }
        if self.next_seq == 1 {
            // Nothing was ever written: a WAL with no snapshot must start at
            // record 1 (a later start takes a missing first record for a
            // lost snapshot), so the status before the first commit is 0.
            return 0;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Whether events wait in the buffer.
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Makes every buffered event durable: writes and fsyncs them, or, when
    /// the WAL is no longer the file this daemon opened, writes `state`
    /// (which already holds them) as a new snapshot. On an error nothing of
    /// the batch is kept: the buffer is dropped and the file cut back to its
    /// last complete record; the caller must undo the batch in memory.
    pub fn commit(&mut self, state: &State) -> Result<Committed, StorageError> {
        if self.buf.is_empty() {
            return Ok(Committed::Appended);
        }
        let result = self.write_batch(state);
        if result.is_err() {
            self.next_seq -= self.buffered as u64;
        } else {
            self.wal_len += self.buffered;
        }
        self.buf.clear();
        self.buffered = 0;
        result
    }

    fn write_batch(&mut self, state: &State) -> Result<Committed, StorageError> {
        if self.needs_cut {
            self.cut_back()?;
        }
        if self.files_were_replaced()? {
            self.rewrite(state)?;
            return Ok(Committed::Rewritten);
        }
        let written = self
            .wal
            .write_all(&self.buf)
            .and_then(|()| self.wal.sync_data());
        if let Err(e) = written {
            self.needs_cut = true;
            // Best effort now; if it fails too, the next commit cuts first.
            let _ = self.cut_back();
            return Err(io_err("write the WAL", &self.wal_path)(e));
        }
        self.good_len += self.buf.len() as u64;
        Ok(Committed::Appended)
    }

    /// Whether writing works again, while there is nothing to commit: cuts
    /// back what a failed write left, checks the WAL is still ours, and
    /// writes (and removes) a page-sized probe file beside it.
    pub fn probe(&mut self, state: &State) -> Result<(), StorageError> {
        if self.needs_cut {
            self.cut_back()?;
        }
        if self.files_were_replaced()? {
            self.rewrite(state)?;
        }
        let path = self.dir.join(".oj-probe");
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&path)
            .and_then(|mut f| f.write_all(&[0u8; 4096]).and_then(|()| f.sync_data()));
        let _ = std::fs::remove_file(&path);
        written.map_err(io_err("write", &path))
    }

    /// Truncates the WAL to its last complete record.
    fn cut_back(&mut self) -> Result<(), StorageError> {
        self.wal
            .set_len(self.good_len)
            .and_then(|()| self.wal.sync_data())
            .map_err(io_err(
                "cut the WAL back to its last complete record",
                &self.wal_path,
            ))?;
        self.needs_cut = false;
        Ok(())
    }

    /// Makes sure the space reserve exists (best effort): only when the
    /// volume has four times its size free, so making it never fills a
    /// disk that is nearly full. Returns whether it exists now.
    pub fn ensure_reserve(&self) -> bool {
        let path = self.dir.join(RESERVE_FILE);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
            return true;
        }
        let free = nix::sys::statvfs::statvfs(&self.dir)
            .map(|v| v.blocks_available().saturating_mul(v.fragment_size()))
            .unwrap_or(0);
        if free < 4 * RESERVE_BYTES {
            return false;
        }
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&path)
            .and_then(|mut f| {
                // Real blocks, not a sparse file: zeros written out.
                let chunk = [0u8; 64 * 1024];
                for _ in 0..RESERVE_BYTES / chunk.len() as u64 {
                    f.write_all(&chunk)?;
                }
                f.sync_all()
            });
        if written.is_err() {
            let _ = std::fs::remove_file(&path);
            return false;
        }
        true
    }

    /// Deletes the space reserve, so that removals (and the log deletions
    /// they allow) can be written on a full disk; returns whether it freed
    /// anything. [`Storage::ensure_reserve`] makes it again once there is
    /// room.
    pub fn release_reserve(&self) -> bool {
        std::fs::remove_file(self.dir.join(RESERVE_FILE)).is_ok()
    }

    /// The periodic check while nothing is committed: when the WAL or the
    /// snapshot was deleted or replaced, `state` is written as a fresh
    /// snapshot with a new WAL. Returns whether it was.
    pub fn verify(&mut self, state: &State) -> Result<bool, StorageError> {
        if !self.buf.is_empty() || self.needs_cut || !self.files_were_replaced()? {
            return Ok(false);
        }
        self.rewrite(state)?;
        Ok(true)
    }

    /// Whether the WAL or the snapshot is no longer the file this daemon
    /// wrote (logged when so).
    fn files_were_replaced(&self) -> Result<bool, StorageError> {
        if self.wal_was_replaced()? {
            tracing::error!(
                wal = %self.wal_path.display(),
                "the WAL was deleted, replaced or changed by another program while the daemon ran; writing the whole state as a fresh snapshot and starting a new WAL"
            );
            return Ok(true);
        }
        if let Some(known) = self.snap_id {
            let path = self.dir.join(SNAPSHOT_FILE);
            if path_id(&path) != Some(known) {
                tracing::error!(
                    snapshot = %path.display(),
                    "the snapshot was deleted or replaced by another program while the daemon ran; writing the whole state as a fresh snapshot and starting a new WAL"
                );
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether the file at the WAL's path is no longer the one this daemon
    /// has open with exactly what it wrote (deleted, renamed over, or
    /// written by someone else).
    fn wal_was_replaced(&self) -> Result<bool, StorageError> {
        // One stat per commit: the path must name our file, at the length
        // we wrote (an append by someone else shows in the length).
        match std::fs::metadata(&self.wal_path) {
            Ok(there) => {
                Ok((there.dev(), there.ino()) != self.wal_id || there.len() != self.good_len)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(io_err("check the WAL", &self.wal_path)(e)),
        }
    }

    /// Writes `state` as the snapshot and starts a new, empty WAL. A file
    /// someone else put at the WAL's path is kept as `wal.jsonl.foreign`.
    fn rewrite(&mut self, state: &State) -> Result<(), StorageError> {
        self.write_snapshot(state, self.next_seq - 1)?;
        if self.wal_path.exists() {
            let aside = self.dir.join(format!("{WAL_FILE}.foreign"));
            std::fs::rename(&self.wal_path, &aside)
                .map_err(io_err("move aside the replaced WAL", &self.wal_path))?;
        }
        self.wal = open_wal(&self.wal_path, true)?;
        self.wal_id = file_id(&self.wal, &self.wal_path)?;
        sync_dir(&self.dir)?;
        self.good_len = 0;
        self.needs_cut = false;
        self.wal_len = 0;
        Ok(())
    }

    /// The directory holding the WAL and snapshot.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records in the WAL since the last snapshot.
    pub fn wal_len(&self) -> usize {
        self.wal_len
    }

    /// Writes `state` as the new snapshot (crash-safe) and empties the WAL.
    /// Buffered events are committed first.
    pub fn snapshot(&mut self, state: &State) -> Result<(), StorageError> {
        if self.commit(state)? == Committed::Rewritten {
            return Ok(());
        }
        self.write_snapshot(state, self.next_seq - 1)?;
        // Every record is now in the snapshot; the WAL can start over.
        self.good_len = 0;
        self.needs_cut = true;
        self.cut_back()?;
        self.wal_len = 0;
        Ok(())
    }

    /// Writes `state` as `snapshot.json` covering records up to `seq`:
    /// a temporary file, fsynced, renamed over the old one, directory
    /// fsynced. A failed attempt leaves the old snapshot and no temporary.
    fn write_snapshot(&mut self, state: &State, seq: u64) -> Result<(), StorageError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let tmp = self.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let written = write_snapshot_file(&tmp, state, seq).and_then(|()| {
            std::fs::rename(&tmp, &path).map_err(io_err("rename the snapshot into", &path))
        });
        if written.is_err() {
            // Do not leave a half-written temporary taking the space.
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        self.snap_id = path_id(&path);
        release_free_heap();
        sync_dir(&self.dir)
    }
}

/// Device and inode of the file at `path` (through symlinks), if any.
fn path_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Device and inode of an open file.
fn file_id(file: &File, path: &Path) -> Result<(u64, u64), StorageError> {
    let meta = file.metadata().map_err(io_err("check the WAL", path))?;
    Ok((meta.dev(), meta.ino()))
}

/// Returns the heap's free pages to the system (glibc keeps what a big
/// burst of allocations freed; RSS would stay at the burst's peak).
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only reorganises the allocator's free lists; it
    // takes no pointers and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn write_snapshot_file(tmp: &Path, state: &State, seq: u64) -> Result<(), StorageError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(tmp)
        .map_err(io_err("create", tmp))?;
    // A temporary left by a crash keeps its old mode on open: tighten it.
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .map_err(io_err("set the mode of", tmp))?;
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    serde_json::to_writer(
        &mut out,
        &SnapshotOut {
            format: SNAPSHOT_FORMAT,
            seq,
            state: SnapshotRef(state),
        },
    )
    .map_err(|e| io_err("write", tmp)(io::Error::other(e)))?;
    let file = out
        .into_inner()
        .map_err(|e| io_err("write", tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err("sync", tmp))
}

/// Opens the WAL for appending (0600), creating it; `fresh` empties it.
fn open_wal(path: &Path, fresh: bool) -> Result<File, StorageError> {
    let wal = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err("open the WAL", path))?;
    if fresh {
        wal.set_len(0).map_err(io_err("empty the WAL", path))?;
    }
    // An existing file keeps its old mode on open: tighten it.
    wal.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .map_err(io_err("set the mode of", path))?;
    Ok(wal)
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync the directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oj_core::{Job, JobId, JobSpec, JobState, StepSpec, Timestamp};
    use std::time::{Duration, UNIX_EPOCH};

    fn t(s: u64) -> Timestamp {
        Timestamp(UNIX_EPOCH + Duration::from_secs(1_795_000_000 + s))
    }

    fn submitted(n: u64) -> (JobId, Event) {
        let id = JobId::from_parts(1_795_000_000_000 + n, 0);
        let spec = JobSpec {
            name: format!("job{n}"),
            queue: "default".into(),
            dir: None,
            labels: Default::default(),
            env: Default::default(),
            notify: None,
            container: None,
            retry: None,
            priority: 0,
            after: Vec::new(),
            hold: false,
            not_before: None,
            steps: vec![StepSpec {
                name: "s".into(),
                run: "true".into(),
                timeout: None,
                container: None,
                retry: None,
                secrets: Default::default(),
            }],
            workspace: None,
            secrets: Default::default(),
        };
        (
            id.clone(),
            Event::JobSubmitted {
                job: Box::new(Job::new(id, spec, t(n))),
            },
        )
    }

    #[test]
    fn committed_events_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut st, mut state, _) = Storage::open(dir.path()).unwrap();
        let (a, ev) = submitted(1);
        state.apply(&ev).unwrap();
        st.append(&ev);
        let started = Event::JobStarted {
            id: a.clone(),
            at: t(2),
        };
        state.apply(&started).unwrap();
        st.append(&started);
        st.commit(&state).unwrap();
        drop(st);
        let (_, again, report) = Storage::open(dir.path()).unwrap();
        assert_eq!(again, state);
        assert_eq!(report.wal_records, 2);
        assert_eq!(again.job(&a).unwrap().state, JobState::Running);
    }

    /// Issue 30 item 4: the snapshot is watched like the WAL.
    #[test]
    fn a_deleted_snapshot_is_written_again_or_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join(SNAPSHOT_FILE);
        let (mut st, mut state, _) = Storage::open(dir.path()).unwrap();
        let (a, ev) = submitted(1);
        state.apply(&ev).unwrap();
        st.append(&ev);
        st.snapshot(&state).unwrap();
        std::fs::remove_file(&snap).unwrap();
        assert!(st.verify(&state).unwrap(), "the periodic check notices");
        assert!(snap.exists());
        assert!(!st.verify(&state).unwrap(), "once");
        let (b, ev) = submitted(2);
        state.apply(&ev).unwrap();
        st.append(&ev);
        st.commit(&state).unwrap();
        std::fs::remove_file(&snap).unwrap();
        drop(st);
        let err = Storage::open(dir.path()).err().expect("refused");
        assert!(
            matches!(err, StorageError::MissingSnapshot { first_seq: 2, .. }),
            "{err}"
        );
        let _ = (a, b);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut st, state, _) = Storage::open(dir.path()).unwrap();
        let (a, ev) = submitted(1);
        st.append(&ev);
        st.commit(&state).unwrap();
        drop(st);
        // A crash in the middle of the next write.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(WAL_FILE))
            .unwrap();
        f.write_all(b"{\"seq\":2,\"event\":{\"type\":\"job_sta")
            .unwrap();
        drop(f);
        let (mut st, state, report) = Storage::open(dir.path()).unwrap();
        assert!(report.torn_tail);
        assert!(state.job(&a).is_some());
        // The next append starts on a clean line.
        let started = Event::JobStarted {
            id: a.clone(),
            at: t(2),
        };
        st.append(&started);
        st.commit(&state).unwrap();
        drop(st);
        let (_, state, report) = Storage::open(dir.path()).unwrap();
        assert!(!report.torn_tail, "{report:?}");
        assert!(report.skipped.is_empty(), "{report:?}");
        assert_eq!(state.job(&a).unwrap().state, JobState::Running);
    }

    #[test]
    fn snapshot_then_wal_replays_everything_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut st, mut state, _) = Storage::open(dir.path()).unwrap();
        let (a, ev) = submitted(1);
        state.apply(&ev).unwrap();
        st.append(&ev);
        st.snapshot(&state).unwrap();
        let (b, ev) = submitted(2);
        state.apply(&ev).unwrap();
        st.append(&ev);
        st.commit(&state).unwrap();
        drop(st);
        let (_, again, report) = Storage::open(dir.path()).unwrap();
        assert_eq!(again, state);
        assert!(again.job(&a).is_some() && again.job(&b).is_some());
        assert_eq!(report.snapshot_seq, 1);
        assert!(report.skipped.is_empty());
    }

    #[test]
    fn a_crash_between_snapshot_and_truncate_replays_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (mut st, mut state, _) = Storage::open(dir.path()).unwrap();
        let (_, ev) = submitted(1);
        state.apply(&ev).unwrap();
        st.append(&ev);
        st.commit(&state).unwrap();
        let wal_before = std::fs::read(dir.path().join(WAL_FILE)).unwrap();
        st.snapshot(&state).unwrap();
        drop(st);
        // Put the old WAL back as if truncation never happened.
        std::fs::write(dir.path().join(WAL_FILE), wal_before).unwrap();
        let (_, again, report) = Storage::open(dir.path()).unwrap();
        assert_eq!(again, state);
        assert!(report.skipped.is_empty(), "{report:?}");
    }

    #[test]
    fn a_corrupt_middle_line_is_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (mut st, state, _) = Storage::open(dir.path()).unwrap();
        let (a, ev) = submitted(1);
        st.append(&ev);
        st.commit(&state).unwrap();
        drop(st);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(WAL_FILE))
            .unwrap();
        f.write_all(b"garbage\n").unwrap();
        let started = Event::JobStarted {
            id: a.clone(),
            at: t(2),
        };
        let line = serde_json::to_string(&RecordOut {
            seq: 2,
            event: &started,
        })
        .unwrap();
        f.write_all(format!("{line}\n").as_bytes()).unwrap();
        drop(f);
        let (_, state, report) = Storage::open(dir.path()).unwrap();
        assert_eq!(report.skipped.len(), 1, "{report:?}");
        assert_eq!(state.job(&a).unwrap().state, JobState::Running);
    }
}
