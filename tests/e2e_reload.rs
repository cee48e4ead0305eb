//! Live reload of the real `oj daemon` (SPEC §7.7): SIGHUP with a valid and
//! an invalid file, a ConfigMap-style `..data` symlink swap, a live
//! `log.level` and `jobs.max_concurrent` seen in behaviour, restart-only
//! keys reported pending, and the running config in view (`GET /v1/config`,
//! `oj config show --daemon`, `oj config diff --daemon`, `oj status`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Daemon, TestEnv, free_port, http, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn config(max_concurrent: u32, extra: &str) -> String {
    format!(
        "[jobs]\nmax_concurrent = {max_concurrent}\n[notify]\nbackend = \"log\"\n[log]\nstdout = true\n{extra}"
    )
}

fn sleeper(name: &str) -> Value {
    json!({"name": name, "steps": [{"name": "s", "run": "sleep 60"}]})
}

/// Waits until `GET /v1/config` answers a generation of at least `n`, or a
/// last reload with `result`; returns the body.
fn wait_config(d: &Daemon, what: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        let (code, body) = d.get("/v1/config");
        let hit = code == 200 && what(&body);
        last = body;
        hit
    });
    assert!(
        ok,
        "the daemon's config never matched; last /v1/config: {last}\nstdout:\n{}",
        d.stdout()
    );
    last
}

fn generation(v: &Value) -> u64 {
    v["generation"].as_u64().unwrap_or(0)
}

#[test]
fn sighup_applies_max_concurrent_at_once_and_reports_restart_only_keys() {
    let env = TestEnv::new();
    let file = env.write_config(&config(1, ""));
    let d = env.start_daemon(&[]);
    let before = wait_config(&d, |v| generation(v) == 1);
    assert!(before["last_reload"].is_null(), "{before}");
    assert_eq!(before["config"]["jobs"]["max_concurrent"], 1);

    let a = d.submit(&sleeper("a"));
    let b = d.submit(&sleeper("b"));
    d.wait_job(&a, &["running"], WAIT);
    let (_, job_b) = d.get(&format!("/v1/jobs/{b}"));
    assert_eq!(job_b["state"], "queued", "max_concurrent = 1 holds b back");

    std::fs::write(
        &file,
        config(
            2,
            "[listen]\nmax_request_bytes = 4096\n[daemon]\nwatch_config = false\n",
        ),
    )
    .unwrap();
    d.signal("HUP");
    // Behaviour: the queued job starts without a restart.
    d.wait_job(&b, &["running"], WAIT);
    let after = wait_config(&d, |v| generation(v) == 2);
    assert_eq!(after["last_reload"]["result"], "ok", "{after}");
    assert_eq!(after["config"]["jobs"]["max_concurrent"], 2);
    let pending: Vec<&str> = after["pending_restart"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(pending.contains(&"listen.max_request_bytes"), "{after}");
    assert!(pending.contains(&"daemon.watch_config"), "{after}");
    assert!(!pending.contains(&"jobs.max_concurrent"), "{after}");
    // The running value of a restart-only key is still the start one.
    assert_eq!(after["config"]["listen"]["max_request_bytes"], 1048576);
    assert!(
        after["sources"]["jobs.max_concurrent"]
            .as_str()
            .unwrap_or_default()
            .starts_with("file "),
        "{after}"
    );

    let status = env.run(&["status"]);
    assert_eq!(status.code, Some(0), "{status:?}");
    assert!(status.stdout.contains("generation 2"), "{}", status.stdout);
    assert!(
        status.stdout.contains("pending restart: ")
            && status.stdout.contains("listen.max_request_bytes"),
        "{}",
        status.stdout
    );
    assert!(
        wait_until(WAIT, || d.stdout().contains("applies only at a restart")),
        "a restart-only change is logged: {}",
        d.stdout()
    );
    for id in [&a, &b] {
        d.post(&format!("/v1/jobs/{id}/cancel"), &json!({}));
    }
}

#[test]
fn an_invalid_file_changes_nothing_and_is_counted_as_rejected() {
    let env = TestEnv::new();
    let port = free_port();
    let file = env.write_config(&config(
        3,
        &format!("[admin]\naddr = \"127.0.0.1:{port}\"\n"),
    ));
    let d = env.start_daemon(&[]);
    std::fs::write(
        &file,
        "[jobs]\nmax_concurrent = 0\n[log]\nformat = \"yaml\"\n",
    )
    .unwrap();
    d.signal("HUP");
    let v = wait_config(&d, |v| v["last_reload"]["result"] == "rejected");
    assert_eq!(generation(&v), 1, "{v}");
    assert_eq!(
        v["config"]["jobs"]["max_concurrent"], 3,
        "nothing changed: {v}"
    );
    let errors = v["last_reload"]["errors"].to_string();
    assert!(
        errors.contains("jobs.max_concurrent") && errors.contains("log.format"),
        "{errors}"
    );
    assert!(
        d.stdout().contains("ERROR"),
        "problems logged at ERROR: {}",
        d.stdout()
    );
    // The daemon still works with the old config.
    let id = d.submit(&json!({"name": "ok", "steps": [{"name": "s", "run": "true"}]}));
    d.wait_job(&id, &["done"], WAIT);

    let metrics = http::get(port, "/metrics").body;
    assert!(
        metrics.contains("oj_config_reloads_total{result=\"rejected\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("oj_config_generation 1"), "{metrics}");

    // A fixed file is accepted: generation and counters move.
    std::fs::write(
        &file,
        config(3, &format!("[admin]\naddr = \"127.0.0.1:{port}\"\n")),
    )
    .unwrap();
    d.signal("HUP");
    wait_config(&d, |v| {
        generation(v) == 2 && v["last_reload"]["result"] == "ok"
    });
    let metrics = http::get(port, "/metrics").body;
    assert!(
        metrics.contains("oj_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("oj_config_generation 2"), "{metrics}");
    let status = env.run(&["status", "--json"]);
    let status: Value = serde_json::from_str(&status.stdout).expect("status json");
    assert_eq!(status["config"]["generation"], 2, "{status}");
}

/// Kubernetes mounts a ConfigMap as `config.toml -> ..data/config.toml`,
/// `..data -> ..<timestamp>`, and updates it by swapping `..data`.
fn configmap_dir(root: &Path, version: &str, text: &str) -> PathBuf {
    let dir = root.join(format!("..{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), text).unwrap();
    dir
}

#[test]
fn a_configmap_data_symlink_swap_is_applied_without_a_signal() {
    let env = TestEnv::new();
    let mount = env.path().join("etc-oj");
    std::fs::create_dir_all(&mount).unwrap();
    configmap_dir(&mount, "2026_12_01_a", &config(1, ""));
    std::os::unix::fs::symlink("..2026_12_01_a", mount.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/config.toml", mount.join("config.toml")).unwrap();
    let file = mount.join("config.toml");
    let d = env.start_daemon(&["--config", file.to_str().unwrap()]);
    wait_config(&d, |v| generation(v) == 1);

    configmap_dir(&mount, "2026_12_01_b", &config(7, ""));
    std::os::unix::fs::symlink("..2026_12_01_b", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    let v = wait_config(&d, |v| v["config"]["jobs"]["max_concurrent"] == 7);
    assert_eq!(generation(&v), 2, "{v}");
    assert!(
        v["last_reload"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("config.toml"),
        "{v}"
    );
}

#[test]
fn a_live_log_level_change_shows_in_the_log() {
    let env = TestEnv::new();
    let file = env.write_config(&config(2, "level = \"info\"\n"));
    let d = env.start_daemon(&[]);
    let first = d.submit(&json!({"name": "quiet", "steps": [{"name": "one", "run": "true"}]}));
    d.wait_job(&first, &["done"], WAIT);
    assert!(
        !d.stdout().contains("step started"),
        "debug is off at info: {}",
        d.stdout()
    );

    std::fs::write(&file, config(2, "level = \"info,oj_daemon=debug\"\n")).unwrap();
    // watch_config (on by default): no signal needed.
    wait_config(&d, |v| {
        v["config"]["log"]["level"] == "info,oj_daemon=debug"
    });
    let second = d.submit(&json!({"name": "loud", "steps": [{"name": "two", "run": "true"}]}));
    d.wait_job(&second, &["done"], WAIT);
    assert!(
        wait_until(WAIT, || d.stdout().contains("step started")
            && d.stdout().contains(&second)),
        "debug lines appear after the reload: {}",
        d.stdout()
    );
}

#[test]
fn show_and_diff_against_the_running_daemon() {
    let env = TestEnv::new();
    let file = env.write_config(&config(2, "[daemon]\nwatch_config = false\n"));
    let d = env.start_daemon(&[]);
    let show = env.run(&["config", "show", "--daemon"]);
    assert_eq!(show.code, Some(0), "{show:?}");
    let toml_text: String = show
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let parsed: toml::Table = toml::from_str(&toml_text).expect("show --daemon is TOML");
    assert_eq!(parsed["jobs"]["max_concurrent"].as_integer(), Some(2));
    let sources = env.run(&["config", "show", "--daemon", "--sources"]);
    assert!(
        sources.stdout.contains("max_concurrent = 2  # file "),
        "{}",
        sources.stdout
    );

    let same = env.run(&["config", "diff", "--daemon"]);
    assert_eq!(same.code, Some(0), "{same:?}");
    assert!(
        same.stdout.trim().is_empty(),
        "no drift yet: {}",
        same.stdout
    );

    // watch_config = false: the file changes, the daemon does not.
    std::fs::write(&file, config(5, "[daemon]\nwatch_config = false\n")).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let (_, v) = d.get("/v1/config");
    assert_eq!(v["config"]["jobs"]["max_concurrent"], 2, "{v}");
    let drift = env.run(&["config", "diff", "--daemon"]);
    assert_eq!(drift.code, Some(0), "{drift:?}");
    let line = drift
        .stdout
        .lines()
        .find(|l| l.starts_with("jobs.max_concurrent"))
        .unwrap_or_else(|| panic!("{}", drift.stdout));
    assert!(
        line.contains('2') && line.contains('5') && line.contains("file "),
        "{line}"
    );
}

#[test]
fn a_notify_change_applies_without_a_restart() {
    let env = TestEnv::new();
    let file = env.write_config(
        "[notify]\nbackend = \"none\"\n[log]\nstdout = true\n[daemon]\nwatch_config = false\n",
    );
    let d = env.start_daemon(&[]);
    let quiet = d.submit(&json!({"name": "quiet", "steps": [{"name": "s", "run": "true"}]}));
    d.wait_job(&quiet, &["done"], WAIT);

    std::fs::write(&file, config(2, "[daemon]\nwatch_config = false\n")).unwrap();
    d.signal("HUP");
    let v = wait_config(&d, |v| v["config"]["notify"]["backend"] == "log");
    assert!(
        !v["pending_restart"].to_string().contains("notify"),
        "notify.* applies live: {v}"
    );
    let loud = d.submit(&json!({"name": "loud", "steps": [{"name": "s", "run": "true"}]}));
    d.wait_job(&loud, &["done"], WAIT);
    assert!(
        wait_until(WAIT, || {
            let log = d.stdout();
            log.contains("oj::notify") && log.contains(&loud)
        }),
        "the log backend notifies after the reload: {}",
        d.stdout()
    );
    assert!(
        !d.stdout()
            .lines()
            .any(|l| l.contains("oj::notify") && l.contains(&quiet)),
        "nothing was notified while the backend was none"
    );
}

#[test]
fn creating_the_default_config_file_after_start_is_a_change() {
    let env = TestEnv::new();
    let d = env.start_daemon(&["--set", "notify.backend=log"]);
    wait_config(&d, |v| generation(v) == 1);
    env.write_config("[jobs]\nmax_concurrent = 3\n");
    let v = wait_config(&d, |v| v["config"]["jobs"]["max_concurrent"] == 3);
    assert_eq!(generation(&v), 2, "{v}");
    assert!(
        v["sources"]["jobs.max_concurrent"]
            .as_str()
            .unwrap_or_default()
            .ends_with("config/oj/config.toml"),
        "{v}"
    );
}

#[test]
fn a_config_file_that_vanishes_or_turns_into_a_directory_changes_nothing() {
    let env = TestEnv::new();
    let file = env.write("etc/oj.toml", &config(4, ""));
    let d = env.start_daemon(&["--config", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    let v = wait_config(&d, |v| v["last_reload"]["result"] == "rejected");
    assert!(
        v["last_reload"]["errors"].to_string().contains("oj.toml"),
        "{v}"
    );
    assert_eq!(v["config"]["jobs"]["max_concurrent"], 4, "{v}");
    std::fs::create_dir(&file).unwrap();
    d.signal("HUP");
    let v = wait_config(&d, |v| {
        v["last_reload"]["reason"] == "SIGHUP" && v["last_reload"]["result"] == "rejected"
    });
    assert_eq!(generation(&v), 1, "{v}");
    let id = d.submit(&json!({"name": "still", "steps": [{"name": "s", "run": "true"}]}));
    d.wait_job(&id, &["done"], WAIT);
}

#[test]
fn editing_the_user_profile_in_use_is_a_change_too() {
    let env = TestEnv::new();
    let profile = env.write(
        "config/oj/profiles/ci.toml",
        "extends = \"desktop\"\ndescription = \"CI\"\n[notify]\nbackend = \"log\"\n[jobs]\nmax_concurrent = 2\n",
    );
    let d = env.start_daemon(&["--profile", "ci"]);
    wait_config(&d, |v| v["config"]["jobs"]["max_concurrent"] == 2);
    std::fs::write(
        &profile,
        "extends = \"desktop\"\ndescription = \"CI\"\n[notify]\nbackend = \"log\"\n[jobs]\nmax_concurrent = 5\n",
    )
    .unwrap();
    let v = wait_config(&d, |v| v["config"]["jobs"]["max_concurrent"] == 5);
    assert_eq!(v["sources"]["jobs.max_concurrent"], "profile ci", "{v}");
}
