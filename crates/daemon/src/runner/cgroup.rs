//! Each shell step in its own cgroup (v2), where the machine allows it
//! (issue 30): a process a step starts is in the step's cgroup from its
//! birth, whatever it does afterwards (`setsid`, double forks, new children
//! from a TERM handler), so when the step ends, `cgroup.kill` ends all of
//! it — no race with a `/proc` scan. The daemon's cgroups live in one
//! subtree below its own cgroup, named after its mark
//! ([`crate::identity`]): `<own cgroup>/oj-<mark>/<job-id>-<step>-<attempt>`.
//! After a `kill -9`, the restart finds the dead daemon's step cgroups there
//! (same state directory, same mark) and ends them; it never touches a
//! cgroup it did not make. The subtree exists only while steps run (made
//! by the first, removed by the last), so a daemon killed while idle leaves
//! no cgroup behind.
//!
//! Where cgroup v2 is not mounted, or the daemon's cgroup is not writable
//! (no delegation), or the kernel has no `cgroup.kill` (before 5.14), the
//! subreaper and `/proc` sweep of [`super::leftovers`] does the work alone;
//! it also runs after the cgroup, for a step that could not be moved into
//! its cgroup. [`mode`] says which is in use (`oj status`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// How leftovers are found: `"cgroup"` (cgroup v2 and `cgroup.kill`) or
/// `"process-scan"` (the fallback), with the reason for the fallback.
pub fn mode() -> (&'static str, Option<&'static str>) {
    match ROOT.get() {
        Some(Ok(_)) => ("cgroup", None),
        Some(Err(why)) => ("process-scan", Some(why.as_str())),
        None => ("process-scan", Some("not set up")),
    }
}

/// Removes the daemon's subtree at a clean exit (the empty step cgroups
/// in it too; a populated one stays, and so does the subtree then).
pub fn remove_subtree() {
    if let Some(Ok(root)) = ROOT.get() {
        remove_empty(root);
    }
}

/// Removes the empty cgroups below `root`, then `root` if it is empty.
fn remove_empty(root: &Path) {
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(root);
}

/// Sets up the daemon's cgroup subtree for `mark`; returns it, or why
/// steps go without cgroups. Called once at start.
pub fn init(mark: &str) -> Result<&'static Path, &'static str> {
    let r = ROOT.get_or_init(|| setup(mark));
    match r {
        Ok(p) => Ok(p.as_path()),
        Err(e) => Err(e.as_str()),
    }
}

fn setup(mark: &str) -> Result<PathBuf, String> {
    let own =
        own_cgroup().ok_or("cgroup v2 is not mounted (or this process is in no v2 cgroup)")?;
    let magic = nix::sys::statfs::statfs(&own)
        .map_err(|e| format!("cannot statfs {}: {e}", own.display()))?
        .filesystem_type();
    if magic != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        return Err(format!("{} is not a cgroup v2 file system", own.display()));
    }
    let root = own.join(format!("oj-{}", &mark[..mark.len().min(16)]));
    match std::fs::create_dir(&root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(format!(
                "cannot create the cgroup {} ({e}): the daemon's cgroup is not delegated to it",
                root.display()
            ));
        }
    }
    if !root.join("cgroup.kill").exists() {
        let _ = std::fs::remove_dir(&root);
        return Err("the kernel has no cgroup.kill (Linux 5.14 or later)".into());
    }
    // Moving a process needs write access to cgroup.procs of the common
    // ancestor too: try it with a throwaway child now, not at each step.
    let probe = root.join("probe");
    let _ = std::fs::create_dir(&probe);
    // Through the same doorway as a step: this also proves it works here.
    // The answer is read, not just the exit status: a binary that is not
    // `oj` (a program embedding this library, a test harness) exits 0 on
    // arguments it does not know, without running the shell.
    let expected = format!(
        "/{}/probe",
        root.file_name().unwrap_or_default().to_string_lossy()
    );
    let moved = procs_path(&probe).and_then(|procs| {
        let out = std::process::Command::new(SELF_EXE)
            .arg(DOORWAY_ARG)
            .arg(std::ffi::OsStr::from_bytes(procs.as_bytes()))
            .args(["/bin/sh", "-c", "cat /proc/self/cgroup"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()?;
        Ok(out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.starts_with("0::") && l.ends_with(&expected)))
    });
    let _ = std::fs::remove_dir(&probe);
    // Empty step cgroups a killed run of this daemon left (populated ones
    // are ended by the restart's sweep); the subtree is made again by the
    // first step (see `for_step`).
    remove_empty(&root);
    match moved {
        Ok(true) => Ok(root),
        Ok(false) => Err(format!(
            "cannot start a process inside a cgroup below {}: no write access to cgroup.procs, or this binary is not `oj` (steps enter their cgroup through `oj {DOORWAY_ARG}`)",
            root.display()
        )),
        Err(e) => Err(format!("cannot try a cgroup below {}: {e}", root.display())),
    }
}

fn procs_path(dir: &Path) -> std::io::Result<CString> {
    CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a NUL in the cgroup path"))
}

/// A step's cgroup, created (empty) before the step starts; `None` when
/// cgroups are not in use or it cannot be created.
pub fn for_step(job_id: &str, step_index: usize, attempt: u32) -> Option<PathBuf> {
    let Some(Ok(root)) = ROOT.get() else {
        return None;
    };
    let dir = root.join(format!("{job_id}-{step_index}-{attempt}"));
    let mut last = None;
    // The last step of another job may remove the subtree in between.
    for _ in 0..3 {
        let made = match std::fs::create_dir(root) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => std::fs::create_dir(&dir),
        };
        match made {
            Ok(()) => return Some(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Some(dir),
            Err(e) => last = Some(e),
        }
    }
    if let Some(e) = last {
        tracing::warn!(cgroup = %dir.display(), error = %e, "cannot create the step's cgroup; its leftovers are found by a /proc scan");
    }
    None
}

/// How the daemon starts a step inside its cgroup without `fork`: a
/// `pre_exec` hook would make std fork the daemon, whose page tables grow
/// with its heap (10 000 waiting jobs halved the start rate, issue 26).
/// Instead the step starts as `oj DOORWAY_ARG <cgroup.procs> <program>
/// <args>…` through `posix_spawn`; that first joins the cgroup (writing
/// `0` means "me"), then execs the program — so everything the step starts
/// is born inside it, as before. See [`enter_doorway_if_asked`].
pub const DOORWAY_ARG: &str = "__oj-step-in-cgroup";

/// The daemon's own binary (still runnable when replaced on disk).
pub const SELF_EXE: &str = "/proc/self/exe";

/// The command that starts `program` with `args` inside the cgroup `dir`
/// (best effort: a step that cannot join still runs, and the scan finds
/// its leftovers).
pub fn doorway(dir: &Path, program: &Path) -> Option<tokio::process::Command> {
    let procs = procs_path(dir).ok()?;
    let mut cmd = tokio::process::Command::new(SELF_EXE);
    cmd.arg(DOORWAY_ARG)
        .arg(std::ffi::OsStr::from_bytes(procs.as_bytes()))
        .arg(program);
    Some(cmd)
}

/// Called first thing in `main`: when this process is a step's doorway,
/// joins the cgroup and execs the step's program (never returns); else
/// does nothing.
pub fn enter_doorway_if_asked() {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(DOORWAY_ARG)) {
        return;
    }
    let (Some(procs), Some(program)) = (args.next(), args.next()) else {
        eprintln!("oj: {DOORWAY_ARG} needs <cgroup.procs> <program> [args...]");
        std::process::exit(127);
    };
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .open(&procs)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"0"));
    // `exec` starts the program with an empty signal mask and SIGPIPE at
    // its default, like any other spawn.
    let err = std::process::Command::new(&program).args(args).exec();
    eprintln!("oj: cannot start {program:?} (jobs.shell): {err}");
    std::process::exit(127);
}

/// The pids in a cgroup.
fn members(dir: &Path) -> Vec<Pid> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| {
            t.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(Pid::from_raw)
                .collect()
        })
        .unwrap_or_default()
}

fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|t| t.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// Ends everything in a step's cgroup: SIGTERM to each process, then, after
/// `grace` (or at once when `grace` is zero), `cgroup.kill` — which also
/// takes whatever was started meanwhile, from a TERM handler say; then the
/// cgroup is removed. Returns how many processes were in it.
pub async fn end(dir: &Path, grace: Duration) -> usize {
    let first = members(dir);
    if !first.is_empty() && !grace.is_zero() {
        for pid in &first {
            let _ = kill(*pid, Signal::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while populated(dir) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    kill_and_remove(dir, Duration::from_secs(2)).await;
    first.len()
}

async fn kill_and_remove(dir: &Path, wait: Duration) {
    if populated(dir) {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        let deadline = tokio::time::Instant::now() + wait;
        while populated(dir) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    if let Err(e) = std::fs::remove_dir(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove a step's cgroup");
    }
    // The last step out removes the subtree (it fails while others run).
    if let Some(root) = dir.parent() {
        let _ = std::fs::remove_dir(root);
    }
}

/// After a restart: ends what is left in the cgroups of job `job_id`'s
/// steps (made by this daemon before it died: same mark, same subtree).
/// Returns how many processes were in them.
pub fn kill_job(job_id: &str) -> usize {
    let Some(Ok(root)) = ROOT.get() else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let prefix = format!("{job_id}-");
    let mut n = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let dir = entry.path();
        n += members(&dir).len();
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if !populated(&dir) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir(&dir);
    }
    let _ = std::fs::remove_dir(root);
    n
}

/// The calling process's cgroup v2 directory: the `0::` line of
/// `/proc/self/cgroup` below the cgroup2 mount point.
fn own_cgroup() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Fields: id parent major:minor root mount-point options ... - fstype source super-options
    let mount = mounts.lines().rev().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(str::to_string))?
    })?;
    let dir = Path::new(&mount).join(rel.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}
