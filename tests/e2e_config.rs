//! End to end: every `oj config` subcommand through the real binary, with
//! its output and exit codes (0, 2 usage, 78 invalid configuration).

mod common;

use common::TestEnv;

#[test]
fn show_prints_the_effective_config_as_toml_and_json() {
    let env = TestEnv::new();
    let out = env.run(&["config", "show"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let table: toml::Table = toml::from_str(&out.stdout).expect("show prints valid TOML");
    assert_eq!(table["notify"]["backend"].as_str(), Some("desktop"));
    assert_eq!(table["shutdown"]["drain_timeout"].as_str(), Some("5s"));

    let out = env.run(&["config", "show", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("--json prints JSON");
    assert_eq!(v["log"]["format"], "text");
    assert_eq!(v["pods"]["resources"]["limits"]["memory"], "2Gi");
}

#[test]
fn show_works_for_the_kubernetes_profile_on_a_laptop() {
    let env = TestEnv::new();
    // No certificates, no token file, no cluster: show does not look at the machine.
    let out = env.run(&["config", "show", "--profile", "kubernetes", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["listen"]["tcp"], "0.0.0.0:7777");
    assert_eq!(v["lock"]["strategy"], "lease");
    assert_eq!(v["shutdown"]["drain_timeout"], "25s");
}

#[test]
fn show_sources_names_the_layer_of_each_value() {
    let mut env = TestEnv::new();
    let file = env.write_config("[jobs]\nmax_concurrent = 3\n");
    env.set_var("OJ_SHUTDOWN__DRAIN_TIMEOUT", "30s");
    let out = env.run(&["config", "show", "--sources", "--set", "log.level=debug"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let s = &out.stdout;
    assert!(
        s.contains("drain_timeout = \"30s\"  # env OJ_SHUTDOWN__DRAIN_TIMEOUT"),
        "{s}"
    );
    assert!(
        s.contains(&format!("max_concurrent = 3  # file {}", file.display())),
        "{s}"
    );
    assert!(s.contains("level = \"debug\"  # flag --set"), "{s}");
    assert!(s.contains("format = \"text\"  # profile desktop"), "{s}");
    assert!(s.contains("step_timeout = \"1h\"  # default"), "{s}");
}

#[test]
fn secrets_are_redacted_unless_show_secrets() {
    let mut env = TestEnv::new();
    env.set_var("OJ_AUTH_TOKEN", "tok-e2e-42");
    env.set_var("OJ_NOTIFY_WEBHOOK_URL", "https://hooks.example/secret-path");
    let out = env.run(&["config", "show"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        !out.stdout.contains("tok-e2e-42") && !out.stdout.contains("secret-path"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("<redacted>"));
    let out = env.run(&["config", "show", "--show-secrets"]);
    assert!(out.stdout.contains("tok-e2e-42"), "{}", out.stdout);
    // and an invalid secret is never echoed in an error
    env.set_var("OJ_NOTIFY__WEBHOOK__URL", "gopher://hunter2");
    let out = env.run(&["config", "show"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
}

#[test]
fn bad_configuration_exits_78_with_key_layer_and_fix() {
    let mut env = TestEnv::new();
    env.set_var("OJ_LOG__FORMAT", "yaml");
    env.set_var("OJ_JOBS__MAX_CONCURRNT", "3");
    let out = env.run(&["config", "show"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    // The first line names the first problem; the count follows the list.
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("oj: invalid configuration: ")
            && first.contains("OJ_JOBS__MAX_CONCURRNT"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("2 problems"), "{}", out.stderr);
    assert!(
        out.stderr.contains("log.format (from env OJ_LOG__FORMAT)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("OJ_JOBS__MAX_CONCURRENT"),
        "nearest key suggested: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn malformed_toml_reports_file_line_and_column() {
    let env = TestEnv::new();
    let file = env.write_config("[log]\nlevel = \"info\"\nformat = json\n");
    let out = env.run(&["config", "show"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stderr.contains(&format!("{}:3:", file.display())),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_key_in_a_file_suggests_the_nearest() {
    let env = TestEnv::new();
    let file = env.write("extra.toml", "[shutdown]\ndrain_timout = \"3s\"\n");
    let out = env.run(&["--config", file.to_str().unwrap(), "config", "show"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stderr.contains("shutdown.drain_timout"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("file {}", file.display())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("did you mean `shutdown.drain_timeout`"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_passes_on_a_valid_desktop_config_and_warns_without_dbus() {
    let env = TestEnv::new();
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("ok: configuration is valid"),
        "{}",
        out.stdout
    );
    // the test environment has no session bus
    assert!(
        out.stderr.contains("warning: notify.backend"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("D-Bus"), "{}", out.stderr);
}

#[test]
fn check_fails_78_listing_every_problem_of_the_environment() {
    let mut env = TestEnv::new();
    // kubernetes profile on a laptop, with the state dir moved somewhere writable:
    // the token file and the certificates are missing.
    let state = env.path().join("k8s-state");
    env.set_var("OJ_STATE_DIR", state.to_str().unwrap());
    let out = env.run(&["--profile", "kubernetes", "config", "check"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stderr.contains("/etc/oj/secret/token"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("tls.cert") || out.stderr.contains("/etc/oj/tls/tls.crt"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("warning: lock.strategy"),
        "lease without an API is a warning in check: {}",
        out.stderr
    );
    assert!(
        out.stderr.trim_end().ends_with("(listed above)") && out.stderr.starts_with("error: "),
        "errors first, the verdict last, all on stderr: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn check_reports_layer_errors_together() {
    let mut env = TestEnv::new();
    env.set_var("OJ_NOTIFY__BACKEND", "webhook");
    env.set_var("OJ_PODS__RESOURCES__REQUESTS__CPU", "4");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stderr
            .contains("error: notify.backend (from env OJ_NOTIFY__BACKEND)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "error: pods.resources.requests.cpu (from env OJ_PODS__RESOURCES__REQUESTS__CPU)"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn check_refuses_an_unwritable_state_dir() {
    let mut env = TestEnv::new();
    let file = env.write("not-a-dir", "x");
    env.set_var("OJ_STATE_DIR", file.join("oj").to_str().unwrap());
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stderr
            .contains("daemon.state_dir (from env OJ_STATE_DIR)"),
        "{}",
        out.stderr
    );
}

#[test]
fn profiles_lists_builtin_and_user_profiles() {
    let env = TestEnv::new();
    env.write(
        "config/oj/profiles/ci.toml",
        "extends = \"kubernetes\"\ndescription = \"CI runners\"\n",
    );
    let out = env.run(&["config", "profiles"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("desktop"), "{}", out.stdout);
    assert!(lines[1].starts_with("kubernetes"), "{}", out.stdout);
    assert!(
        lines.iter().any(|l| l.starts_with("ci ")
            && l.contains("CI runners")
            && l.contains("extends kubernetes")),
        "{}",
        out.stdout
    );
    // and the user profile is usable
    let out = env.run(&["--profile", "ci", "config", "show", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[test]
fn profile_cycle_exits_78() {
    let env = TestEnv::new();
    env.write("config/oj/profiles/a.toml", "extends = \"b\"\n");
    env.write("config/oj/profiles/b.toml", "extends = \"a\"\n");
    let out = env.run(&["--profile", "a", "config", "show"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(out.stderr.contains("cycle"), "{}", out.stderr);
}

#[test]
fn schema_is_draft_2020_12_json() {
    let env = TestEnv::new();
    let out = env.run(&["config", "schema"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("schema is JSON");
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(v["properties"]["notify"].is_object());
}

#[test]
fn env_lists_every_variable_with_its_key() {
    let env = TestEnv::new();
    let out = env.run(&["config", "env"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    for (var, key) in [
        ("OJ_LOG__FORMAT", "log.format"),
        (
            "OJ_PODS__RESOURCES__LIMITS__MEMORY",
            "pods.resources.limits.memory",
        ),
        ("OJ_TCP_PORT", "listen.tcp"),
        ("OJ_DRAIN_TIMEOUT_MS", "shutdown.drain_timeout"),
        ("OJ_DAEMON_URL", "client.url"),
        ("OJ_NOTIFY_WEBHOOK_URL", "notify.webhook.url"),
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(var) && l.contains(key)),
            "{var} -> {key} missing:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("OJ_PROFILE") && out.stdout.contains("OJ_CONFIG"));
}

#[test]
fn usage_errors_exit_2() {
    let env = TestEnv::new();
    let out = env.run(&["config", "bogus"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = env.run(&["--help"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("daemon") && out.stdout.contains("--profile"));
}

// ------------------------------------------------ the config CI can trust

#[test]
fn a_plain_oj_variable_that_is_no_alias_is_an_error_naming_the_right_one() {
    for (var, want) in [
        ("OJ_LOG_FORMAT", "OJ_LOG__FORMAT"),
        ("OJ_LOG_LEVEL", "OJ_LOG__LEVEL"),
        ("OJ_DRAIN_TIMEOUT", "OJ_SHUTDOWN__DRAIN_TIMEOUT"),
    ] {
        let mut env = TestEnv::new();
        env.set_var(var, "x");
        for args in [&["config", "show"][..], &["daemon"][..]] {
            let out = env.run(args);
            assert_eq!(out.code, Some(78), "{args:?} {out:?}");
            let first = out.stderr.lines().next().unwrap_or_default();
            assert!(first.contains(var) && first.contains(want), "{first}");
        }
    }
    // What oj sets for steps, and the aliases, are accepted.
    let mut env = TestEnv::new();
    env.set_var("OJ_JOB_ID", "j-1");
    env.set_var("OJ_STEP", "s");
    env.set_var("OJ_LOG_STDOUT", "1");
    let out = env.run(&["config", "show"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let listed = env.run(&["config", "env"]).stdout;
    for v in [
        "OJ_JOB_ID",
        "OJ_JOB_NAME",
        "OJ_STEP",
        "OJ_DAEMON__WATCH_CONFIG",
        "OJ_LOG_STDOUT",
    ] {
        assert!(listed.contains(v), "{v} missing from config env:\n{listed}");
    }
}

#[test]
fn paths_expand_home_and_resolve_against_their_file() {
    let env = TestEnv::new();
    env.write("etc/ca.pem", "not a real CA");
    let file = env.write(
        "etc/oj.toml",
        "[client]\nca = \"ca.pem\"\n[tls]\ncert = \"~/certs/tls.crt\"\n",
    );
    let out = env.run(&[
        "--config",
        file.to_str().unwrap(),
        "--set",
        "client.key=rel/key.pem",
        "--set",
        "client.cert=/abs/cert.pem",
        "config",
        "show",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let home = env.path().join("home");
    let want_ca = format!(
        "ca = {:?}",
        env.path().join("etc/ca.pem").display().to_string()
    );
    let want_cert = format!(
        "cert = {:?}",
        home.join("certs/tls.crt").display().to_string()
    );
    let want_key = format!(
        "key = {:?}",
        env.path().join("rel/key.pem").display().to_string()
    );
    for want in [&want_ca, &want_cert, &want_key] {
        assert!(
            out.stdout.contains(want.as_str()),
            "{want} in:\n{}",
            out.stdout
        );
    }
}

#[test]
fn a_missing_file_error_shows_the_value_as_written_its_layer_and_the_absolute_path() {
    let env = TestEnv::new();
    let file = env.write(
        "etc/oj.toml",
        "[listen]\ntcp = \"127.0.0.1:0\"\nauth_token_file = \"secret/token\"\n",
    );
    let out = env.run(&["--config", file.to_str().unwrap(), "config", "check"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("listen.auth_token_file"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    let absolute = env.path().join("etc/secret/token").display().to_string();
    assert!(line.contains("\"secret/token\""), "as written: {line}");
    assert!(
        line.contains(&format!("file {}", file.display())),
        "layer: {line}"
    );
    assert!(line.contains(&absolute), "absolute path: {line}");
}

#[test]
fn client_commands_warn_about_keys_they_do_not_use_and_carry_on() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);
    let mut broken = TestEnv {
        dir: tempfile::tempdir().unwrap(),
        vars: vec![],
    };
    // Same daemon, a typo in a daemon-only key and a stray variable.
    broken.set_var("OJ_DAEMON_URL", &format!("unix://{}", d.socket.display()));
    broken.set_var("OJ_JOBS__MAX_CONCURRENT", "zero");
    broken.set_var("OJ_LOG_FORMAT", "json");
    for sub in ["home", "config", "state", "runtime"] {
        std::fs::create_dir_all(broken.path().join(sub)).unwrap();
    }
    let out = broken.run(&["status"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("jobs.max_concurrent"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("OJ_LOG_FORMAT"), "{}", out.stderr);
    let list = broken.run(&["job", "list"]);
    assert_eq!(list.code, Some(0), "{list:?}");
    // A key the client does use still stops it.
    broken.set_var("OJ_CLIENT__URL", "ftp://nowhere");
    let out = broken.run(&["status"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    let stop = env.run(&["daemon", "stop"]);
    assert_eq!(stop.code, Some(0), "{stop:?}");
}

#[test]
fn show_prints_what_loads_and_every_error_then_exits_78() {
    let mut env = TestEnv::new();
    env.set_var("OJ_LOG__FORMAT", "yaml");
    env.set_var("OJ_JOBS__MAX_CONCURRENT", "6");
    let out = env.run(&["config", "show"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(out.stdout.contains("max_concurrent = 6"), "{}", out.stdout);
    assert!(
        out.stderr
            .starts_with("oj: invalid configuration: log.format"),
        "{}",
        out.stderr
    );
    let sources = env.run(&["config", "show", "--sources"]);
    assert_eq!(sources.code, Some(78), "{sources:?}");
    assert!(
        sources.stdout.contains("# env OJ_JOBS__MAX_CONCURRENT"),
        "{}",
        sources.stdout
    );
}

#[test]
fn show_sources_is_valid_toml_with_headers_and_every_section() {
    let mut env = TestEnv::new();
    env.set_var("OJ_NOTIFY__WEBHOOK__HEADERS__X_TEAM", "infra");
    env.set_var("OJ_NOTIFY_WEBHOOK_URL", "https://hooks.example/x");
    let out = env.run(&["config", "show", "--sources"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let parsed: toml::Table = toml::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("--sources is not TOML: {e}\n{}", out.stdout));
    assert_eq!(
        parsed["notify"]["webhook"]["format"].as_str(),
        Some("standard")
    );
    assert!(
        parsed["notify"]["webhook"]["headers"]
            .get("x_team")
            .is_some(),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout.matches("[notify.webhook]").count(),
        1,
        "{}",
        out.stdout
    );
}

#[test]
fn explain_shows_every_layer_shadowed_ones_too() {
    let mut env = TestEnv::new();
    env.write_config("[jobs]\nmax_concurrent = 6\n");
    env.set_var("OJ_JOBS__MAX_CONCURRENT", "7");
    let out = env.run(&[
        "--set",
        "jobs.max_concurrent=8",
        "config",
        "explain",
        "jobs.max_concurrent",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = &out.stdout;
    for want in [
        "an integer ≥ 1",
        "OJ_JOBS__MAX_CONCURRENT",
        "live",
        "default",
        "profile desktop",
        "config.toml",
        "env OJ_JOBS__MAX_CONCURRENT",
        "flag --set",
        "shadowed",
        "effective",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
    let restart = env.run(&["config", "explain", "listen.tcp"]);
    assert!(restart.stdout.contains("restart"), "{}", restart.stdout);
    let unknown = env.run(&["config", "explain", "jobs.max_concurent"]);
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
    assert!(
        unknown.stderr.contains("jobs.max_concurrent"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn diff_names_both_values_and_layers() {
    let env = TestEnv::new();
    env.write_config("[jobs]\nmax_concurrent = 6\n");
    let out = env.run(&["config", "diff"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("jobs.max_concurrent"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        line.contains("4 (profile desktop)") && line.contains("6 (file "),
        "{line}"
    );
    let k8s = env.run(&["config", "diff", "--profile", "kubernetes"]);
    assert!(
        k8s.stdout
            .contains("tls.enabled: false (profile desktop) -> true (profile kubernetes)"),
        "{}",
        k8s.stdout
    );
}

#[test]
fn requests_and_limits_compare_exactly() {
    let env = TestEnv::new();
    let out = env.run(&[
        "--set",
        "pods.resources.requests.cpu=700m",
        "--set",
        "pods.resources.limits.cpu=0.7",
        "config",
        "show",
    ]);
    assert_eq!(out.code, Some(0), "700m == 0.7: {out:?}");
    let out = env.run(&[
        "--set",
        "pods.resources.requests.memory=1025Mi",
        "--set",
        "pods.resources.limits.memory=1Gi",
        "config",
        "show",
    ]);
    assert_eq!(out.code, Some(78), "{out:?}");
}

#[test]
fn the_runbook_schema_is_printed() {
    let env = TestEnv::new();
    let out = env.run(&["config", "schema", "--runbook"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(schema["properties"]["job"].is_object(), "{schema}");
}
