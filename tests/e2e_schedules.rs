//! Schedules of the real `oj daemon` (SPEC §8.3): a minute schedule fires
//! once per fire time, `kill -9` just before a boundary then a restart
//! yields one job, two missed fires give one catch-up run, a pause survives
//! a restart, a reload adds and removes schedules, `run` obeys overlap, and
//! `oj config check` names bad crons and zones and notes fire times.
//!
//! Cron has minutes, so these tests wait for real minute boundaries: every
//! wait is bounded (about a minute), and the tests run in parallel.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Daemon, TestEnv, free_port, wait_until};
use serde_json::{Value, json};

/// Longest wait for one minute boundary (plus the daemon's reaction).
const MINUTE: Duration = Duration::from_secs(75);

fn config(schedules: &str, extra: &str) -> String {
    format!(
        "[notify]\nbackend = \"none\"\n[log]\nstdout = true\nlevel = \"info\"\n{extra}\n{schedules}"
    )
}

const TICK: &str = r#"
[schedules.tick]
cron = "* * * * *"
timezone = "UTC"
job = { step = [{ name = "hello", run = "echo tick" }] }
"#;

/// Seconds since the epoch, now.
fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sleeps until the wall clock is `at` seconds into a minute (so that a
/// step takes place just before or after a boundary).
fn sleep_to_second(at: u64) {
    let s = now_s() % 60;
    let wait = (at + 60 - s) % 60;
    std::thread::sleep(Duration::from_secs(wait));
}

/// The jobs of schedule `name`: (id, fire_time, manual).
fn scheduled_jobs(d: &Daemon, name: &str) -> Vec<(String, String, bool)> {
    let (code, body) = d.get("/v1/jobs?limit=1000");
    assert_eq!(code, 200, "{body}");
    let mut out: Vec<(String, String, bool)> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| {
            let id = j["id"].as_str()?.to_string();
            let (_, full) = d.get(&format!("/v1/jobs/{id}"));
            let s = full.get("schedule")?;
            (s["name"] == name).then(|| {
                (
                    id,
                    s["fire_time"].as_str().unwrap_or("").to_string(),
                    s["manual"].as_bool().unwrap_or(false),
                )
            })
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

fn schedules(d: &Daemon) -> Vec<Value> {
    let (code, body) = d.get("/v1/schedules");
    assert_eq!(code, 200, "{body}");
    body["schedules"].as_array().cloned().unwrap_or_default()
}

fn metrics(port: u16) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_minute_schedule_fires_once_per_fire_time() {
    let env = TestEnv::new();
    let admin = free_port();
    env.write_config(&config(
        TICK,
        &format!("[admin]\naddr = \"127.0.0.1:{admin}\""),
    ));
    let d = env.start_daemon(&[]);
    let listed = schedules(&d);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "tick");
    assert_eq!(listed[0]["cron"], "* * * * *");
    assert_eq!(listed[0]["paused"], false);
    assert_eq!(listed[0]["enabled"], true);
    let next = listed[0]["next_fire"].as_str().unwrap().to_string();
    assert!(next.ends_with(":00.000Z"), "{next}");

    assert!(
        wait_until(MINUTE, || !scheduled_jobs(&d, "tick").is_empty()),
        "the minute schedule never fired\n{}",
        d.stdout()
    );
    let jobs = scheduled_jobs(&d, "tick");
    assert_eq!(jobs[0].1, next, "it fired at the announced time");
    let id = jobs[0].0.clone();
    d.wait_job(&id, &["done"], Duration::from_secs(20));
    // A few seconds later still one job for that fire time.
    std::thread::sleep(Duration::from_secs(3));
    let again = scheduled_jobs(&d, "tick");
    assert_eq!(again.iter().filter(|j| j.1 == next).count(), 1, "{again:?}");
    let listed = &schedules(&d)[0];
    assert_eq!(listed["last_fire"], json!(next));
    assert_eq!(listed["last_job"], json!(id));
    assert_eq!(listed["last_result"], "submitted");

    let text = metrics(admin);
    assert!(
        text.contains("oj_schedule_fires_total{schedule=\"tick\",result=\"submitted\"}"),
        "{text}"
    );
    assert!(
        text.contains("oj_schedule_next_fire_timestamp_seconds{schedule=\"tick\"}"),
        "{text}"
    );
    assert!(
        text.contains("oj_schedule_last_success_timestamp_seconds{schedule=\"tick\"}"),
        "{text}"
    );
    assert!(
        text.contains("oj_schedule_period_seconds{schedule=\"tick\"} 60"),
        "{text}"
    );
    let out = env.run(&["schedule", "list"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("tick") && out.stdout.contains(&id),
        "{}",
        out.stdout
    );
}

#[test]
fn kill_9_just_before_a_boundary_then_restart_yields_one_job() {
    let env = TestEnv::new();
    env.write_config(&config(TICK, ""));
    sleep_to_second(50);
    let mut d = env.start_daemon(&[]);
    sleep_to_second(58);
    let boundary = (now_s() / 60 + 1) * 60;
    d.kill9();
    // Restart just after the boundary: the fire is caught up, once.
    while now_s() < boundary + 2 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let d = env.start_daemon(&[]);
    assert!(
        wait_until(Duration::from_secs(20), || !scheduled_jobs(&d, "tick")
            .is_empty()),
        "the fire at the boundary was lost\n{}",
        d.stdout()
    );
    std::thread::sleep(Duration::from_secs(2));
    let jobs = scheduled_jobs(&d, "tick");
    let at_boundary: Vec<_> = jobs
        .iter()
        .filter(|j| {
            humantime::parse_rfc3339(&j.1)
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|t| t.as_secs())
                == Some(boundary)
        })
        .collect();
    assert_eq!(at_boundary.len(), 1, "{jobs:?}");
}

#[test]
fn two_missed_fires_give_one_catch_up_run() {
    let env = TestEnv::new();
    let admin = free_port();
    env.write_config(&config(
        TICK,
        &format!("[admin]\naddr = \"127.0.0.1:{admin}\""),
    ));
    sleep_to_second(55);
    let mut d = env.start_daemon(&[]);
    // Defined now; down over the next two boundaries.
    let first = (now_s() / 60 + 1) * 60;
    d.kill9();
    while now_s() < first + 62 {
        std::thread::sleep(Duration::from_millis(500));
    }
    let d = env.start_daemon(&[]);
    assert!(
        wait_until(Duration::from_secs(20), || !scheduled_jobs(&d, "tick")
            .is_empty()),
        "no catch-up run\n{}",
        d.stdout()
    );
    std::thread::sleep(Duration::from_secs(2));
    let jobs = scheduled_jobs(&d, "tick");
    assert_eq!(jobs.len(), 1, "one run for the two missed fires: {jobs:?}");
    let fired = humantime::parse_rfc3339(&jobs[0].1).unwrap();
    assert_eq!(
        fired.duration_since(UNIX_EPOCH).unwrap().as_secs(),
        first + 60,
        "the catch-up run is the latest missed fire"
    );
    let text = metrics(admin);
    assert!(
        text.contains("oj_schedule_fires_total{schedule=\"tick\",result=\"missed\"} 1"),
        "{text}"
    );
}

#[test]
fn a_pause_survives_a_restart() {
    let env = TestEnv::new();
    env.write_config(&config(TICK, ""));
    let mut d = env.start_daemon(&[]);
    let out = env.run(&["schedule", "pause", "tick"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "paused tick");
    d.kill9();
    let d = env.start_daemon(&[]);
    let listed = &schedules(&d)[0];
    assert_eq!(listed["paused"], true, "{listed}");
    assert_eq!(listed["next_fire"], Value::Null);
    // Through a whole boundary: nothing fires.
    let until = (now_s() / 60 + 1) * 60 + 3;
    while now_s() < until {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(scheduled_jobs(&d, "tick").is_empty());
    let out = env.run(&["schedule", "list", "--json"]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["schedules"][0]["paused"], true);
    // Resume: what fell while paused is not caught up.
    let (code, body) = d.post("/v1/schedules/tick/resume", &json!({}));
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["paused"], false);
    std::thread::sleep(Duration::from_secs(1));
    assert!(scheduled_jobs(&d, "tick").is_empty());
    let (code, body) = d.post("/v1/schedules/nope/pause", &json!({}));
    assert_eq!(
        (code, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
}

#[test]
fn a_reload_adds_and_removes_schedules() {
    let env = TestEnv::new();
    env.write_config(&config("", ""));
    let d = env.start_daemon(&[]);
    assert!(schedules(&d).is_empty());
    env.write_config(&config(TICK, ""));
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(20), || schedules(&d).len() == 1),
        "the reload did not add the schedule\n{}",
        d.stdout()
    );
    assert!(
        wait_until(MINUTE, || !scheduled_jobs(&d, "tick").is_empty()),
        "the added schedule never fired\n{}",
        d.stdout()
    );
    // An invalid cron is rejected as a whole: the schedule stays.
    env.write_config(&config(&TICK.replace("* * * * *", "0 0 L * *"), ""));
    d.signal("HUP");
    assert!(wait_until(Duration::from_secs(20), || {
        d.get("/v1/config").1["last_reload"]["result"] == "rejected"
    }));
    assert_eq!(schedules(&d)[0]["cron"], "* * * * *");
    env.write_config(&config("", ""));
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(20), || schedules(&d).is_empty()),
        "the reload did not remove the schedule"
    );
    let (code, body) = d.post("/v1/schedules/tick/run", &json!({}));
    assert_eq!(code, 404, "{body}");
}

#[test]
fn run_fires_now_and_obeys_overlap() {
    let env = TestEnv::new();
    env.write_config(&config(
        r#"
[schedules.slow]
cron = "@yearly"
job = { step = [{ name = "wait", run = "sleep 30" }] }
"#,
        "",
    ));
    let d = env.start_daemon(&[]);
    let out = env.run(&["schedule", "run", "slow"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let id = out.stdout.trim().to_string();
    let job = d.wait_job(&id, &["running"], Duration::from_secs(20));
    assert_eq!(job["schedule"]["name"], "slow");
    let (code, body) = d.post("/v1/schedules/slow/run", &json!({}));
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["code"], "overlap");
    let out = env.run(&["schedule", "run", "slow"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("overlap"), "{}", out.stderr);
    let out = env.run(&["schedule", "run", "nope"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("no schedule named \"nope\""),
        "{}",
        out.stderr
    );
    let _ = d.post(&format!("/v1/jobs/{id}/cancel"), &json!({}));
}

#[test]
fn config_check_names_bad_crons_and_zones_and_notes_fire_times() {
    let env = TestEnv::new();
    env.write_config(&config(
        r#"
[schedules.nightly]
cron = "30 2 * * *"
timezone = "America/New_York"
job = { step = [{ name = "x", run = "true" }] }
"#,
        "",
    ));
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("note: schedules.nightly: next fires ")
            && out.stderr.contains("(America/New_York)"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("T02:30:00-0").count(),
        3,
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("does not exist (DST gap)"),
        "a 02:30 New York schedule meets the spring gap within a year: {}",
        out.stderr
    );

    let mut env = TestEnv::new();
    env.write_config(&config(
        r#"
[schedules.bad]
cron = "0 0 * * * *"
timezone = "Mars/Olympus"
job = { step = [{ name = "x", run = "true" }] }
"#,
        "",
    ));
    env.set_var("OJ_SCHEDULES__OTHER__CRON", "@reboot");
    env.set_var(
        "OJ_SCHEDULES__OTHER__JOB",
        "{ step = [{ name = \"x\", run = \"true\" }] }",
    );
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stderr.contains("schedules.bad.cron (from file "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("seconds"), "{}", out.stderr);
    assert!(
        out.stderr.contains("schedules.bad.timezone (from file "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("\"Mars/Olympus\" is not a known time zone"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("schedules.other.cron (from env OJ_SCHEDULES__OTHER__CRON)")
            && out.stderr.contains("@reboot is not supported"),
        "{}",
        out.stderr
    );

    // A job table the daemon would refuse fails the check too.
    let env = TestEnv::new();
    env.write_config(&config(
        r#"
[schedules.shell]
cron = "@daily"
job = { step = [{ name = "x", run = "true" }] }
"#,
        "[jobs]\nallow_shell = false",
    ));
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(out.stderr.contains("schedules.shell.job"), "{}", out.stderr);
}
