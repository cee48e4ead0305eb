//! End to end: the job lifecycle as operators run it. Finished jobs and
//! their logs are deleted by retention (`jobs.keep_finished`,
//! `jobs.max_finished`), by `oj job rm`, `oj job prune` and
//! `DELETE /v1/jobs/{id}`, and stay deleted after a `kill -9`; failing
//! steps are retried by their `retry` policy with a doubling backoff,
//! every attempt is visible in the API and `oj job show`, each retry is
//! notified to a real webhook receiver, a retry waiting at a restart is
//! run by the next daemon, and a run cut by a `kill -9` is `interrupted`,
//! never silently run again.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::webhook::Receiver;
use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn shell_job(name: &str, run: &str) -> Value {
    json!({ "name": name, "steps": [{ "name": "main", "run": run }] })
}

fn logs_dir(env: &TestEnv, id: &str) -> std::path::PathBuf {
    env.state_dir().join("logs").join(id)
}

fn time(v: &Value) -> SystemTime {
    humantime::parse_rfc3339_weak(v.as_str().expect("a time")).expect("RFC 3339")
}

fn ids_listed(env: &TestEnv) -> Vec<String> {
    let out = env.run(&["job", "list", "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    v["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

// ------------------------------------------------------------ retention

/// Over `jobs.max_finished`, the oldest finished jobs go with their logs;
/// after a `kill -9` and a restart they stay gone and the counts agree.
#[test]
fn max_finished_keeps_the_newest_jobs_and_removals_survive_kill_9() {
    let env = TestEnv::new();
    env.write_config("[jobs]\nmax_finished = 2\n");
    let mut d = env.start_daemon(&[]);
    let mut ids = Vec::new();
    for i in 0..4 {
        let id = d.submit(&shell_job(&format!("j{i}"), "echo hello"));
        d.wait_job(&id, &["done"], WAIT);
        ids.push(id);
    }
    let gone = wait_until(WAIT, || {
        ids[..2]
            .iter()
            .all(|id| d.get(&format!("/v1/jobs/{id}")).0 == 404 && !logs_dir(&env, id).exists())
    });
    assert!(
        gone,
        "the two oldest jobs and their logs should be gone\n{}",
        d.stderr()
    );
    for id in &ids[2..] {
        assert_eq!(d.get(&format!("/v1/jobs/{id}")).0, 200);
        assert!(logs_dir(&env, id).exists(), "logs of kept job {id}");
    }

    d.kill9();
    let admin = free_port();
    let d = env.start_daemon(&["--set", &format!("admin.addr=127.0.0.1:{admin}")]);
    for id in &ids[..2] {
        assert_eq!(d.get(&format!("/v1/jobs/{id}")).0, 404, "{id} came back");
    }
    let metrics = std::process::Command::new("curl")
        .args(["-s", "-m", "5"])
        .arg(format!("http://127.0.0.1:{admin}/metrics"))
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(metrics.contains("oj_jobs{state=\"done\"} 2"), "{metrics}");
    let listed = ids_listed(&env);
    assert_eq!(listed, vec![ids[3].clone(), ids[2].clone()]);
    let status = env.run(&["status", "--json"]);
    let v: Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(v["jobs"]["done"], 2, "{v}");
    // The WAL holds small removal records, not copies of the jobs.
    let wal = std::fs::read_to_string(env.state_dir().join("wal.jsonl")).unwrap_or_default();
    for line in wal.lines().filter(|l| l.contains("job_removed")) {
        assert!(line.len() < 120, "a removal record is small: {line}");
    }
}

/// A finished job older than `jobs.keep_finished` is deleted with its logs
/// without anyone asking; running jobs are not touched.
#[test]
fn keep_finished_deletes_jobs_past_their_age() {
    let env = TestEnv::new();
    env.write_config("[jobs]\nkeep_finished = \"2s\"\n");
    let d = env.start_daemon(&[]);
    let running = d.submit(&shell_job("slow", "sleep 30"));
    let id = d.submit(&shell_job("quick", "echo bye"));
    d.wait_job(&id, &["done"], WAIT);
    assert!(logs_dir(&env, &id).exists());
    let gone = wait_until(WAIT, || {
        d.get(&format!("/v1/jobs/{id}")).0 == 404 && !logs_dir(&env, &id).exists()
    });
    assert!(gone, "job {id} outlived keep_finished\n{}", d.stderr());
    assert_eq!(
        d.get(&format!("/v1/jobs/{running}")).1["state"],
        "running",
        "a running job is never pruned"
    );
    assert!(!ids_listed(&env).contains(&id));
    let _ = d.post(&format!("/v1/jobs/{running}/cancel"), &json!({}));
}

/// `oj job rm`, `DELETE /v1/jobs/{id}` and `oj job prune`.
#[test]
fn rm_prune_and_delete_remove_finished_jobs_only() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);
    let done = d.submit(&shell_job("ok", "true"));
    let failed = d.submit(&shell_job("bad", "exit 3"));
    let running = d.submit(&shell_job("slow", "sleep 30"));
    d.wait_job(&done, &["done"], WAIT);
    d.wait_job(&failed, &["failed"], WAIT);
    d.wait_job(&running, &["running"], WAIT);

    let out = env.run(&["job", "rm", &done, &running, "zzzzzzzzzzzz"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains(&format!("removed {done}")), "{out:?}");
    assert!(
        out.stderr.contains(&running) && out.stderr.contains("not finished"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("cancel it first"), "{}", out.stderr);
    assert!(out.stderr.contains("no job zzzzzzzzzzzz"), "{}", out.stderr);
    assert!(!logs_dir(&env, &done).exists());

    let (code, body) = d.request("DELETE", &format!("/v1/jobs/{running}"), None);
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("not_finished")),
        "{body}"
    );
    assert_eq!(
        d.request("DELETE", &format!("/v1/jobs/{done}"), None).0,
        404
    );
    assert_eq!(
        d.request("DELETE", &format!("/v1/jobs/{failed}"), None).0,
        204
    );
    assert_eq!(d.get(&format!("/v1/jobs/{failed}")).0, 404);

    let more_failed = d.submit(&shell_job("bad", "exit 4"));
    let more_done = d.submit(&shell_job("ok", "true"));
    d.wait_job(&more_failed, &["failed"], WAIT);
    d.wait_job(&more_done, &["done"], WAIT);
    let out = env.run(&["job", "prune", "--state", "running"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--state"), "{}", out.stderr);
    let out = env.run(&["job", "prune", "--older-than", "1h"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (Some(0), "removed 0 finished jobs"),
        "{out:?}"
    );
    let out = env.run(&["job", "prune", "--state", "failed"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (Some(0), "removed 1 finished job"),
        "{out:?}"
    );
    assert_eq!(d.get(&format!("/v1/jobs/{more_done}")).0, 200);
    let out = env.run(&["job", "prune"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (Some(0), "removed 1 finished job"),
        "{out:?}"
    );
    assert_eq!(ids_listed(&env), vec![running.clone()]);
    let (code, body) = d.post("/v1/jobs/prune", &json!({"state": "queued"}));
    assert_eq!(code, 400, "{body}");
    let _ = d.post(&format!("/v1/jobs/{running}/cancel"), &json!({}));
}

/// On a full disk a prune is refused as a whole (507): every job and every
/// log stays; once there is space the same prune removes them all.
#[test]
fn a_full_disk_keeps_the_jobs_and_logs_a_prune_could_not_remove() {
    let env = TestEnv::new();
    let Some(_tmpfs) = Tmpfs::mount(&env.state_dir(), "8m") else {
        return;
    };
    let d = env.start_daemon(&["--set", "log.file.enabled=false"]);
    // Enough removal records that they cannot fit the WAL's last page.
    let ids: Vec<String> = (0..150)
        .map(|i| d.submit(&shell_job(&format!("j{i}"), "echo x")))
        .collect();
    for id in &ids {
        d.wait_job(id, &["done"], WAIT);
    }
    let filler = fill(&env.state_dir());
    let (code, body) = d.post("/v1/jobs/prune", &json!({}));
    assert_eq!(
        (code, body["code"].as_str()),
        (507, Some("storage")),
        "{body}"
    );
    for id in &ids {
        assert_eq!(d.get(&format!("/v1/jobs/{id}")).0, 200, "{id} was removed");
        assert!(
            logs_dir(&env, id).exists(),
            "the logs of {id} went without their job"
        );
    }
    std::fs::remove_file(filler).expect("free the space");
    let mut removed = 0;
    let ok = wait_until(WAIT, || {
        let (code, body) = d.post("/v1/jobs/prune", &json!({}));
        removed += body["removed"].as_u64().unwrap_or(0);
        code == 200 && removed == 150
    });
    assert!(ok, "removed {removed}\n{}", d.stderr());
    assert!(wait_until(WAIT, || ids
        .iter()
        .all(|id| !logs_dir(&env, id).exists())));
}

#[test]
fn the_retention_keys_are_in_show_env_and_schema() {
    let env = TestEnv::new();
    let show = env.run(&["config", "show", "--sources"]);
    assert!(
        show.stdout
            .contains("keep_finished = \"30d\"  # profile desktop"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("max_finished = 10000  # default"),
        "{}",
        show.stdout
    );
    let k8s = env.run(&["config", "show", "--profile", "kubernetes", "--sources"]);
    assert!(
        k8s.stdout
            .contains("keep_finished = \"7d\"  # profile kubernetes"),
        "{}",
        k8s.stdout
    );
    let vars = env.run(&["config", "env"]).stdout;
    assert!(vars.contains("OJ_JOBS__KEEP_FINISHED") && vars.contains("OJ_JOBS__MAX_FINISHED"));
    let schema = env.run(&["config", "schema"]).stdout;
    assert!(schema.contains("keep_finished") && schema.contains("max_finished"));
    let bad = env.run(&["config", "check", "--set", "jobs.max_finished=0"]);
    assert_eq!(bad.code, Some(78), "{bad:?}");
    let said = format!("{}{}", bad.stdout, bad.stderr);
    assert!(
        said.contains("jobs.max_finished") && said.contains("≥ 1"),
        "{said}"
    );
}

// -------------------------------------------------------------- retries

/// A step that fails until its `n`-th run (counted in a file).
fn fails_until(counter: &Path, n: u32) -> String {
    let c = counter.display();
    format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo run $n; [ $n -ge {n} ]"
    )
}

#[test]
fn a_failing_step_is_retried_with_backoff_every_attempt_shown_and_notified() {
    let rx = Receiver::start();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[notify]\nbackend = \"webhook\"\nevents = [\"retry\", \"done\", \"fail\"]\n[notify.webhook]\nurl = \"http://{}/hook\"\nbackoff = \"50ms\"\n",
        rx.addr()
    ));
    let d = env.start_daemon(&[]);
    let counter = env.path().join("count");
    let id = d.submit(&json!({
        "name": "flaky",
        "retry": { "attempts": 3, "backoff": "200ms", "on": ["failed"] },
        "steps": [{ "name": "main", "run": fails_until(&counter, 3) }]
    }));
    let job = d.wait_job(&id, &["done", "failed"], WAIT);
    assert_eq!(job["state"], "done", "{job}");
    let attempts = job["steps"][0]["attempts"]
        .as_array()
        .expect("attempts")
        .clone();
    let codes: Vec<i64> = attempts
        .iter()
        .map(|a| a["exit_code"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(codes, vec![1, 1, 0], "{job}");
    assert_eq!(attempts[0]["reason"], "step main exited with code 1");
    // The backoff doubles: at least 200 ms, then at least 400 ms, between runs.
    for (i, least) in [(0, 200), (1, 400)] {
        let gap = time(&attempts[i + 1]["started_at"])
            .duration_since(time(&attempts[i]["ended_at"]))
            .expect("attempts in order");
        assert!(
            gap >= Duration::from_millis(least),
            "gap {i}: {gap:?}\n{job}"
        );
    }
    // The log holds every run's output.
    let logs = env.run(&["job", "logs", &id]).stdout;
    assert!(
        logs.contains("run 1") && logs.contains("run 2") && logs.contains("run 3"),
        "{logs}"
    );
    assert!(
        logs.contains("[oj] retry: run 2 of 3 (step main exited with code 1)"),
        "{logs}"
    );

    let show = env.run(&["job", "show", &id, "--json"]);
    let shown: Value = serde_json::from_str(&show.stdout).expect("JSON");
    assert_eq!(
        shown["steps"][0]["attempts"].as_array().map(Vec::len),
        Some(3)
    );
    let text = env.run(&["job", "show", &id]).stdout;
    assert!(text.contains("attempts of step main:"), "{text}");
    assert!(text.contains("step main exited with code 1"), "{text}");

    // Two retries, each its own notification, then the job's end.
    let got = rx.wait_delivered(3, WAIT);
    // (type, webhook-id, body) of every delivery.
    let events: Vec<(String, String, Value)> = got
        .iter()
        .map(|r| (r.event_type(), r.id(), r.json_or_null()))
        .collect();
    assert!(events.len() >= 3, "{events:?}");
    let kinds: Vec<&str> = events.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        kinds,
        vec!["job.retrying", "job.retrying", "job.done"],
        "{events:?}"
    );
    assert_ne!(
        events[0].1, events[1].1,
        "each retry has its own webhook-id"
    );
    assert_eq!(events[0].2["data"]["job_id"], id.as_str());
    let msg = events[0].2["data"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("attempt 1 of 3") && msg.contains("step main"),
        "{msg}"
    );

    // A step that never passes fails after its attempts, with all of them kept.
    let hopeless = d.submit(&json!({
        "name": "hopeless",
        "steps": [{ "name": "main", "run": "exit 5",
                    "retry": { "attempts": 2, "backoff": "0s", "on": ["failed"] } }]
    }));
    let job = d.wait_job(&hopeless, &["failed"], WAIT);
    assert_eq!(
        job["steps"][0]["attempts"].as_array().map(Vec::len),
        Some(2),
        "{job}"
    );
    assert_eq!(job["error"], "step main exited with code 5");
    // The default `on` is infra only: a plain failure is not retried.
    let plain = d.submit(&json!({
        "name": "plain", "retry": { "attempts": 5 },
        "steps": [{ "name": "main", "run": "exit 1" }]
    }));
    let job = d.wait_job(&plain, &["failed"], WAIT);
    assert_eq!(
        job["steps"][0]["attempts"].as_array().map(Vec::len),
        Some(1),
        "{job}"
    );
}

/// Retries come from runbooks too, and a bad policy is refused naming it.
#[test]
fn runbook_retries_and_bad_policies() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);
    env.write(
        "proj/.oj/runbooks/flaky.toml",
        r#"
[job.timeouts]
retry = { attempts = 2, backoff = "0s", on = ["timeout"] }
[[job.timeouts.step]]
name = "slow"
run = "sleep 10"
timeout = "300ms"

[job.zero]
[[job.zero.step]]
name = "a"
run = "true"
retry = { attempts = 0 }
"#,
    );
    let mut run = env.oj();
    run.current_dir(env.path().join("proj"))
        .args(["run", "timeouts", "--wait"]);
    let out = run.output().expect("oj run");
    assert_eq!(out.status.code(), Some(1));
    let list = env.run(&["job", "list", "--json"]).stdout;
    let v: Value = serde_json::from_str(&list).expect("JSON");
    let job = &v["jobs"][0];
    assert_eq!(job["state"], "failed", "{job}");
    let attempts = job["steps"][0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{job}");
    assert!(
        attempts[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{job}"
    );

    let mut zero = env.oj();
    zero.current_dir(env.path().join("proj"))
        .args(["run", "zero"]);
    let out = zero.output().expect("oj run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("retry.attempts = 0") && stderr.contains("step \"a\""),
        "{stderr}"
    );
    let (code, body) = d.post(
        "/v1/jobs",
        &json!({ "name": "x", "retry": { "attempts": 2, "on": ["oom"] },
                 "steps": [{ "name": "a", "run": "true" }] }),
    );
    assert_eq!(code, 400, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("retry.on") && msg.contains("oom"), "{msg}");
}

/// A step waiting for its retry when the daemon is killed is retried by the
/// next one (not lost, not interrupted).
#[test]
fn a_retry_waiting_at_a_kill_9_runs_after_the_restart() {
    let env = TestEnv::new();
    let mut d = env.start_daemon(&[]);
    let counter = env.path().join("count");
    let id = d.submit(&json!({
        "name": "flaky",
        "steps": [{ "name": "main", "run": fails_until(&counter, 2),
                    "retry": { "attempts": 2, "backoff": "2s", "on": ["failed"] } }]
    }));
    let waiting = wait_until(WAIT, || {
        d.get(&format!("/v1/jobs/{id}")).1["steps"][0]["retry_at"].is_string()
    });
    assert!(waiting, "the step never waited for a retry\n{}", d.stderr());
    d.kill9();
    let d = env.start_daemon(&[]);
    let job = d.wait_job(&id, &["done", "failed", "interrupted"], WAIT);
    assert_eq!(job["state"], "done", "{job}\n{}", d.stderr());
    assert_eq!(
        job["steps"][0]["attempts"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap_or_default().trim(),
        "2"
    );
}

/// The drain does not wait for a step's backoff (no process runs) and
/// leaves the retry for the next daemon, which runs it.
#[test]
fn a_retry_waiting_at_a_drain_runs_after_the_restart() {
    let env = TestEnv::new();
    let mut d = env.start_daemon(&[]);
    let counter = env.path().join("count");
    let id = d.submit(&json!({
        "name": "flaky",
        "retry": { "attempts": 2, "backoff": "5m", "on": ["failed"] },
        "steps": [{ "name": "main", "run": fails_until(&counter, 2) }]
    }));
    assert!(wait_until(WAIT, || {
        d.get(&format!("/v1/jobs/{id}")).1["steps"][0]["retry_at"].is_string()
    }));
    d.sigterm();
    let status = d.wait_exit(WAIT).expect("the drain ends");
    assert!(status.success(), "{status:?}\n{}", d.stderr());
    // Make the wait due: the snapshot holds it, the next daemon arms it.
    let snap_path = env.state_dir().join("snapshot.json");
    let mut snap: Value =
        serde_json::from_str(&std::fs::read_to_string(&snap_path).expect("snapshot"))
            .expect("JSON");
    let job = snap["state"]["jobs"]
        .as_array_mut()
        .and_then(|jobs| jobs.iter_mut().find(|j| j["id"] == id.as_str()))
        .expect("the job is in the snapshot");
    assert_eq!(job["state"], "running", "{job}");
    job["steps"][0]["retry_at"] = json!("2020-01-01T00:00:00.000Z");
    std::fs::write(&snap_path, snap.to_string()).expect("write snapshot");
    let d = env.start_daemon(&[]);
    let job = d.wait_job(&id, &["done", "failed", "interrupted"], WAIT);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        job["steps"][0]["attempts"].as_array().map(Vec::len),
        Some(2)
    );
}

/// A run going on at a `kill -9` is `interrupted`, not run again, even
/// though its policy retries failures and timeouts.
#[test]
fn a_run_cut_by_kill_9_is_interrupted_not_retried() {
    let env = TestEnv::new();
    let mut d = env.start_daemon(&[]);
    let counter = env.path().join("count");
    let run = format!("{}; sleep 30", fails_until(&counter, 1));
    let id = d.submit(&json!({
        "name": "cut",
        "retry": { "attempts": 3, "backoff": "0s", "on": ["failed", "timeout", "infra"] },
        "steps": [{ "name": "main", "run": run }]
    }));
    assert!(wait_until(WAIT, || counter.exists()), "{}", d.stderr());
    d.kill9();
    let d = env.start_daemon(&[]);
    let job = d.wait_job(&id, &["interrupted", "done", "failed"], WAIT);
    assert_eq!(job["state"], "interrupted", "{job}");
    assert_eq!(job["steps"][0]["state"], "interrupted");
    assert_eq!(
        job["steps"][0]["attempts"].as_array().map(Vec::len),
        Some(1),
        "{job}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap_or_default().trim(),
        "1",
        "the step ran again"
    );
}
