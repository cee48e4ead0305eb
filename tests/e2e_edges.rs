//! Edges found from outside (issue 30), each reproduced against the real
//! binary: a SIGHUP in the first milliseconds, two daemons of one user, a
//! config file that cannot be read whole at a reload, accepted shell work
//! after `jobs.allow_shell = false`, a deleted snapshot, leftovers that
//! escape with `setsid`, a planted log symlink, `--var` values that look
//! like templates.

mod common;

use std::time::Duration;

use common::{Daemon, TestEnv, http, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn wait_ready(d: &mut Daemon) -> bool {
    wait_until(Duration::from_secs(15), || {
        d.exited().is_some() || d.get("/v1/status").0 == 200
    }) && d.exited().is_none()
}

/// The blocked and caught signal masks of `pid` (`SigBlk`, `SigCgt`).
fn signal_masks(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
    };
    Some((mask("SigBlk:")?, mask("SigCgt:")?))
}

// Item 7: SIGHUP's default action ends a process; the daemon must not be
// killed by one that arrives before its reload handler is installed. The
// earliest the program can act is its `main` (the dynamic loader runs
// before it, tens of milliseconds for a debug binary under load): SIGHUP is
// blocked from there, and signals sent 0–5 ms later, while the daemon loads
// its config and starts its runtime, become reloads.
#[test]
fn a_sighup_in_the_first_milliseconds_does_not_kill_the_daemon() {
    for round in 0..10u64 {
        let env = TestEnv::new();
        let mut cmd = env.oj();
        cmd.arg("daemon");
        let mut d = Daemon::spawn_raw(cmd, env.path(), env.socket());
        let pid = d.pid();
        // A tight poll for main's first instruction (SIGHUP blocked); the
        // handler must not be there yet, or this round tests nothing.
        let t0 = std::time::Instant::now();
        let mut masks = None;
        while t0.elapsed() < Duration::from_secs(10) {
            masks = signal_masks(pid);
            if masks.is_none_or(|(blocked, caught)| (blocked | caught) & 1 == 1) {
                break;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        assert!(
            masks.is_some_and(|(blocked, caught)| blocked & 1 == 1 && caught & 1 == 0),
            "round {round}: SIGHUP is not blocked from main's start (masks {masks:x?}, exit {:?})",
            d.exited()
        );
        std::thread::sleep(Duration::from_micros(round * 500));
        for _ in 0..3 {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGHUP);
            std::thread::sleep(Duration::from_micros(300));
        }
        assert!(
            wait_ready(&mut d),
            "round {round}: the daemon did not survive an early SIGHUP: {:?}\nstderr:\n{}",
            d.exited(),
            d.stderr()
        );
        d.sigterm();
        let status = d.wait_exit(WAIT);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "round {round}: {status:?}"
        );
    }
}

fn error_of(d: &Daemon, id: &str) -> String {
    d.get(&format!("/v1/jobs/{id}")).1["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

// Item 3: `jobs.allow_shell = false` also stops shell work accepted before:
// a queued job and a step waiting for its retry do not start after a
// reload turned it off; each job ends failed naming the key.
#[test]
fn allow_shell_false_stops_queued_and_retrying_shell_steps() {
    let env = TestEnv::new();
    // One slot: a step waiting for its retry holds none (issue 30 item
    // 10), so the blocker takes it and the queued job waits behind it.
    let base = "[notify]\nbackend = \"log\"\n[jobs]\nmax_concurrent = 1\n";
    let file = env.write_config(base);
    let d = env.start_daemon(&[]);
    let retrying = d.submit(
        &json!({"name": "retrying", "retry": {"attempts": 3, "backoff": "4s", "on": ["failed"]},
        "steps": [{"name": "flaky", "run": "exit 1"}]}),
    );
    let blocker =
        d.submit(&json!({"name": "blocker", "steps": [{"name": "s", "run": "sleep 60"}]}));
    let queued = d.submit(&json!({"name": "queued", "steps": [{"name": "s", "run": "echo ran"}]}));
    d.wait_job(&blocker, &["running"], WAIT);
    assert!(wait_until(WAIT, || {
        d.get(&format!("/v1/jobs/{retrying}")).1["steps"][0]["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    }));
    std::fs::write(&file, format!("{base}allow_shell = false\n")).unwrap();
    d.signal("HUP");
    assert!(wait_until(WAIT, || d.get("/v1/config").1["config"]["jobs"]
        ["allow_shell"]
        == false));
    assert_eq!(
        d.request("POST", &format!("/v1/jobs/{blocker}/cancel"), None)
            .0,
        202
    );
    for id in [&queued, &retrying] {
        let job = d.wait_job(id, &["failed", "done"], WAIT);
        assert_eq!(job["state"], "failed", "{job}");
        let error = error_of(&d, id);
        assert!(error.contains("jobs.allow_shell"), "{error}");
    }
    let log = std::fs::read_to_string(env.state_dir().join(format!("logs/{queued}/s.log")))
        .unwrap_or_default();
    assert!(!log.contains("ran"), "the queued shell step ran: {log}");
    let (_, job) = d.get(&format!("/v1/jobs/{retrying}"));
    assert_eq!(
        job["steps"][0]["attempts"].as_array().map(Vec::len),
        Some(2),
        "one run, then the refused retry: {job}"
    );
}

// Item 3, after a restart: a queued shell job restored from the WAL does
// not start when the daemon now runs with `jobs.allow_shell = false`.
#[test]
fn a_shell_job_restored_from_the_wal_does_not_start_when_shell_is_off() {
    let env = TestEnv::new();
    env.write_config("[notify]\nbackend = \"log\"\n[jobs]\nmax_concurrent = 1\n");
    let mut d = env.start_daemon(&[]);
    let blocker =
        d.submit(&json!({"name": "blocker", "steps": [{"name": "s", "run": "sleep 60"}]}));
    let queued = d.submit(&json!({"name": "queued", "steps": [{"name": "s", "run": "echo ran"}]}));
    d.wait_job(&blocker, &["running"], WAIT);
    d.kill9();
    let d = env.start_daemon(&["--set", "jobs.allow_shell=false"]);
    let job = d.wait_job(&queued, &["failed", "done"], WAIT);
    assert_eq!(job["state"], "failed", "{job}");
    let error = error_of(&d, &queued);
    assert!(error.contains("jobs.allow_shell"), "{error}");
    let (_, b) = d.get(&format!("/v1/jobs/{blocker}"));
    assert_eq!(b["state"], "interrupted", "{b}");
}

// Item 13: a `--var` value is data: the daemon does not fill `${job_id}`
// in it a second time; a runbook writes a literal `${` as `$${`.
#[test]
fn a_var_value_is_data_and_double_dollar_brace_is_a_literal() {
    let env = TestEnv::new();
    env.write_config("[notify]\nbackend = \"log\"\n");
    env.write(
        ".oj/runbooks/r.toml",
        "[job.show]\nvars = [\"b\"]\n[[job.show.step]]\nname = \"s\"\nrun = \"echo 'value=${var.b} literal=$${job_id} id=${job_id}'\"\n",
    );
    let d = env.start_daemon(&[]);
    let out = env.run(&["run", "show", "--var", "b=${job_id}|${name}", "--wait"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let id = out
        .stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let log = std::fs::read_to_string(env.state_dir().join(format!("logs/{id}/s.log")))
        .unwrap_or_default();
    assert_eq!(
        log,
        format!("value=${{job_id}}|${{name}} literal=${{job_id}} id={id}\n"),
        "{out:?}"
    );
    drop(d);
}

fn wait_reload(d: &Daemon, result: &str, after_generation: u64) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        let (_, v) = d.get("/v1/config");
        let hit = v["last_reload"]["result"] == result
            && (result == "rejected" || v["generation"].as_u64() > Some(after_generation));
        last = v;
        hit
    });
    assert!(ok, "no {result} reload; last /v1/config: {last}");
    last
}

// Item 2: the default config file read at start is deleted, emptied,
// half-written or replaced by a FIFO before a SIGHUP: the reload is
// rejected and `jobs.allow_shell = false` holds; a write in progress
// (emptied, then written whole a moment later) is waited out.
#[test]
fn a_config_file_that_cannot_be_read_whole_is_a_rejected_reload() {
    let env = TestEnv::new();
    let good = "[daemon]\nwatch_config = false\n[notify]\nbackend = \"log\"\n[jobs]\nallow_shell = false\n";
    let file = env.write_config(good);
    let d = env.start_daemon(&[]);
    let shell = json!({"name": "sh", "steps": [{"name": "s", "run": "id"}]});
    type Break = fn(&std::path::Path);
    let cases: [(&str, Break); 4] = [
        ("deleted", |p| std::fs::remove_file(p).unwrap()),
        ("emptied", |p| std::fs::write(p, "").unwrap()),
        ("half-written", |p| {
            std::fs::write(p, "[daemon]\nwatch_config = false\n[jobs]\nallow_sh").unwrap()
        }),
        ("a FIFO", |p| {
            std::fs::remove_file(p).unwrap();
            nix::unistd::mkfifo(
                p,
                nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
            )
            .unwrap();
        }),
    ];
    for (what, break_it) in cases {
        let _ = std::fs::remove_file(&file);
        std::fs::write(&file, good).unwrap();
        let generation = d.get("/v1/config").1["generation"].as_u64().unwrap_or(0);
        d.signal("HUP");
        wait_reload(&d, "ok", generation);
        break_it(&file);
        d.signal("HUP");
        let v = wait_reload(&d, "rejected", 0);
        assert!(
            v["last_reload"]["errors"]
                .to_string()
                .contains("config.toml"),
            "{what}: {v}"
        );
        assert_eq!(v["config"]["jobs"]["allow_shell"], false, "{what}: {v}");
        let (code, body) = d.post("/v1/jobs", &shell);
        assert_eq!(code, 400, "{what}: a shell job was accepted: {body}");
    }

    // A write in progress: emptied at the SIGHUP, whole 200 ms later.
    let _ = std::fs::remove_file(&file);
    std::fs::write(&file, good).unwrap();
    let generation = d.get("/v1/config").1["generation"].as_u64().unwrap_or(0);
    std::fs::write(&file, "").unwrap();
    d.signal("HUP");
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&file, format!("{good}max_concurrent = 3\n")).unwrap();
    let v = wait_reload(&d, "ok", generation);
    assert_eq!(v["config"]["jobs"]["max_concurrent"], 3, "{v}");
    assert_eq!(v["config"]["jobs"]["allow_shell"], false, "{v}");
}

// Item 4: the snapshot is watched like the WAL. Deleted while the daemon
// runs, it is written again at the next commit, so a `kill -9` after that
// loses no job and retention deletes no log; deleted after the last commit
// and followed by a `kill -9`, the restart refuses to start rather than
// lose the jobs it held.
#[test]
fn a_deleted_snapshot_is_noticed_like_the_wal() {
    let env = TestEnv::new();
    env.write_config("[notify]\nbackend = \"log\"\n");
    let snapshot = env.state_dir().join("snapshot.json");
    let mut d = env.start_daemon(&[]);
    let a = d.submit(&json!({"name": "a", "steps": [{"name": "s", "run": "echo a"}]}));
    d.wait_job(&a, &["done"], WAIT);
    d.sigterm();
    assert_eq!(d.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    assert!(snapshot.exists(), "a clean stop writes the snapshot");
    let log_a = env.state_dir().join(format!("logs/{a}/s.log"));

    // Deleted while running, then a commit: written again.
    let mut d = env.start_daemon(&[]);
    std::fs::remove_file(&snapshot).unwrap();
    let b = d.submit(&json!({"name": "b", "steps": [{"name": "s", "run": "echo b"}]}));
    d.wait_job(&b, &["done"], WAIT);
    assert!(
        snapshot.exists(),
        "the commit after the deletion writes it again"
    );
    d.kill9();
    let mut d = env.start_daemon(&[]);
    for id in [&a, &b] {
        let (code, job) = d.get(&format!("/v1/jobs/{id}"));
        assert_eq!((code, &job["state"]), (200, &json!("done")), "{id}: {job}");
    }
    assert!(log_a.exists(), "retention kept the logs of a kept job");

    // Deleted after the last commit, then killed: a refused start, and
    // nothing deleted.
    let c = d.submit(&json!({"name": "c", "steps": [{"name": "s", "run": "echo c"}]}));
    d.wait_job(&c, &["done"], WAIT);
    std::fs::remove_file(&snapshot).unwrap();
    d.kill9();
    let out = env.run(&["daemon"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("snapshot") && out.stderr.contains("missing"),
        "{}",
        out.stderr
    );
    assert!(log_a.exists());
}

// Item 12: a symlink planted at `log.file.path` in a world-writable
// directory is not followed: the start fails naming the key, and the
// file the link names is untouched.
#[test]
fn a_planted_log_symlink_is_not_followed() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let shared = env.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = env.write("victim", "precious\n");
    let link = shared.join("oj.log");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let out = env.run(&[
        "daemon",
        "--set",
        "log.file.enabled=true",
        "--set",
        &format!("log.file.path={}", link.display()),
    ]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stderr.contains("symbolic link") && out.stderr.contains("log.file.path"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

/// Pids of live processes whose environment holds `OJT=<tag>`.
fn pids_with(tag: &str) -> Vec<u32> {
    let needle = format!("OJT={tag}");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let tagged = environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes());
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if tagged && !zombie {
            out.push(pid);
        }
    }
    out
}

fn leftovers_mode(d: &Daemon) -> (String, String) {
    let (_, v) = d.get("/v1/status");
    (
        v["leftovers"]["mode"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        v["leftovers"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// The cgroup v2 mount points of this machine.
fn cgroup2_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(str::to_string))?
        })
        .collect()
}

/// Whether a tool runs here (`TOOL --version`).
fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `oj daemon` in a mount namespace where every cgroup v2 mount is hidden
/// under a tmpfs (a machine without cgroup v2); `None` when that cannot be
/// set up (not root, no `unshare`).
fn daemon_without_cgroups(env: &TestEnv) -> Option<Daemon> {
    if !have("unshare") {
        eprintln!("no unshare here");
        return None;
    }
    let hide: String = cgroup2_mounts()
        .iter()
        .map(|m| format!("mount -t tmpfs none '{m}' || exit 97; "))
        .collect();
    let template = env.oj();
    let mut cmd = std::process::Command::new("unshare");
    cmd.env_clear().current_dir(env.path());
    for (k, v) in template.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.args([
        "-m",
        "sh",
        "-c",
        &format!("{hide}exec \"$0\" daemon"),
        common::oj_bin(),
    ]);
    let mut d = Daemon::spawn_raw(cmd, env.path(), env.socket());
    if !wait_ready(&mut d) {
        eprintln!(
            "cannot hide cgroup v2 from a daemon here (unshare/mount need root): {:?} {}",
            d.exited(),
            d.stderr()
        );
        return None;
    }
    Some(d)
}

/// A step that leaves `setsid` children behind — one started as the shell
/// exits, one that starts another from its TERM handler — tagged `tag`.
fn escaping(tag: &str) -> Value {
    let run = format!(
        "export OJT={tag}; setsid sh -c 'trap \"setsid sleep 3600 &\" TERM; sleep 3600 & wait' & \
         setsid sh -c 'trap \"setsid sleep 3600 & exit 0\" TERM; while :; do sleep 0.1; done' & exit 0"
    );
    json!({"name": "escape", "steps": [{"name": "s", "run": run}]})
}

// Item 5: the `setsid` race, many times, and children started from a TERM
// handler: nothing a step starts outlives it, with each step in its own
// cgroup (v2). Skipped, saying so, where this machine cannot give the
// daemon a cgroup.
#[test]
fn setsid_leftovers_never_escape_a_step_in_its_cgroup() {
    let env = TestEnv::new();
    env.write_config("[notify]\nbackend = \"log\"\n[jobs]\nmax_concurrent = 8\n");
    let d = env.start_daemon(&[]);
    let (mode, reason) = leftovers_mode(&d);
    if mode != "cgroup" {
        eprintln!(
            "SKIPPED the cgroup case: cgroup v2 delegation is not available here ({mode}: {reason})"
        );
        return;
    }
    let tag = format!("oj{}x", std::process::id());
    let ids: Vec<String> = (0..40).map(|_| d.submit(&escaping(&tag))).collect();
    for id in &ids {
        d.wait_job(id, &["done"], WAIT);
    }
    let left = pids_with(&tag);
    assert!(left.is_empty(), "processes outlived their steps: {left:?}");
    let status = env.run(&["status"]);
    assert!(
        status.stdout.contains("leftovers  cgroup"),
        "{}",
        status.stdout
    );
}

// Item 5, the fallback: without cgroup v2 the /proc sweep still ends what a
// step leaves, and `oj status` says which way is in use.
#[test]
fn without_cgroups_the_process_scan_ends_leftovers_and_status_says_so() {
    let env = TestEnv::new();
    env.write_config("[notify]\nbackend = \"log\"\n");
    let Some(d) = daemon_without_cgroups(&env) else {
        eprintln!("SKIPPED: cannot run a daemon without cgroup v2 on this machine");
        return;
    };
    let (mode, _) = leftovers_mode(&d);
    assert_eq!(mode, "process-scan");
    let tag = format!("oj{}s", std::process::id());
    let id = d.submit(&json!({"name": "bg", "steps": [{"name": "s",
        "run": format!("export OJT={tag}; sleep 3600 & setsid sleep 3600 & sleep 0.3")}]}));
    d.wait_job(&id, &["done"], WAIT);
    assert!(
        wait_until(WAIT, || pids_with(&tag).is_empty()),
        "left: {:?}",
        pids_with(&tag)
    );
    let status = env.run(&["status"]);
    assert!(
        status.stdout.contains("leftovers  process-scan"),
        "{}",
        status.stdout
    );
}

// Item 1: two daemons of one user hand out different ids, and a restart's
// sweep after `kill -9` ends only what that daemon started: a process that
// carries the same `OJ_JOB_ID` but not the daemon's mark (another daemon's
// step) survives it.
#[test]
fn two_daemons_never_share_ids_and_a_restart_only_kills_its_own() {
    let a_env = TestEnv::new();
    let b_env = TestEnv::new();
    for e in [&a_env, &b_env] {
        e.write_config("[notify]\nbackend = \"log\"\n[jobs]\nmax_concurrent = 100\n");
    }
    let mut a = a_env.start_daemon(&[]);
    let b = b_env.start_daemon(&[]);
    let quick = json!({"name": "q", "steps": [{"name": "s", "run": "true"}]});
    let ids: Vec<String> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for d in [&a, &b] {
            for _ in 0..4 {
                let quick = &quick;
                handles.push(s.spawn(move || (0..10).map(|_| d.submit(quick)).collect::<Vec<_>>()));
            }
        }
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 80, "ids handed out twice: {ids:?}");
    for id in &ids {
        assert!(id.len() <= 20 && format!("oj-{id}-0").len() <= 63, "{id}");
    }

    // A running step of A, and a stranger with A's job id but not its mark.
    let tag = format!("oj{}k", std::process::id());
    let id = a.submit(&json!({"name": "long", "steps": [{"name": "s",
        "run": format!("export OJT={tag}own; setsid sleep 3600 & sleep 3600")}]}));
    a.wait_job(&id, &["running"], WAIT);
    let mut stranger = std::process::Command::new("sh")
        .args(["-c", "exec sleep 3600"])
        .env("OJT", format!("{tag}other"))
        .env("OJ_JOB_ID", &id)
        .env("OJ_STEP", "s")
        .spawn()
        .unwrap();
    assert!(wait_until(WAIT, || pids_with(&format!("{tag}own")).len() >= 2));
    a.kill9();
    let a = a_env.start_daemon(&[]);
    let job = a.wait_job(&id, &["interrupted"], WAIT);
    assert_eq!(job["state"], "interrupted");
    assert!(
        wait_until(WAIT, || pids_with(&format!("{tag}own")).is_empty()),
        "the restart left A's step running: {:?}",
        pids_with(&format!("{tag}own"))
    );
    assert_eq!(
        stranger.try_wait().unwrap(),
        None,
        "the restart killed a process A never started"
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
}

const TOKEN: &str = "edges-token-0123456789abcdef";

// Item 6: silent connections give way to new ones on every listener, under
// a low `nofile` (prlimit): 70 on the admin port (cap 64) do not keep
// `/healthz` from answering, 1100 on the TCP port do not starve a token
// holder, 1100 on the Unix socket (cap 256) do not take the daemon's file
// descriptors. The header deadline is 60 s: nothing here waits for it.
#[test]
fn silent_connections_give_way_on_every_listener_under_a_low_nofile() {
    if !have("prlimit") {
        eprintln!("SKIPPED: no prlimit here (util-linux) to lower the daemon's nofile");
        return;
    }
    let env = TestEnv::new();
    let (port, admin) = (common::free_port(), common::free_port());
    env.write_config(&format!(
        "[listen]\ntcp = \"127.0.0.1:{port}\"\nauth_token = \"{TOKEN}\"\nheader_timeout = \"60s\"\nidle_timeout = \"60s\"\n[admin]\naddr = \"127.0.0.1:{admin}\"\n[notify]\nbackend = \"none\"\n"
    ));
    let template = env.oj();
    let mut cmd = std::process::Command::new("prlimit");
    cmd.env_clear().current_dir(env.path());
    for (k, v) in template.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.args(["--nofile=1024:1024", "--", common::oj_bin(), "daemon"]);
    let mut d = Daemon::spawn_raw(cmd, env.path(), env.socket());
    assert!(wait_ready(&mut d), "no daemon: {}", d.stderr());
    assert!(wait_until(WAIT, || http::Get::new(admin, "/healthz")
        .within(WAIT)
        .send()
        .status
        == 200));
    let fast = Duration::from_secs(5);

    let mut held = Vec::new();
    for _ in 0..70 {
        held.push(std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap());
    }
    assert_eq!(
        http::Get::new(admin, "/healthz").within(fast).send().status,
        200,
        "admin port under 70 silent connections"
    );

    for _ in 0..1100 {
        if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            held.push(c);
        }
    }
    assert_eq!(
        http::Get::new(port, "/v1/status")
            .bearer(TOKEN)
            .within(fast)
            .send()
            .status,
        200,
        "a token holder behind 1100 silent TCP connections"
    );
    assert_eq!(
        http::Get::new(admin, "/healthz").within(fast).send().status,
        200
    );

    let mut unix = Vec::new();
    for _ in 0..1100 {
        match std::os::unix::net::UnixStream::connect(env.socket()) {
            Ok(c) => unix.push(c),
            Err(e) => panic!("connect to the Unix socket: {e}"),
        }
    }
    let t0 = std::time::Instant::now();
    let out = env.run(&["status"]);
    assert_eq!(
        out.code,
        Some(0),
        "oj status behind 1100 silent Unix connections: {out:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(
        http::Get::new(port, "/v1/status")
            .bearer(TOKEN)
            .within(fast)
            .send()
            .status,
        200
    );
    assert_eq!(
        http::Get::new(admin, "/healthz").within(fast).send().status,
        200
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(fds < 1024, "the daemon holds {fds} descriptors");
    assert!(d.exited().is_none());
}

// Item 6: the Unix socket has the TCP listener's deadlines: a connection
// that sends no request head is closed after `listen.header_timeout`.
#[test]
fn a_silent_unix_connection_is_closed_at_the_header_deadline() {
    use std::io::Read;
    let env = TestEnv::new();
    env.write_config("[listen]\nheader_timeout = \"1s\"\n[notify]\nbackend = \"none\"\n");
    let _d = env.start_daemon(&[]);
    let mut c = std::os::unix::net::UnixStream::connect(env.socket()).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = c.read(&mut buf);
    assert!(matches!(n, Ok(0)), "{n:?}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

// Item 11: retention frees a full disk by itself: the removal of an old
// job is written with the space reserve, and its logs are deleted.
#[test]
fn retention_frees_a_full_disk_by_itself() {
    let env = TestEnv::new();
    let Some(_tmpfs) = common::Tmpfs::mount(&env.state_dir(), "8m") else {
        return;
    };
    let args = [
        "--set",
        "log.file.enabled=false",
        "--set",
        "notify.backend=none",
        "--set",
        "jobs.keep_finished=3s",
    ];
    let d = env.start_daemon(&args);
    assert!(
        wait_until(WAIT, || env.state_dir().join("space.reserve").exists()),
        "no space reserve in the state dir"
    );
    // 3 MB of log, then the disk fills up.
    let big = d.submit(&json!({"name": "big", "steps": [{"name": "s",
        "run": "head -c 3000000 /dev/zero | tr '\\0' x"}]}));
    d.wait_job(&big, &["done"], WAIT);
    let filler = common::fill(&env.state_dir());
    // A big record cannot fit any more (small ones may, in the WAL's last page).
    let heavy = json!({"name": "x", "env": {"PAD": "p".repeat(100_000)},
        "steps": [{"name": "s", "run": "true"}]});
    let (code, body) = d.post("/v1/jobs", &heavy);
    assert_eq!(code, 507, "the disk is full: {body}");
    // Small records fill the WAL's last page too, so that even a removal
    // record has no room left without the reserve.
    let small = json!({"name": "s", "steps": [{"name": "s", "run": "true"}]});
    assert!(
        (0..500).any(|_| d.post("/v1/jobs", &small).0 == 507),
        "small records never stopped fitting"
    );
    // Retention removes `big` on its own (past keep_finished) and its log
    // directory goes: the disk has room again, without anyone's help.
    assert!(
        wait_until(Duration::from_secs(30), || d
            .get(&format!("/v1/jobs/{big}"))
            .0
            == 404),
        "retention could not remove the job on the full disk: {}",
        d.stderr()
    );
    assert!(wait_until(WAIT, || !env
        .state_dir()
        .join(format!("logs/{big}"))
        .exists()));
    let mut accepted = false;
    assert!(wait_until(WAIT, || {
        accepted = d.post("/v1/jobs", &heavy).0 == 201;
        accepted
    }));
    assert!(filler.exists(), "nobody else's file was touched");
}
