//! End to end, SPEC §8.2: queues, priorities, dependencies, holds, pause
//! and resume against the real `oj daemon`, through the `oj` commands and
//! the API; a `kill -9` in the middle of a chain; a reload that adds,
//! changes and tries to remove queues. Steps record their start in a file
//! (`order`) so the start order is what the test reads; jobs that must stay
//! running wait for a gate file the test creates. Every wait is bounded.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// The environment plus the files the steps use.
struct Bench {
    env: TestEnv,
    order: PathBuf,
    gate: PathBuf,
}

impl Bench {
    fn new(config: &str) -> Bench {
        let env = TestEnv::new();
        env.write_config(&format!(
            "[notify]\nbackend = \"none\"\n[log]\nstdout = true\n{config}"
        ));
        let order = env.path().join("order");
        let gate = env.path().join("gate");
        Bench { env, order, gate }
    }

    /// A shell command that records `name` as started.
    fn mark(&self, name: &str) -> String {
        format!("echo {name} >> {}", self.order.display())
    }

    /// A shell command that records `name`, then waits for the gate.
    fn blocker(&self, name: &str) -> String {
        format!(
            "{}; while [ ! -e {} ]; do sleep 0.05; done",
            self.mark(name),
            self.gate.display()
        )
    }

    fn order(&self) -> Vec<String> {
        std::fs::read_to_string(&self.order)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn open_gate(&self) {
        std::fs::write(&self.gate, "").unwrap();
    }

    /// `oj ARGS`, which must exit 0; its stdout trimmed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.env.run(args);
        assert_eq!(
            out.code,
            Some(0),
            "oj {args:?} failed\nstdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
        out.stdout.trim().to_string()
    }

    /// `oj exec FLAGS -- sh -c RUN` → the job id.
    fn exec(&self, flags: &[&str], run: &str) -> String {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "sh", "-c", run]);
        self.ok(&args)
    }
}

fn job(d: &Daemon, id: &str) -> Value {
    let (code, job) = d.get(&format!("/v1/jobs/{id}"));
    assert_eq!(code, 200, "{job}");
    job
}

/// With one slot, queued jobs start by priority, then by submission; a
/// queued job says it waits for capacity, in JSON and in `oj job list`.
#[test]
fn priorities_then_submission_decide_the_start_order() {
    let b = Bench::new("[jobs]\nmax_concurrent = 1\n");
    let d = b.env.start_daemon(&[]);
    let first = b.exec(&["--name", "first"], &b.blocker("first"));
    d.wait_job(&first, &["running"], WAIT);
    let low = b.exec(&["--priority", "-5"], &b.mark("low"));
    let mid = b.exec(&[], &b.mark("mid"));
    let high = b.exec(&["--priority", "10"], &b.mark("high"));
    let mid2 = b.exec(&["--priority", "0"], &b.mark("mid2"));
    let j = job(&d, &high);
    assert_eq!(j["priority"], 10);
    assert_eq!(j["queue"], "default");
    assert_eq!(j["waiting"]["reason"], "capacity", "{j}");
    let list = b.ok(&["job", "list"]);
    assert!(
        list.contains("queued (jobs.max_concurrent 1 reached)"),
        "{list}"
    );
    let show = b.ok(&["job", "show", &high]);
    assert!(show.contains("priority  10"), "{show}");
    assert!(show.contains("waiting   capacity"), "{show}");
    b.open_gate();
    for id in [&low, &mid, &high, &mid2] {
        d.wait_job(id, &["done"], WAIT);
    }
    assert_eq!(b.order(), ["first", "high", "mid", "mid2", "low"]);
    assert!(
        job(&d, &low).get("waiting").is_none(),
        "only queued jobs wait"
    );
}

/// A full queue and a paused queue hold back only themselves; pause and
/// resume work by command and by API; the queue list and the metrics say
/// how each queue stands; an unknown queue is refused, naming the known ones.
#[test]
fn a_full_or_paused_queue_never_holds_back_another() {
    let admin = free_port();
    let mut b = Bench::new(&format!(
        "[jobs]\nmax_concurrent = 4\n[admin]\naddr = \"127.0.0.1:{admin}\"\n[queues.deploy]\nmax_concurrent = 1\n[queues.build]\n"
    ));
    b.env.set_var("OJ_QUEUES__BUILD__MAX_CONCURRENT", "2");
    let d = b.env.start_daemon(&[]);
    let d1 = b.exec(&["--queue", "deploy"], &b.blocker("d1"));
    d.wait_job(&d1, &["running"], WAIT);
    let d2 = b.exec(&["--queue", "deploy"], &b.mark("d2"));
    let w = job(&d, &d2)["waiting"].clone();
    assert_eq!(w["reason"], "queue_full", "{w}");
    assert_eq!(w["detail"], "queue deploy full, 1/1");
    let b1 = b.exec(&["--queue", "build"], &b.mark("b1"));
    d.wait_job(&b1, &["done"], WAIT);

    assert_eq!(b.ok(&["queue", "pause", "build"]), "paused queue build");
    let b2 = b.exec(&["--queue", "build"], &b.mark("b2"));
    let x = b.exec(&[], &b.mark("x"));
    d.wait_job(&x, &["done"], WAIT);
    assert_eq!(job(&d, &b2)["waiting"]["reason"], "queue_paused");
    let list = b.ok(&["job", "list"]);
    assert!(list.contains("queued (queue build paused)"), "{list}");

    let (code, body) = d.get("/v1/queues");
    assert_eq!(code, 200);
    let queues = body["queues"].as_array().unwrap();
    let q = |name: &str| {
        queues
            .iter()
            .find(|q| q["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no queue {name} in {body}"))
    };
    assert_eq!(
        q("build"),
        json!({"name": "build", "max_concurrent": 2, "running": 0, "queued": 1, "paused": true})
    );
    assert_eq!(
        q("deploy"),
        json!({"name": "deploy", "max_concurrent": 1, "running": 1, "queued": 1, "paused": false})
    );
    assert_eq!(q("default")["max_concurrent"], 4);
    let table = b.ok(&["queue", "list"]);
    assert!(table.starts_with("QUEUE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["build", "2", "0", "1", "paused"]),
        "{table}"
    );
    let json_list: Value = serde_json::from_str(&b.ok(&["queue", "list", "--json"])).unwrap();
    assert_eq!(json_list["queues"], body["queues"]);
    let metrics = http::get(admin, "/metrics").body;
    for line in [
        "oj_queue_paused{queue=\"build\"} 1",
        "oj_queue_limit{queue=\"deploy\"} 1",
        "oj_queue_limit{queue=\"build\"} 2",
        "oj_queue_jobs{queue=\"deploy\",state=\"queued\"} 1",
        "oj_queue_jobs{queue=\"deploy\",state=\"running\"} 1",
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }

    let (code, resumed) = d.post("/v1/queues/build/resume", &json!({}));
    assert_eq!(code, 202, "{resumed}");
    assert_eq!(resumed["paused"], false);
    d.wait_job(&b2, &["done"], WAIT);
    let (code, e) = d.post("/v1/queues/nope/pause", &json!({}));
    assert_eq!(code, 404, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("build, default, deploy"),
        "{e}"
    );
    let out = b.env.run(&["queue", "pause", "nope"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("no queue \"nope\""), "{}", out.stderr);

    let out = b.env.run(&["exec", "--queue", "nope", "--", "true"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("queue \"nope\" does not exist; known queues: build, default, deploy"),
        "{}",
        out.stderr
    );
    b.open_gate();
    d.wait_job(&d2, &["done"], WAIT);
}

/// `--after` waits for done, `--after-ended` for any end; a failure
/// cancels the chain below it, and a job that waits for the failed one
/// with `--after-ended` runs; a dependency that already ended is judged at
/// submission; held jobs wait for `oj job release`; a finished job still
/// needed cannot be removed or pruned.
#[test]
fn dependencies_holds_and_their_propagation() {
    let b = Bench::new("[jobs]\nmax_concurrent = 4\n");
    let d = b.env.start_daemon(&[]);
    // A chain that succeeds.
    let a = b.exec(&["--hold"], &b.mark("a"));
    let bb = b.exec(&["--after", &a], &b.mark("b"));
    let c = b.exec(&["--after", &bb], &b.mark("c"));
    let e = b.exec(&["--after-ended", &a], &b.mark("e"));
    let ja = job(&d, &a);
    assert_eq!(ja["hold"], true);
    assert_eq!(ja["waiting"], json!({"reason": "held", "detail": "held"}));
    let jc = job(&d, &c);
    assert_eq!(jc["after"], json!([{"job": bb, "need": "done"}]));
    assert_eq!(jc["waiting"]["reason"], "dependency");
    assert_eq!(jc["waiting"]["detail"], format!("after {bb}"));
    let list = b.ok(&["job", "list"]);
    assert!(list.contains(&format!("queued (after {bb})")), "{list}");
    assert!(list.contains("queued (held)"), "{list}");
    let show = b.ok(&["job", "show", &c]);
    assert!(show.contains(&format!("after     {bb} (done)")), "{show}");
    // Released once; a second release is a conflict.
    assert_eq!(b.ok(&["job", "release", &a]), format!("released {a}"));
    for id in [&a, &bb, &c, &e] {
        d.wait_job(id, &["done"], WAIT);
    }
    let order = b.order();
    let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
    assert!(
        pos("a") < pos("b") && pos("b") < pos("c") && pos("a") < pos("e"),
        "{order:?}"
    );
    let out = b.env.run(&["job", "release", &a]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("is not held"), "{}", out.stderr);
    let (code, body) = d.post(&format!("/v1/jobs/{a}/release"), &json!({}));
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("not_held")),
        "{body}"
    );

    // A chain that fails at its head.
    let f = b.exec(&["--hold"], "exit 3");
    let g = b.exec(&["--after", &f], &b.mark("g"));
    let h = b.exec(&["--after", &g], &b.mark("h"));
    let i = b.exec(&["--after-ended", &g], &b.mark("i"));
    let (code, released) = d.post(&format!("/v1/jobs/{f}/release"), &json!({}));
    assert_eq!(code, 202, "{released}");
    d.wait_job(&f, &["failed"], WAIT);
    let jg = d.wait_job(&g, &["cancelled"], WAIT);
    assert_eq!(jg["error"], format!("dependency {f} ended failed"));
    let jh = d.wait_job(&h, &["cancelled"], WAIT);
    assert_eq!(jh["error"], format!("dependency {g} ended cancelled"));
    d.wait_job(&i, &["done"], WAIT);
    assert!(!b.order().contains(&"g".to_string()));
    assert!(!b.order().contains(&"h".to_string()));

    // Already ended at submission: judged the same way.
    let (code, late) = d.post(
        "/v1/jobs",
        &json!({"name": "late", "after": [{"job": f}], "steps": [{"name": "s", "run": "true"}]}),
    );
    assert_eq!(code, 201, "{late}");
    assert_eq!(late["state"], "cancelled", "{late}");
    assert_eq!(late["error"], format!("dependency {f} ended failed"));
    // Unknown dependency: 400, and exit 2 from the CLI.
    let (code, body) = d.post(
        "/v1/jobs",
        &json!({"name": "x", "after": [{"job": "zzzzzzzzzzzz"}], "steps": [{"name": "s", "run": "true"}]}),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no job zzzzzzzzzzzz"),
        "{body}"
    );
    let out = b
        .env
        .run(&["exec", "--after", "zzzzzzzzzzzz", "--", "true"]);
    assert_eq!(out.code, Some(2), "{out:?}");

    // A finished job that a waiting job needs is kept.
    let m = b.exec(&["--hold", "--after-ended", &f], &b.mark("m"));
    let (code, body) = d.request("DELETE", &format!("/v1/jobs/{f}"), None);
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["code"], "needed");
    assert!(body["error"].as_str().unwrap().contains(&m), "{body}");
    b.ok(&["job", "prune"]);
    assert_eq!(d.get(&format!("/v1/jobs/{f}")).0, 200, "prune kept it");
    b.ok(&["job", "release", &m]);
    d.wait_job(&m, &["done"], WAIT);
    let (code, _) = d.request("DELETE", &format!("/v1/jobs/{f}"), None);
    assert_eq!(code, 204);
}

/// `--in` and `--at` delay the start; the job says until when.
#[test]
fn not_before_delays_the_start() {
    let b = Bench::new("");
    let d = b.env.start_daemon(&[]);
    let before = SystemTime::now();
    let id = b.exec(&["--in", "2s"], &b.mark("later"));
    let j = job(&d, &id);
    assert_eq!(j["waiting"]["reason"], "not_before", "{j}");
    let nb = j["not_before"].as_str().unwrap().to_string();
    assert!(
        j["waiting"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("until ")
    );
    let done = d.wait_job(&id, &["done"], WAIT);
    let parse = |s: &str| humantime::parse_rfc3339_weak(s).unwrap();
    let started = parse(done["started_at"].as_str().unwrap());
    assert!(started >= parse(&nb), "started {started:?} before {nb}");
    assert!(started.duration_since(before).unwrap() >= Duration::from_secs(2));
    // An RFC 3339 time in the past starts at once.
    let now = b.exec(&["--at", "2020-01-01T00:00:00Z"], &b.mark("now"));
    d.wait_job(&now, &["done"], WAIT);
    let out = b.env.run(&["exec", "--at", "tomorrowish", "--", "true"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("HH:MM"), "{}", out.stderr);
}

/// `kill -9` while the head of a chain runs: after the restart the head is
/// interrupted, its `done` dependents are cancelled down the chain, the
/// `ended` one runs; pauses, holds and priorities are as before.
#[test]
fn kill_9_in_the_middle_of_a_chain() {
    let b = Bench::new("[jobs]\nmax_concurrent = 1\n[queues.build]\n");
    let mut d = b.env.start_daemon(&[]);
    let head = b.exec(&[], &b.blocker("head"));
    d.wait_job(&head, &["running"], WAIT);
    let next = b.exec(&["--after", &head], &b.mark("next"));
    let last = b.exec(&["--after", &next], &b.mark("last"));
    let anyway = b.exec(&["--after-ended", &head], &b.mark("anyway"));
    let low = b.exec(&["--hold", "--priority", "-1"], &b.mark("low"));
    let high = b.exec(&["--hold", "--priority", "7"], &b.mark("high"));
    b.ok(&["queue", "pause", "build"]);
    let paused = b.exec(&["--queue", "build"], &b.mark("paused"));
    d.kill9();

    let d = b.env.start_daemon(&[]);
    let h = d.wait_job(&head, &["interrupted"], WAIT);
    assert!(h["error"].as_str().is_some());
    let n = d.wait_job(&next, &["cancelled"], WAIT);
    assert_eq!(n["error"], format!("dependency {head} ended interrupted"));
    let l = d.wait_job(&last, &["cancelled"], WAIT);
    assert_eq!(l["error"], format!("dependency {next} ended cancelled"));
    d.wait_job(&anyway, &["done"], WAIT);
    // Holds, priorities and the pause survived.
    assert_eq!(job(&d, &low)["waiting"]["reason"], "held");
    assert_eq!(job(&d, &high)["priority"], 7);
    assert_eq!(job(&d, &paused)["waiting"]["reason"], "queue_paused");
    let (_, queues) = d.get("/v1/queues");
    assert!(
        queues["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == "build" && q["paused"] == true),
        "{queues}"
    );
    // Released together with one slot, the higher priority starts first.
    b.ok(&["queue", "pause", "default"]);
    b.ok(&["job", "release", &low, &high]);
    b.ok(&["queue", "resume", "default"]);
    d.wait_job(&low, &["done"], WAIT);
    d.wait_job(&high, &["done"], WAIT);
    let order = b.order();
    let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
    assert!(pos("high") < pos("low"), "{order:?}");
    assert!(
        !order
            .iter()
            .any(|x| x == "next" || x == "last" || x == "paused"),
        "{order:?}"
    );
    b.ok(&["queue", "resume", "build"]);
    d.wait_job(&paused, &["done"], WAIT);
}

fn wait_reload(d: &Daemon, generation: u64, result: &str) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        let (code, body) = d.get("/v1/config");
        let hit = code == 200
            && body["last_reload"]["result"] == result
            && (result == "rejected" || body["generation"] == generation);
        last = body;
        hit
    });
    assert!(
        ok,
        "no reload {result}; last /v1/config: {last}\nstdout:\n{}",
        d.stdout()
    );
    last
}

fn queue_limit(d: &Daemon, name: &str) -> Option<u64> {
    let (_, body) = d.get("/v1/queues");
    body["queues"]
        .as_array()?
        .iter()
        .find(|q| q["name"] == name)?
        .get("max_concurrent")?
        .as_u64()
}

/// A reload adds and changes queues at once; one that removes a queue
/// still holding jobs is rejected, naming the queue and the jobs.
#[test]
fn a_reload_adds_changes_and_refuses_to_remove_busy_queues() {
    let b = Bench::new("[queues.build]\nmax_concurrent = 1\n");
    let write = |queues: &str| {
        b.env.write_config(&format!(
            "[notify]\nbackend = \"none\"\n[log]\nstdout = true\n[daemon]\nwatch_config = false\n{queues}"
        ))
    };
    write("[queues.build]\nmax_concurrent = 1\n");
    let d = b.env.start_daemon(&[]);
    assert_eq!(queue_limit(&d, "build"), Some(1));
    let held = b.exec(&["--queue", "build", "--hold"], &b.mark("held"));

    write("[queues.build]\nmax_concurrent = 3\n[queues.lint]\nmax_concurrent = 2\n");
    d.signal("HUP");
    wait_reload(&d, 2, "ok");
    assert_eq!(queue_limit(&d, "build"), Some(3));
    assert_eq!(queue_limit(&d, "lint"), Some(2));
    let lint = b.exec(&["--queue", "lint"], &b.mark("lint"));
    d.wait_job(&lint, &["done"], WAIT);

    write("[queues.lint]\nmax_concurrent = 2\n");
    d.signal("HUP");
    let v = wait_reload(&d, 2, "rejected");
    let errors = v["last_reload"]["errors"].to_string();
    assert!(
        errors.contains("queues.build") && errors.contains(&held),
        "{errors}"
    );
    assert_eq!(v["generation"], 2, "nothing changed");
    assert_eq!(queue_limit(&d, "build"), Some(3));

    b.ok(&["job", "cancel", &held]);
    d.wait_job(&held, &["cancelled"], WAIT);
    d.signal("HUP");
    wait_reload(&d, 3, "ok");
    assert_eq!(queue_limit(&d, "build"), None, "the queue is gone");
    let out = b.env.run(&["exec", "--queue", "build", "--", "true"]);
    assert_eq!(out.code, Some(2), "{out:?}");
}

/// A job waiting for a step's retry holds no `jobs.max_concurrent` slot:
/// another job runs meanwhile, and the retry runs once a slot is free.
#[test]
fn a_job_waiting_for_its_retry_holds_no_slot() {
    let b = Bench::new("[jobs]\nmax_concurrent = 1\n");
    let d = b.env.start_daemon(&[]);
    let first_run = b.env.path().join("first-run");
    let flaky = d.submit(&json!({
        "name": "flaky",
        "retry": {"attempts": 2, "backoff": "3s", "on": ["failed"]},
        "steps": [{"name": "s", "run": format!(
            "if [ -e {f} ]; then {mark}; else touch {f}; exit 1; fi",
            f = first_run.display(),
            mark = b.mark("flaky-again"),
        )}]
    }));
    assert!(wait_until(WAIT, || first_run.exists()));
    let other = b.exec(&[], &b.mark("other"));
    let o = d.wait_job(&other, &["done"], WAIT);
    let f = job(&d, &flaky);
    assert_eq!(f["state"], "running", "still waiting for its retry: {f}");
    assert!(f["steps"][0]["retry_at"].is_string(), "{f}");
    assert!(o["ended_at"].as_str() < f["steps"][0]["retry_at"].as_str());
    d.wait_job(&flaky, &["done"], WAIT);
    assert_eq!(b.order(), ["other", "flaky-again"]);
}
