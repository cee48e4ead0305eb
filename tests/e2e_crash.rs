//! End to end, SPEC §5: "`kill -9` at any moment, then restart: no job lost
//! or run twice (shell steps that were running end `interrupted`), no
//! notification lost". The real `oj daemon` runs short shell jobs and sends
//! webhooks to a receiver in this test while it is killed with SIGKILL at
//! random moments, six times, and restarted each time. Every step appends
//! "<job-id> <step>" to a file when it starts, so a step run twice shows up
//! as two lines. The kill points are random; the seed is printed so a
//! failure can be replayed with `OJ_CRASH_SEED=<seed>`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::webhook::{Mode, Receiver};
use common::*;
use serde_json::{Value, json};

const ROUNDS: usize = 8;
const WAIT: Duration = Duration::from_secs(40);

/// A small xorshift generator: the test needs reproducible randomness, not
/// good randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Three kinds of job: two steps that take a while, one step that fails,
/// one quick step. Each step records that it started.
fn spec(n: usize, runs: &str) -> Value {
    let mark = format!("echo \"$OJ_JOB_ID $OJ_STEP\" >> '{runs}'");
    match n % 3 {
        0 => json!({ "name": format!("slow{n}"), "steps": [
            { "name": "a", "run": format!("{mark}; sleep 0.15") },
            { "name": "b", "run": format!("{mark}; sleep 0.05") },
        ]}),
        1 => json!({ "name": format!("fail{n}"), "steps": [
            { "name": "a", "run": format!("{mark}; exit 3") },
        ]}),
        _ => json!({ "name": format!("quick{n}"), "steps": [
            { "name": "a", "run": mark },
        ]}),
    }
}

#[test]
fn kill_9_at_random_moments_loses_nothing_and_runs_nothing_twice() {
    let seed = std::env::var("OJ_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("e2e_crash seed: {seed} (OJ_CRASH_SEED={seed} replays the kill points)");
    let mut rng = Rng(seed);

    // Every fifth request is refused with 503, so retries (and retries cut
    // short by a kill) are part of the run.
    let rx = Receiver::with_mode(Mode::RefuseEvery(5));
    let env = TestEnv::new();
    let runs = env.path().join("runs.log");
    let runs_s = runs.to_string_lossy().into_owned();
    env.write_config(&format!(
        r#"
[jobs]
max_concurrent = 4

[notify]
backend = "webhook"

[notify.webhook]
url = "http://{}/hooks"
backoff = "20ms"
max_attempts = 1000
timeout = "2s"

[shutdown]
drain_timeout = "1s"
"#,
        rx.addr()
    ));

    let mut accepted: Vec<String> = Vec::new();
    let mut n = 0usize;
    let mut stderrs = String::new();
    for round in 0..ROUNDS {
        // Odd rounds first kill a daemon while it is still starting
        // (replaying the WAL, marking jobs interrupted, re-queueing
        // notifications), before it answers anything.
        if round % 2 == 1 {
            let mut cmd = env.oj();
            cmd.arg("daemon");
            let mut early = Daemon::spawn_raw(cmd, env.path(), env.socket());
            let after = rng.range(0, 40);
            std::thread::sleep(Duration::from_millis(after));
            early.kill9();
            eprintln!("round {round}: killed a starting daemon after {after} ms");
            stderrs.push_str(&format!("--- round {round} (early)\n{}", early.stderr()));
        }
        let mut d = env.start_daemon(&[]);
        let stop = Arc::new(AtomicBool::new(false));
        let draining = Arc::new(AtomicBool::new(false));
        let socket = env.socket();
        let submitter = {
            let stop = stop.clone();
            let draining = draining.clone();
            let runs_s = runs_s.clone();
            let start = n;
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut i = start;
                while !stop.load(Ordering::SeqCst) {
                    let term = draining.load(Ordering::SeqCst);
                    let (status, job) =
                        curl_unix(&socket, "POST", "/v1/jobs", Some(&spec(i, &runs_s)));
                    i += 1;
                    match status {
                        201 => got.push(job["id"].as_str().expect("id").to_string()),
                        0 => break, // the daemon is gone (killed mid-request)
                        503 if term || draining.load(Ordering::SeqCst) => break,
                        other => panic!("submission answered {other}: {job}"),
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                (got, i)
            })
        };
        let at = rng.range(20, 900);
        std::thread::sleep(Duration::from_millis(at));
        // Every third round kills in the middle of a drain instead: after
        // SIGTERM, while steps finish and the snapshot is written.
        let how = if round % 3 == 2 {
            draining.store(true, Ordering::SeqCst);
            d.sigterm();
            let more = rng.range(0, 300);
            std::thread::sleep(Duration::from_millis(more));
            format!("SIGTERM, then kill -9 {more} ms into the drain")
        } else {
            "kill -9".to_string()
        };
        d.kill9();
        stop.store(true, Ordering::SeqCst);
        let (got, next) = submitter.join().expect("submitter");
        eprintln!(
            "round {round}: {how} after {at} ms, {} jobs accepted",
            got.len()
        );
        accepted.extend(got);
        n = next;
        stderrs.push_str(&format!("--- round {round}\n{}", d.stderr()));
    }

    // The last start: everything settles.
    let d = env.start_daemon(&[]);
    let ctx = || format!("seed {seed}\n{stderrs}--- final\n{}", d.stderr());
    let mut jobs: BTreeMap<String, Value> = BTreeMap::new();
    let settled = wait_until(WAIT, || {
        let (s, list) = d.get("/v1/jobs?limit=1000");
        if s != 200 {
            return false;
        }
        jobs = list["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|j| (j["id"].as_str().unwrap_or("").to_string(), j.clone()))
            .collect();
        jobs.values()
            .all(|j| j["state"] != "queued" && j["state"] != "running")
    });
    assert!(settled, "jobs never all ended: {jobs:?}\n{}", ctx());

    // No job lost: every 201 is there.
    assert!(
        accepted.len() >= ROUNDS,
        "too few jobs went through: {accepted:?}"
    );
    for id in &accepted {
        assert!(
            jobs.contains_key(id),
            "accepted job {id} is lost\n{}",
            ctx()
        );
    }

    // No step ran twice; what ran matches the final states.
    let text = std::fs::read_to_string(&runs).unwrap_or_default();
    let mut ran: BTreeMap<(String, String), usize> = BTreeMap::new();
    for line in text.lines() {
        let (id, step) = line.split_once(' ').expect("'<id> <step>' lines");
        *ran.entry((id.to_string(), step.to_string())).or_default() += 1;
    }
    for ((id, step), count) in &ran {
        assert_eq!(
            *count,
            1,
            "step {step} of job {id} ran {count} times\n{}",
            ctx()
        );
        assert!(jobs.contains_key(id), "a step ran for unknown job {id}");
    }
    let mut interrupted = 0;
    for (id, job) in &jobs {
        let state = job["state"].as_str().unwrap_or("");
        let steps = job["steps"].as_array().expect("steps");
        let ran_step = |name: &str| ran.contains_key(&(id.clone(), name.to_string()));
        match state {
            "done" => {
                for st in steps {
                    assert_eq!(st["state"], "done", "{job}");
                    assert!(
                        ran_step(st["name"].as_str().unwrap()),
                        "done but never ran: {job}"
                    );
                }
            }
            "failed" => {
                assert!(
                    job["name"].as_str().unwrap().starts_with("fail"),
                    "{job}\n{}",
                    ctx()
                );
                assert_eq!(steps[0]["state"], "failed", "{job}");
                assert_eq!(steps[0]["exit_code"], 3, "{job}");
                assert!(ran_step("a"), "{job}");
            }
            "interrupted" => {
                interrupted += 1;
                // The steps before the running one are done, it is
                // interrupted, the ones after it never ran.
                let k = steps
                    .iter()
                    .position(|s| s["state"] == "interrupted")
                    .unwrap_or_else(|| {
                        panic!("interrupted job without an interrupted step: {job}")
                    });
                for st in &steps[..k] {
                    assert_eq!(st["state"], "done", "{job}");
                }
                for st in &steps[k + 1..] {
                    assert_eq!(st["state"], "queued", "{job}");
                    assert!(
                        !ran_step(st["name"].as_str().unwrap()),
                        "a step after the interrupted one ran: {job}"
                    );
                }
                assert!(
                    job["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{job}"
                );
            }
            other => panic!("job {id} ended {other}: {job}\n{}", ctx()),
        }
    }
    assert!(
        interrupted > 0,
        "no kill caught a running step in {ROUNDS} rounds (seed {seed}); jobs: {}",
        jobs.len()
    );

    // No notification lost: start for every job that started, done/fail for
    // every ending (interrupted counts as fail), each with its stable id.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for (id, job) in &jobs {
        if job.get("started_at").is_some() {
            expected.insert(format!("msg_{id}_start"));
        }
        match job["state"].as_str() {
            Some("done") => expected.insert(format!("msg_{id}_done")),
            Some("failed" | "interrupted") => expected.insert(format!("msg_{id}_fail")),
            _ => false,
        };
    }
    let all_in = wait_until(WAIT, || {
        let got: BTreeSet<String> = rx.delivered().iter().map(|r| r.id()).collect();
        expected.is_subset(&got)
    });
    // (webhook-id, job id, type) of every delivery.
    let delivered: Vec<(String, String, String)> = rx
        .delivered()
        .iter()
        .map(|r| (r.id(), r.job_id(), r.event_type()))
        .collect();
    let got: BTreeSet<String> = delivered.iter().map(|h| h.0.clone()).collect();
    assert!(
        all_in,
        "notifications lost: {:?}\n{}",
        expected.difference(&got).collect::<Vec<_>>(),
        ctx()
    );
    let unexpected: Vec<&String> = got.difference(&expected).collect();
    assert!(
        unexpected.is_empty(),
        "notifications for events that did not happen: {unexpected:?}"
    );
    for (wid, job, ty) in &delivered {
        let event = match ty.as_str() {
            "job.started" => "start",
            "job.done" => "done",
            "job.failed" => "fail",
            other => panic!("unknown type {other}"),
        };
        assert_eq!(
            wid,
            &format!("msg_{job}_{event}"),
            "a webhook-id that is not its notification's"
        );
    }
    eprintln!(
        "{} jobs, {} accepted with 201, {interrupted} interrupted, {} notifications expected, {} deliveries",
        jobs.len(),
        accepted.len(),
        expected.len(),
        delivered.len()
    );
}

/// Processes (by pid) whose environment holds `OJ_JOB_ID=<id>`: the step's
/// shell and everything it started.
fn processes_of_job(id: &str) -> Vec<u32> {
    let needle = format!("OJ_JOB_ID={id}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// A shell step runs in its own process group, so `kill -9` of the daemon
/// does not take it along. The restart that marks the job `interrupted`
/// must also stop what is left of it — otherwise an "interrupted" step goes
/// on running (and writing) behind the daemon's back.
#[test]
fn the_restart_stops_what_is_left_of_a_step_running_at_kill_9() {
    let env = TestEnv::new();
    env.write_config("[notify]\nbackend = \"none\"\n");
    let started = env.path().join("started");
    let late = env.path().join("late");
    let mut d = env.start_daemon(&[]);
    let id = d.submit(
        &json!({ "name": "orphan", "steps": [{ "name": "s", "run": format!(
        "touch '{}'; sleep 60 & sleep 60; echo late > '{}'",
        started.display(),
        late.display()
    ) }] }),
    );
    assert!(
        wait_until(WAIT, || started.exists()),
        "the step never started"
    );
    assert!(wait_until(WAIT, || processes_of_job(&id).len() >= 3));
    d.kill9();

    let d = env.start_daemon(&[]);
    let job = d.wait_job(&id, &["interrupted"], WAIT);
    assert_eq!(job["steps"][0]["state"], "interrupted", "{job}");
    let gone = wait_until(Duration::from_secs(10), || processes_of_job(&id).is_empty());
    let left = processes_of_job(&id);
    for pid in &left {
        // Do not leave them behind when the assertion below fails.
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert!(
        gone,
        "processes of the interrupted step still run after the restart: {left:?}\n{}",
        d.stderr()
    );
    assert!(
        !late.exists(),
        "the interrupted step went on to its next command"
    );
}

/// What a crash can leave in the WAL: a torn last line (the process died in
/// the middle of a write; never acknowledged) and, from a bad disk, a broken
/// line in the middle. The daemon starts on both, keeps every job whose
/// events it can read, and goes on writing after them.
#[test]
fn a_torn_or_corrupt_wal_line_does_not_stop_the_restart() {
    let env = TestEnv::new();
    env.write_config("[notify]\nbackend = \"none\"\n");
    let wal = env.state_dir().join("wal.jsonl");
    let spec = |n: &str| json!({ "name": n, "steps": [{ "name": "s", "run": "true" }] });

    let mut d = env.start_daemon(&[]);
    let a = d.submit(&spec("a"));
    let b = d.submit(&spec("b"));
    d.wait_job(&a, &["done"], WAIT);
    d.wait_job(&b, &["done"], WAIT);
    d.kill9();

    // 1. A torn tail.
    let mut text = std::fs::read_to_string(&wal).expect("the WAL exists");
    assert!(text.ends_with('\n'), "committed lines end with a newline");
    text.push_str(r#"{"seq":999999,"event":{"type":"job_submitted","job":{"id":"#);
    std::fs::write(&wal, &text).unwrap();
    let mut d = env.start_daemon(&[]);
    for id in [&a, &b] {
        assert_eq!(d.get(&format!("/v1/jobs/{id}")).1["state"], "done");
    }
    let c = d.submit(&spec("c"));
    d.wait_job(&c, &["done"], WAIT);
    d.kill9();
    let text = std::fs::read_to_string(&wal).unwrap();
    assert!(
        !text.contains("999999"),
        "the torn line was cut off before new records were appended"
    );
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok())
    );

    // 2. A broken line in the middle: job a's last event.
    let lines: Vec<&str> = text.lines().collect();
    let victim = lines
        .iter()
        .rposition(|l| l.contains(a.as_str()) && l.contains("job_finished"))
        .expect("job a finished in the WAL");
    let mut broken: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    broken[victim] = "\u{0}\u{0}garbage from a bad sector".to_string();
    std::fs::write(&wal, broken.join("\n") + "\n").unwrap();
    let d = env.start_daemon(&[]);
    assert_eq!(d.get("/v1/status").0, 200);
    for id in [&b, &c] {
        assert_eq!(
            d.get(&format!("/v1/jobs/{id}")).1["state"],
            "done",
            "{}",
            d.stderr()
        );
    }
    // Job a lost its end: it was running as far as the WAL knows, so it is
    // interrupted now, not lost and not run again.
    let job_a = d.wait_job(&a, &["done", "interrupted"], WAIT);
    assert_eq!(job_a["state"], "interrupted", "{job_a}");
    let e = d.submit(&spec("e"));
    d.wait_job(&e, &["done"], WAIT);
}
