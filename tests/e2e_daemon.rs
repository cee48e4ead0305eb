//! End-to-end tests of `oj daemon` (issue 3): the real binary, driven over
//! its Unix socket and TCP listener with curl.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Daemon, TestEnv, free_port, parse_curl, wait_until};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(20);

/// A config for tests: no desktop notifications, logs on stdout, plus `extra`.
fn config(env: &TestEnv, extra: &str) {
    env.write_config(&format!(
        "[notify]\nbackend = \"none\"\n\n[log]\nstdout = true\n\n[log.file]\nenabled = false\n\n{extra}\n"
    ));
}

fn one_step(name: &str, run: &str) -> Value {
    json!({ "name": name, "steps": [{ "name": "main", "run": run }] })
}

/// One HTTP request to 127.0.0.1:port with an optional bearer token.
fn curl_tcp(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-m",
        "10",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ])
    .arg(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.output().expect("curl");
    parse_curl(&String::from_utf8_lossy(&out.stdout))
}

/// The raw text of a GET over the Unix socket (for the logs endpoint).
fn get_text(socket: &Path, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "--unix-socket"])
        .arg(socket)
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn job(d: &Daemon, id: &str) -> Value {
    let (s, j) = d.get(&format!("/v1/jobs/{id}"));
    assert_eq!(s, 200, "{j}");
    j
}

#[test]
fn a_job_submitted_over_the_socket_runs_and_its_output_is_readable_while_running_and_after() {
    let env = TestEnv::new();
    config(&env, "");
    let d = env.start_daemon(&[]);
    let go = env.path().join("go");
    let spec = json!({
        "name": "hello",
        "env": { "GREETING": "hi" },
        "steps": [
            { "name": "first", "run": format!("echo \"$GREETING from ${{name}} ${{job_id}} ${{step}}\"; while [ ! -f {} ]; do sleep 0.05; done; echo after", go.display()) },
            { "name": "second", "run": "echo second step >&2" }
        ]
    });
    let id = d.submit(&spec);
    d.wait_job(&id, &["running"], LONG);
    let logs_path = format!("/v1/jobs/{id}/logs");
    assert!(
        wait_until(LONG, || get_text(&d.socket, &logs_path)
            .contains("hi from hello")),
        "output not visible while running: {}",
        get_text(&d.socket, &logs_path)
    );
    let partial = get_text(&d.socket, &logs_path);
    assert!(
        partial.contains(&format!("hi from hello {id} first")),
        "{partial}"
    );
    assert!(!partial.contains("after"), "{partial}");

    // A follower started now streams until the job ends.
    let socket = d.socket.clone();
    let follow_path = format!("/v1/jobs/{id}/logs?follow=true");
    let follower = std::thread::spawn(move || get_text(&socket, &follow_path));
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&go, "").unwrap();

    let done = d.wait_job(&id, &["done", "failed"], LONG);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["steps"][0]["exit_code"], 0);
    assert!(
        done["started_at"].is_string() && done["ended_at"].is_string(),
        "{done}"
    );
    let full = get_text(&d.socket, &logs_path);
    assert!(full.starts_with("==> first <==\n"), "{full}");
    assert!(
        full.contains("after\n==> second <==\nsecond step\n"),
        "{full}"
    );
    let followed = follower.join().unwrap();
    assert_eq!(
        followed, full,
        "the followed stream should end with the job and match the full log"
    );
    // The step logs are files under state_dir/logs/<id>/.
    assert!(
        env.state_dir()
            .join("logs")
            .join(&id)
            .join("second.log")
            .is_file()
    );
}

#[test]
fn a_failing_step_fails_the_job_with_its_exit_code_and_later_steps_never_run() {
    let env = TestEnv::new();
    config(&env, "");
    let d = env.start_daemon(&[]);
    let marker = env.path().join("ran-third");
    let id = d.submit(&json!({
        "name": "breaks",
        "steps": [
            { "name": "ok", "run": "true" },
            { "name": "bad", "run": "echo failing; exit 7" },
            { "name": "never", "run": format!("touch {}", marker.display()) }
        ]
    }));
    let j = d.wait_job(&id, &["failed", "done"], LONG);
    assert_eq!(j["state"], "failed", "{j}");
    assert_eq!(j["steps"][0]["state"], "done");
    assert_eq!(j["steps"][1]["state"], "failed");
    assert_eq!(j["steps"][1]["exit_code"], 7);
    assert_eq!(j["steps"][2]["state"], "queued");
    assert!(
        j["error"].as_str().unwrap().contains("bad") && j["error"].as_str().unwrap().contains('7'),
        "{j}"
    );
    assert!(!marker.exists());
}

#[test]
fn a_step_that_runs_past_its_timeout_is_killed_and_fails_the_job() {
    let env = TestEnv::new();
    config(&env, "");
    let d = env.start_daemon(&[]);
    let id = d.submit(&json!({
        "name": "slow",
        "steps": [{ "name": "sleepy", "run": "echo start; sleep 30; echo never", "timeout": "300ms" }]
    }));
    let j = d.wait_job(&id, &["failed", "done"], LONG);
    assert_eq!(j["state"], "failed", "{j}");
    assert!(j["error"].as_str().unwrap().contains("timed out"), "{j}");
    let logs = get_text(&d.socket, &format!("/v1/jobs/{id}/logs"));
    assert!(logs.contains("start") && !logs.contains("never"), "{logs}");
}

#[test]
fn jobs_steps_default_to_jobs_step_timeout() {
    let env = TestEnv::new();
    config(&env, "[jobs]\nstep_timeout = \"300ms\"\n");
    let d = env.start_daemon(&[]);
    let id = d.submit(&one_step("slow", "sleep 30"));
    let j = d.wait_job(&id, &["failed", "done"], LONG);
    assert!(j["error"].as_str().unwrap().contains("timed out"), "{j}");
}

#[test]
fn queued_and_running_jobs_can_be_cancelled() {
    let env = TestEnv::new();
    config(&env, "[jobs]\nmax_concurrent = 1\n");
    let d = env.start_daemon(&[]);
    let running = d.submit(&one_step("long", "sleep 30"));
    let queued = d.submit(&one_step("waits", "true"));
    d.wait_job(&running, &["running"], LONG);
    assert_eq!(job(&d, &queued)["state"], "queued");

    let (s, body) = d.post(&format!("/v1/jobs/{queued}/cancel"), &json!({}));
    assert_eq!(s, 202, "{body}");
    let j = d.wait_job(&queued, &["cancelled"], LONG);
    assert!(
        j["started_at"].is_null(),
        "a cancelled queued job never starts: {j}"
    );

    let (s, body) = d.post(&format!("/v1/jobs/{running}/cancel"), &json!({}));
    assert_eq!(s, 202, "{body}");
    let j = d.wait_job(&running, &["cancelled"], LONG);
    assert_eq!(j["steps"][0]["state"], "cancelled", "{j}");

    // Cancelling again: the job has ended.
    let (s, body) = d.post(&format!("/v1/jobs/{running}/cancel"), &json!({}));
    assert_eq!(s, 409, "{body}");
    let (s, _) = d.post("/v1/jobs/zzzzzzzzzzzz/cancel", &json!({}));
    assert_eq!(s, 404);
}

#[test]
fn no_more_than_max_concurrent_jobs_run_and_they_start_in_order() {
    let env = TestEnv::new();
    config(&env, "[jobs]\nmax_concurrent = 1\n");
    let d = env.start_daemon(&[]);
    let ids: Vec<String> = (0..3)
        .map(|i| d.submit(&one_step(&format!("j{i}"), "sleep 0.3")))
        .collect();
    let mut max_running = 0;
    let all_done = wait_until(LONG, || {
        let (_, st) = d.get("/v1/status");
        max_running = max_running.max(st["jobs"]["running"].as_u64().unwrap_or(0));
        st["jobs"]["done"] == 3
    });
    assert!(all_done, "jobs did not finish");
    assert_eq!(max_running, 1);
    let jobs: Vec<Value> = ids.iter().map(|id| job(&d, id)).collect();
    for pair in jobs.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a["ended_at"].as_str().unwrap() <= b["started_at"].as_str().unwrap(),
            "{} must end before {} starts",
            a["id"],
            b["id"]
        );
    }
}

#[test]
fn the_api_lists_filters_and_reports_status() {
    let env = TestEnv::new();
    config(&env, "");
    let d = env.start_daemon(&[]);
    let ok = d.submit(&one_step("ok", "true"));
    let bad = d.submit(&one_step("bad", "false"));
    d.wait_job(&ok, &["done"], LONG);
    d.wait_job(&bad, &["failed"], LONG);

    let (s, list) = d.get("/v1/jobs?limit=1000");
    assert_eq!(s, 200);
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![bad.as_str(), ok.as_str()], "newest first");
    let (_, failed) = d.get("/v1/jobs?status=failed");
    assert_eq!(failed["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(failed["jobs"][0]["id"], bad.as_str());
    let (_, one) = d.get("/v1/jobs?limit=1");
    assert_eq!(one["jobs"].as_array().unwrap().len(), 1);
    let (s, body) = d.get("/v1/jobs?status=bogus");
    assert_eq!(s, 400);
    assert!(body["error"].as_str().unwrap().contains("bogus"), "{body}");
    let (s, _) = d.get("/v1/jobs/zzzzzzzzzzzz");
    assert_eq!(s, 404);

    let (s, st) = d.get("/v1/status");
    assert_eq!(s, 200);
    for key in [
        "version",
        "profile",
        "instance",
        "uptime_s",
        "leader",
        "draining",
        "listeners",
        "jobs",
    ] {
        assert!(st.get(key).is_some(), "status lacks {key}: {st}");
    }
    assert_eq!(st["profile"], "desktop");
    assert_eq!(st["leader"], true);
    assert_eq!(st["draining"], false);
    assert_eq!(st["jobs"]["done"], 1);
    assert_eq!(st["jobs"]["failed"], 1);
    assert_eq!(st["jobs"]["queued"], 0);
    assert!(
        st["listeners"][0].as_str().unwrap().starts_with("unix://"),
        "{st}"
    );
}

#[test]
fn a_bad_spec_is_refused_with_the_reason() {
    let env = TestEnv::new();
    config(&env, "");
    let d = env.start_daemon(&[]);
    let (s, body) = d.post(
        "/v1/jobs",
        &json!({ "name": "x", "steps": [{ "name": "a", "run": "true" }, { "name": "a", "run": "true" }] }),
    );
    assert_eq!(s, 400);
    assert!(body["error"].as_str().unwrap().contains("\"a\""), "{body}");
    let (s, body) = d.post(
        "/v1/jobs",
        &json!({ "name": "x", "steps": [{ "name": "../etc", "run": "true" }] }),
    );
    assert_eq!(s, 400, "{body}");
    let (s, body) = d.post("/v1/jobs", &json!({ "name": "x", "stpes": [] }));
    assert_eq!(s, 400);
    assert!(body["error"].as_str().unwrap().contains("stpes"), "{body}");
    let (s, body) = d.post("/v1/jobs", &json!({ "name": "x", "steps": [] }));
    assert_eq!(s, 400, "{body}");
}

#[test]
fn a_container_step_fails_with_a_clear_message_without_the_kubernetes_runner() {
    let env = TestEnv::new();
    config(&env, "");
    let d = env.start_daemon(&[]);
    let id = d.submit(&json!({
        "name": "boxed",
        "steps": [{ "name": "c", "run": "true", "container": "alpine:3" }]
    }));
    let j = d.wait_job(&id, &["failed", "done"], LONG);
    assert_eq!(j["state"], "failed");
    assert!(
        j["error"].as_str().unwrap().contains("Kubernetes runner"),
        "{j}"
    );
}

#[test]
fn tcp_needs_the_bearer_token_on_every_v1_route() {
    let env = TestEnv::new();
    let port = free_port();
    config(
        &env,
        &format!("[listen]\ntcp = \"127.0.0.1:{port}\"\nauth_token = \"tcp-secret-token\"\n"),
    );
    let d = env.start_daemon(&[]);
    let token = Some("tcp-secret-token");

    let (s, job) = curl_tcp(
        port,
        "POST",
        "/v1/jobs",
        token,
        Some(&one_step("tcp", "echo over tcp").to_string()),
    );
    assert_eq!(s, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    d.wait_job(&id, &["done"], LONG);
    let (s, st) = curl_tcp(port, "GET", "/v1/status", token, None);
    assert_eq!(s, 200);
    assert!(
        st["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == &json!(format!("http://127.0.0.1:{port}"))),
        "{st}"
    );

    let routes = [
        ("GET", "/v1/status".to_string()),
        ("POST", "/v1/jobs".to_string()),
        ("GET", "/v1/jobs".to_string()),
        ("GET", format!("/v1/jobs/{id}")),
        ("GET", format!("/v1/jobs/{id}/logs")),
        ("POST", format!("/v1/jobs/{id}/cancel")),
        ("POST", "/v1/shutdown".to_string()),
    ];
    for (method, path) in &routes {
        for bad in [None, Some("wrong-token"), Some("tcp-secret-token-and-more")] {
            let body = (*method == "POST").then(|| one_step("x", "true").to_string());
            let (s, resp) = curl_tcp(port, method, path, bad, body.as_deref());
            assert_eq!(s, 401, "{method} {path} with {bad:?}: {resp}");
            let text = resp.to_string();
            assert!(
                !text.contains(&id) && !text.contains("tcp"),
                "401 must not leak anything: {text}"
            );
        }
    }
    // Nothing above was acted on: one job, and the daemon still runs.
    let (_, list) = curl_tcp(port, "GET", "/v1/jobs", token, None);
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(curl_tcp(port, "GET", "/v1/status", token, None).0, 200);
    // The Unix socket needs no token.
    assert_eq!(d.get("/v1/status").0, 200);
}

#[test]
fn the_token_can_come_from_a_file_with_a_trailing_newline() {
    let env = TestEnv::new();
    let port = free_port();
    let token_file = env.write("secret/token", "file-token-123\n");
    config(
        &env,
        &format!(
            "[listen]\ntcp = \"127.0.0.1:{port}\"\nauth_token_file = \"{}\"\n",
            token_file.display()
        ),
    );
    let _d = env.start_daemon(&[]);
    assert_eq!(
        curl_tcp(port, "GET", "/v1/status", Some("file-token-123"), None).0,
        200
    );
    assert_eq!(
        curl_tcp(port, "GET", "/v1/status", Some("file-token-12"), None).0,
        401
    );
}

#[test]
fn tcp_without_a_token_is_refused_at_start_with_78() {
    let env = TestEnv::new();
    let port = free_port();
    config(&env, &format!("[listen]\ntcp = \"127.0.0.1:{port}\"\n"));
    let out = env.run(&["daemon"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(out.stderr.starts_with("oj: "), "{out:?}");
    assert!(out.stderr.contains("listen.tcp"), "{out:?}");
}

#[test]
fn an_unreadable_token_file_is_a_config_error() {
    let env = TestEnv::new();
    let port = free_port();
    config(
        &env,
        &format!(
            "[listen]\ntcp = \"127.0.0.1:{port}\"\nauth_token_file = \"/nonexistent/oj/token\"\n"
        ),
    );
    let out = env.run(&["daemon"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(out.stderr.contains("/nonexistent/oj/token"), "{out:?}");
}

#[test]
fn bodies_over_max_request_bytes_get_413() {
    let env = TestEnv::new();
    let port = free_port();
    config(
        &env,
        &format!(
            "[listen]\nmax_request_bytes = 1024\ntcp = \"127.0.0.1:{port}\"\nauth_token = \"tok-413-test\"\n"
        ),
    );
    let d = env.start_daemon(&[]);
    let big = json!({ "name": "big", "steps": [{ "name": "a", "run": format!("echo {}", "x".repeat(2000)) }] });
    let (s, body) = d.post("/v1/jobs", &big);
    assert_eq!(s, 413, "{body}");
    let (s, _) = curl_tcp(
        port,
        "POST",
        "/v1/jobs",
        Some("tok-413-test"),
        Some(&big.to_string()),
    );
    assert_eq!(s, 413);
    // Just under the limit is fine.
    let small = json!({ "name": "small", "steps": [{ "name": "a", "run": "true" }] });
    assert_eq!(d.post("/v1/jobs", &small).0, 201);
    let (_, list) = d.get("/v1/jobs?limit=1000");
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
}

#[test]
fn a_second_daemon_on_the_same_state_dir_exits_75_naming_the_pid() {
    let env = TestEnv::new();
    config(&env, "");
    let first = env.start_daemon(&[]);
    let out = env.run(&["daemon"]);
    assert_eq!(out.code, Some(75), "{out:?}");
    assert!(out.stderr.starts_with("oj: "), "{out:?}");
    assert!(
        out.stderr.contains(&format!("PID {}", first.pid())),
        "{out:?}"
    );
    // The first one is unharmed (its socket was not removed).
    assert_eq!(first.get("/v1/status").0, 200);
    let lock = std::fs::read_to_string(env.state_dir().join("daemon.lock")).unwrap();
    assert_eq!(lock.trim(), first.pid().to_string());
}

#[test]
fn after_kill_9_the_running_job_is_interrupted_and_the_queued_one_runs() {
    let env = TestEnv::new();
    config(&env, "[jobs]\nmax_concurrent = 1\n");
    let mut d = env.start_daemon(&[]);
    let pidfile = env.path().join("step.pid");
    let running = d.submit(&one_step(
        "long",
        &format!("echo $$ > {}; exec sleep 30", pidfile.display()),
    ));
    let queued = d.submit(&one_step("next", "echo ran after restart"));
    d.wait_job(&running, &["running"], LONG);
    assert!(wait_until(LONG, || pidfile.exists()));
    d.kill9();
    // The orphaned step is not ours to keep: end it so it does not linger.
    let step_pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    let _ = Command::new("kill").args(["-9", &step_pid]).status();

    // The stale lock file and socket do not block the next start.
    let d2 = env.start_daemon(&[]);
    let j = d2.wait_job(&running, &["interrupted"], LONG);
    assert_eq!(j["steps"][0]["state"], "interrupted", "{j}");
    assert!(j["error"].is_string(), "{j}");
    let q = d2.wait_job(&queued, &["done"], LONG);
    assert_eq!(q["state"], "done");
    let logs = get_text(&d2.socket, &format!("/v1/jobs/{queued}/logs"));
    assert!(logs.contains("ran after restart"), "{logs}");
}

#[test]
fn admin_endpoints_report_health_readiness_and_metrics() {
    let env = TestEnv::new();
    let port = free_port();
    config(&env, &format!("[admin]\naddr = \"127.0.0.1:{port}\"\n"));
    let d = env.start_daemon(&[]);
    let id = d.submit(&one_step("m", "true"));
    d.wait_job(&id, &["done"], LONG);
    assert_eq!(curl_tcp(port, "GET", "/healthz", None, None).0, 200);
    assert_eq!(curl_tcp(port, "GET", "/readyz", None, None).0, 200);
    let (s, metrics) = curl_tcp(port, "GET", "/metrics", None, None);
    assert_eq!(s, 200);
    let text = metrics["text"].as_str().unwrap_or_default().to_string();
    for needle in [
        "oj_jobs{state=\"done\"} 1",
        "oj_jobs_submitted_total 1",
        "oj_notify_queue_depth 0",
        "oj_leader 1",
        "oj_draining 0",
        "oj_build_info{",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    let (_, st) = d.get("/v1/status");
    assert_eq!(st["admin"], format!("http://127.0.0.1:{port}"));
}

#[test]
fn the_state_dir_and_socket_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    config(&env, "");
    let _d = env.start_daemon(&[]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.state_dir()), 0o700);
    assert_eq!(mode(&env.socket()), 0o600);
}

/// Writes a kubeconfig for `fake` and points the daemon at it.
fn with_fake_cluster(env: &mut TestEnv) -> oj_k8s_fake::FakeKube {
    let fake = oj_k8s_fake::FakeKube::start();
    let kubeconfig = env.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    env.set_var("KUBECONFIG", kubeconfig.to_str().unwrap());
    fake
}

#[test]
fn a_container_step_runs_as_a_pod_when_a_cluster_is_configured() {
    let mut env = TestEnv::new();
    let fake = with_fake_cluster(&mut env);
    config(&env, "");
    let d = env.start_daemon(&[]);
    let id = d.submit(&json!({
        "name": "boxed",
        "steps": [{ "name": "c", "run": "echo hi", "container": "alpine:3" }]
    }));
    let pod = format!("oj-{id}-0");
    assert!(
        wait_until(LONG, || fake.pod("default", &pod).is_some()),
        "pod {pod} was never created"
    );
    let j = job(&d, &id);
    assert_eq!(j["steps"][0]["pod"], pod.as_str(), "{j}");
    fake.set_pod_phase("default", &pod, "Running");
    fake.append_pod_log("default", &pod, "hello from the pod\n");
    fake.finish_pod("default", &pod, 0);
    let j = d.wait_job(&id, &["done", "failed"], LONG);
    assert_eq!(j["state"], "done", "{j}");
    let logs = get_text(&d.socket, &format!("/v1/jobs/{id}/logs"));
    assert!(logs.contains("hello from the pod"), "{logs}");
}

#[test]
fn with_the_lease_a_second_daemon_is_a_standby_until_the_leader_exits() {
    let mut env = TestEnv::new();
    let _fake = with_fake_cluster(&mut env);
    let lease = "[lock]\nstrategy = \"lease\"\n\n[lock.lease]\nduration = \"3s\"\nrenew_deadline = \"2s\"\nretry_period = \"200ms\"\n";
    config(&env, lease);
    let mut a = env.start_daemon(&["--set", "daemon.instance=a"]);
    assert!(
        wait_until(LONG, || a.get("/v1/status").1["leader"] == true),
        "a never led"
    );

    // The standby has its own state dir and socket (as another pod would).
    let other = env.path().join("state-b");
    let admin = free_port();
    let mut cmd = env.oj();
    cmd.args(["daemon", "--set", "daemon.instance=b", "--set"])
        .arg(format!("daemon.state_dir={}", other.display()))
        .args(["--set", &format!("admin.addr=127.0.0.1:{admin}")]);
    let mut b = Daemon::spawn_raw(cmd, env.path(), other.join("daemon.sock"));
    assert!(
        wait_until(LONG, || b.get("/v1/status").0 == 200),
        "b did not start: {}",
        b.stderr()
    );
    let (_, st) = b.get("/v1/status");
    assert_eq!(st["leader"], false, "{st}");
    let (s, body) = b.post("/v1/jobs", &one_step("x", "true"));
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["code"], "standby");
    assert_eq!(curl_tcp(admin, "GET", "/readyz", None, None).0, 503);

    // The leader exits cleanly and releases the lease: b takes over.
    a.sigterm();
    assert_eq!(a.wait_exit(LONG).and_then(|s| s.code()), Some(0));
    assert!(
        wait_until(LONG, || b.get("/v1/status").1["leader"] == true),
        "b never led: {}",
        b.stdout()
    );
    assert_eq!(curl_tcp(admin, "GET", "/readyz", None, None).0, 200);
    let id = b.submit(&one_step("after", "true"));
    b.wait_job(&id, &["done"], LONG);
    b.sigterm();
    assert_eq!(b.wait_exit(LONG).and_then(|s| s.code()), Some(0));
}

#[test]
fn the_kubernetes_profile_with_tcp_off_needs_no_token_file() {
    // The profile names /etc/oj/secret/token, which does not exist here: only
    // the TCP listener needs a token, so with TCP off the daemon starts.
    let env = TestEnv::new();
    let state = format!("daemon.state_dir={}", env.state_dir().display());
    let d = env.start_daemon(&[
        "--profile",
        "kubernetes",
        "--set",
        &state,
        "--set",
        "listen.tcp=",
        "--set",
        "admin.addr=",
        "--set",
        "lock.strategy=none",
    ]);
    let (code, status) = d.get("/v1/status");
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["profile"], "kubernetes");
}
