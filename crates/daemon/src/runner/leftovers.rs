//! No leftovers: when a shell step ends — exit, failure, cancel, timeout,
//! drain — every process it started ends too, and orphans never pile up as
//! zombies (so oj runs correctly as PID 1 without an init).
//!
//! The daemon is a child subreaper (`PR_SET_CHILD_SUBREAPER`): a process
//! whose parent dies is re-parented to the daemon, not to init. So once a
//! step's shell has exited, whatever it left behind — background children of
//! its process group, or processes that escaped it with `setsid` — is a
//! descendant of one of the daemon's own children. Those carry the step's
//! `OJ_JOB_ID` and `OJ_STEP` in their environment (`/proc/<pid>/environ`):
//! they and all their descendants get SIGTERM, then SIGKILL after the grace.
//! Without the subreaper (an old kernel), every process is scanned instead.
//!
//! The reaper waits for zombie children that are not step shells (tokio
//! waits for those, and must get their status): re-parented orphans that
//! ended. Step shells are spawned through [`spawn_tracked`], which records
//! their pid under the same lock the reaper takes, so the reaper can never
//! take a step's exit status. Other code may spawn and wait for processes
//! of its own (a kubeconfig `exec` credential plugin, say): such a child is
//! a zombie only for the moment before its owner waits, so the reaper only
//! takes zombies it has already seen as zombies half a second earlier.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Pids of running step shells: tokio waits for these, the reaper must not.
static STEP_SHELLS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Whether the daemon became a child subreaper.
static SUBREAPER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes the daemon a child subreaper (Linux); returns whether it is one.
pub fn become_subreaper() -> bool {
    #[cfg(target_os = "linux")]
    let ok = nix::sys::prctl::set_child_subreaper(true).is_ok();
    #[cfg(not(target_os = "linux"))]
    let ok = false;
    SUBREAPER.store(ok, std::sync::atomic::Ordering::Relaxed);
    ok
}

fn lock() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    STEP_SHELLS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spawns a step shell, recorded so the reaper leaves it to tokio.
pub fn spawn_tracked(cmd: &mut Command) -> std::io::Result<Child> {
    let mut shells = lock();
    let child = cmd.spawn()?;
    if let Some(pid) = child.id() {
        shells.insert(pid as i32);
    }
    Ok(child)
}

/// Forgets a step shell once tokio has waited for it.
pub fn untrack(pid: u32) {
    lock().remove(&(pid as i32));
}

/// Ends what step `step` of job `job_id` left running: SIGTERM to its
/// process group and to every process carrying its marker (and their
/// descendants), SIGKILL to what is left after `grace`. Returns how many
/// processes were found.
pub async fn end(job_id: &str, step: &str, pgid: Pid, grace: Duration) -> usize {
    let left = find(job_id, step);
    if left.is_empty() && !group_alive(pgid) {
        // The common case: the step left nothing behind.
        return 0;
    }
    let _ = killpg(pgid, Signal::SIGTERM);
    for pid in &left {
        let _ = kill(*pid, Signal::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline
        && (group_alive(pgid) || left.iter().any(|p| alive(*p)))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    for pid in &left {
        if alive(*pid) {
            let _ = kill(*pid, Signal::SIGKILL);
        }
    }
    left.len()
}

fn group_alive(pgid: Pid) -> bool {
    killpg(pgid, None).is_ok()
}

/// Running, not a zombie (a zombie only waits to be reaped).
fn alive(pid: Pid) -> bool {
    kill(pid, None).is_ok() && proc_state(pid.as_raw()) != Some('Z')
}

/// The processes carrying the step's marker, with their descendants.
fn find(job_id: &str, step: &str) -> Vec<Pid> {
    let mut marks = vec![format!("OJ_JOB_ID={job_id}"), format!("OJ_STEP={step}")];
    if let Some(mark) = crate::identity::mark() {
        // Only this daemon's steps: another daemon may use the same id.
        marks.push(format!("{}={mark}", crate::identity::MARK_VARIABLE));
    }
    let me = std::process::id() as i32;
    let candidates = if SUBREAPER.load(std::sync::atomic::Ordering::Relaxed) {
        // What a step leaves behind is an orphan once its shell ended, and
        // the kernel hands orphans to the subreaper's first live thread: the
        // main thread, alive while the daemon runs. One file, not one per
        // thread, on every step end.
        thread_children(me, me)
    } else {
        all_pids()
    };
    let shells = lock().clone();
    let mut found = Vec::new();
    for pid in candidates {
        if pid == me || shells.contains(&pid) || !carries(pid, &marks) {
            continue;
        }
        collect_tree(pid, &mut found);
    }
    found.sort_unstable();
    found.dedup();
    found.into_iter().map(Pid::from_raw).collect()
}

fn carries(pid: i32, marks: &[String]) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    marks
        .iter()
        .all(|m| env.split(|b| *b == 0).any(|kv| kv == m.as_bytes()))
}

fn collect_tree(pid: i32, out: &mut Vec<i32>) {
    if out.contains(&pid) || out.len() > 100_000 {
        return;
    }
    out.push(pid);
    for c in children(pid) {
        collect_tree(c, out);
    }
}

/// Children of one thread `tid` of process `pid`.
fn thread_children(pid: i32, tid: i32) -> Vec<i32> {
    read_proc(format!("/proc/{pid}/task/{tid}/children"))
        .map(|text| pids_in(&text))
        .unwrap_or_default()
}

/// The pids of a `/proc/…/children` file.
fn pids_in(text: &str) -> Vec<i32> {
    text.split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .collect()
}

/// Direct children of `pid` (`/proc/<pid>/task/*/children`).
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = read_proc(task.path().join("children")) {
            out.extend(pids_in(&text));
        }
    }
    out
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A small `/proc` file as text. Plain reads: `fs::read_to_string` would
/// stat it first for a size that `/proc` does not have (an extra system
/// call on every step end).
fn read_proc(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`, …).
fn proc_state(pid: i32) -> Option<char> {
    let stat = read_proc(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// How long a zombie must stay one before the reaper takes it: longer than
/// any owner that waits for its own child takes to do so.
const ORPHAN_AGE: Duration = Duration::from_millis(500);

/// Waits for every zombie child that is not a step shell and has been a
/// zombie for [`ORPHAN_AGE`] (first seen at the time kept in `seen`);
/// returns how many it reaped.
pub fn reap_orphans(seen: &mut HashMap<i32, Instant>) -> usize {
    let shells = lock();
    let now = Instant::now();
    let mut zombies = HashMap::new();
    let mut reaped = 0;
    for pid in children(std::process::id() as i32) {
        if shells.contains(&pid) || proc_state(pid) != Some('Z') {
            continue;
        }
        let first = *seen.get(&pid).unwrap_or(&now);
        if now.duration_since(first) < ORPHAN_AGE {
            zombies.insert(pid, first);
            continue;
        }
        if let Ok(status) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
            && status.pid().is_some()
        {
            reaped += 1;
        }
    }
    *seen = zombies;
    reaped
}

/// Least time between two looks: an orphan waits [`ORPHAN_AGE`] anyway, and
/// a look reads `/proc` for every thread, which a busy daemon (a SIGCHLD per
/// step) should not pay per step.
const REAP_GAP: Duration = Duration::from_millis(100);

/// Reaps orphans: a look on SIGCHLD (at most every [`REAP_GAP`]) and every
/// 250 ms while zombies wait to come of age, once a second otherwise
/// (signals coalesce).
pub async fn run_reaper() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigchld = signal(SignalKind::child()).ok();
    let mut seen = HashMap::new();
    loop {
        let pause = if seen.is_empty() {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(250)
        };
        match &mut sigchld {
            Some(s) => {
                tokio::select! {
                    _ = s.recv() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
            None => tokio::time::sleep(pause).await,
        }
        tokio::task::block_in_place(|| reap_orphans(&mut seen));
        tokio::time::sleep(REAP_GAP).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_state_tells_a_zombie_from_a_sleeper() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exec sleep 0.3"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(proc_state(pid), Some('S'));
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(proc_state(pid), Some('Z'), "ended, not yet waited for");
        child.wait().unwrap();
        assert_eq!(proc_state(pid), None);
    }
}
