//! No leftovers, with the real binary: whatever a shell step starts — a
//! background child in its process group, a grandchild that escaped with
//! `setsid` — is ended when the step ends (normal exit, cancel, timeout,
//! drain), and orphans are reaped, also when the daemon is PID 1 of its
//! own PID namespace.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Daemon, TestEnv, wait_until};
use serde_json::json;

fn pid_in(path: &Path) -> u32 {
    let mut pid = 0;
    wait_until(Duration::from_secs(10), || {
        pid = fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        pid != 0
    });
    assert_ne!(pid, 0, "{} never got a pid", path.display());
    pid
}

fn gone(pid: u32) -> bool {
    wait_until(Duration::from_secs(5), || {
        !Path::new(&format!("/proc/{pid}")).exists()
    })
}

/// A step that leaves a background child and a `setsid` grandchild, writing
/// their pids, then runs `tail`.
fn leaving(env: &TestEnv, tag: &str, tail: &str) -> serde_json::Value {
    let dir = env.path().display();
    json!({"name": tag, "steps": [{"name": "s", "run": format!(
        "sleep 1000 & echo $! > {dir}/{tag}.bg; setsid sleep 1000 & echo $! > {dir}/{tag}.sid; {tail}"
    )}]})
}

fn assert_ended(env: &TestEnv, tag: &str, why: &str) {
    for kind in ["bg", "sid"] {
        let pid = pid_in(&env.path().join(format!("{tag}.{kind}")));
        assert!(gone(pid), "the {kind} process {pid} survived {why}");
    }
}

#[test]
fn everything_a_step_started_ends_with_it_on_exit_cancel_and_timeout() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);

    let done = d.submit(&leaving(&env, "exit", "true"));
    let job = d.wait_job(&done, &["done"], Duration::from_secs(10));
    assert_eq!(job["state"], "done");
    assert_ended(&env, "exit", "a normal exit");
    let log = fs::read_to_string(env.state_dir().join(format!("logs/{done}/s.log"))).unwrap();
    assert!(
        log.contains("[oj] ended 2 process(es) the step left running"),
        "{log}"
    );

    let cancelled = d.submit(&leaving(&env, "cancel", "sleep 1000"));
    d.wait_job(&cancelled, &["running"], Duration::from_secs(10));
    pid_in(&env.path().join("cancel.sid"));
    let (s, _) = d.post(&format!("/v1/jobs/{cancelled}/cancel"), &json!({}));
    assert_eq!(s, 202);
    d.wait_job(&cancelled, &["cancelled"], Duration::from_secs(10));
    assert_ended(&env, "cancel", "a cancel");

    let mut timed = leaving(&env, "timeout", "sleep 1000");
    timed["steps"][0]["timeout"] = json!("1s");
    let timed = d.submit(&timed);
    d.wait_job(&timed, &["failed"], Duration::from_secs(15));
    assert_ended(&env, "timeout", "a timeout");
}

#[test]
fn the_drain_ends_what_running_steps_left_and_kill_leftovers_false_keeps_them() {
    let env = TestEnv::new();
    let mut d = env.start_daemon(&["--set", "shutdown.drain_timeout=1s"]);
    let id = d.submit(&leaving(&env, "drain", "sleep 1000"));
    d.wait_job(&id, &["running"], Duration::from_secs(10));
    pid_in(&env.path().join("drain.sid"));
    d.sigterm();
    let status = d
        .wait_exit(Duration::from_secs(20))
        .expect("the daemon exits");
    assert!(status.success(), "{status:?}\n{}", d.stderr());
    assert_ended(&env, "drain", "the drain");

    let d = env.start_daemon(&["--set", "jobs.kill_leftovers=false"]);
    let id = d.submit(&leaving(&env, "kept", "true"));
    d.wait_job(&id, &["done"], Duration::from_secs(10));
    let pid = pid_in(&env.path().join("kept.sid"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "kill_leftovers = false keeps it"
    );
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    let bg = pid_in(&env.path().join("kept.bg"));
    let _ = Command::new("kill").args(["-9", &bg.to_string()]).status();
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let text = fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

fn zombies(pid: u32) -> usize {
    children(pid)
        .into_iter()
        .filter(|c| {
            fs::read_to_string(format!("/proc/{c}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn as_pid_1_fifty_orphans_are_reaped_and_sigterm_drains() {
    let env = TestEnv::new();
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIP: cannot make a PID namespace here (unshare --pid --fork --mount-proc: {:?}); the PID 1 case needs root",
            probe.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        );
        return;
    }
    let cmd = env.oj();
    let oj = cmd.get_program().to_owned();
    let mut unshare = Command::new("unshare");
    unshare
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(oj)
        .args(["daemon", "--set", "jobs.kill_leftovers=false"]);
    unshare
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
    unshare.current_dir(env.path());
    let mut d = Daemon::spawn_raw(unshare, env.path(), env.socket());
    assert!(
        wait_until(Duration::from_secs(15), || d.get("/v1/status").0 == 200),
        "daemon did not start as PID 1\n{}",
        d.stderr()
    );
    let (_, status) = d.get("/v1/status");
    assert_eq!(
        status["pid"], 1,
        "the daemon is PID 1 of its namespace: {status}"
    );
    let daemon = children(d.pid())[0];

    let id = d.submit(&json!({"name": "orphans", "steps": [{"name": "s",
        "run": "for i in $(seq 50); do (sleep 0.2 &); done; sleep 1"}]}));
    d.wait_job(&id, &["done"], Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(5), || zombies(daemon) == 0),
        "{} zombies left under the daemon",
        zombies(daemon)
    );

    let _ = Command::new("kill")
        .args(["-TERM", &daemon.to_string()])
        .status();
    let status = d
        .wait_exit(Duration::from_secs(20))
        .expect("PID 1 drains and exits");
    assert!(status.success(), "{status:?}\n{}", d.stderr());
}
