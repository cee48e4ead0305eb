//! End-to-end tests of the drain (issue 7, SPEC §3.9): SIGTERM, SIGINT,
//! `POST /v1/shutdown`, a second signal, and what a restart finds.

mod common;

use std::time::Duration;

use common::{Daemon, TestEnv, free_port, http, wait_until};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(20);

fn config(env: &TestEnv, extra: &str) {
    env.write_config(&format!(
        "[notify]\nbackend = \"none\"\n\n[log]\nstdout = true\n\n[log.file]\nenabled = false\n\n{extra}\n"
    ));
}

fn one_step(name: &str, run: &str) -> Value {
    json!({ "name": name, "steps": [{ "name": "main", "run": run }] })
}

/// A step that waits for `go` to exist, so the test decides when it ends.
fn wait_for_file(path: &std::path::Path) -> String {
    format!(
        "while [ ! -f {} ]; do sleep 0.05; done; echo finished",
        path.display()
    )
}

fn exited_ok(d: &mut Daemon, within: Duration) {
    let status = d.wait_exit(within);
    assert!(
        status.is_some(),
        "daemon did not exit\nstdout:\n{}\nstderr:\n{}",
        d.stdout(),
        d.stderr()
    );
    assert_eq!(
        status.unwrap().code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        d.stdout(),
        d.stderr()
    );
}

#[test]
fn an_idle_daemon_exits_0_on_sigterm() {
    let env = TestEnv::new();
    config(&env, "[shutdown]\ndrain_timeout = \"30s\"\n");
    let mut d = env.start_daemon(&[]);
    d.sigterm();
    // Far below the drain timeout: an idle daemon does not wait for it.
    exited_ok(&mut d, Duration::from_secs(5));
    assert!(
        !env.socket().exists(),
        "the socket is removed on a clean exit"
    );
    // The lock is released: a new daemon starts at once.
    let d2 = env.start_daemon(&[]);
    assert_eq!(d2.get("/v1/status").0, 200);
}

#[test]
fn sigint_and_post_shutdown_also_drain() {
    let env = TestEnv::new();
    config(&env, "");
    let mut d = env.start_daemon(&[]);
    d.signal("INT");
    exited_ok(&mut d, Duration::from_secs(5));

    let mut d = env.start_daemon(&[]);
    let (s, body) = d.post("/v1/shutdown", &json!({}));
    assert_eq!(s, 202, "{body}");
    exited_ok(&mut d, Duration::from_secs(5));
}

#[test]
fn a_step_that_ends_within_the_timeout_finishes_done_and_the_daemon_exits_after_it() {
    let env = TestEnv::new();
    config(&env, "[shutdown]\ndrain_timeout = \"60s\"\n");
    let mut d = env.start_daemon(&[]);
    let go = env.path().join("go");
    let id = d.submit(&one_step("finishing", &wait_for_file(&go)));
    d.wait_job(&id, &["running"], LONG);
    d.sigterm();
    // Still draining while the step runs.
    assert!(wait_until(LONG, || d.get("/v1/status").1["draining"] == true));
    assert!(d.exited().is_none());
    std::fs::write(&go, "").unwrap();
    // Exits once the step is done, long before the 60 s timeout.
    exited_ok(&mut d, Duration::from_secs(15));
    let out = d.stdout();
    assert!(out.contains("drain"), "a log line per drain phase:\n{out}");

    let d2 = env.start_daemon(&[]);
    let (_, j) = d2.get(&format!("/v1/jobs/{id}"));
    assert_eq!(j["state"], "done", "{j}");
}

#[test]
fn a_step_that_outlives_the_timeout_gets_sigterm_and_ends_interrupted() {
    let env = TestEnv::new();
    config(&env, "[shutdown]\ndrain_timeout = \"1s\"\n");
    let mut d = env.start_daemon(&[]);
    let marker = env.path().join("got-term");
    let run = format!(
        "trap 'echo term > {}; exit 0' TERM; echo started; while true; do sleep 0.05; done",
        marker.display()
    );
    let id = d.submit(&one_step("stubborn", &run));
    d.wait_job(&id, &["running"], LONG);
    assert!(wait_until(LONG, || {
        std::fs::read_to_string(env.state_dir().join(format!("logs/{id}/main.log")))
            .is_ok_and(|s| s.contains("started"))
    }));
    d.sigterm();
    // Drain timeout + 2 s to SIGKILL + 1 s slack, plus margin for a loaded machine.
    exited_ok(&mut d, Duration::from_secs(1 + 3 + 4));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "term\n",
        "the step's trap ran"
    );
    let out = d.stdout();
    assert!(
        out.contains(id.as_str()),
        "the drain names the running job:\n{out}"
    );

    let d2 = env.start_daemon(&[]);
    let (_, j) = d2.get(&format!("/v1/jobs/{id}"));
    assert_eq!(j["state"], "interrupted", "{j}");
    assert_eq!(j["steps"][0]["state"], "interrupted", "{j}");
}

#[test]
fn during_the_drain_submissions_and_readiness_fail_and_a_second_sigterm_terminates_at_once() {
    let env = TestEnv::new();
    let admin = free_port();
    config(
        &env,
        &format!("[shutdown]\ndrain_timeout = \"60s\"\n\n[admin]\naddr = \"127.0.0.1:{admin}\"\n"),
    );
    let mut d = env.start_daemon(&[]);
    assert_eq!(http::get(admin, "/readyz").status, 200);
    let marker = env.path().join("got-term");
    let run = format!(
        "trap 'echo term > {}; exit 1' TERM; while true; do sleep 0.05; done",
        marker.display()
    );
    let id = d.submit(&one_step("long", &run));
    d.wait_job(&id, &["running"], LONG);
    d.sigterm();
    assert!(wait_until(LONG, || d.get("/v1/status").1["draining"] == true));

    let (s, body) = d.post("/v1/jobs", &one_step("late", "true"));
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["code"], "draining", "{body}");
    assert_eq!(http::get(admin, "/readyz").status, 503);
    assert_eq!(http::get(admin, "/healthz").status, 200);
    // Reads still work while draining.
    assert_eq!(d.get(&format!("/v1/jobs/{id}")).0, 200);
    assert!(d.exited().is_none());

    d.sigterm();
    // Well under the 60 s drain timeout: the second signal skips the wait.
    exited_ok(&mut d, Duration::from_secs(10));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "term\n"
    );
    let d2 = env.start_daemon(&[]);
    let (_, j) = d2.get(&format!("/v1/jobs/{id}"));
    assert_eq!(j["state"], "interrupted", "{j}");
    let (_, list) = d2.get("/v1/jobs?limit=1000");
    assert_eq!(
        list["jobs"].as_array().unwrap().len(),
        1,
        "the late submission was not stored: {list}"
    );
}

#[test]
fn queued_jobs_stay_queued_through_the_drain_and_run_after_restart() {
    let env = TestEnv::new();
    config(
        &env,
        "[jobs]\nmax_concurrent = 1\n\n[shutdown]\ndrain_timeout = \"60s\"\n",
    );
    let mut d = env.start_daemon(&[]);
    let go = env.path().join("go");
    let first = d.submit(&one_step("first", &wait_for_file(&go)));
    let second = d.submit(&one_step("second", "echo second ran"));
    d.wait_job(&first, &["running"], LONG);
    d.sigterm();
    assert!(wait_until(LONG, || d.get("/v1/status").1["draining"] == true));
    std::fs::write(&go, "").unwrap();
    exited_ok(&mut d, Duration::from_secs(15));

    // The snapshot has the final state: restart shows the same jobs; the
    // queued one did not start during the drain and starts now.
    let d2 = env.start_daemon(&[]);
    let (_, list) = d2.get("/v1/jobs?limit=1000");
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![second.as_str(), first.as_str()]);
    let (_, f) = d2.get(&format!("/v1/jobs/{first}"));
    assert_eq!(f["state"], "done", "{f}");
    let s = d2.wait_job(&second, &["done"], LONG);
    assert_eq!(s["state"], "done");
    assert!(env.state_dir().join("snapshot.json").is_file());
}

#[test]
fn a_leader_that_cannot_renew_its_lease_drains_and_exits_non_zero() {
    let mut env = TestEnv::new();
    let fake = oj_k8s_fake::FakeKube::start();
    let kubeconfig = env.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    env.set_var("KUBECONFIG", kubeconfig.to_str().unwrap());
    config(
        &env,
        "[lock]\nstrategy = \"lease\"\n\n[lock.lease]\nduration = \"3s\"\nrenew_deadline = \"1s\"\nretry_period = \"200ms\"\n",
    );
    let mut d = env.start_daemon(&[]);
    assert!(wait_until(LONG, || d.get("/v1/status").1["leader"] == true));
    fake.fail_lease_updates("default", "oj-daemon", 500);
    let status = d.wait_exit(LONG);
    assert!(
        status.is_some(),
        "the daemon kept running without its lease"
    );
    assert_eq!(status.unwrap().code(), Some(1), "stderr:\n{}", d.stderr());
    assert!(d.stderr().starts_with("oj: "), "{}", d.stderr());
    assert!(d.stderr().contains("lost"), "{}", d.stderr());
}
