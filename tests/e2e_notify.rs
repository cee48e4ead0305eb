//! End to end: the real `oj daemon` sends job notifications to a real HTTP
//! receiver in this test. `OJ_NOTIFY_WEBHOOK_URL` alone selects webhooks; a
//! receiver that is down while jobs run gets everything once it is up; the
//! notifications survive a `kill -9` and arrive after the restart with the
//! same `webhook-id`; a receiver that never answers does not hold jobs back.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::webhook::{Mode, Received, Receiver};
use common::*;
use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(60);

/// Verifies `webhook-signature` with openssl, the recipe of docs/notifications.md.
fn assert_signature_verifies(r: &Received) {
    let key_b64 = SECRET.strip_prefix("whsec_").unwrap();
    let script = format!(
        "key_hex=$(printf '%s' '{key_b64}' | base64 -d | od -An -v -tx1 | tr -d ' \\n'); \
         openssl dgst -sha256 -mac HMAC -macopt \"hexkey:$key_hex\" -binary | base64"
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh, openssl, base64 and od");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            format!(
                "{}.{}.",
                r.header("webhook-id"),
                r.header("webhook-timestamp")
            )
            .as_bytes(),
        )
        .unwrap();
    stdin.write_all(&r.body).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let expected = format!("v1,{}", String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        r.header("webhook-signature")
            .split(' ')
            .any(|s| s == expected),
        "signature {:?} does not verify (expected {expected})",
        r.header("webhook-signature")
    );
}

fn job_spec(name: &str, run: &str) -> Value {
    json!({ "name": name, "steps": [{ "name": "main", "run": run }] })
}

fn webhook_config(url: &str) -> String {
    format!(
        r#"
[notify]
backend = "webhook"

[notify.webhook]
url = "{url}"
secret = "{SECRET}"
backoff = "50ms"
max_attempts = 1000
timeout = "2s"

[shutdown]
drain_timeout = "1s"
"#
    )
}

fn reserved_port() -> u16 {
    free_port()
}

#[test]
fn the_webhook_url_alone_selects_webhooks_and_the_payload_describes_the_job() {
    let rx = Receiver::start();
    let mut env = TestEnv::new();
    env.set_var("OJ_NOTIFY_WEBHOOK_URL", &rx.url());
    let admin = free_port();
    let d = env.start_daemon(&["--set", &format!("admin.addr=\"127.0.0.1:{admin}\"")]);

    let ok = d.submit(&job_spec("greet", "true"));
    d.wait_job(&ok, &["done"], WAIT);
    let bad = d.submit(&job_spec("broken", "exit 3"));
    d.wait_job(&bad, &["failed"], WAIT);

    let got = rx.wait_delivered(4, WAIT);
    assert_eq!(
        got.len(),
        4,
        "start+done and start+fail; daemon stderr:\n{}",
        d.stderr()
    );
    let types: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["data"]["job_id"].as_str().unwrap().to_string(),
                b["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            (ok.clone(), "job.started".to_string()),
            (ok.clone(), "job.done".to_string()),
            (bad.clone(), "job.started".to_string()),
            (bad.clone(), "job.failed".to_string()),
        ]
    );
    for r in &got {
        assert_eq!(r.header("content-type"), "application/json");
        assert!(!r.header("webhook-id").is_empty());
        assert!(r.header("webhook-timestamp").parse::<u64>().is_ok());
        assert!(
            r.headers.get("webhook-signature").is_none(),
            "no secret configured, no signature"
        );
        let data = &r.json()["data"];
        assert_eq!(data["profile"], "desktop");
        assert!(data["instance"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(data.get("url").is_none(), "no ui.url, no link: {data}");
    }
    let ids: std::collections::BTreeSet<String> = got.iter().map(Received::id).collect();
    assert_eq!(ids.len(), 4, "one id per notification");
    let started = got[0].json();
    assert_eq!(started["data"]["job_name"], "greet");
    assert_eq!(started["data"]["title"], "greet");
    assert_eq!(started["data"]["message"], "Job greet started");
    let failed = got[3].json();
    assert_eq!(failed["data"]["job_name"], "broken");
    assert!(
        failed["data"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    assert!(
        failed["data"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Job broken failed: "),
        "{failed}"
    );

    // The metrics count them under the webhook backend.
    let metrics = Command::new("curl")
        .args([
            "-s",
            "-m",
            "10",
            &format!("http://127.0.0.1:{admin}/metrics"),
        ])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let delivered = metrics
        .lines()
        .find(|l| {
            l.starts_with("oj_notifications_total")
                && l.contains("backend=\"webhook\"")
                && l.contains("result=\"delivered\"")
        })
        .unwrap_or_else(|| panic!("no delivered counter in /metrics:\n{metrics}"));
    assert!(delivered.trim_end().ends_with(" 4"), "{delivered}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("oj_notify_queue_depth") && l.trim_end().ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        !d.stderr().contains(&rx.url()) && !d.stdout().contains(&rx.url()),
        "the URL is a secret"
    );
}

#[test]
fn with_ui_url_every_notification_links_to_the_jobs_page() {
    let rx = Receiver::start();
    let mut env = TestEnv::new();
    env.set_var("OJ_NOTIFY_WEBHOOK_URL", &rx.url());
    // A path prefix and a trailing slash: the link has one slash between.
    env.set_var("OJ_UI__URL", "https://oj.example.com/ops/");
    let d = env.start_daemon(&[]);
    let id = d.submit(&job_spec("linked", "exit 4"));
    d.wait_job(&id, &["failed"], WAIT);
    let got = rx.wait_delivered(2, WAIT);
    assert_eq!(got.len(), 2, "start and fail; stderr:\n{}", d.stderr());
    let link = format!("https://oj.example.com/ops/ui/jobs/{id}");
    for r in &got {
        assert_eq!(r.json()["data"]["url"], link.as_str(), "{}", r.json());
    }
    // The link names a page the daemon serves (here over its socket).
    let (status, page) = d.get(&format!("/ui/jobs/{id}"));
    assert_eq!(status, 200, "{page}");
    assert!(
        page["text"].as_str().is_some_and(|t| t.contains("linked")),
        "{page}"
    );

    // A ui.url that cannot take a job's path is refused by name.
    let out = env.run(&[
        "config",
        "check",
        "--set",
        "ui.url=\"https://oj.example.com/?x=1\"",
    ]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stderr.contains("ui.url") && out.stderr.contains("cannot take a job's path"),
        "{out:?}"
    );
}

#[test]
fn a_receiver_that_is_down_while_jobs_run_gets_every_notification_once_it_is_up() {
    let port = reserved_port();
    let url = format!("http://127.0.0.1:{port}/hooks/oj");
    let env = TestEnv::new();
    env.write_config(&webhook_config(&url));
    let d = env.start_daemon(&[]);

    let jobs: Vec<String> = (0..3)
        .map(|i| d.submit(&job_spec(&format!("offline{i}"), "true")))
        .collect();
    for id in &jobs {
        d.wait_job(id, &["done"], WAIT);
    }

    let rx = Receiver::start_on(port, Mode::Ok);
    let got = rx.wait_delivered(6, WAIT);
    assert_eq!(got.len(), 6, "daemon stderr:\n{}", d.stderr());
    for r in &got {
        assert_signature_verifies(r);
    }
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["data"]["job_id"].as_str().unwrap().to_string(),
                b["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut want: Vec<(String, String)> = jobs
        .iter()
        .flat_map(|id| {
            [
                (id.clone(), "job.done".to_string()),
                (id.clone(), "job.started".to_string()),
            ]
        })
        .collect();
    want.sort();
    assert_eq!(seen, want);
}

#[test]
fn notifications_survive_kill_9_and_are_redelivered_with_the_same_webhook_id() {
    let rx = Receiver::with_mode(Mode::UNAVAILABLE);
    let env = TestEnv::new();
    env.write_config(&webhook_config(&rx.url()));

    let mut d1 = env.start_daemon(&[]);
    let jobs: Vec<String> = (0..2)
        .map(|i| d1.submit(&job_spec(&format!("crash{i}"), "true")))
        .collect();
    for id in &jobs {
        d1.wait_job(id, &["done"], WAIT);
    }
    assert!(
        wait_until(WAIT, || !rx.attempts().is_empty()),
        "the daemon tried to deliver"
    );
    let first_attempted = rx.attempts()[0].id();
    d1.kill9();

    rx.set_mode(Mode::Ok);
    let d2 = env.start_daemon(&[]);
    let got = rx.wait_delivered(4, WAIT);
    assert_eq!(
        got.len(),
        4,
        "every notification after the restart; stderr:\n{}",
        d2.stderr()
    );
    assert_eq!(
        got[0].id(),
        first_attempted,
        "same webhook-id before and after the restart"
    );
    let ids: std::collections::BTreeSet<String> = got.iter().map(Received::id).collect();
    assert_eq!(ids.len(), 4);
    for r in &got {
        assert_signature_verifies(r);
        assert!(
            jobs.iter()
                .any(|j| r.json()["data"]["job_id"] == j.as_str())
        );
    }

    // Acknowledged ones are not sent again after a clean restart: the next
    // notification to arrive is the new job's (pending ones would go first).
    let mut d2 = d2;
    d2.sigterm();
    assert!(
        d2.wait_exit(Duration::from_secs(15))
            .is_some_and(|s| s.success())
    );
    let d3 = env.start_daemon(&[]);
    let fresh = d3.submit(&job_spec("after", "true"));
    d3.wait_job(&fresh, &["done"], WAIT);
    let got = rx.wait_delivered(6, WAIT);
    assert_eq!(got.len(), 6, "stderr:\n{}", d3.stderr());
    for r in &got[4..] {
        assert_eq!(
            r.json()["data"]["job_id"],
            fresh.as_str(),
            "no re-delivery of acknowledged notifications"
        );
    }
}

#[test]
fn a_receiver_that_never_answers_does_not_hold_jobs_back() {
    let rx = Receiver::with_mode(Mode::Hang);
    let env = TestEnv::new();
    let mut cfg = webhook_config(&rx.url());
    cfg = cfg.replace("timeout = \"2s\"", "timeout = \"1h\"");
    env.write_config(&cfg);
    let mut d = env.start_daemon(&[]);

    let jobs: Vec<String> = (0..20)
        .map(|i| d.submit(&job_spec(&format!("busy{i}"), "true")))
        .collect();
    for id in &jobs {
        d.wait_job(id, &["done"], WAIT);
    }
    assert_eq!(
        rx.attempts().len(),
        1,
        "one request, still unanswered; the jobs did not wait for it"
    );

    // The drain gives the stuck notification what is left of the window, then exits cleanly.
    d.sigterm();
    let status = d.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}; stderr:\n{}",
        d.stderr()
    );
}

/// `oj_notifications_total{backend,result}` from the admin endpoint.
fn metric(admin: u16, backend: &str, result: &str) -> Option<u64> {
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "10",
            &format!("http://127.0.0.1:{admin}/metrics"),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| {
            l.starts_with("oj_notifications_total")
                && l.contains(&format!("backend=\"{backend}\""))
                && l.contains(&format!("result=\"{result}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// The desktop profile on a machine without a D-Bus session bus (the test
/// environment has none): `config check` warns, jobs run, every notification
/// fails and is counted, and the log has exactly one warning about it.
#[test]
fn desktop_notifications_without_a_session_bus_do_not_affect_jobs_and_warn_once() {
    let env = TestEnv::new();
    let check = env.run(&["config", "check"]);
    assert_eq!(
        check.code,
        Some(0),
        "a warning, not an error:\n{}{}",
        check.stdout,
        check.stderr
    );
    assert!(
        format!("{}{}", check.stdout, check.stderr).contains("D-Bus"),
        "config check warns about the missing session bus:\n{}{}",
        check.stdout,
        check.stderr
    );

    let admin = free_port();
    let d = env.start_daemon(&[
        "--set",
        "log.stdout=true",
        "--set",
        &format!("admin.addr=\"127.0.0.1:{admin}\""),
    ]);
    let jobs: Vec<String> = (0..3)
        .map(|i| d.submit(&job_spec(&format!("desk{i}"), "true")))
        .collect();
    for id in &jobs {
        d.wait_job(id, &["done"], WAIT);
    }
    assert!(
        wait_until(WAIT, || metric(admin, "desktop", "failed") == Some(6)),
        "6 failed desktop notifications counted; got {:?}\nstdout:\n{}",
        metric(admin, "desktop", "failed"),
        d.stdout()
    );
    let log = format!("{}{}", d.stdout(), d.stderr());
    let warnings = log.matches("desktop notifications cannot be shown").count();
    assert_eq!(
        warnings, 1,
        "exactly one warning, not one per event:\n{log}"
    );
}

/// A webhook setup the notifier cannot use stops the daemon at start (78),
/// naming the key, never printing the secret.
#[test]
fn a_bad_signing_key_stops_the_daemon_at_start_without_printing_it() {
    let mut env = TestEnv::new();
    env.set_var(
        "OJ_NOTIFY_WEBHOOK_URL",
        "http://127.0.0.1:9/hook?token=url-secret-token",
    );
    env.set_var(
        "OJ_NOTIFY__WEBHOOK__SECRET",
        "whsec_***not-base64-secretvalue***",
    );
    let mut cmd = env.oj();
    cmd.arg("daemon");
    let mut d = Daemon::spawn_raw(cmd, env.path(), env.socket());
    let status = d.wait_exit(Duration::from_secs(15));
    let out = format!("{}{}", d.stdout(), d.stderr());
    assert_eq!(status.and_then(|s| s.code()), Some(78), "{out}");
    assert!(out.contains("notify.webhook.secret"), "{out}");
    assert!(
        !out.contains("secretvalue") && !out.contains("url-secret-token"),
        "a secret was printed:\n{out}"
    );
}

#[test]
fn switching_to_the_none_backend_finishes_what_an_earlier_backend_left_pending() {
    let port = reserved_port();
    let url = format!("http://127.0.0.1:{port}/hooks/oj");
    let env = TestEnv::new();
    env.write_config(&webhook_config(&url));

    // The receiver is down: the job's notifications stay pending in the WAL.
    let mut d = env.start_daemon(&[]);
    let old = d.submit(&job_spec("old", "true"));
    d.wait_job(&old, &["done"], WAIT);
    d.sigterm();
    assert!(
        d.wait_exit(WAIT).is_some_and(|s| s.success()),
        "{}",
        d.stderr()
    );

    // With notify.backend = "none" nothing will ever deliver them.
    let mut d = env.start_daemon(&["--set", "notify.backend=none"]);
    d.sigterm();
    assert!(
        d.wait_exit(WAIT).is_some_and(|s| s.success()),
        "{}",
        d.stderr()
    );

    // Back on webhooks with a live receiver: only the new job is announced.
    // Pending notifications would be delivered first, so once the new job's
    // two have arrived, anything left over from `old` would have too.
    let rx = Receiver::start_on(port, Mode::Ok);
    let d = env.start_daemon(&[]);
    let fresh = d.submit(&job_spec("fresh", "true"));
    d.wait_job(&fresh, &["done"], WAIT);
    let got = rx.wait_delivered(2, WAIT);
    let ids: Vec<String> = got
        .iter()
        .map(|r| {
            r.json()["data"]["job_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        ids,
        vec![fresh.clone(), fresh],
        "daemon stderr:\n{}",
        d.stderr()
    );
}
