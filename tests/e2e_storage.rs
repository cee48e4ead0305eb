//! Storage and admission under faults, with the real binary: a state
//! directory that fills up (a small tmpfs), a WAL deleted or replaced under
//! the daemon, template bombs and hostile names, logs far larger than any
//! buffer, and job lists longer than one page. The promise under test: a
//! `201` job exists and runs once, a refused one never runs, and nothing a
//! job or a request contains makes the daemon's memory grow with it.

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Daemon, TestEnv, Tmpfs, fill, free_port, http, parse_curl, wait_until};
use serde_json::{Value, json};

/// POSTs a body from a file (curl's argument limit is far below a big spec).
fn post_file(d: &Daemon, env: &TestEnv, path: &str, body: &Value) -> (u16, Value) {
    let file = env.path().join("body.json");
    fs::write(&file, body.to_string()).unwrap();
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "20",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
        ])
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg("--unix-socket")
        .arg(&d.socket)
        .arg(format!("http://localhost{path}"))
        .output()
        .unwrap();
    parse_curl(&String::from_utf8_lossy(&out.stdout))
}

/// Every job the daemon knows, walking the pages.
fn all_jobs(d: &Daemon) -> Vec<Value> {
    let mut jobs = Vec::new();
    let mut path = "/v1/jobs?limit=1000".to_string();
    loop {
        let (s, page) = d.get(&path);
        assert_eq!(s, 200, "{page}");
        jobs.extend(page["jobs"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/jobs?limit=1000&after={next}"),
            None => return jobs,
        }
    }
}

fn marks(env: &TestEnv) -> Vec<String> {
    fs::read_to_string(env.path().join("marks"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A job that appends its name to the marks file (outside the full disk).
fn marking_job(env: &TestEnv, name: &str, pad: usize) -> Value {
    json!({
        "name": name,
        "env": { "PAD": "p".repeat(pad) },
        "steps": [{ "name": "mark", "run": format!("echo ${{name}} >> {}", env.path().join("marks").display()) }]
    })
}

#[test]
fn a_full_disk_refuses_with_507_runs_nothing_refused_and_loses_nothing_accepted() {
    let env = TestEnv::new();
    let Some(_tmpfs) = Tmpfs::mount(&env.state_dir(), "8m") else {
        return;
    };
    let admin = free_port();
    let args = [
        "--set",
        "log.file.enabled=false",
        "--set",
        "log.stdout=true",
        "--set",
        "log.format=json",
        "--set",
        &format!("admin.addr=127.0.0.1:{admin}"),
    ];
    let mut d = env.start_daemon(&args);
    let pre = d.submit(&marking_job(&env, "pre", 0));
    d.wait_job(&pre, &["done"], Duration::from_secs(10));
    // Running while the disk fills: its end must be written once space returns.
    let mut slow = marking_job(&env, "slow", 0);
    slow["steps"][0]["run"] = json!(format!(
        "sleep 3; echo slow >> {}",
        env.path().join("marks").display()
    ));
    let slow = d.submit(&slow);
    d.wait_job(&slow, &["running"], Duration::from_secs(10));

    let filler = fill(&env.state_dir());
    // Small records may still fit the WAL's last page; big ones cannot.
    let mut accepted = vec![pre.clone(), slow.clone()];
    let mut refused = Vec::new();
    for i in 0..6 {
        let name = format!("refused-{i}");
        let (s, body) = post_file(&d, &env, "/v1/jobs", &marking_job(&env, &name, 16 * 1024));
        match s {
            507 => {
                assert_eq!(body["code"], "storage", "{body}");
                let msg = body["error"].as_str().unwrap();
                assert!(
                    msg.contains("wal.jsonl") && msg.contains("No space left on device"),
                    "the 507 names the path and the OS error: {msg}"
                );
                refused.push(name);
            }
            201 => accepted.push(body["id"].as_str().unwrap().to_string()),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(refused.len() >= 5, "a full disk refuses: {refused:?}");
    // Reads keep answering; readiness says why it is not ready.
    let (s, status) = d.get("/v1/status");
    assert_eq!(s, 200);
    assert!(
        status["storage_error"]
            .as_str()
            .unwrap_or("")
            .contains("No space"),
        "{status}"
    );
    assert_eq!(d.get("/v1/jobs").0, 200);
    let ready = http::get(admin, "/readyz");
    let (s, why) = (ready.status, ready.body);
    assert_eq!(s, 503, "{why}");
    assert!(why.contains("storage"), "{why}");
    // Let the slow step end while nothing (or only a small record) can be
    // written: its end is kept and written again, never lost.
    std::thread::sleep(Duration::from_secs(3));

    fs::remove_file(filler).unwrap();
    d.wait_job(&slow, &["done"], Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(10), || http::get(
        admin, "/readyz"
    )
    .status
        == 200));
    let metrics = http::get(admin, "/metrics").body;
    let errors: f64 = metrics
        .lines()
        .find(|l| l.starts_with("oj_storage_errors_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        errors >= refused.len() as f64,
        "oj_storage_errors_total: {errors}"
    );
    for i in 0..3 {
        accepted.push(d.submit(&marking_job(&env, &format!("post-{i}"), 0)));
    }
    for id in &accepted {
        d.wait_job(id, &["done", "failed"], Duration::from_secs(20));
    }
    let log = d.stdout();
    let episodes = log
        .lines()
        .filter(|l| l.contains("cannot write the WAL"))
        .count();
    assert!(
        (1..=3).contains(&episodes),
        "one ERROR line per episode, not one per failed write ({episodes}):\n{log}"
    );

    d.kill9();
    let d = env.start_daemon(&args);
    let jobs = all_jobs(&d);
    let marks = marks(&env);
    for id in &accepted {
        let job = jobs.iter().find(|j| j["id"] == *id);
        let job = job.unwrap_or_else(|| panic!("accepted job {id} is lost after kill -9"));
        let name = job["name"].as_str().unwrap();
        let ran = marks.iter().filter(|m| *m == name).count();
        assert!(ran <= 1, "{name} ran {ran} times");
        if name != "slow" && !name.starts_with("refused") {
            assert_eq!(ran, 1, "{name} ran once: {marks:?}");
        }
    }
    for name in &refused {
        assert!(
            !jobs.iter().any(|j| j["name"] == *name),
            "507 job {name} was kept"
        );
        assert!(!marks.contains(name), "507 job {name} ran");
    }
    assert_eq!(marks.iter().filter(|m| *m == "slow").count(), 1);
}

#[test]
fn a_wal_deleted_or_replaced_under_the_daemon_loses_nothing_at_the_next_crash() {
    let env = TestEnv::new();
    let args = ["--set", "log.stdout=true"];
    let mut d = env.start_daemon(&args);
    let wal = env.state_dir().join("wal.jsonl");
    let a = d.submit(&marking_job(&env, "a", 0));
    d.wait_job(&a, &["done"], Duration::from_secs(10));
    fs::remove_file(&wal).unwrap();
    let b = d.submit(&marking_job(&env, "b", 0));
    d.wait_job(&b, &["done"], Duration::from_secs(10));
    assert!(wal.exists(), "a new WAL was started");
    // Replaced by another file, as a careless restore would.
    fs::write(env.path().join("other"), "{\"seq\":1,\"event\":{}}\n").unwrap();
    fs::rename(env.path().join("other"), &wal).unwrap();
    let c = d.submit(&marking_job(&env, "c", 0));
    d.wait_job(&c, &["done"], Duration::from_secs(10));
    let log = d.stdout();
    assert!(
        log.matches("the WAL was deleted, replaced or changed")
            .count()
            >= 2,
        "each replacement is logged at ERROR:\n{log}"
    );
    assert!(
        env.state_dir().join("wal.jsonl.foreign").exists(),
        "the foreign file is kept"
    );

    d.kill9();
    let d = env.start_daemon(&args);
    for id in [&a, &b, &c] {
        let (s, job) = d.get(&format!("/v1/jobs/{id}"));
        assert_eq!(s, 200, "job {id} lost after kill -9: {job}");
        assert_eq!(job["state"], "done");
    }
    assert_eq!(marks(&env), ["a", "b", "c"], "each ran once");
}

#[test]
fn hostile_names_and_template_bombs_are_400s_naming_the_field_and_the_daemon_lives() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);
    let long_name = "n".repeat(253);
    let cases = [
        (
            json!({"name": "a\nINFO forged", "steps": [{"name": "s", "run": "true"}]}),
            "\"name\"",
        ),
        (
            json!({"name": "\u{1b}[31mred", "steps": [{"name": "s", "run": "true"}]}),
            "control character",
        ),
        (
            json!({"name": "n".repeat(254), "steps": [{"name": "s", "run": "true"}]}),
            "at most 253",
        ),
        (
            json!({"name": "x", "steps": [{"name": "s\n", "run": "true"}]}),
            "\"s\\n\"",
        ),
        (
            json!({"name": long_name, "steps": [{"name": "ok", "run": "true"}, {"name": "bomb", "run": "${name}".repeat(40_000)}]}),
            "step \"bomb\": run is over 131072 bytes",
        ),
        (
            json!({"name": long_name, "env": {"BIG": "${name}${name}".repeat(20_000)}, "steps": [{"name": "s", "run": "true"}]}),
            "env \"BIG\" is over 131072 bytes",
        ),
    ];
    for (spec, want) in cases {
        let (s, body) = post_file(&d, &env, "/v1/jobs", &spec);
        assert_eq!(s, 400, "{body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(want), "{want:?} in {msg:?}");
    }
    let (s, status) = d.get("/v1/status");
    assert_eq!(s, 200);
    assert_eq!(status["jobs"]["queued"], 0, "nothing refused was kept");
}

/// A job an older oj accepted before the limits existed: a queued template
/// bomb in the WAL fails with its reason at every start, and the daemon
/// lives (no crash loop).
#[test]
fn a_queued_bomb_from_an_older_version_fails_and_the_daemon_starts() {
    let env = TestEnv::new();
    let mut d = env.start_daemon(&["--set", "jobs.max_concurrent=1"]);
    let blocker = d.submit(&json!({"name": "block", "steps": [{"name": "s", "run": "sleep 30"}]}));
    d.wait_job(&blocker, &["running"], Duration::from_secs(10));
    let queued =
        d.submit(&json!({"name": "n".repeat(253), "steps": [{"name": "s", "run": "true"}]}));
    d.kill9();
    // Turn the queued job into a bomb, as an older version would have kept it.
    let wal = env.state_dir().join("wal.jsonl");
    let text = fs::read_to_string(&wal).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut rec: Value = serde_json::from_str(line).unwrap();
        if rec["event"]["type"] == "job_submitted" && rec["event"]["job"]["id"] == *queued {
            rec["event"]["job"]["spec"]["steps"][0]["run"] = json!("${name}".repeat(100_000));
        }
        out.push_str(&rec.to_string());
        out.push('\n');
    }
    fs::write(&wal, out).unwrap();
    for _ in 0..2 {
        let mut d = env.start_daemon(&[]);
        let job = d.wait_job(&queued, &["failed"], Duration::from_secs(10));
        let error = job["error"].as_str().unwrap();
        assert!(error.contains("over 131072 bytes"), "{error}");
        assert_eq!(d.get("/v1/status").0, 200);
        d.kill9();
    }
}

fn peak_rss_kb(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn parallel_reads_of_a_big_log_keep_memory_flat_and_a_read_error_cuts_the_response() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);
    let mb = 64;
    let id = d.submit(&json!({"name": "big", "steps": [{"name": "out",
        "run": format!("head -c {} /dev/zero | tr '\\0' x", mb << 20)}]}));
    d.wait_job(&id, &["done"], Duration::from_secs(30));
    let before = peak_rss_kb(d.pid());
    let readers: Vec<_> = (0..10)
        .map(|_| {
            Command::new("curl")
                .args([
                    "-s",
                    "-m",
                    "60",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{size_download}",
                ])
                .arg("--unix-socket")
                .arg(&d.socket)
                .arg(format!("http://localhost/v1/jobs/{id}/logs"))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in readers {
        let out = r.wait_with_output().unwrap();
        let size: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert!(
            size >= (mb as u64) << 20,
            "every reader got the whole log: {size}"
        );
    }
    let grown_mb = (peak_rss_kb(d.pid()) - before) / 1024;
    assert!(
        grown_mb < 48,
        "10 parallel reads of a {mb} MB log grew the daemon's peak RSS by {grown_mb} MB"
    );

    // A log that cannot be read midway: the response is cut, not a quiet 200.
    let log = env.state_dir().join(format!("logs/{id}/out.log"));
    fs::remove_file(&log).unwrap();
    fs::create_dir(&log).unwrap();
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-o", "/dev/null"])
        .arg("--unix-socket")
        .arg(&d.socket)
        .arg(format!("http://localhost/v1/jobs/{id}/logs"))
        .status()
        .unwrap();
    assert!(!out.success(), "curl saw the response cut off");
    let cli = env.run(&["job", "logs", &id]);
    assert_ne!(cli.code, Some(0), "oj job logs fails: {cli:?}");
    assert!(cli.stderr.contains("cut off"), "{cli:?}");
    assert_eq!(d.get("/v1/status").0, 200);
}

#[test]
fn twenty_thousand_jobs_page_newest_first_and_each_exactly_once() {
    let env = TestEnv::new();
    let mut d = env.start_daemon(&[]);
    let id = d.submit(&json!({"name": "seed", "steps": [{"name": "s", "run": "true"}]}));
    let template = d.wait_job(&id, &["done"], Duration::from_secs(10));
    d.sigterm();
    d.wait_exit(Duration::from_secs(10)).unwrap();
    // 20 000 finished jobs in the snapshot (writing them through the API
    // would only test the spawn rate).
    let snap_path = env.state_dir().join("snapshot.json");
    let mut snap: Value = serde_json::from_str(&fs::read_to_string(&snap_path).unwrap()).unwrap();
    let n = 20_000;
    let jobs: Vec<Value> = (0..n)
        .map(|i| {
            let mut j = template.clone();
            j["id"] = json!(format!("0mx3{i:08}"));
            j["name"] = json!(format!("job-{i}"));
            j
        })
        .collect();
    snap["state"]["jobs"] = Value::Array(jobs);
    fs::write(&snap_path, snap.to_string()).unwrap();
    let _ = fs::remove_file(env.state_dir().join("wal.jsonl"));
    // More than the default jobs.max_finished (10 000), which would prune them.
    let d = env.start_daemon(&["--set", "jobs.max_finished=100000"]);

    let (_, first) = d.get("/v1/jobs");
    assert_eq!(first["jobs"].as_array().unwrap().len(), 100, "default page");
    assert_eq!(
        first["jobs"][0]["id"],
        format!("0mx3{:08}", n - 1),
        "newest first"
    );
    assert_eq!(first["next"], format!("0mx3{:08}", n - 100));
    let (_, big) = d.get("/v1/jobs?limit=5000");
    assert_eq!(big["jobs"].as_array().unwrap().len(), 1000, "at most 1000");
    for bad in ["limit=0", "limit=x", "after=NOT-AN-ID"] {
        let (s, body) = d.get(&format!("/v1/jobs?{bad}"));
        assert_eq!(s, 400, "{bad}: {body}");
    }
    let all = all_jobs(&d);
    assert_eq!(all.len(), n);
    let ids: std::collections::BTreeSet<&str> =
        all.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), n, "no job twice");
    assert!(
        all.windows(2)
            .all(|w| w[0]["id"].as_str() > w[1]["id"].as_str())
    );
    let (_, done) = d.get("/v1/jobs?status=done&limit=1000&after=0mx300000500");
    assert_eq!(done["jobs"].as_array().unwrap().len(), 500);
    assert_eq!(done["next"], Value::Null);
}
