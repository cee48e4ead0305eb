//! End to end: the habits of a terminal tool, with the real `oj` binary.
//!
//! `oj job wait` and `logs --follow` exit statuses and their final state
//! line, the "queued (n ahead)" line, `job list -n` and its error column,
//! a list fitted to an 80-column pseudo-terminal (`script`), colour only on
//! a terminal and never with `NO_COLOR`, the daemon's ready line on a
//! terminal and silence under a supervisor, completions that load in
//! `bash -n`, a man page that `man -l` renders, and did-you-mean for
//! `--profile`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Output, TestEnv, wait_until};

/// The job id: the first line `oj exec` prints (the job's output follows with --wait).
fn job_id(out: &Output) -> String {
    out.stdout.lines().next().unwrap_or("").trim().to_string()
}

/// `script` runs `cmd` under a pseudo-terminal of 80 columns; the output is
/// what a user sees. `None` (with the reason printed) when `script` is missing.
fn in_pty(env: &TestEnv, cmd: &str, vars: &[(&str, &str)]) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return None;
    }
    // The same clean environment as env.oj(); `script` runs /bin/sh with it.
    let c = env.oj();
    let mut script = Command::new("script");
    script
        .args([
            "-qec",
            &format!("stty cols 80 rows 24; '{}' {cmd}", common::oj_bin()),
            "/dev/null",
        ])
        .env_clear()
        .current_dir(env.path())
        .stdin(Stdio::null());
    for (k, v) in c.get_envs() {
        if let (k, Some(v)) = (k, v) {
            script.env(k, v);
        }
    }
    script.env("TERM", "xterm");
    for (k, v) in vars {
        script.env(k, v);
    }
    let out = script.output().expect("script runs");
    Some(String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"))
}

/// The text without ANSI colour sequences.
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn job_wait_exits_with_how_the_jobs_ended() {
    let env = TestEnv::new();
    let _d = env.start_daemon(&[]);
    let ok = job_id(&env.run(&["exec", "--", "true"]));
    let bad = job_id(&env.run(&["exec", "--", "sh", "-c", "exit 3"]));

    let out = env.run(&["job", "wait", &ok]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains(&ok) && out.stderr.contains("done"),
        "{out:?}"
    );

    let out = env.run(&["job", "wait", &ok, &bad]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&bad) && out.stderr.contains("code 3"),
        "the failed job and why: {out:?}"
    );

    let slow = job_id(&env.run(&["exec", "--", "sleep", "30"]));
    let out = env.run(&["job", "wait", "--timeout", "300ms", &slow]);
    assert_eq!(out.code, Some(124), "{out:?}");
    assert!(
        out.stderr.contains(&slow) && out.stderr.contains("timed out"),
        "{out:?}"
    );

    let out = env.run(&["job", "wait", "no-such-job"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("no job no-such-job"), "{out:?}");

    let out = env.run(&["job", "wait", "--timeout", "soon", &ok]);
    assert_eq!(
        out.code,
        Some(2),
        "a bad duration is a usage error: {out:?}"
    );
    env.run(&["job", "cancel", &slow]);
}

#[test]
fn logs_follow_exits_with_the_job_and_prints_its_final_state() {
    let env = TestEnv::new();
    let _d = env.start_daemon(&[]);
    let bad = job_id(&env.run(&["exec", "--", "sh", "-c", "echo partial; exit 4"]));
    let out = env.run(&["job", "logs", "-f", &bad]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("partial"), "{out:?}");
    assert!(
        out.stderr.contains("failed") && out.stderr.contains("code 4"),
        "{out:?}"
    );

    let ok = job_id(&env.run(&["exec", "--", "echo", "fine"]));
    let out = env.run(&["job", "logs", "--follow", &ok]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("fine"), "{out:?}");
    assert!(
        out.stderr.contains("done"),
        "final state on stderr: {out:?}"
    );
    assert!(
        !out.stderr.contains('\x1b'),
        "no colour into a pipe: {out:?}"
    );

    // Without --follow the log of a failed job is printed and that is success.
    let out = env.run(&["job", "logs", &bad]);
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[test]
fn following_a_queued_job_says_how_many_are_ahead() {
    let env = TestEnv::new();
    let _d = env.start_daemon(&["--set", "jobs.max_concurrent=1"]);
    let blocker = job_id(&env.run(&["exec", "--", "sleep", "2"]));
    let _ahead = job_id(&env.run(&["exec", "--", "true"]));
    let target = job_id(&env.run(&["exec", "--", "echo", "at last"]));
    let out = env.run(&["job", "logs", "-f", &target]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("queued (1 ahead)"),
        "the place in the queue is shown: {out:?}"
    );
    assert!(out.stdout.contains("at last"), "{out:?}");
    assert_eq!(
        env.run(&["job", "wait", &blocker]).code,
        Some(0),
        "the blocker ends"
    );
}

#[test]
fn job_list_limit_and_error_column() {
    let env = TestEnv::new();
    let _d = env.start_daemon(&[]);
    let first = job_id(&env.run(&["exec", "--wait", "--", "true"]));
    let second = job_id(&env.run(&["exec", "-w", "--", "sh", "-c", "exit 7"]));
    let third = job_id(&env.run(&["exec", "-w", "--", "true"]));

    let out = env.run(&["job", "list", "-n", "2"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "header and two jobs: {out:?}");
    assert!(lines[0].contains("ERROR"), "{out:?}");
    assert!(lines[1].starts_with(&third), "newest first: {out:?}");
    assert!(lines[2].starts_with(&second), "{out:?}");
    assert!(lines[2].contains("code 7"), "the error column: {out:?}");
    assert!(!out.stdout.contains(&first), "{out:?}");

    let out = env.run(&["job", "list", "--limit", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["jobs"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["jobs"][0]["id"], third.as_str());

    let out = env.run(&["job", "list", "-n", "0"]);
    assert_eq!(out.code, Some(2), "{out:?}");
}

#[test]
fn job_list_fits_an_80_column_terminal_in_colour_unless_no_color() {
    let env = TestEnv::new();
    let _d = env.start_daemon(&[]);
    let long = "a-job-name-that-goes-on-and-on-and-on-far-beyond-what-fits-in-one-terminal-line";
    env.run(&["exec", "-w", "--name", long, "--", "true"]);
    env.run(&["exec", "-w", "--", "sh", "-c", "echo no; exit 2"]);

    let Some(shown) = in_pty(&env, "job list", &[]) else {
        return;
    };
    let plain = strip_ansi(&shown);
    for line in plain.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.chars().count() <= 80,
            "{line:?} is wider than the terminal:\n{plain}"
        );
    }
    assert!(plain.contains('…'), "the long name is cut with …:\n{plain}");
    assert!(
        shown.contains("\x1b[31mfailed"),
        "failed in red:\n{shown:?}"
    );
    assert!(shown.contains("\x1b[32mdone"), "done in green:\n{shown:?}");

    let Some(no_color) = in_pty(&env, "job list", &[("NO_COLOR", "1")]) else {
        return;
    };
    assert!(!no_color.contains('\x1b'), "NO_COLOR: {no_color:?}");

    // Into a pipe: whole cells, no colour.
    let piped = env.run(&["job", "list"]);
    assert!(piped.stdout.contains(long), "{piped:?}");
    assert!(!piped.stdout.contains('\x1b'), "{piped:?}");
}

#[test]
fn the_daemon_says_it_is_ready_on_a_terminal_and_nothing_under_a_supervisor() {
    let env = TestEnv::new();
    // Not a terminal: the log config alone decides (desktop: the file).
    let mut d = env.start_daemon(&[]);
    assert_eq!(env.run(&["daemon", "stop"]).code, Some(0));
    d.wait_exit(Duration::from_secs(10));
    assert_eq!(d.stdout(), "", "nothing on stdout with log.stdout off");
    assert_eq!(d.stderr(), "", "nothing on stderr under a supervisor");
    drop(d);
    let log = std::fs::read_dir(env.state_dir())
        .expect("state dir")
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("daemon."));
    assert!(log, "the log file is written");

    let Some(_) = in_pty(&env, "--version", &[]) else {
        return;
    };
    let transcript = env.path().join("pty.out");
    let mut script = Command::new("sh");
    script
        .arg("-c")
        .arg(format!(
            "script -qfec \"stty cols 80; '{}' daemon\" /dev/null > '{}'",
            common::oj_bin(),
            transcript.display()
        ))
        .env_clear();
    for (k, v) in env.oj().get_envs() {
        if let (k, Some(v)) = (k, v) {
            script.env(k, v);
        }
    }
    script.env("TERM", "xterm");
    let mut child = script.stdin(Stdio::null()).spawn().expect("spawn script");
    let ready = wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(&transcript).is_ok_and(|t| t.contains("ready (profile desktop)"))
    });
    let text = std::fs::read_to_string(&transcript).unwrap_or_default();
    let stopped = env.run(&["daemon", "stop"]);
    let _ = child.wait();
    assert!(ready, "no ready line on the terminal:\n{text}");
    assert_eq!(stopped.code, Some(0), "{stopped:?}");
    assert!(text.contains("daemon.sock"), "names the socket:\n{text}");
    assert!(
        text.contains(&env.state_dir().display().to_string()) && text.contains(".log"),
        "names the log file:\n{text}"
    );
}

#[test]
fn completions_load_in_bash_and_the_man_page_renders() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = env.run(&["completions", shell]);
        assert_eq!(out.code, Some(0), "{shell}: {out:?}");
        assert!(out.stdout.contains("oj"), "{shell}: {out:?}");
    }
    let bash = env.run(&["completions", "bash"]);
    let file = env.write("oj.bash", &bash.stdout);
    let check = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash");
    assert!(check.status.success(), "bash -n: {check:?}");
    // Loading it registers the completion function for `oj`.
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!("source {}; complete -p oj", file.display()))
        .output()
        .expect("bash");
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("oj"),
        "{loaded:?}"
    );
    assert_eq!(env.run(&["completions", "tcsh"]).code, Some(2));

    let man = env.run(&["man"]);
    assert_eq!(man.code, Some(0), "{man:?}");
    assert!(
        man.stdout.starts_with(".TH") || man.stdout.contains("\n.TH"),
        "roff: {man:?}"
    );
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("skipped rendering: `man` is not installed");
        return;
    }
    let page = env.write("oj.1", &man.stdout);
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
        .expect("man");
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(rendered.status.success(), "{rendered:?}");
    for needle in ["oj job wait", "--timeout", "EXIT STATUS", "124", "NO_COLOR"] {
        assert!(text.contains(needle), "{needle} in the man page:\n{text}");
    }
}

#[test]
fn a_misspelt_profile_gets_a_suggestion() {
    let env = TestEnv::new();
    let out = env.run(&["--profile", "kubernets", "config", "show"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(out.stderr.contains("did you mean `kubernetes`"), "{out:?}");
    env.write(
        "config/oj/profiles/ci-runner.toml",
        "extends = \"desktop\"\n",
    );
    let out = env.run(&["--profile", "ci-runer", "config", "show"]);
    assert!(out.stderr.contains("did you mean `ci-runner`"), "{out:?}");
}

#[test]
fn laptop_errors_carry_no_kubernetes_hints() {
    let env = TestEnv::new();
    let missing = env.path().join("nope.crt");
    let m = missing.to_string_lossy().into_owned();
    let set = |k: &str, v: &str| format!("{k}={v}");
    let args = |profile: &str| -> Vec<String> {
        [
            "--profile",
            profile,
            "--set",
            &set("listen.tcp", "127.0.0.1:0"),
            "--set",
            &set("listen.auth_token", "a-long-enough-token"),
            "--set",
            "tls.enabled=true",
            "--set",
            &set("tls.cert", &m),
            "--set",
            &set("tls.key", &m),
            "--set",
            "lock.strategy=file",
            "--set",
            "listen.auth_token_file=",
            "config",
            "check",
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |a: Vec<String>| env.run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let laptop = run(args("desktop"));
    assert_eq!(laptop.code, Some(78), "{laptop:?}");
    let all = format!("{}{}", laptop.stdout, laptop.stderr);
    assert!(all.contains("does not exist"), "{laptop:?}");
    assert!(
        !all.contains("Secret") && !all.contains("kubectl") && !all.contains("pod"),
        "no cluster words on a laptop: {laptop:?}"
    );
    let cluster = run(args("kubernetes"));
    let all = format!("{}{}", cluster.stdout, cluster.stderr);
    assert!(all.contains("Secret"), "{cluster:?}");
}

#[test]
fn the_systemd_user_unit_verifies_and_its_settings_load() {
    let unit_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd/oj.service");
    let unit = std::fs::read_to_string(&unit_path).expect("deploy/systemd/oj.service");
    // The environment the unit gives the daemon is a valid configuration.
    let env_line = unit
        .lines()
        .find_map(|l| l.strip_prefix("Environment="))
        .expect("an Environment= line");
    let mut env = TestEnv::new();
    for pair in env_line.split_whitespace() {
        let (k, v) = pair.split_once('=').expect("K=V");
        env.set_var(k, v);
    }
    let shown = env.run(&["config", "show", "--sources"]);
    assert_eq!(shown.code, Some(0), "{shown:?}");
    assert!(shown.stdout.contains("stdout = true"), "{shown:?}");

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    // Verify a copy that runs the binary under test (%h/.cargo/bin/oj need
    // not exist here).
    let copy = env.write(
        "oj.service",
        &unit.replace("%h/.cargo/bin/oj", common::oj_bin()),
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    // Without a running systemd (a container) verify still parses the unit;
    // only problems that name the unit count.
    let problems: Vec<&str> = err.lines().filter(|l| l.contains("oj.service")).collect();
    assert!(problems.is_empty(), "systemd-analyze verify:\n{err}");
}

#[test]
fn the_daemon_log_on_a_terminal_is_coloured_unless_no_color() {
    let env = TestEnv::new();
    let Some(_) = in_pty(&env, "--version", &[]) else {
        return;
    };
    // `config check` logs nothing; the daemon's own stdout log is what
    // NO_COLOR must reach: run it for a moment under the pty.
    let run = |vars: &[(&str, &str)]| {
        in_pty(
            &env,
            "daemon --set log.stdout=true --set notify.backend=none & sleep 1; kill -TERM $!; wait",
            vars,
        )
        .unwrap_or_default()
    };
    let coloured = run(&[]);
    assert!(coloured.contains("oj starting"), "{coloured}");
    assert!(
        coloured.contains('\x1b'),
        "colour on a terminal: {coloured:?}"
    );
    let plain = run(&[("NO_COLOR", "1")]);
    assert!(plain.contains("oj starting"), "{plain}");
    assert!(!plain.contains('\x1b'), "NO_COLOR: {plain:?}");
}
