//! Layering, profile selection, env mapping and validation of `oj_config::load`,
//! with the environment injected as a map (no process env is touched).

use std::path::{Path, PathBuf};
use std::time::Duration;

use oj_config::{
    Environment, Layer, LoadOptions, Loaded, LogFormat, NotifyBackend, NotifyEvent, load,
};

struct Sandbox {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let vars = vec![
            ("HOME".to_string(), home.display().to_string()),
            (
                "XDG_CONFIG_HOME".to_string(),
                dir.path().join("cfg").display().to_string(),
            ),
        ];
        Sandbox { dir, vars }
    }
    fn var(mut self, k: &str, v: &str) -> Self {
        self.vars.push((k.into(), v.into()));
        self
    }
    fn file(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
    /// The default config file ($XDG_CONFIG_HOME/oj/config.toml).
    fn default_file(&self, text: &str) -> PathBuf {
        self.file("cfg/oj/config.toml", text)
    }
    fn user_profile(&self, name: &str, text: &str) -> PathBuf {
        self.file(&format!("cfg/oj/profiles/{name}.toml"), text)
    }
    fn env(&self) -> Environment {
        Environment::new(self.vars.clone(), "testhost")
    }
    fn load(&self, opts: LoadOptions) -> Result<Loaded, oj_config::ConfigErrors> {
        load(&opts, &self.env())
    }
    fn ok(&self, opts: LoadOptions) -> Loaded {
        self.load(opts)
            .unwrap_or_else(|e| panic!("expected a valid config, got:\n{e}"))
    }
    fn errors(&self, opts: LoadOptions) -> String {
        match self.load(opts) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.to_string(),
        }
    }
}

fn opts() -> LoadOptions {
    LoadOptions::default()
}

fn with_config(files: &[&Path]) -> LoadOptions {
    LoadOptions {
        config_files: files.iter().map(|p| p.to_path_buf()).collect(),
        ..Default::default()
    }
}

fn with_sets(sets: &[&str]) -> LoadOptions {
    LoadOptions {
        sets: sets.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn with_profile(p: &str) -> LoadOptions {
    LoadOptions {
        profile: Some(p.into()),
        ..Default::default()
    }
}

#[test]
fn desktop_is_the_default_profile_with_its_values() {
    let sb = Sandbox::new();
    let l = sb.ok(opts());
    assert_eq!(l.profile, "desktop");
    assert_eq!(l.config.notify.backend, NotifyBackend::Desktop);
    assert_eq!(l.config.log.format, LogFormat::Text);
    assert!(l.config.log.file.enabled);
    assert_eq!(l.config.jobs.max_concurrent, 4);
    assert_eq!(l.config.daemon.instance, "testhost");
    assert!(l.config.daemon.state_dir.ends_with("home/.local/state/oj"));
    assert_eq!(
        l.config.unix_socket_path().unwrap(),
        l.config.daemon.state_dir.join("daemon.sock")
    );
    assert_eq!(l.source("jobs.step_timeout"), "default");
    assert_eq!(l.source("notify.backend"), "profile desktop");
}

#[test]
fn kubernetes_profile_values() {
    let sb = Sandbox::new().var("POD_NAME", "oj-7d9f");
    let l = sb.ok(with_profile("kubernetes"));
    let c = &l.config;
    assert_eq!(c.daemon.state_dir, PathBuf::from("/var/lib/oj"));
    assert_eq!(c.daemon.instance, "oj-7d9f");
    assert_eq!(c.jobs.max_concurrent, 16);
    assert_eq!(c.listen.tcp.as_deref(), Some("0.0.0.0:7777"));
    assert!(c.tls.enabled);
    assert_eq!(c.admin.addr.as_deref(), Some("0.0.0.0:9090"));
    assert_eq!(c.notify.backend, NotifyBackend::Log);
    assert_eq!(c.log.format, LogFormat::Json);
    assert!(c.log.stdout && !c.log.file.enabled);
    assert_eq!(c.lock.strategy, oj_config::LockStrategy::Lease);
    assert_eq!(c.shutdown.drain_timeout, Duration::from_secs(25));
    assert_eq!(l.source("shutdown.drain_timeout"), "profile kubernetes");
}

// ---- precedence pairs: default < profile < file < env < flag ----

#[test]
fn scalar_precedence_at_every_layer() {
    let sb = Sandbox::new();
    // default
    assert_eq!(sb.ok(opts()).source("jobs.step_timeout"), "default");
    // profile beats default
    let l = sb.ok(opts());
    assert_eq!(l.config.shutdown.drain_timeout, Duration::from_secs(5));
    assert_eq!(l.source("shutdown.drain_timeout"), "profile desktop");
    // file beats profile
    let f = sb.file("a.toml", "[shutdown]\ndrain_timeout = \"9s\"\n");
    let l = sb.ok(with_config(&[&f]));
    assert_eq!(l.config.shutdown.drain_timeout, Duration::from_secs(9));
    assert_eq!(
        l.source("shutdown.drain_timeout"),
        format!("file {}", f.display())
    );
    // env beats file
    let sb = sb.var("OJ_SHUTDOWN__DRAIN_TIMEOUT", "30s");
    let l = sb.ok(with_config(&[&f]));
    assert_eq!(l.config.shutdown.drain_timeout, Duration::from_secs(30));
    assert_eq!(
        l.source("shutdown.drain_timeout"),
        "env OJ_SHUTDOWN__DRAIN_TIMEOUT"
    );
    // flag beats env
    let mut o = with_config(&[&f]);
    o.sets = vec!["shutdown.drain_timeout=1m".into()];
    let l = sb.ok(o);
    assert_eq!(l.config.shutdown.drain_timeout, Duration::from_secs(60));
    assert_eq!(l.source("shutdown.drain_timeout"), "flag --set");
}

#[test]
fn tables_merge_key_by_key() {
    let sb = Sandbox::new();
    let f = sb.file("a.toml", "[pods.resources.limits]\nmemory = \"4Gi\"\n");
    let l = sb.ok(with_config(&[&f]));
    let r = &l.config.pods.resources;
    assert_eq!(r.limits.memory.as_str(), "4Gi");
    assert_eq!(r.limits.cpu.as_str(), "2", "sibling key keeps its default");
    assert_eq!(l.source("pods.resources.limits.cpu"), "default");
    // env merges into the same table, one key
    let sb = sb.var("OJ_PODS__RESOURCES__LIMITS__CPU", "3");
    let l = sb.ok(with_config(&[&f]));
    assert_eq!(l.config.pods.resources.limits.cpu.as_str(), "3");
    assert_eq!(l.config.pods.resources.limits.memory.as_str(), "4Gi");
    // flag into the same table
    let mut o = with_config(&[&f]);
    o.sets = vec!["pods.resources.requests.memory=1Gi".into()];
    let l = sb.ok(o);
    assert_eq!(l.config.pods.resources.requests.memory.as_str(), "1Gi");
    assert_eq!(l.config.pods.resources.limits.memory.as_str(), "4Gi");
    // headers table: entries from file and env merge
    let f2 = sb.file("b.toml", "[notify.webhook.headers]\nx-team = \"a\"\n");
    let sb = sb.var("OJ_NOTIFY__WEBHOOK__HEADERS__X_ENV", "b");
    let l = sb.ok(with_config(&[&f2]));
    let h = &l.config.notify.webhook.headers;
    assert_eq!(h.get("x-team").map(|s| s.expose()), Some("a"));
    assert_eq!(h.get("x_env").map(|s| s.expose()), Some("b"));
}

#[test]
fn arrays_are_replaced_whole_at_every_layer() {
    let sb = Sandbox::new();
    let all = vec![NotifyEvent::Start, NotifyEvent::Done, NotifyEvent::Fail];
    assert_eq!(sb.ok(opts()).config.notify.events, all);
    let f = sb.file("a.toml", "[notify]\nevents = [\"fail\"]\n");
    assert_eq!(
        sb.ok(with_config(&[&f])).config.notify.events,
        vec![NotifyEvent::Fail]
    );
    let sb = sb.var("OJ_NOTIFY__EVENTS", "[\"done\", \"fail\"]");
    assert_eq!(
        sb.ok(with_config(&[&f])).config.notify.events,
        vec![NotifyEvent::Done, NotifyEvent::Fail]
    );
    let mut o = with_config(&[&f]);
    o.sets = vec!["notify.events=[\"start\"]".into()];
    assert_eq!(sb.ok(o).config.notify.events, vec![NotifyEvent::Start]);
    // comma-separated list in env
    let sb = Sandbox::new().var("OJ_JOBS__SHELL", "/bin/bash,-c");
    assert_eq!(sb.ok(opts()).config.jobs.shell, vec!["/bin/bash", "-c"]);
}

#[test]
fn later_config_files_win() {
    let sb = Sandbox::new();
    let a = sb.file("a.toml", "[jobs]\nmax_concurrent = 2\n");
    let b = sb.file("b.toml", "[jobs]\nmax_concurrent = 3\n");
    let l = sb.ok(with_config(&[&a, &b]));
    assert_eq!(l.config.jobs.max_concurrent, 3);
    assert_eq!(
        l.source("jobs.max_concurrent"),
        format!("file {}", b.display())
    );
}

#[test]
fn default_file_is_read_and_oj_config_replaces_it() {
    let sb = Sandbox::new();
    sb.default_file("[jobs]\nmax_concurrent = 5\n");
    assert_eq!(sb.ok(opts()).config.jobs.max_concurrent, 5);
    let other = sb.file("other.toml", "[jobs]\nmax_concurrent = 6\n");
    let other2 = sb.file("other2.toml", "[log]\nlevel = \"debug\"\n");
    let sb = sb.var(
        "OJ_CONFIG",
        &format!("{}:{}", other.display(), other2.display()),
    );
    let l = sb.ok(opts());
    assert_eq!(
        l.config.jobs.max_concurrent, 6,
        "OJ_CONFIG replaces the default file"
    );
    assert_eq!(l.config.log.level, "debug");
    // --config comes after OJ_CONFIG
    let c = sb.file("c.toml", "[jobs]\nmax_concurrent = 7\n");
    assert_eq!(sb.ok(with_config(&[&c])).config.jobs.max_concurrent, 7);
}

#[test]
fn a_missing_explicit_file_is_an_error() {
    let sb = Sandbox::new();
    let err = sb.errors(with_config(&[Path::new("/nonexistent/oj.toml")]));
    assert!(err.contains("/nonexistent/oj.toml"), "{err}");
    assert!(err.contains("flag --config"), "{err}");
}

#[test]
fn empty_env_value_unsets_an_optional_key() {
    let sb = Sandbox::new()
        .var("OJ_LISTEN__AUTH_TOKEN_FILE", "")
        .var("OJ_LISTEN__INSECURE_NO_AUTH", "true");
    let l = sb.ok(with_profile("kubernetes"));
    assert_eq!(l.config.listen.auth_token_file, None);
    assert_eq!(
        l.source("listen.auth_token_file"),
        "env OJ_LISTEN__AUTH_TOKEN_FILE"
    );
    // and "" switches the TCP listener off
    let sb = Sandbox::new().var("OJ_LISTEN__TCP", "");
    assert_eq!(sb.ok(with_profile("kubernetes")).config.listen.tcp, None);
}

// ---- aliases ----

#[test]
fn every_alias_sets_its_key() {
    let sb = Sandbox::new()
        .var("OJ_STATE_DIR", "/srv/oj")
        .var("OJ_TCP_PORT", "8800")
        .var("OJ_AUTH_TOKEN", "tok")
        .var("OJ_AUTH_TOKEN_FILE", "/run/tok")
        .var("OJ_NOTIFY_WEBHOOK_URL", "https://hooks.example/x")
        .var("OJ_LOG_STDOUT", "1")
        .var("OJ_DRAIN_TIMEOUT_MS", "1500")
        .var("OJ_DAEMON_URL", "https://oj.example:7777");
    let l = sb.ok(opts());
    let c = &l.config;
    assert_eq!(c.daemon.state_dir, PathBuf::from("/srv/oj"));
    assert_eq!(c.listen.tcp.as_deref(), Some("0.0.0.0:8800"));
    assert_eq!(
        c.listen.auth_token.as_ref().map(|s| s.expose()),
        Some("tok")
    );
    assert_eq!(c.listen.auth_token_file, Some(PathBuf::from("/run/tok")));
    assert_eq!(
        c.notify.webhook.url.as_ref().map(|s| s.expose()),
        Some("https://hooks.example/x")
    );
    assert!(c.log.stdout);
    assert_eq!(c.shutdown.drain_timeout, Duration::from_millis(1500));
    assert_eq!(c.client.url.as_deref(), Some("https://oj.example:7777"));
    assert_eq!(l.source("listen.tcp"), "env OJ_TCP_PORT");
    assert_eq!(
        l.source("shutdown.drain_timeout"),
        "env OJ_DRAIN_TIMEOUT_MS"
    );
}

#[test]
fn double_underscore_variable_beats_an_alias() {
    let sb = Sandbox::new()
        .var("OJ_STATE_DIR", "/alias")
        .var("OJ_DAEMON__STATE_DIR", "/dunder");
    let l = sb.ok(opts());
    assert_eq!(l.config.daemon.state_dir, PathBuf::from("/dunder"));
    assert_eq!(l.source("daemon.state_dir"), "env OJ_DAEMON__STATE_DIR");
    let sb = Sandbox::new()
        .var("OJ_DRAIN_TIMEOUT_MS", "100")
        .var("OJ_SHUTDOWN__DRAIN_TIMEOUT", "2s");
    assert_eq!(
        sb.ok(opts()).config.shutdown.drain_timeout,
        Duration::from_secs(2)
    );
}

// ---- derived rule ----

#[test]
fn webhook_url_from_env_switches_a_profile_backend() {
    let sb = Sandbox::new().var("OJ_NOTIFY_WEBHOOK_URL", "http://127.0.0.1:9/hook");
    let l = sb.ok(with_profile("kubernetes"));
    assert_eq!(l.config.notify.backend, NotifyBackend::Webhook);
    assert_eq!(
        *l.source("notify.backend"),
        Layer::Derived {
            key: "notify.webhook.url".into(),
            from: Box::new(Layer::env("OJ_NOTIFY_WEBHOOK_URL")),
        }
    );
    assert_eq!(
        l.source("notify.backend"),
        "derived from notify.webhook.url (env OJ_NOTIFY_WEBHOOK_URL)"
    );
    // but not a backend the user chose explicitly
    let sb = sb.var("OJ_NOTIFY__BACKEND", "log");
    assert_eq!(sb.ok(opts()).config.notify.backend, NotifyBackend::Log);
}

#[test]
fn webhook_backend_without_url_is_an_error_naming_the_layer() {
    let sb = Sandbox::new().var("OJ_NOTIFY__BACKEND", "webhook");
    let err = sb.errors(opts());
    assert!(
        err.contains("notify.backend (from env OJ_NOTIFY__BACKEND)"),
        "{err}"
    );
    assert!(err.contains("notify.webhook.url"), "{err}");
}

// ---- profile selection ----

#[test]
fn profile_selection_by_each_means() {
    // 5. fallback
    assert_eq!(Sandbox::new().ok(opts()).profile, "desktop");
    // 4. KUBERNETES_SERVICE_HOST
    let sb = Sandbox::new().var("KUBERNETES_SERVICE_HOST", "10.0.0.1");
    assert_eq!(sb.ok(opts()).profile, "kubernetes");
    // 3. profile = in a config file beats KUBERNETES_SERVICE_HOST
    let f = sb.file("p.toml", "profile = \"desktop\"\n");
    let l = sb.ok(with_config(&[&f]));
    assert_eq!(l.profile, "desktop");
    assert_eq!(l.profile_source, format!("file {}", f.display()));
    // 2. OJ_PROFILE beats the file
    let sb = sb.var("OJ_PROFILE", "kubernetes");
    let l = sb.ok(with_config(&[&f]));
    assert_eq!(l.profile, "kubernetes");
    assert_eq!(l.profile_source, "env OJ_PROFILE");
    // 1. --profile beats OJ_PROFILE
    let mut o = with_config(&[&f]);
    o.profile = Some("desktop".into());
    let l = sb.ok(o);
    assert_eq!(l.profile, "desktop");
    assert_eq!(l.profile_source, "flag --profile");
}

#[test]
fn user_profile_extends_a_builtin_and_another_user_profile() {
    let sb = Sandbox::new();
    sb.user_profile(
        "ci",
        "extends = \"kubernetes\"\ndescription = \"CI runners\"\n[jobs]\nmax_concurrent = 2\n",
    );
    sb.user_profile(
        "ci-big",
        "extends = \"ci\"\n[jobs]\nstep_timeout = \"3h\"\n",
    );
    let l = sb.ok(with_profile("ci-big"));
    assert_eq!(l.base, oj_config::BuiltinProfile::Kubernetes);
    assert_eq!(l.config.jobs.max_concurrent, 2);
    assert_eq!(l.config.jobs.step_timeout, Duration::from_secs(3 * 3600));
    assert_eq!(
        l.config.log.format,
        LogFormat::Json,
        "inherited from kubernetes"
    );
    assert_eq!(l.source("jobs.max_concurrent"), "profile ci");
    assert_eq!(l.source("jobs.step_timeout"), "profile ci-big");
    let names: Vec<String> = oj_config::list_profiles(&sb.env())
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["desktop", "kubernetes", "ci", "ci-big"]);
}

#[test]
fn profile_cycles_and_unknown_names_are_errors() {
    let sb = Sandbox::new();
    sb.user_profile("a", "extends = \"b\"\n");
    sb.user_profile("b", "extends = \"a\"\n");
    let err = sb.errors(with_profile("a"));
    assert!(
        err.contains("cycle") && err.contains("a -> b -> a"),
        "{err}"
    );
    let err = sb.errors(with_profile("nope"));
    assert!(err.contains("unknown profile \"nope\""), "{err}");
    assert!(err.contains("flag --profile"), "{err}");
    sb.user_profile("c", "extends = \"missing\"\n");
    let err = sb.errors(with_profile("c"));
    assert!(
        err.contains("\"c\" extends") && err.contains("\"missing\""),
        "{err}"
    );
}

// ---- unknown keys ----

#[test]
fn unknown_key_in_a_file_names_file_key_and_nearest() {
    let sb = Sandbox::new();
    let f = sb.file("bad.toml", "[log]\nfromat = \"json\"\n");
    let err = sb.errors(with_config(&[&f]));
    assert!(err.contains("log.fromat"), "{err}");
    assert!(err.contains(&format!("file {}", f.display())), "{err}");
    assert!(err.contains("did you mean `log.format`"), "{err}");
}

#[test]
fn unknown_dunder_env_var_suggests_the_nearest() {
    let sb = Sandbox::new().var("OJ_LOG__FROMAT", "json");
    let err = sb.errors(opts());
    assert!(err.contains("env OJ_LOG__FROMAT"), "{err}");
    assert!(err.contains("OJ_LOG__FORMAT"), "{err}");
}

#[test]
fn unknown_set_key_is_an_error() {
    let err = Sandbox::new().errors(with_sets(&["jobs.max_concurent=3"]));
    assert!(
        err.contains("flag --set") && err.contains("jobs.max_concurrent"),
        "{err}"
    );
    let err = Sandbox::new().errors(with_sets(&["novalue"]));
    assert!(err.contains("KEY=VALUE"), "{err}");
}

// ---- validation rules, each naming the layer ----

#[test]
fn every_problem_is_reported_together() {
    let sb = Sandbox::new()
        .var("OJ_LOG__FORMAT", "yaml")
        .var("OJ_JOBS__MAX_CONCURRENT", "0");
    let f = sb.file(
        "x.toml",
        "[jobs]\nstep_timeout = \"forever\"\n[pods.resources.limits]\ncpu = \"lots\"\n",
    );
    let err = sb.errors(with_config(&[&f]));
    assert!(
        err.contains("log.format (from env OJ_LOG__FORMAT)") && err.contains("\"text\", \"json\""),
        "{err}"
    );
    assert!(
        err.contains("jobs.max_concurrent (from env OJ_JOBS__MAX_CONCURRENT)")
            && err.contains("≥ 1"),
        "{err}"
    );
    assert!(
        err.contains(&format!("jobs.step_timeout (from file {})", f.display())),
        "{err}"
    );
    assert!(
        err.contains("pods.resources.limits.cpu") && err.contains("Kubernetes quantity"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 4, "{err}");
}

#[test]
fn wrong_types_name_key_and_layer() {
    let err = Sandbox::new().errors(with_sets(&["log.stdout=maybe"]));
    assert!(
        err.contains("log.stdout (from flag --set)") && err.contains("true or false"),
        "{err}"
    );
    let sb = Sandbox::new();
    let f = sb.file("t.toml", "[jobs]\nshell = \"/bin/sh\"\n");
    let err = sb.errors(with_config(&[&f]));
    assert!(
        err.contains("jobs.shell") && err.contains("array of strings"),
        "{err}"
    );
}

#[test]
fn requests_above_limits_are_refused() {
    let sb = Sandbox::new().var("OJ_PODS__RESOURCES__REQUESTS__MEMORY", "4Gi");
    let err = sb.errors(opts());
    assert!(
        err.contains(
            "pods.resources.requests.memory (from env OJ_PODS__RESOURCES__REQUESTS__MEMORY)"
        ),
        "{err}"
    );
    assert!(err.contains("limits.memory = 2Gi"), "{err}");
}

#[test]
fn tcp_without_a_token_is_refused_unless_insecure() {
    let err = Sandbox::new().errors(with_sets(&["listen.tcp=127.0.0.1:7777"]));
    assert!(
        err.contains("listen.tcp (from flag --set)") && err.contains("insecure_no_auth"),
        "{err}"
    );
    Sandbox::new().ok(with_sets(&[
        "listen.tcp=127.0.0.1:7777",
        "listen.insecure_no_auth=true",
    ]));
    Sandbox::new().ok(with_sets(&[
        "listen.tcp=127.0.0.1:7777",
        "listen.auth_token=s3cret",
    ]));
    let err = Sandbox::new().errors(with_sets(&[
        "listen.tcp=7777",
        "listen.insecure_no_auth=true",
    ]));
    assert!(err.contains("host:port"), "{err}");
}

#[test]
fn lease_timings_must_be_ordered() {
    let sb = Sandbox::new().var("OJ_LOCK__LEASE__RENEW_DEADLINE", "20s");
    let err = sb.errors(opts());
    assert!(
        err.contains("lock.lease.duration (from default)")
            && err.contains("renew_deadline = 20s (from env"),
        "{err}"
    );
    let err = Sandbox::new().errors(with_sets(&["lock.lease.retry_period=9s"]));
    assert!(
        err.contains("lock.lease.renew_deadline")
            && err.contains("1.2 × lock.lease.retry_period = 9s (from flag --set)"),
        "{err}"
    );
}

#[test]
fn tls_enabled_needs_cert_and_key_configured() {
    let sb = Sandbox::new().var("OJ_TLS__ENABLED", "true");
    let err = sb.errors(opts());
    assert!(
        err.contains("tls.cert (from default)") && err.contains("tls.key"),
        "{err}"
    );
}

#[test]
fn invalid_log_directive_is_refused() {
    let err = Sandbox::new().errors(with_sets(&["log.level=info,oj=loud"]));
    assert!(
        err.contains("log.level (from flag --set)") && err.contains("EnvFilter"),
        "{err}"
    );
    Sandbox::new().ok(with_sets(&["log.level=info,oj_daemon=debug"]));
}

#[test]
fn malformed_toml_names_file_line_and_column() {
    let sb = Sandbox::new();
    let f = sb.file("broken.toml", "[jobs]\nmax_concurrent = = 3\n");
    let err = sb.errors(with_config(&[&f]));
    assert!(err.contains(&format!("{}:2:", f.display())), "{err}");
}

#[test]
fn secrets_are_never_echoed_in_errors() {
    let sb = Sandbox::new().var("OJ_NOTIFY__WEBHOOK__URL", "ftp://user:hunter2@example");
    let err = sb.errors(opts());
    assert!(err.contains("notify.webhook.url"), "{err}");
    assert!(!err.contains("hunter2"), "secret leaked: {err}");
    let sb = Sandbox::new();
    let f = sb.file("s.toml", "[listen]\nauth_token = 12345678\n");
    let err = sb.errors(with_config(&[&f]));
    assert!(
        err.contains("listen.auth_token") && !err.contains("12345678"),
        "{err}"
    );
}

#[test]
fn show_redacts_secrets_unless_asked() {
    use oj_config::render::{ShowOptions, show};
    let sb = Sandbox::new()
        .var("OJ_AUTH_TOKEN", "tok-123")
        .var("OJ_NOTIFY__WEBHOOK__HEADERS__AUTHORIZATION", "Bearer abc");
    let l = sb.ok(opts());
    let toml = show(&l, ShowOptions::default());
    assert!(
        !toml.contains("tok-123") && !toml.contains("Bearer abc"),
        "{toml}"
    );
    assert!(toml.contains("auth_token = \"<redacted>\""), "{toml}");
    let json = show(
        &l,
        ShowOptions {
            json: true,
            ..Default::default()
        },
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["listen"]["auth_token"], "<redacted>");
    assert_eq!(
        v["notify"]["webhook"]["headers"]["authorization"],
        "<redacted>"
    );
    assert_eq!(v["shutdown"]["drain_timeout"], "5s");
    assert_eq!(v["pods"]["resources"]["requests"]["memory"], "256Mi");
    let shown = show(
        &l,
        ShowOptions {
            show_secrets: true,
            ..Default::default()
        },
    );
    assert!(shown.contains("tok-123"), "{shown}");
}

#[test]
fn show_sources_names_the_layer_of_each_leaf() {
    use oj_config::render::{ShowOptions, show};
    let sb = Sandbox::new().var("OJ_SHUTDOWN__DRAIN_TIMEOUT", "30s");
    let f = sb.file("f.toml", "[jobs]\nmax_concurrent = 3\n");
    let mut o = with_config(&[&f]);
    o.sets = vec!["log.level=debug".into()];
    let out = show(
        &sb.ok(o),
        ShowOptions {
            sources: true,
            ..Default::default()
        },
    );
    assert!(
        out.contains("drain_timeout = \"30s\"  # env OJ_SHUTDOWN__DRAIN_TIMEOUT"),
        "{out}"
    );
    assert!(
        out.contains(&format!("max_concurrent = 3  # file {}", f.display())),
        "{out}"
    );
    assert!(out.contains("level = \"debug\"  # flag --set"), "{out}");
    assert!(
        out.contains("backend = \"desktop\"  # profile desktop"),
        "{out}"
    );
    assert!(out.contains("step_timeout = \"1h\"  # default"), "{out}");
    // durations render as humantime strings
    let sb = Sandbox::new().var("OJ_DRAIN_TIMEOUT_MS", "1500");
    let out = show(
        &sb.ok(opts()),
        ShowOptions {
            sources: true,
            ..Default::default()
        },
    );
    assert!(
        out.contains("drain_timeout = \"1s 500ms\"  # env OJ_DRAIN_TIMEOUT_MS"),
        "{out}"
    );
}

#[test]
fn a_daemon_without_any_listener_is_refused() {
    let err = Sandbox::new().errors(with_sets(&["listen.unix_socket="]));
    assert!(
        err.contains("listen.unix_socket (from flag --set)") && err.contains("no API"),
        "{err}"
    );
    Sandbox::new().ok(with_sets(&[
        "listen.unix_socket=",
        "listen.tcp=127.0.0.1:1",
        "listen.auth_token=t",
    ]));
}

/// A token that is only whitespace would be an empty token once trimmed:
/// refused from a file, the environment (alias or `__`) and `--set`, with
/// the layer named and the value never printed.
#[test]
fn blank_tokens_are_refused_in_every_layer() {
    let sb = Sandbox::new();
    let file = sb.file("blank.toml", "[listen]\nauth_token = \"   \"\n");
    let e = sb.errors(with_config(&[&file]));
    assert!(
        e.contains("listen.auth_token") && e.contains("blank.toml"),
        "{e}"
    );
    for (var, key) in [
        ("OJ_AUTH_TOKEN", "listen.auth_token"),
        ("OJ_LISTEN__AUTH_TOKEN", "listen.auth_token"),
        ("OJ_CLIENT__TOKEN", "client.token"),
    ] {
        let e = Sandbox::new().var(var, " \t ").errors(opts());
        assert!(e.contains(key) && e.contains(var), "{var}: {e}");
    }
    let e = sb.errors(with_sets(&["client.token=  "]));
    assert!(
        e.contains("client.token") && e.contains("flag --set"),
        "{e}"
    );
    // An empty string still means unset (SPEC 2.1).
    sb.ok(with_sets(&["listen.auth_token="]));
    // A blank token is refused even where a later layer overrides it.
    let e = Sandbox::new()
        .var("OJ_AUTH_TOKEN", "  ")
        .errors(with_sets(&[
            "listen.auth_token=a-real-token-of-some-length",
        ]));
    assert!(e.contains("env OJ_AUTH_TOKEN"), "{e}");
}

#[test]
fn webhook_keys_under_24_bytes_are_refused() {
    let e = Sandbox::new()
        .var("OJ_NOTIFY__WEBHOOK__SECRET", "whsec_c2VjcmV0")
        .errors(opts());
    assert!(
        e.contains("notify.webhook.secret") && e.contains("6 bytes") && !e.contains("c2VjcmV0"),
        "{e}"
    );
    Sandbox::new()
        .var(
            "OJ_NOTIFY__WEBHOOK__SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .ok(opts());
}

#[test]
fn hardening_keys_have_defaults_and_layers() {
    let sb = Sandbox::new().var("OJ_LISTEN__HEADER_TIMEOUT", "2s");
    let l = sb.ok(with_sets(&[
        "jobs.allow_shell=false",
        "listen.max_connections=8",
    ]));
    assert_eq!(l.config.listen.header_timeout, Duration::from_secs(2));
    assert_eq!(l.config.listen.idle_timeout, Duration::from_secs(60));
    assert_eq!(l.config.listen.max_connections, 8);
    assert!(!l.config.jobs.allow_shell);
    assert_eq!(
        l.source("listen.header_timeout"),
        "env OJ_LISTEN__HEADER_TIMEOUT"
    );
    let e = Sandbox::new().errors(with_sets(&["listen.max_connections=0"]));
    assert!(e.contains("listen.max_connections"), "{e}");
    let e = Sandbox::new().errors(with_sets(&["listen.idle_timeout=0s"]));
    assert!(
        e.contains("listen.idle_timeout") && e.contains("flag --set"),
        "{e}"
    );
}
