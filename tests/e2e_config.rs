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
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("oj: invalid configuration (2 problems)"),
        "{}",
        out.stderr
    );
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
        out.stdout.contains("warning: notify.backend"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("D-Bus"), "{}", out.stdout);
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
        out.stdout.contains("/etc/oj/secret/token"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("tls.cert") || out.stdout.contains("/etc/oj/tls/tls.crt"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("warning: lock.strategy"),
        "lease without an API is a warning in check: {}",
        out.stdout
    );
    assert!(
        out.stderr.starts_with("oj: configuration check failed"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_reports_layer_errors_together() {
    let mut env = TestEnv::new();
    env.set_var("OJ_NOTIFY__BACKEND", "webhook");
    env.set_var("OJ_PODS__RESOURCES__REQUESTS__CPU", "4");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stdout
            .contains("error: notify.backend (from env OJ_NOTIFY__BACKEND)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "error: pods.resources.requests.cpu (from env OJ_PODS__RESOURCES__REQUESTS__CPU)"
        ),
        "{}",
        out.stdout
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
        out.stdout
            .contains("daemon.state_dir (from env OJ_STATE_DIR)"),
        "{}",
        out.stdout
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
