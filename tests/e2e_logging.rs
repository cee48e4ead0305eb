//! End to end: the real daemon's own log. Every sink × format combination,
//! JSON lines that parse with the required keys after jobs ran, the startup
//! line, `OJ_LOG_STDOUT=1`, an invalid directive (78), no secret at `trace`,
//! and the last lines present after SIGTERM.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{Daemon, TestEnv, free_port, wait_until};
use serde_json::{Value, json};

fn run_a_job(d: &Daemon) {
    let id = d.submit(&json!({"name": "hello", "steps": [{"name": "greet", "run": "echo hello"}]}));
    d.wait_job(&id, &["done"], Duration::from_secs(20));
}

/// Stops the daemon with SIGTERM and waits for a clean exit.
fn stop(d: &mut Daemon) {
    d.sigterm();
    let st = d.wait_exit(Duration::from_secs(15));
    assert!(
        st.is_some_and(|s| s.success()),
        "daemon did not exit cleanly: {st:?}\nstderr:\n{}",
        d.stderr()
    );
}

/// Every log file the daemon wrote in its state dir (any rotation).
fn log_files(state: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy().into_owned();
                    (n.starts_with("daemon.log")
                        || (n.starts_with("daemon") && n.ends_with(".log")))
                        && p.is_file()
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn file_log(state: &Path) -> String {
    log_files(state)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Parses every line as a JSON object with the four required keys.
fn json_lines(text: &str) -> Vec<serde_json::Map<String, Value>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let Ok(Value::Object(m)) = serde_json::from_str::<Value>(l) else {
                panic!("not a JSON object: {l:?}");
            };
            for k in ["timestamp", "level", "target", "message"] {
                assert!(m.contains_key(k), "missing {k}: {l}");
            }
            let ts = m["timestamp"].as_str().expect("timestamp is a string");
            humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("{ts}: not RFC 3339 ({e})"));
            m
        })
        .collect()
}

fn assert_startup_line_json(first: &serde_json::Map<String, Value>, profile: &str) {
    assert_eq!(first["message"], "oj starting", "{first:?}");
    assert_eq!(first["profile"], profile);
    assert!(first["version"].as_str().is_some_and(|v| !v.is_empty()));
    assert!(
        first["sinks"].as_str().unwrap().contains("log.format from"),
        "{first:?}"
    );
}

struct Case {
    stdout: bool,
    file: bool,
    json: bool,
}

fn run_case(c: &Case) {
    let env = TestEnv::new();
    let args = [
        "--set".to_string(),
        format!("log.stdout={}", c.stdout),
        "--set".into(),
        format!("log.file.enabled={}", c.file),
        "--set".into(),
        format!("log.format={}", if c.json { "json" } else { "text" }),
        "--set".into(),
        "notify.backend=log".into(),
    ];
    let mut d = env.start_daemon(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run_a_job(&d);
    stop(&mut d);
    let stdout = d.stdout();
    let file = file_log(&env.state_dir());
    let what = format!("stdout={} file={} json={}", c.stdout, c.file, c.json);

    for (on, text, sink) in [(c.stdout, &stdout, "stdout"), (c.file, &file, "file")] {
        if !on {
            assert!(
                !text.contains("oj starting"),
                "{what}: {sink} is off but has the log:\n{text}"
            );
            continue;
        }
        assert!(
            text.lines().count() >= 2,
            "{what}: {sink} has too little:\n{text}"
        );
        if c.json {
            let lines = json_lines(text);
            assert_startup_line_json(&lines[0], "desktop");
            let sinks = lines[0]["sinks"].as_str().unwrap();
            assert_eq!(sinks.contains("stdout"), c.stdout, "{sinks}");
            assert_eq!(sinks.contains("file "), c.file, "{sinks}");
            // The notification of the job (backend log) is one of the lines.
            assert!(
                lines.iter().any(|l| l
                    .values()
                    .any(|v| v.as_str().is_some_and(|s| s.contains("hello")))),
                "{what}: no line about the job:\n{text}"
            );
        } else {
            let first = text.lines().next().unwrap();
            assert!(first.contains("oj starting"), "{what}: first line: {first}");
            assert!(first.contains("desktop"), "{first}");
            assert!(
                text.lines()
                    .all(|l| serde_json::from_str::<Value>(l).is_err()),
                "{what}: text lines must not be JSON"
            );
        }
    }
    if !c.file {
        assert!(
            log_files(&env.state_dir())
                .iter()
                .all(|p| std::fs::metadata(p).unwrap().len() == 0)
        );
    }
}

#[test]
fn stdout_text() {
    run_case(&Case {
        stdout: true,
        file: false,
        json: false,
    });
}

#[test]
fn stdout_json() {
    run_case(&Case {
        stdout: true,
        file: false,
        json: true,
    });
}

#[test]
fn file_text() {
    run_case(&Case {
        stdout: false,
        file: true,
        json: false,
    });
}

#[test]
fn file_json() {
    run_case(&Case {
        stdout: false,
        file: true,
        json: true,
    });
}

#[test]
fn both_sinks_text() {
    run_case(&Case {
        stdout: true,
        file: true,
        json: false,
    });
}

#[test]
fn both_sinks_json() {
    run_case(&Case {
        stdout: true,
        file: true,
        json: true,
    });
}

#[test]
fn desktop_default_is_text_to_the_file_and_oj_log_stdout_adds_stdout() {
    let mut env = TestEnv::new();
    let mut d = env.start_daemon(&["--set", "notify.backend=none"]);
    stop(&mut d);
    assert!(!d.stdout().contains("oj starting"), "{}", d.stdout());
    let file = file_log(&env.state_dir());
    let first = file.lines().next().unwrap_or_default();
    assert!(
        first.contains("oj starting") && first.contains("profile desktop"),
        "{file}"
    );
    // The live file is exactly log.file.path (daily rotation renames it later).
    let names: Vec<String> = log_files(&env.state_dir())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["daemon.log"]);

    env.set_var("OJ_LOG_STDOUT", "1");
    let mut d = env.start_daemon(&["--set", "notify.backend=none"]);
    stop(&mut d);
    let out = d.stdout();
    assert!(
        out.lines()
            .next()
            .unwrap_or_default()
            .contains("oj starting"),
        "{out}"
    );
    assert!(
        out.contains("env OJ_LOG_STDOUT"),
        "the source of log.stdout is named: {out}"
    );
}

#[test]
fn every_json_line_parses_after_jobs_ran() {
    let env = TestEnv::new();
    let mut d = env.start_daemon(&[
        "--set",
        "log.stdout=true",
        "--set",
        "log.format=json",
        "--set",
        "log.level=debug",
        "--set",
        "notify.backend=log",
    ]);
    for _ in 0..3 {
        run_a_job(&d);
    }
    // A failing job logs too.
    let id = d.submit(&json!({"name": "boom", "steps": [{"name": "fail", "run": "exit 3"}]}));
    d.wait_job(&id, &["failed"], Duration::from_secs(20));
    stop(&mut d);
    let lines = json_lines(&d.stdout());
    assert!(lines.len() >= 5, "{}", d.stdout());
    assert_startup_line_json(&lines[0], "desktop");
}

#[test]
fn an_invalid_directive_exits_78_naming_log_level() {
    let env = TestEnv::new();
    let mut cmd = env.oj();
    cmd.args(["daemon", "--set", "log.level=info,[[oops"]);
    let mut d = Daemon::spawn_raw(cmd, env.path(), env.socket());
    let st = d.wait_exit(Duration::from_secs(15));
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(78),
        "stderr:\n{}",
        d.stderr()
    );
    let err = d.stderr();
    assert!(
        err.contains("log.level") && err.contains("flag --set"),
        "{err}"
    );
}

#[test]
fn no_secret_reaches_any_output_at_trace() {
    let env = TestEnv::new();
    let token = "tok-e2e-log-4a1f9c3b7d";
    let whsec = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci1vai1lMmU=";
    let hook_secret_path = "T0HOOKSECRETPATH9";
    let header_secret = "hdr-secret-55aa77";
    let port = free_port();
    // A webhook receiver that does not exist: deliveries fail and are
    // retried, which is exactly when careless code logs a URL.
    let dead = free_port();
    env.write_config(&format!(
        r#"
[listen]
tcp = "127.0.0.1:{port}"
auth_token = "{token}"

[notify]
backend = "webhook"

[notify.webhook]
url = "http://127.0.0.1:{dead}/hooks/{hook_secret_path}"
secret = "{whsec}"
max_attempts = 2
backoff = "10ms"

[notify.webhook.headers]
X-Api-Key = "{header_secret}"

[log]
level = "trace"
stdout = true
format = "json"
"#
    ));
    let mut d = env.start_daemon_on_tcp(port);
    // Authenticated and unauthenticated requests over TCP.
    for auth in [
        format!("Authorization: Bearer {token}"),
        "Authorization: Bearer wrong-token-zz".into(),
    ] {
        let _ = std::process::Command::new("curl")
            .args(["-s", "-m", "10", "-o", "/dev/null", "-H", &auth])
            .arg(format!("http://127.0.0.1:{port}/v1/status"))
            .status();
    }
    run_a_job(&d);
    std::thread::sleep(Duration::from_millis(300));
    stop(&mut d);

    let all = format!(
        "{}\n{}\n{}",
        d.stdout(),
        d.stderr(),
        file_log(&env.state_dir())
    );
    assert!(
        all.lines().count() > 10,
        "trace level should say a lot:\n{all}"
    );
    for secret in [
        token,
        whsec,
        "c2VjcmV0LXNpZ25pbmcta2V5LWZvci1vai1lMmU",
        hook_secret_path,
        header_secret,
    ] {
        assert!(
            !all.contains(secret),
            "{secret} leaked:\n{}",
            all.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    json_lines(&d.stdout());
}

#[test]
fn the_last_lines_are_present_after_sigterm() {
    let env = TestEnv::new();
    let mut d = env.start_daemon(&[
        "--set",
        "log.format=json",
        "--set",
        "log.level=debug",
        "--set",
        "notify.backend=none",
    ]);
    run_a_job(&d);
    let before = SystemTime::now();
    stop(&mut d);
    let text = file_log(&env.state_dir());
    assert!(text.ends_with('\n'), "the file ends with a whole line");
    let lines = json_lines(&text);
    let after_signal = lines
        .iter()
        .filter(|l| humantime::parse_rfc3339(l["timestamp"].as_str().unwrap()).unwrap() >= before)
        .count();
    assert!(
        after_signal >= 1,
        "nothing logged after SIGTERM reached the file:\n{text}"
    );
}

#[test]
fn the_daemon_keeps_at_most_max_files_log_files() {
    let env = TestEnv::new();
    let state = env.state_dir();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("daemon.notes"), "not a log").unwrap();
    for day in 10..=20 {
        std::fs::write(state.join(format!("daemon.2026-10-{day}.log")), "old\n").unwrap();
    }
    let mut d = env.start_daemon(&[
        "--set",
        "log.file.max_files=3",
        "--set",
        "notify.backend=none",
    ]);
    stop(&mut d);
    let files = log_files(&state);
    assert!(
        files.len() <= 4,
        "daemon.log and 3 rotated files: {files:?}"
    );
    assert!(
        file_log(&state).contains("oj starting"),
        "today's file is one of them"
    );
    // Nothing but log files is pruned.
    assert!(state.join("daemon.notes").exists());
}

#[test]
fn kubernetes_profile_logs_json_to_stdout_and_no_file() {
    let env = TestEnv::new();
    let state = env.state_dir();
    let state_set = format!("daemon.state_dir={}", state.display());
    // Everything that needs a cluster or mounted Secrets is switched off;
    // the log settings are the profile's own.
    let mut d = env.start_daemon(&[
        "--profile",
        "kubernetes",
        "--set",
        &state_set,
        "--set",
        "lock.strategy=none",
        "--set",
        "tls.enabled=false",
        "--set",
        "listen.tcp=",
        "--set",
        "listen.auth_token_file=",
        "--set",
        "admin.addr=",
    ]);
    run_a_job(&d);
    stop(&mut d);
    let lines = json_lines(&d.stdout());
    assert_startup_line_json(&lines[0], "kubernetes");
    let sinks = lines[0]["sinks"].as_str().unwrap();
    assert_eq!(
        sinks,
        "stdout (log.stdout from profile kubernetes), json (log.format from profile kubernetes)"
    );
    assert!(log_files(&state).is_empty(), "{:?}", log_files(&state));
}

// ---------------------------------------------------------------------------
// The `job` span and the live log file

/// The JSON lines of the daemon's log file (`log.format = "json"`).
fn json_file_lines(state: &Path) -> Vec<serde_json::Map<String, Value>> {
    json_lines(&file_log(state))
}

#[test]
fn a_job_span_filter_traces_one_job_and_json_lines_carry_the_span_fields() {
    let env = TestEnv::new();
    let state = env.state_dir();
    // Daemon 1 leaves two jobs queued (one slot, held by a long job; the
    // drain keeps queued jobs queued), so their ids are known before daemon 2
    // starts with a filter naming one of them.
    let mut d1 = env.start_daemon(&[
        "--set",
        "jobs.max_concurrent=1",
        "--set",
        "shutdown.drain_timeout=100ms",
        "--set",
        "log.format=json",
        "--set",
        "notify.backend=none",
    ]);
    let hold = d1.submit(&json!({"name": "hold", "steps": [{"name": "s", "run": "sleep 30"}]}));
    d1.wait_job(&hold, &["running"], Duration::from_secs(20));
    let traced = d1.submit(&json!({"name": "traced", "steps": [{"name": "one", "run": "true"}]}));
    let plain = d1.submit(&json!({"name": "plain", "steps": [{"name": "one", "run": "true"}]}));
    stop(&mut d1);

    let level = format!("info,oj_daemon[job{{job_id={traced}}}]=trace");
    let level_set = format!("log.level={level}");
    let mut d2 = env.start_daemon(&[
        "--set",
        &level_set,
        "--set",
        "log.format=json",
        "--set",
        "notify.backend=none",
    ]);
    d2.wait_job(&traced, &["done"], Duration::from_secs(20));
    d2.wait_job(&plain, &["done"], Duration::from_secs(20));
    stop(&mut d2);

    let lines = json_file_lines(&state);
    let of = |id: &str| -> Vec<&serde_json::Map<String, Value>> {
        lines
            .iter()
            .filter(|l| l.get("job_id") == Some(&json!(id)))
            .collect()
    };
    // The step runner's DEBUG line exists for the traced job only.
    let debug_of = |id: &str| {
        of(id)
            .iter()
            .filter(|l| {
                l["level"] == "DEBUG" && l["target"].as_str().unwrap_or("").starts_with("oj_daemon")
            })
            .count()
    };
    assert!(
        debug_of(&traced) >= 1,
        "no DEBUG line for the traced job {traced} with {level:?}:\n{}",
        file_log(&state)
    );
    assert_eq!(debug_of(&plain), 0, "the other job stays at info");
    // Lines inside the span carry its fields, also when the event has none.
    let started = of(&traced)
        .into_iter()
        .find(|l| l["message"] == "job started")
        .unwrap_or_else(|| panic!("no `job started` line:\n{}", file_log(&state)));
    assert_eq!(started["name"], "traced");
    // A job that succeeded has no `error` at all.
    let ended = of(&traced)
        .into_iter()
        .find(|l| l["message"] == "job ended")
        .expect("a `job ended` line");
    assert_eq!(ended["state"], "done");
    assert!(!ended.contains_key("error"), "{ended:?}");
}

#[test]
fn the_live_log_file_is_the_configured_path_across_a_rotation() {
    let env = TestEnv::new();
    let state = env.state_dir();
    let live = state.join("daemon.log");
    let mut d1 = env.start_daemon(&["--set", "notify.backend=none"]);
    stop(&mut d1);
    let first = std::fs::read_to_string(&live).expect("the live file is daemon.log");
    assert!(first.contains("oj starting"), "{first}");
    // Its last write was yesterday: the next daemon rotates it at start.
    let yesterday = SystemTime::now() - Duration::from_secs(86_400);
    std::fs::File::options()
        .append(true)
        .open(&live)
        .and_then(|f| f.set_modified(yesterday))
        .expect("set mtime");

    // Follow the configured path by name, as `tail -F` users and shippers do.
    let Ok(mut tail) = std::process::Command::new("tail")
        .args(["-n", "+1", "-F", "-s", "0.1"])
        .arg(&live)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        eprintln!("SKIP following the log with tail -F: tail is not installed");
        return;
    };
    let mut out = tail.stdout.take().expect("tail stdout");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    assert!(wait_until(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .contains("oj starting")));

    let mut d2 = env.start_daemon(&["--set", "notify.backend=none"]);
    run_a_job(&d2);
    stop(&mut d2);
    let stamp = humantime::format_rfc3339_seconds(yesterday).to_string()[..10].to_string();
    let rotated = state.join(format!("daemon.log.{stamp}"));
    assert_eq!(
        std::fs::read_to_string(&rotated).expect("the old file was renamed with its date"),
        first
    );
    let second = std::fs::read_to_string(&live).expect("a new daemon.log");
    assert!(second.contains("oj starting") && !second.contains(&first));
    let followed = wait_until(Duration::from_secs(5), || {
        seen.lock().unwrap().matches("oj starting").count() >= 2
    });
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(
        followed,
        "tail -F on {} did not see the new file's lines:\n{}",
        live.display(),
        seen.lock().unwrap()
    );
}
