//! What an SRE checks with their own tools: a real daemon that ran jobs and
//! failed a webhook is scraped, and every metric must have moved as it
//! should; `promtool check metrics` must accept the text format; the
//! OpenMetrics format is served only to scrapers that ask for it; the alert
//! rules pass `promtool check rules` and their unit tests
//! (deploy/monitoring/alerts-test.yaml); the monitoring overlay validates
//! against the Kubernetes schemas; and the dashboard and alerts only use
//! metrics the daemon exports. A lease leader (against the fake API server)
//! counts its renewals; a standby counts none.
//!
//! Needs `curl`; `promtool` (Debian package `prometheus`, installed by
//! scripts/test), `kubectl` and `kubernetes-validate` for the checks that
//! use them (a missing tool skips only that check, saying so).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use common::pki::Ca;
use common::webhook::{Mode, Receiver};
use common::{Daemon, TestEnv, free_port, http, wait_until};

/// The Kubernetes version the schemas are checked against (as e2e_deploy).
const K8S_VERSION: &str = "1.33.0";

/// Metrics SPEC §7.8 names that other subsystems export (storage, reload);
/// the dashboard and alerts may use them even where this daemon's scrape has
/// not shown them yet.
const SPEC_METRICS_ELSEWHERE: [&str; 3] = [
    "oj_storage_errors_total",
    "oj_config_reloads_total",
    "oj_config_generation",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// One scrape: status, `Content-Type`, body.
struct Scrape {
    status: u16,
    content_type: String,
    body: String,
}

impl Scrape {
    /// The value of the sample `series` (exact name and labels as written).
    fn value(&self, series: &str) -> Option<f64> {
        self.body.lines().find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
    }

    fn must(&self, series: &str) -> f64 {
        self.value(series)
            .unwrap_or_else(|| panic!("no sample {series} in the scrape:\n{}", self.body))
    }

    /// The names of every metric family (from `# TYPE` lines).
    fn families(&self) -> BTreeSet<String> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_owned)
            .collect()
    }
}

fn scrape(port: u16, accept: Option<&str>) -> Scrape {
    let mut get = http::Get::new(port, "/metrics").within(Duration::from_secs(10));
    if let Some(a) = accept {
        get = get.header("Accept", a);
    }
    let reply = get.send();
    Scrape {
        status: reply.status,
        content_type: reply.header("content-type").unwrap_or_default().to_string(),
        body: format!("{}\n", reply.body),
    }
}

fn job(name: &str, run: &str) -> Value {
    json!({ "name": name, "steps": [{ "name": "main", "run": run }] })
}

fn start_with_admin(env: &TestEnv, admin: u16, extra: &[&str]) -> Daemon {
    let admin_set = format!("admin.addr=127.0.0.1:{admin}");
    let mut args = vec!["--set", &admin_set];
    args.extend_from_slice(extra);
    let d = env.start_daemon(&args);
    assert!(
        wait_until(Duration::from_secs(10), || scrape(admin, None).status
            == 200),
        "the admin port never answered /metrics\nstderr:\n{}",
        d.stderr()
    );
    d
}

#[test]
fn a_scrape_after_jobs_and_a_failing_webhook_shows_every_metric_moved() {
    let env = TestEnv::new();
    let admin = free_port();
    // A receiver that answers every request 500.
    let rx = Receiver::with_mode(Mode::Status(500));
    let url_set = format!("notify.webhook.url={}", rx.url());
    let d = start_with_admin(
        &env,
        admin,
        &[
            "--set",
            &url_set,
            "--set",
            "notify.webhook.max_attempts=2",
            "--set",
            "notify.webhook.backoff=10ms",
        ],
    );
    let before = scrape(admin, None);
    assert_eq!(before.must("oj_jobs_submitted_total"), 0.0);
    assert_eq!(
        before.must(r#"oj_notifications_total{backend="webhook",result="failed"}"#),
        0.0,
        "series exist at 0 before the first notification"
    );

    let ok = d.submit(&job("fine", "true"));
    let bad = d.submit(&job("broken", "exit 3"));
    d.wait_job(&ok, &["done"], Duration::from_secs(20));
    d.wait_job(&bad, &["failed"], Duration::from_secs(20));
    // start + done, start + fail: four notifications, each tried twice.
    let failed = r#"oj_notifications_total{backend="webhook",result="failed"}"#;
    assert!(
        wait_until(Duration::from_secs(20), || scrape(admin, None)
            .value(failed)
            == Some(4.0)),
        "the four notifications never ended failed:\n{}",
        scrape(admin, None).body
    );
    let m = scrape(admin, None);

    assert_eq!(m.status, 200);
    assert_eq!(m.must("oj_jobs_submitted_total"), 2.0);
    assert_eq!(m.must(r#"oj_jobs_finished_total{state="done"}"#), 1.0);
    assert_eq!(m.must(r#"oj_jobs_finished_total{state="failed"}"#), 1.0);
    assert_eq!(m.must(r#"oj_jobs_finished_total{state="cancelled"}"#), 0.0);
    assert_eq!(m.must(r#"oj_jobs{state="done"}"#), 1.0);
    assert_eq!(m.must(r#"oj_jobs{state="failed"}"#), 1.0);
    assert_eq!(
        m.must(r#"oj_job_duration_seconds_count{state="done"}"#),
        1.0
    );
    assert_eq!(
        m.must(r#"oj_job_duration_seconds_count{state="failed"}"#),
        1.0
    );
    assert_eq!(
        m.must(r#"oj_job_duration_seconds_bucket{state="done",le="+Inf"}"#),
        1.0
    );
    assert_eq!(m.must("oj_job_queue_wait_seconds_count"), 2.0);
    // Outcomes count notifications; attempts count every POST.
    assert_eq!(
        m.must(r#"oj_notifications_total{backend="webhook",result="delivered"}"#),
        0.0
    );
    assert_eq!(
        m.must(r#"oj_notification_attempts_total{backend="webhook"}"#),
        8.0
    );
    assert_eq!(rx.attempts().len(), 8, "the receiver saw every attempt");
    assert_eq!(
        m.must(r#"oj_notification_delivery_seconds_count{backend="webhook"}"#),
        4.0
    );
    assert!(
        m.must(r#"oj_notification_delivery_seconds_sum{backend="webhook"}"#) >= 4.0 * 0.01,
        "each failed notification waited at least one backoff"
    );
    assert_eq!(m.must("oj_notify_queue_depth"), 0.0);
    assert_eq!(m.must("oj_leader"), 1.0);
    assert_eq!(m.must("oj_draining"), 0.0);
    // Two submissions over the socket; earlier scrapes on the admin port.
    assert_eq!(
        m.must(r#"oj_http_requests_total{listener="unix",code="201"}"#),
        2.0
    );
    assert!(m.must(r#"oj_http_requests_total{listener="admin",code="200"}"#) >= 2.0);
    // The standard process metrics, in base units.
    assert!(m.must("process_resident_memory_bytes") > 1e6);
    assert!(m.must("process_open_fds") >= 3.0);
    assert!(m.must("process_max_fds") >= m.must("process_open_fds"));
    assert!(m.must("process_cpu_seconds_total") > 0.0);
    let start = m.must("process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start <= now && start > now - 300.0,
        "start time {start}, now {now}"
    );
    assert!(
        m.body.contains(r#"oj_build_info{version=""#),
        "oj_build_info:\n{}",
        m.body
    );
    // Only daemons that serve TLS have a certificate to report.
    assert!(
        !m.families()
            .contains("oj_tls_cert_expiry_timestamp_seconds")
    );
    // The log names the receiver in a field log collectors do not own.
    let log = env.state_dir().join("daemon.log");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(5), || read()
            .contains("webhook_host=127.0.0.1:")),
        "no webhook_host field in {}:\n{}",
        log.display(),
        read()
    );
    assert!(!read().contains(" host="), "{}", read());
}

/// A config reload, accepted then rejected, moves the reload metrics
/// (SIGHUP only: the file watch is off so that each write is one reload).
#[test]
fn reloads_are_counted_by_result_and_the_generation_follows() {
    let env = TestEnv::new();
    let admin = free_port();
    let file = env.write_config("[daemon]\nwatch_config = false\n[notify]\nbackend = \"none\"\n[jobs]\nmax_concurrent = 2\n");
    let d = start_with_admin(&env, admin, &[]);
    let ok = "oj_config_reloads_total{result=\"ok\"}";
    let rejected = "oj_config_reloads_total{result=\"rejected\"}";
    let m = scrape(admin, None);
    assert_eq!(
        (m.must(ok), m.must(rejected), m.must("oj_config_generation")),
        (0.0, 0.0, 1.0)
    );

    std::fs::write(
        &file,
        "[daemon]\nwatch_config = false\n[notify]\nbackend = \"none\"\n[jobs]\nmax_concurrent = 3\n",
    )
    .unwrap();
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || scrape(admin, None).value(ok)
            == Some(1.0)),
        "accepted reload not counted\n{}",
        d.stderr()
    );
    assert_eq!(scrape(admin, None).must("oj_config_generation"), 2.0);

    std::fs::write(&file, "[jobs]\nmax_concurrent = 0\n").unwrap();
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || scrape(admin, None)
            .value(rejected)
            == Some(1.0)),
        "rejected reload not counted\n{}",
        d.stderr()
    );
    let m = scrape(admin, None);
    assert_eq!(
        (m.must(ok), m.must("oj_config_generation")),
        (1.0, 2.0),
        "a rejected config changes nothing"
    );
}

#[test]
fn the_text_format_is_the_default_and_promtool_accepts_it() {
    let env = TestEnv::new();
    let admin = free_port();
    let d = start_with_admin(&env, admin, &["--set", "notify.backend=log"]);
    let id = d.submit(&job("fine", "true"));
    d.wait_job(&id, &["done"], Duration::from_secs(20));

    let text = scrape(admin, None);
    assert_eq!(
        text.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(!text.body.contains("# EOF"), "{}", text.body);
    assert!(
        text.body.contains("# TYPE oj_jobs_submitted_total counter")
            && text.body.contains("# HELP oj_jobs_submitted_total "),
        "counters are typed and explained in the text format:\n{}",
        text.body
    );
    // Every family has HELP and TYPE.
    for family in text.families() {
        assert!(
            text.body.contains(&format!("# HELP {family} ")),
            "{family} has no HELP:\n{}",
            text.body
        );
    }

    // What Prometheus itself sends prefers OpenMetrics.
    let om = scrape(
        admin,
        Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        ),
    );
    assert!(
        om.content_type.starts_with("application/openmetrics-text"),
        "{}",
        om.content_type
    );
    assert!(om.body.trim_end().ends_with("# EOF"), "{}", om.body);
    assert!(om.body.contains("# TYPE oj_jobs_submitted counter"));
    assert!(om.body.contains("# UNIT oj_job_duration_seconds seconds"));

    if !have("promtool") {
        eprintln!(
            "SKIP promtool check metrics: promtool is not installed (apt-get install prometheus)"
        );
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.body.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics found problems (exit {:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_tls_daemon_reports_when_its_certificate_expires() {
    let env = TestEnv::new();
    let leaf = Ca::new("oj e2e CA")
        .server()
        .valid((2025, 1, 1), (2031, 1, 1))
        .issue();
    let cert_path = env.write("tls/tls.crt", &leaf.cert);
    let key_path = env.write("tls/tls.key", &leaf.key);
    let tcp = free_port();
    let admin = free_port();
    let sets = [
        format!("listen.tcp=127.0.0.1:{tcp}"),
        "listen.auth_token=e2e-monitoring-token-5b1c".to_string(),
        "tls.enabled=true".to_string(),
        format!("tls.cert={}", cert_path.display()),
        format!("tls.key={}", key_path.display()),
        "notify.backend=none".to_string(),
    ];
    let mut args = Vec::new();
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let _d = start_with_admin(&env, admin, &args);
    // Without a notifier the notification series still exist, at 0.
    assert_eq!(
        scrape(admin, None).must(r#"oj_notifications_total{backend="none",result="failed"}"#),
        0.0
    );
    // A client without the token is refused, and the refusal is counted.
    let refused = Command::new("curl")
        .args(["-sk", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://127.0.0.1:{tcp}/v1/status"))
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "401");
    let m = scrape(admin, None);
    assert_eq!(
        m.must(r#"oj_http_requests_total{listener="tcp",code="401"}"#),
        1.0
    );
    // 2031-01-01T00:00:00Z
    assert_eq!(
        m.must("oj_tls_cert_expiry_timestamp_seconds"),
        1_924_992_000.0
    );
    assert!(
        m.body
            .contains("# TYPE oj_tls_cert_expiry_timestamp_seconds gauge")
    );
}

// ---------------------------------------------------------------------------
// deploy/monitoring

/// `kubectl kustomize <dir>` as JSON values, or `None` (printed) without kubectl.
fn render(dir: &str) -> Option<Vec<Value>> {
    if !have("kubectl") {
        eprintln!("SKIP rendering {dir}: kubectl is not installed");
        return None;
    }
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join(dir))
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "`kubectl kustomize {dir}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        serde_norway::Deserializer::from_str(&String::from_utf8_lossy(&out.stdout))
            .map(|doc| Value::deserialize(doc).expect("YAML"))
            .filter(|v| !v.is_null())
            .collect(),
    )
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

fn named<'a>(objects: &'a [Value], k: &str, n: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| kind(o) == k && o["metadata"]["name"] == n)
        .unwrap_or_else(|| panic!("no {k} {n} in the rendered manifests"))
}

fn prometheus_rule_groups() -> Value {
    let text = std::fs::read_to_string(repo().join("deploy/monitoring/prometheusrule.yaml"))
        .expect("read prometheusrule.yaml");
    let rule: Value = serde_norway::from_str(&text).expect("prometheusrule.yaml is YAML");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    rule["spec"].clone()
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let groups = prometheus_rule_groups();
    let alerts: BTreeSet<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for wanted in [
        "OjDaemonDown",
        "OjNotReady",
        "OjNoLeader",
        "OjNotificationsFailing",
        "OjJobQueueGrowing",
        "OjCertificateExpiring",
        "OjStorageErrors",
        "OjConfigReloadRejected",
    ] {
        assert!(alerts.contains(wanted), "no alert {wanted} in {alerts:?}");
    }
    if !have("promtool") {
        eprintln!(
            "SKIP promtool check rules: promtool is not installed (apt-get install prometheus)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("oj-rules.yaml");
    std::fs::write(&rules, serde_json::to_string_pretty(&groups).expect("JSON")).expect("write");
    let check = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("run promtool check rules");
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let tests = dir.path().join("alerts-test.yaml");
    std::fs::copy(repo().join("deploy/monitoring/alerts-test.yaml"), &tests).expect("copy tests");
    let test = Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(&tests)
        .output()
        .expect("run promtool test rules");
    assert!(
        test.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

/// Metric names in a PromQL expression (`oj_…`, `process_…`, `up`), with
/// the histogram sample suffixes mapped to their family.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if word.starts_with("oj_") || word.starts_with("process_") {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(&word)
                .to_string();
            names.insert(family);
        }
        word.clear();
    }
    names
}

#[test]
fn the_dashboard_and_the_alerts_use_only_metrics_the_daemon_exports() {
    let env = TestEnv::new();
    let admin = free_port();
    let _d = start_with_admin(&env, admin, &["--set", "notify.backend=log"]);
    let m = scrape(admin, None);
    assert_eq!(
        m.must(r#"oj_notifications_total{backend="log",result="delivered"}"#),
        0.0
    );
    let mut exported = m.families();
    exported.insert("oj_tls_cert_expiry_timestamp_seconds".into());
    exported.insert("oj_lease_renewals_total".into());
    // Per-schedule series exist once a schedule is configured (and has
    // succeeded); tests/e2e_schedules.rs scrapes them.
    exported.insert("oj_schedule_last_success_timestamp_seconds".into());
    exported.insert("oj_schedule_period_seconds".into());
    exported.extend(SPEC_METRICS_ELSEWHERE.iter().map(|s| s.to_string()));

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/monitoring/oj-dashboard.json"))
            .expect("read the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            used.extend(metric_names(t["expr"].as_str().unwrap_or_default()));
        }
    }
    for g in prometheus_rule_groups()["groups"]
        .as_array()
        .expect("groups")
    {
        for r in g["rules"].as_array().expect("rules") {
            used.extend(metric_names(r["expr"].as_str().unwrap_or_default()));
        }
    }
    assert!(used.len() > 15, "{used:?}");
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard or alerts use metrics the daemon does not export: {unknown:?}"
    );
}

#[test]
fn the_monitoring_overlay_validates_and_targets_the_admin_port() {
    let Some(objects) = render("deploy/monitoring") else {
        return;
    };
    // The ServiceMonitor selects the Service and scrapes its admin port.
    let service = named(&objects, "Service", "oj");
    let monitor = named(&objects, "ServiceMonitor", "oj");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(&service["metadata"]["labels"][k], v, "label {k}");
    }
    let port = monitor["spec"]["endpoints"][0]["port"]
        .as_str()
        .expect("port");
    assert!(
        service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["name"] == port && p["port"] == 9090),
        "the ServiceMonitor scrapes port {port}, which the Service does not have"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    // The dashboard ConfigMap for Grafana's sidecar carries the JSON as it is.
    let cm = named(&objects, "ConfigMap", "oj-grafana-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(cm["data"]["oj-dashboard.json"].as_str().expect("data"))
        .expect("dashboard JSON");
    assert_eq!(json["uid"], "oj-daemon");
    // The NetworkPolicy lets the monitoring namespace reach the admin port.
    let np = named(&objects, "NetworkPolicy", "oj");
    let admin_rule = np["spec"]["ingress"]
        .as_array()
        .expect("ingress")
        .iter()
        .find(|r| r["ports"][0]["port"] == "admin")
        .expect("an ingress rule for the admin port");
    assert_eq!(
        admin_rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );

    // Every built-in object against the Kubernetes schemas.
    if !have("kubernetes-validate") {
        eprintln!(
            "SKIP kubernetes-validate: not installed (python3 -m pip install kubernetes-validate)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (i, o) in objects
        .iter()
        .filter(|o| {
            !o["apiVersion"]
                .as_str()
                .unwrap_or("")
                .starts_with("monitoring.coreos.com/")
        })
        .enumerate()
    {
        let f = dir
            .path()
            .join(format!("{i:02}-{}.yaml", kind(o).to_lowercase()));
        std::fs::write(&f, serde_norway::to_string(o).expect("YAML")).expect("write");
        files.push(f);
    }
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", K8S_VERSION])
        .args(&files)
        .output()
        .expect("run kubernetes-validate");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate --strict:\n{report}"
    );
    for f in &files {
        let f = f.display().to_string();
        assert!(
            report
                .lines()
                .any(|l| l.contains(&f) && l.contains("passed")),
            "{f} not reported as passed:\n{report}"
        );
    }
}

#[test]
fn a_lease_leader_counts_its_renewals_and_a_standby_is_not_leader() {
    let fake = oj_k8s_fake::FakeKube::start();
    let mut envs = Vec::new();
    for _ in 0..2 {
        let mut env = TestEnv::new();
        let kubeconfig = env.path().join("kubeconfig");
        fake.write_kubeconfig(&kubeconfig)
            .expect("write kubeconfig");
        env.set_var("KUBECONFIG", &kubeconfig.display().to_string());
        envs.push(env);
    }
    let lease = [
        "--set",
        "lock.strategy=lease",
        "--set",
        "lock.lease.duration=3s",
        "--set",
        "lock.lease.renew_deadline=2s",
        "--set",
        "lock.lease.retry_period=300ms",
        "--set",
        "notify.backend=none",
    ];
    let (a_port, b_port) = (free_port(), free_port());
    let mut a_args = lease.to_vec();
    a_args.extend(["--set", "daemon.instance=pod-a"]);
    let _a = start_with_admin(&envs[0], a_port, &a_args);
    let ok = r#"oj_lease_renewals_total{result="ok"}"#;
    assert!(
        wait_until(Duration::from_secs(20), || scrape(a_port, None)
            .value(ok)
            .is_some_and(|v| v >= 2.0)),
        "the leader's renewals are not counted:\n{}",
        scrape(a_port, None).body
    );
    let mut b_args = lease.to_vec();
    b_args.extend(["--set", "daemon.instance=pod-b"]);
    let _b = start_with_admin(&envs[1], b_port, &b_args);
    let b = scrape(b_port, None);
    assert_eq!(b.must("oj_leader"), 0.0, "the standby");
    assert_eq!(b.must(ok), 0.0, "a standby renews nothing");
    let a = scrape(a_port, None);
    assert_eq!(a.must("oj_leader"), 1.0);
    assert_eq!(a.must(r#"oj_lease_renewals_total{result="error"}"#), 0.0);
}
