//! Shell steps: `jobs.shell + [run]` as a child of the daemon, in its own
//! process group so that a timeout, a cancel or the drain can signal the
//! whole tree (SIGTERM, then SIGKILL after a grace period). Output goes
//! straight into the step's log file (no copy through the daemon). When the
//! step ends, whatever it left running is ended too (`jobs.kill_leftovers`,
//! see [`super::leftovers`]).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::{StepContext, StepOutcome, StepRunner, Stop, cgroup, leftovers};

/// Time between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// Runs shell steps.
pub struct ShellRunner {
    /// `jobs.shell`: the step's `run` is appended as the last argument.
    pub shell: Vec<String>,
    /// The environment every step starts from (the daemon's, without `OJ_*`).
    pub base_env: BTreeMap<String, String>,
    pub kill_grace: Duration,
    /// `jobs.kill_leftovers`: end every process the step started when it ends.
    pub kill_leftovers: bool,
}

impl StepRunner for ShellRunner {
    fn run(
        &self,
        ctx: StepContext,
        stop: watch::Receiver<Stop>,
    ) -> BoxFuture<'static, StepOutcome> {
        let shell = self.shell.clone();
        let base_env = self.base_env.clone();
        let grace = self.kill_grace;
        let kill_leftovers = self.kill_leftovers;
        Box::pin(async move {
            let job_id = ctx.job_id.to_string();
            let step = ctx.step_name.clone();
            let log = ctx.log_path.clone();
            // Its own cgroup, where the machine allows it: whatever the
            // step starts stays in it, `setsid` or not.
            let cgroup = kill_leftovers
                .then(|| cgroup::for_step(job_id.as_str(), ctx.index, ctx.attempt))
                .flatten();
            let (outcome, pgid) =
                run_shell(shell, base_env, grace, ctx, stop, cgroup.as_deref()).await;
            if let Some(pgid) = pgid
                && kill_leftovers
            {
                let mut n = match &cgroup {
                    Some(dir) => cgroup::end(dir, grace).await,
                    None => 0,
                };
                n += leftovers::end(&job_id, &step, pgid, grace).await;
                if n > 0 {
                    append_note(
                        &log,
                        &format!("ended {n} process(es) the step left running"),
                    );
                    tracing::info!(job_id = %job_id, step = %step, processes = n, "ended what the step left running");
                }
            }
            outcome
        })
    }
}

/// Runs the step to its end; also returns its process group once it was
/// started (for the leftovers).
async fn run_shell(
    shell: Vec<String>,
    base_env: BTreeMap<String, String>,
    grace: Duration,
    ctx: StepContext,
    stop: watch::Receiver<Stop>,
    cgroup: Option<&Path>,
) -> (StepOutcome, Option<Pid>) {
    let mut cmd = match prepare(&shell, &base_env, &ctx, cgroup) {
        Ok(cmd) => cmd,
        Err(outcome) => return (outcome, None),
    };
    let mut child = match leftovers::spawn_tracked(&mut cmd) {
        Ok(c) => c,
        Err(e) => {
            // The directory may have gone between the check and the start.
            let msg = match ctx.work_dir.as_ref().and_then(super::workdir::problem) {
                Some(problem) => problem,
                None => format!("cannot start {:?} (jobs.shell): {e}", shell[0]),
            };
            append_note(&ctx.log_path, &msg);
            return (
                StepOutcome::Error(format!("step {}: {msg}", ctx.step_name)),
                None,
            );
        }
    };
    let Some(pid) = child.id() else {
        return (
            StepOutcome::Error(format!(
                "step {}: the process ended before it could be watched",
                ctx.step_name
            )),
            None,
        );
    };
    let pgid = Pid::from_raw(pid as i32);
    tracing::debug!(job_id = %ctx.job_id, step = %ctx.step_name, pid, "step started");
    let outcome = supervise(&ctx, &mut child, pgid, grace, stop).await;
    leftovers::untrack(pid);
    (outcome, Some(pgid))
}

/// The step's command with its log file as stdout and stderr.
fn prepare(
    shell: &[String],
    base_env: &BTreeMap<String, String>,
    ctx: &StepContext,
    cgroup: Option<&Path>,
) -> Result<Command, StepOutcome> {
    let Some((program, args)) = shell.split_first() else {
        return Err(StepOutcome::Error(
            "jobs.shell is empty; set it to e.g. [\"/bin/sh\", \"-c\"]".into(),
        ));
    };
    if let Some(dir) = ctx.log_path.parent()
        && let Err(e) = crate::harden::create_private_dir_all(dir)
    {
        return Err(StepOutcome::Error(format!(
            "cannot create the log directory {}: {e}",
            dir.display()
        )));
    }
    let log = match OpenOptions::new()
        .create(true)
        .append(true)
        .mode(crate::harden::FILE_MODE)
        .open(&ctx.log_path)
    {
        Ok(f) => f,
        Err(e) => {
            return Err(StepOutcome::Error(format!(
                "cannot open the step log {}: {e}",
                ctx.log_path.display()
            )));
        }
    };
    let log_err = match log.try_clone() {
        Ok(f) => f,
        Err(e) => {
            return Err(StepOutcome::Error(format!(
                "cannot open the step log {}: {e}",
                ctx.log_path.display()
            )));
        }
    };
    let work_dir = super::workdir::prepare(ctx)?;
    // A path, found the way `execvp` in the child would (with the step's
    // PATH): with a bare name and a cleared environment std would fork the
    // daemon instead of using `posix_spawn`, and fork slows as the daemon's
    // heap grows (see `cgroup::DOORWAY_ARG`).
    let path_var = ctx
        .env
        .get("PATH")
        .or_else(|| base_env.get("PATH"))
        .map(String::as_str);
    let program = match find_program(program, path_var) {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("cannot start {program:?} (jobs.shell): {e}");
            append_note(&ctx.log_path, &msg);
            return Err(StepOutcome::Error(format!("step {}: {msg}", ctx.step_name)));
        }
    };
    let mut cmd = match cgroup.and_then(|dir| cgroup::doorway(dir, &program)) {
        Some(cmd) => cmd,
        None => Command::new(&program),
    };
    if let Some(dir) = work_dir {
        cmd.current_dir(dir);
    }
    cmd.args(args)
        .arg(&ctx.run)
        .env_clear()
        .envs(base_env)
        .envs(&ctx.env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0)
        .kill_on_drop(false);
    if let Some(mark) = crate::identity::mark() {
        // What the leftover sweeps look for: this daemon's mark, not a job
        // id another daemon may have handed out too.
        cmd.env(crate::identity::MARK_VARIABLE, mark);
    }
    Ok(cmd)
}

/// `program` as a path to an executable file: as given when it has a
/// `/`, else the first match in `path_var` (`execvp`'s default search path
/// when unset).
fn find_program(program: &str, path_var: Option<&str>) -> std::io::Result<PathBuf> {
    use nix::unistd::{AccessFlags, access};
    let executable = |p: &Path| p.is_file() && access(p, AccessFlags::X_OK).is_ok();
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if executable(&p) {
            Ok(p)
        } else if p.exists() {
            Err(std::io::Error::from_raw_os_error(nix::libc::EACCES))
        } else {
            Err(std::io::Error::from_raw_os_error(nix::libc::ENOENT))
        };
    }
    path_var
        .unwrap_or("/bin:/usr/bin")
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(program))
        .find(|p| executable(p))
        .ok_or_else(|| std::io::Error::from_raw_os_error(nix::libc::ENOENT))
}

/// Waits for the step's process: its exit, its timeout, or a stop request.
async fn supervise(
    ctx: &StepContext,
    child: &mut Child,
    pgid: Pid,
    grace: Duration,
    mut stop: watch::Receiver<Stop>,
) -> StepOutcome {
    let deadline = tokio::time::sleep(ctx.timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            status = child.wait() => return outcome(status),
            () = &mut deadline => {
                append_note(
                    &ctx.log_path,
                    &format!("step timed out after {}; stopping its process group", humantime::format_duration(ctx.timeout)),
                );
                tracing::warn!(job_id = %ctx.job_id, step = %ctx.step_name, timeout = %humantime::format_duration(ctx.timeout), "step timed out; terminating its process group");
                let _ = terminate_group(pgid, child, grace).await;
                return StepOutcome::TimedOut(ctx.timeout);
            }
            changed = stop.changed() => {
                let request = *stop.borrow_and_update();
                if changed.is_err() || request == Stop::Run {
                    if changed.is_err() {
                        // The engine is gone; keep waiting for the process only.
                        return outcome(child.wait().await);
                    }
                    continue;
                }
                let why = match request {
                    Stop::Cancel => "the job was cancelled",
                    _ => "the daemon is shutting down (drain timeout passed)",
                };
                append_note(&ctx.log_path, &format!("{why}; sending SIGTERM to the step's process group"));
                return outcome(terminate_group(pgid, child, grace).await);
            }
        }
    }
}

fn outcome(status: std::io::Result<ExitStatus>) -> StepOutcome {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => StepOutcome::Exited(code),
            (None, Some(sig)) => StepOutcome::Signaled(sig),
            (None, None) => StepOutcome::Error("the step ended with an unknown status".into()),
        },
        Err(e) => StepOutcome::Error(format!("cannot wait for the step's process: {e}")),
    }
}

/// SIGTERM to the group, SIGKILL after `grace` if the leader still runs.
async fn terminate_group(
    pgid: Pid,
    child: &mut Child,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    let _ = killpg(pgid, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => {
            // The leader is gone; anything left in its group gets no more time.
            let _ = killpg(pgid, Signal::SIGKILL);
            status
        }
        Err(_) => {
            let _ = killpg(pgid, Signal::SIGKILL);
            child.wait().await
        }
    }
}

/// Kills what is left of a job's shell steps after the daemon that ran them
/// died (`kill -9`, a crash, the OOM killer): a step runs in its own process
/// group, so it outlives the daemon, and the restart that marks the job
/// `interrupted` must not leave it running behind the daemon's back. First
/// the job's step cgroups in this daemon's subtree get `cgroup.kill` (see
/// [`cgroup`]); then the processes found by the `OJ_JOB_ID=<id>` *and* this
/// daemon's `OJ_DAEMON_MARK` in their environment (`/proc/<pid>/environ`,
/// Linux only) — never a process of another daemon that handed out the same
/// id. Each gets SIGKILL, and so does the group it leads (children that
/// cleared their environment). Returns how many processes were killed.
pub fn kill_leftovers(job_id: &str) -> usize {
    let in_cgroups = cgroup::kill_job(job_id);
    #[cfg(target_os = "linux")]
    {
        let needle = format!("OJ_JOB_ID={job_id}");
        let mark =
            crate::identity::mark().map(|m| format!("{}={m}", crate::identity::MARK_VARIABLE));
        let me = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return 0;
        };
        let mut killed = 0;
        for entry in entries.flatten() {
            let Ok(raw) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if raw as u32 == me {
                continue;
            }
            let Ok(env) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let has = |v: &[u8]| env.split(|b| *b == 0).any(|kv| kv == v);
            if !has(needle.as_bytes()) || mark.as_ref().is_some_and(|m| !has(m.as_bytes())) {
                continue;
            }
            let pid = Pid::from_raw(raw);
            if nix::unistd::getpgid(Some(pid)) == Ok(pid) {
                let _ = killpg(pid, Signal::SIGKILL);
            }
            if nix::sys::signal::kill(pid, Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
        in_cgroups + killed
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = job_id;
        in_cgroups
    }
}

/// Appends a line from the daemon to a step log (`[oj] …`), best effort.
pub fn append_note(path: &Path, note: &str) {
    if let Some(dir) = path.parent() {
        let _ = crate::harden::create_private_dir_all(dir);
    }
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(crate::harden::FILE_MODE)
        .open(path)
    {
        let _ = writeln!(f, "[oj] {note}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oj_core::JobId;

    #[test]
    fn the_shell_is_found_on_the_steps_path_as_execvp_would() {
        assert_eq!(
            find_program("sh", Some("/nonexistent:/bin")).unwrap(),
            Path::new("/bin/sh")
        );
        assert_eq!(find_program("/bin/sh", None).unwrap(), Path::new("/bin/sh"));
        let missing = find_program("/bin/no-such-shell", None).unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(nix::libc::ENOENT));
        assert!(find_program("no-such-shell", Some("/bin")).is_err());
        // A directory is not a program.
        let dir = find_program("/bin", None).unwrap_err();
        assert_eq!(dir.raw_os_error(), Some(nix::libc::EACCES));
    }

    fn ctx(dir: &Path, run: &str, timeout: Duration) -> StepContext {
        StepContext {
            job_id: JobId::from_parts(1, 1),
            job_name: "j".into(),
            index: 0,
            attempt: 1,
            step_name: "s".into(),
            run: run.into(),
            env: [("GREETING".to_string(), "hi".to_string())].into(),
            container: None,
            job_resources: None,
            step_resources: None,
            timeout,
            work_dir: None,
            log_path: dir.join("logs/x/s.log"),
            pod: Default::default(),
        }
    }

    fn runner() -> ShellRunner {
        ShellRunner {
            shell: vec!["/bin/sh".into(), "-c".into()],
            base_env: [("PATH".to_string(), "/usr/bin:/bin".to_string())].into(),
            kill_grace: Duration::from_millis(300),
            kill_leftovers: true,
        }
    }

    #[tokio::test]
    async fn output_and_exit_code_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(Stop::Run);
        let c = ctx(
            dir.path(),
            "echo $GREETING; echo oops >&2; exit 3",
            Duration::from_secs(10),
        );
        let out = runner().run(c.clone(), rx).await;
        assert_eq!(out, StepOutcome::Exited(3));
        assert_eq!(std::fs::read_to_string(&c.log_path).unwrap(), "hi\noops\n");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(Stop::Run);
        let c = ctx(
            dir.path(),
            "sleep 30 & sleep 30; echo never",
            Duration::from_millis(200),
        );
        let out = runner().run(c.clone(), rx).await;
        assert_eq!(out, StepOutcome::TimedOut(Duration::from_millis(200)));
        let log = std::fs::read_to_string(&c.log_path).unwrap();
        assert!(log.contains("timed out"), "{log}");
        assert!(!log.contains("never"));
    }

    #[tokio::test]
    async fn a_stop_request_sends_sigterm_first() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(Stop::Run);
        let marker = dir.path().join("marker");
        let run = format!(
            "trap 'echo term > {}; exit 7' TERM; while true; do sleep 0.05; done",
            marker.display()
        );
        let c = ctx(dir.path(), &run, Duration::from_secs(30));
        let task = tokio::spawn(runner().run(c, rx));
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(Stop::Terminate).unwrap();
        let out = task.await.unwrap();
        assert_eq!(out, StepOutcome::Exited(7));
        assert_eq!(std::fs::read_to_string(marker).unwrap(), "term\n");
    }

    #[tokio::test]
    async fn a_missing_shell_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(Stop::Run);
        let mut r = runner();
        r.shell = vec!["/no/such/shell".into()];
        let out = r
            .run(ctx(dir.path(), "true", Duration::from_secs(1)), rx)
            .await;
        let StepOutcome::Error(msg) = out else {
            panic!("{out:?}")
        };
        assert!(
            msg.contains("/no/such/shell") && msg.contains("jobs.shell"),
            "{msg}"
        );
    }
}
