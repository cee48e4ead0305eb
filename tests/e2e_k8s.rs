//! End-to-end: real `oj daemon` processes against the in-process fake
//! Kubernetes API (`oj_k8s_fake`), reached through `KUBECONFIG` like a
//! cluster would be. The test plays the kubelet for container-step pods.
//!
//! - `lock.strategy = "lease"`: one daemon leads, the other is standby
//!   (`/v1/status` says `"leader": false`, other routes 503); `kill -9` of the
//!   leader hands the lease to the standby after expiry; a leader whose
//!   renewals fail exits non-zero; a clean exit empties the holder.
//! - container steps run as pods with the merged resources; their log and
//!   exit code become the step's; a restarted daemon follows its pod again
//!   instead of creating a second one.

mod common;

use std::time::Duration;

use common::{Daemon, TestEnv, wait_until};
use oj_k8s_fake::FakeKube;
use serde_json::json;

const NS: &str = "default";
const LEASE: &str = "oj-daemon";
const WAIT: Duration = Duration::from_secs(30);

/// A test environment whose `KUBECONFIG` points at `fake`.
fn env_for(fake: &FakeKube) -> TestEnv {
    let mut env = TestEnv::new();
    let kubeconfig = env.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig)
        .expect("write kubeconfig");
    env.set_var("KUBECONFIG", &kubeconfig.display().to_string());
    env
}

fn lease_config(instance: &str) -> String {
    format!(
        r#"
[daemon]
instance = "{instance}"

[notify]
backend = "none"

[lock]
strategy = "lease"

[lock.lease]
duration = "3s"
renew_deadline = "2s"
retry_period = "500ms"
"#
    )
}

const NO_LOCK_CONFIG: &str = r#"
[notify]
backend = "none"

[lock]
strategy = "none"
"#;

fn holder(fake: &FakeKube) -> Option<String> {
    fake.lease(NS, LEASE)
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

fn is_leader(d: &Daemon) -> bool {
    let (status, body) = d.get("/v1/status");
    status == 200 && body["leader"] == true
}

fn shell_job() -> serde_json::Value {
    json!({"name": "hello", "steps": [{"name": "say", "run": "echo hello"}]})
}

fn container_job() -> serde_json::Value {
    json!({
        "name": "build",
        "env": {"MODE": "release"},
        "container": {"image": "rust:1.95", "resources": {"limits": {"memory": "4Gi"}}},
        "steps": [
            {"name": "compile", "run": "cargo build", "container": {"image": "rust:1.95", "resources": {"requests": {"cpu": "1"}}}}
        ]
    })
}

#[test]
fn one_daemon_leads_the_other_stands_by_and_takes_over_after_kill_9() {
    let fake = FakeKube::start();
    let a_env = env_for(&fake);
    a_env.write_config(&lease_config("oj-a"));
    let mut a = a_env.start_daemon(&[]);
    assert!(
        wait_until(WAIT, || is_leader(&a)),
        "a never led\n{}",
        a.stderr()
    );
    assert_eq!(holder(&fake).as_deref(), Some("oj-a"));

    let b_env = env_for(&fake);
    b_env.write_config(&lease_config("oj-b"));
    let b = b_env.start_daemon(&[]);
    // b has looked at the lease a few times and stays standby.
    let gets = fake.count("GET", &FakeKube::lease_path(NS, LEASE));
    assert!(
        fake.wait_for_blocking(WAIT, |f| f.count("GET", &FakeKube::lease_path(NS, LEASE))
            >= gets + 4)
    );
    let (status, body) = b.get("/v1/status");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["leader"], false, "{body}");
    assert_eq!(b.get("/v1/jobs").0, 503, "a standby refuses the API");
    assert_eq!(
        b.post("/v1/jobs", &shell_job()).0,
        503,
        "a standby takes no jobs"
    );
    assert!(is_leader(&a));
    let id = a.submit(&shell_job());
    a.wait_job(&id, &["done"], WAIT);

    a.kill9();
    assert!(
        wait_until(WAIT, || is_leader(&b)),
        "the standby never took over\n{}",
        b.stderr()
    );
    assert_eq!(holder(&fake).as_deref(), Some("oj-b"));
    let id = b.submit(&shell_job());
    let job = b.wait_job(&id, &["done", "failed"], WAIT);
    assert_eq!(job["state"], "done", "{job}");
}

#[test]
fn a_leader_whose_renewals_fail_stops_and_exits_non_zero() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    env.write_config(&lease_config("oj-a"));
    let mut a = env.start_daemon(&[]);
    assert!(wait_until(WAIT, || is_leader(&a)), "{}", a.stderr());
    fake.fail_lease_updates(NS, LEASE, 500);
    let status = a
        .wait_exit(WAIT)
        .expect("the daemon exits once it cannot renew");
    assert!(!status.success(), "exit status {status:?}");
    assert_eq!(status.code(), Some(1));
    let stderr = a.stderr();
    assert!(stderr.contains("lost"), "{stderr}");
}

#[test]
fn a_clean_exit_releases_the_lease() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    env.write_config(&lease_config("oj-a"));
    let mut a = env.start_daemon(&[]);
    assert!(wait_until(WAIT, || is_leader(&a)), "{}", a.stderr());
    a.sigterm();
    let status = a.wait_exit(WAIT).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", a.stderr());
    assert_eq!(holder(&fake).as_deref(), Some(""), "the holder is emptied");
}

#[test]
fn a_container_step_runs_as_a_pod_with_merged_resources() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    env.write_config(NO_LOCK_CONFIG);
    let d = env.start_daemon(&[]);
    let id = d.submit(&container_job());
    let name = format!("oj-{id}-0");
    assert!(
        fake.wait_for_blocking(WAIT, |f| f.pod(NS, &name).is_some()),
        "no pod {name}\n{}",
        d.stderr()
    );
    let pod = fake.pod(NS, &name).unwrap();
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "oj");
    assert_eq!(labels["oj.dev/job-id"], id);
    assert_eq!(labels["oj.dev/step"], "compile");
    let spec = pod.spec.clone().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        spec.active_deadline_seconds,
        Some(3600),
        "jobs.step_timeout = 1h"
    );
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some("rust:1.95"));
    assert_eq!(c.command.clone().unwrap(), ["/bin/sh", "-c", "cargo build"]);
    assert!(
        c.env
            .clone()
            .unwrap()
            .iter()
            .any(|e| e.name == "MODE" && e.value.as_deref() == Some("release"))
    );
    let r = c.resources.clone().unwrap();
    let (requests, limits) = (r.requests.unwrap(), r.limits.unwrap());
    assert_eq!(requests["cpu"].0, "1", "step-level request");
    assert_eq!(requests["memory"].0, "256Mi", "default request");
    assert_eq!(limits["cpu"].0, "2", "default limit");
    assert_eq!(limits["memory"].0, "4Gi", "job-level limit");

    fake.set_pod_phase(NS, &name, "Running");
    fake.append_pod_log(NS, &name, "Compiling oj\n");
    fake.append_pod_log(NS, &name, "Finished\n");
    fake.finish_pod(NS, &name, 0);
    let job = d.wait_job(&id, &["done", "failed"], WAIT);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["steps"][0]["exit_code"], 0, "{job}");
    assert_eq!(job["steps"][0]["pod"], name.as_str(), "{job}");
    let (_, logs) = d.get(&format!("/v1/jobs/{id}/logs"));
    let text = logs["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Compiling oj") && text.contains("Finished"),
        "{logs}"
    );
    assert!(
        fake.wait_for_blocking(WAIT, |f| f.pod(NS, &name).is_none()),
        "the finished pod is deleted"
    );
}

#[test]
fn a_failing_pod_fails_the_job_with_its_exit_code() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    env.write_config(NO_LOCK_CONFIG);
    let d = env.start_daemon(&[]);
    let id = d.submit(&container_job());
    let name = format!("oj-{id}-0");
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &name).is_some()));
    fake.set_pod_phase(NS, &name, "Running");
    fake.finish_pod(NS, &name, 2);
    let job = d.wait_job(&id, &["done", "failed"], WAIT);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["steps"][0]["exit_code"], 2, "{job}");
}

#[test]
fn cancel_deletes_the_pod() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    env.write_config(NO_LOCK_CONFIG);
    let d = env.start_daemon(&[]);
    let id = d.submit(&container_job());
    let name = format!("oj-{id}-0");
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &name).is_some()));
    fake.set_pod_phase(NS, &name, "Running");
    let (status, _) = d.post(&format!("/v1/jobs/{id}/cancel"), &json!({}));
    assert_eq!(status, 202);
    let job = d.wait_job(&id, &["cancelled", "failed", "done"], WAIT);
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &name).is_none()));
}

#[test]
fn a_restarted_daemon_follows_its_pod_instead_of_creating_another() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    env.write_config(NO_LOCK_CONFIG);
    let mut d = env.start_daemon(&[]);
    let id = d.submit(&container_job());
    let name = format!("oj-{id}-0");
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &name).is_some()));
    fake.set_pod_phase(NS, &name, "Running");
    fake.append_pod_log(NS, &name, "before the crash\n");
    d.kill9();
    let log_gets =
        |f: &FakeKube| f.count("GET", &format!("{}/{name}/log", FakeKube::pods_path(NS)));
    let before = log_gets(&fake);

    let d = env.start_daemon(&[]);
    fake.append_pod_log(NS, &name, "after the restart\n");
    // The new daemon is following the pod's log before the pod ends.
    assert!(
        fake.wait_for_blocking(WAIT, |f| log_gets(f) > before),
        "the restarted daemon never followed the pod: {}",
        d.get(&format!("/v1/jobs/{id}")).1
    );
    fake.finish_pod(NS, &name, 0);
    let job = d.wait_job(&id, &["done", "failed", "interrupted"], WAIT);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(fake.pod_creates(NS), 1, "the step's pod was created once");
    let (_, logs) = d.get(&format!("/v1/jobs/{id}/logs"));
    let text = logs["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("before the crash") && text.contains("after the restart"),
        "{logs}"
    );
}

#[test]
fn without_a_cluster_a_container_step_fails_naming_what_was_tried() {
    let env = TestEnv::new();
    env.write_config(NO_LOCK_CONFIG);
    let d = env.start_daemon(&[]);
    let id = d.submit(&container_job());
    let job = d.wait_job(&id, &["failed", "done"], WAIT);
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Kubernetes") && error.contains("KUBECONFIG"),
        "{job}"
    );
}

#[test]
fn lease_without_a_cluster_fails_at_start() {
    let env = TestEnv::new();
    env.write_config(&lease_config("oj-a"));
    let mut cmd = env.oj();
    cmd.arg("daemon");
    let mut d = Daemon::spawn_raw(cmd, env.path(), env.socket());
    let status = d.wait_exit(WAIT).expect("the daemon refuses to start");
    assert_eq!(status.code(), Some(78), "{}", d.stderr());
    assert!(d.stderr().contains("lease"), "{}", d.stderr());
}

#[test]
fn requests_above_limits_after_the_merge_are_refused_naming_the_step() {
    let env = TestEnv::new();
    env.write_config(NO_LOCK_CONFIG);
    let d = env.start_daemon(&["--set", "pods.resources.limits.memory=1Gi"]);
    let spec = json!({
        "name": "big",
        "steps": [{"name": "link", "run": "ld", "container": {"image": "gcc", "resources": {"requests": {"memory": "3Gi"}}}}]
    });
    let (status, body) = d.post("/v1/jobs", &spec);
    assert_eq!(status, 400, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("link") && text.contains("3Gi") && text.contains("1Gi"),
        "{text}"
    );
}

// ----- `oj config check` in a cluster --------------------------------------

/// What oj needs in namespace `default`, minus `drop` (`(resource, verb)`).
fn rbac_without(drop: &[(&str, &str)]) -> Vec<oj_k8s_fake::RbacRule> {
    let all: &[(&str, &str, &[&str])] = &[
        (
            "",
            "pods",
            &["create", "get", "list", "watch", "patch", "delete"],
        ),
        ("", "pods/log", &["get"]),
        (
            "",
            "persistentvolumeclaims",
            &["create", "get", "list", "delete"],
        ),
        (
            "coordination.k8s.io",
            "leases",
            &["get", "create", "update"],
        ),
        ("", "limitranges", &["list"]),
        ("", "resourcequotas", &["list"]),
    ];
    all.iter()
        .map(|(group, resource, verbs)| {
            let verbs: Vec<&str> = verbs
                .iter()
                .copied()
                .filter(|v| !drop.contains(&(resource, v)))
                .collect();
            oj_k8s_fake::RbacRule::new(NS, group, resource, &verbs)
        })
        .collect()
}

/// The daemon's own pod as the Deployment makes it.
fn own_pod(fake: &FakeKube, grace: i64) {
    fake.put_json(
        NS,
        json!({
            "kind": "Pod",
            "metadata": {"name": "oj-7d9f-abcde", "labels": {"app.kubernetes.io/name": "oj"}},
            "spec": {"terminationGracePeriodSeconds": grace,
                     "containers": [{"name": "oj", "image": "oj:latest"}]}
        }),
    )
    .unwrap();
}

fn cluster_env(fake: &FakeKube) -> TestEnv {
    let mut env = env_for(fake);
    env.set_var("POD_NAME", "oj-7d9f-abcde");
    env.set_var("POD_NAMESPACE", NS);
    env
}

const CLUSTER_CONFIG: &str = r#"
[notify]
backend = "log"

[lock]
strategy = "lease"

[shutdown]
drain_timeout = "25s"
"#;

#[test]
fn config_check_in_a_cluster_names_missing_permissions_the_grace_period_and_the_namespace_limits() {
    let fake = FakeKube::start();
    fake.set_rbac(Some(rbac_without(&[
        ("pods", "watch"),
        ("pods/log", "get"),
        ("leases", "update"),
    ])));
    own_pod(&fake, 20);
    fake.put_json(
        NS,
        json!({"kind": "LimitRange", "metadata": {"name": "small"},
               "spec": {"limits": [{"type": "Container", "max": {"memory": "1Gi"}}]}}),
    )
    .unwrap();
    fake.put_json(
        NS,
        json!({"kind": "ResourceQuota", "metadata": {"name": "storage"},
               "spec": {"hard": {"limits.ephemeral-storage": "10Gi", "requests.cpu": "100m"}}}),
    )
    .unwrap();
    let env = cluster_env(&fake);
    env.write_config(CLUSTER_CONFIG);
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(78), "{}\n{}", out.stdout, out.stderr);
    // Diagnostics (errors, warnings, notes) are on stderr.
    let text = &out.stderr;
    for expected in [
        // RBAC: what is missing and the rule to add.
        "may not watch pods in namespace default",
        r#"{apiGroups: [""], resources: ["pods"], verbs: ["watch"]}"#,
        "may not get pods/log",
        r#"{apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["update"]}"#,
        // The drain does not fit the pod.
        "terminationGracePeriodSeconds = 20",
        "shutdown.drain_timeout (from file",
        "at least 28",
        // The namespace refuses the default resources.
        "pods.resources.limits.memory (from default) = 2Gi is above the maximum memory per Container of LimitRange default/small (1Gi)",
        "requires limits.ephemeral-storage",
        "pods.resources.requests.cpu (from default) = 250m is above the hard requests.cpu of ResourceQuota default/storage (100m)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains("may not create pods"),
        "only what is missing is named:\n{text}"
    );
}

#[test]
fn config_check_in_a_healthy_cluster_passes_and_says_what_it_checked() {
    let fake = FakeKube::start();
    fake.set_rbac(Some(rbac_without(&[])));
    own_pod(&fake, 30);
    let env = cluster_env(&fake);
    env.write_config(CLUSTER_CONFIG);
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("permissions checked with SelfSubjectAccessReview")
            && out
                .stderr
                .contains("terminationGracePeriodSeconds = 30 leaves room"),
        "{}",
        out.stderr
    );
    let reviews = fake.count(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
    );
    assert_eq!(reviews, 16, "one review per verb and resource");
}

#[test]
fn config_check_without_a_cluster_says_the_cluster_checks_were_skipped() {
    // A config that uses the cluster (a Lease), on a machine without one.
    let env = TestEnv::new();
    env.write_config("[notify]\nbackend = \"log\"\n[lock]\nstrategy = \"lease\"\n");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("in-cluster checks skipped: no Kubernetes API configured"),
        "{}",
        out.stderr
    );
    // A laptop config with no cluster in sight hears nothing about one.
    env.write_config("[notify]\nbackend = \"log\"\n");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("in-cluster"), "{}", out.stderr);
}

// ----- pods that cannot run, and the drain ----------------------------------

#[test]
fn an_oom_killed_pod_fails_the_job_with_the_reason_and_exit_code() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    env.write_config(NO_LOCK_CONFIG);
    let d = env.start_daemon(&[]);
    let id = d.submit(&container_job());
    let name = format!("oj-{id}-0");
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &name).is_some()));
    fake.set_pod_phase(NS, &name, "Running");
    fake.finish_pod_with(NS, &name, 137, "OOMKilled");
    let job = d.wait_job(&id, &["done", "failed"], WAIT);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["steps"][0]["exit_code"], 137, "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("OOMKilled") && error.contains("137") && error.contains("4Gi"),
        "{job}"
    );
}

#[test]
fn an_image_that_cannot_be_pulled_fails_the_job_after_the_grace() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    env.write_config(NO_LOCK_CONFIG);
    let d = env.start_daemon(&["--set", "pods.image_pull_grace=1s"]);
    let id = d.submit(&container_job());
    let name = format!("oj-{id}-0");
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &name).is_some()));
    fake.set_pod_waiting(
        NS,
        &name,
        "ImagePullBackOff",
        "Back-off pulling image \"rust:1.95\"",
    );
    let job = d.wait_job(&id, &["done", "failed"], WAIT);
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("ImagePullBackOff") && error.contains("pods.image_pull_grace"),
        "{job}"
    );
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &name).is_none()));
}

#[test]
fn drain_with_container_steps_cancel_deletes_the_pods_and_interrupts_the_steps() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    env.write_config(NO_LOCK_CONFIG);
    let mut d = env.start_daemon(&[
        "--set",
        "shutdown.container_steps=cancel",
        "--set",
        "shutdown.drain_timeout=200ms",
    ]);
    let id = d.submit(&container_job());
    let name = format!("oj-{id}-0");
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &name).is_some()));
    fake.set_pod_phase(NS, &name, "Running");
    d.sigterm();
    let status = d.wait_exit(WAIT).expect("the daemon exits after the drain");
    assert_eq!(status.code(), Some(0), "{}", d.stderr());
    assert!(
        fake.pod(NS, &name).is_none(),
        "the step pod is deleted at drain"
    );

    // The next daemon shows the step interrupted and does not follow a pod.
    let d = env.start_daemon(&[]);
    let (_, job) = d.get(&format!("/v1/jobs/{id}"));
    assert_eq!(job["state"], "interrupted", "{job}");
    assert_eq!(job["steps"][0]["state"], "interrupted", "{job}");
}

#[test]
fn drain_by_default_leaves_container_steps_running() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    env.write_config(NO_LOCK_CONFIG);
    let mut d = env.start_daemon(&["--set", "shutdown.drain_timeout=200ms"]);
    let id = d.submit(&container_job());
    let name = format!("oj-{id}-0");
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &name).is_some()));
    fake.set_pod_phase(NS, &name, "Running");
    d.sigterm();
    let status = d.wait_exit(WAIT).expect("the daemon exits after the drain");
    assert_eq!(status.code(), Some(0), "{}", d.stderr());
    assert!(
        fake.pod(NS, &name).is_some(),
        "detach leaves the pod running"
    );
}

// ----- scale ------------------------------------------------------------------

#[test]
fn two_hundred_running_container_steps_share_one_pod_watch() {
    const STEPS: usize = 200;
    let fake = FakeKube::start();
    let env = env_for(&fake);
    env.write_config(NO_LOCK_CONFIG);
    let d = env.start_daemon(&["--set", &format!("jobs.max_concurrent={STEPS}")]);
    let ids: Vec<String> = (0..STEPS).map(|_| d.submit(&container_job())).collect();
    assert!(
        fake.wait_for_blocking(Duration::from_secs(120), |f| f.pods(NS).len() == STEPS),
        "only {} of {STEPS} step pods were created",
        fake.pods(NS).len()
    );
    for id in &ids {
        let name = format!("oj-{id}-0");
        fake.set_pod_phase(NS, &name, "Running");
        fake.append_pod_log(NS, &name, &format!("{id}\n"));
        fake.finish_pod(NS, &name, 0);
    }
    for id in &ids {
        let job = d.wait_job(id, &["done", "failed"], Duration::from_secs(120));
        assert_eq!(job["state"], "done", "{job}");
    }
    let peak = fake.peak_pod_watches();
    assert!(
        peak <= 2,
        "{STEPS} running container steps held {peak} pod watches at once"
    );
    let pod_requests = fake.count_requests(|r| {
        r.path.starts_with(&FakeKube::pods_path(NS)) && !r.has_query("watch=true")
    });
    let per_step = pod_requests as f64 / STEPS as f64;
    assert!(
        per_step <= 6.0,
        "{per_step:.1} API requests per container step"
    );
}

#[test]
fn a_reloaded_pods_section_shapes_the_next_pod() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    let file = env.write_config(NO_LOCK_CONFIG);
    let d = env.start_daemon(&[]);
    let simple =
        json!({"name": "p", "steps": [{"name": "s", "run": "true", "container": "alpine"}]});
    let first = d.submit(&simple);
    let first_pod = format!("oj-{first}-0");
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &first_pod).is_some()));
    let limits = |pod: &str| {
        fake.pod(NS, pod).unwrap().spec.unwrap().containers[0]
            .resources
            .clone()
            .unwrap()
            .limits
            .unwrap()["memory"]
            .0
            .clone()
    };
    assert_eq!(limits(&first_pod), "2Gi");

    std::fs::write(
        &file,
        format!("{NO_LOCK_CONFIG}\n[pods]\nservice_account = \"builder\"\n[pods.resources.limits]\nmemory = \"3Gi\"\n"),
    )
    .unwrap();
    d.signal("HUP");
    assert!(
        wait_until(WAIT, || {
            let (_, v) = d.get("/v1/config");
            v["config"]["pods"]["service_account"] == "builder"
        }),
        "reload not applied\n{}",
        d.stderr()
    );
    let second = d.submit(&simple);
    let second_pod = format!("oj-{second}-0");
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &second_pod).is_some()));
    assert_eq!(
        limits(&second_pod),
        "3Gi",
        "new pods use the reloaded limits"
    );
    let spec = fake.pod(NS, &second_pod).unwrap().spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("builder"));
    assert_eq!(
        limits(&first_pod),
        "2Gi",
        "the running pod is left as it was"
    );
    let (_, v) = d.get("/v1/config");
    assert!(!v["pending_restart"].to_string().contains("pods."), "{v}");
    // The API checks new specs against the reloaded pods.* too.
    let (code, body) = d.post(
        "/v1/jobs",
        &json!({"name": "big", "steps": [{"name": "s", "run": "true",
            "container": {"image": "alpine", "resources": {"requests": {"memory": "4Gi"}}}}]}),
    );
    assert_eq!(code, 400, "a request above the reloaded 3Gi limit: {body}");
    for id in [&first, &second] {
        d.post(&format!("/v1/jobs/{id}/cancel"), &json!({}));
    }
}

#[test]
fn an_unschedulable_pod_fails_the_job_after_the_pending_timeout() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    env.write_config(NO_LOCK_CONFIG);
    // creationTimestamp has whole seconds: keep the timeout above 1 s.
    let d = env.start_daemon(&["--set", "pods.pending_timeout=3s"]);
    let id = d.submit(&container_job());
    let name = format!("oj-{id}-0");
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &name).is_some()));
    fake.set_pod_unschedulable(NS, &name, "0/3 nodes are available: 3 Insufficient memory.");
    let job = d.wait_job(&id, &["done", "failed"], WAIT);
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("pods.pending_timeout")
            && error.contains("Unschedulable: 0/3 nodes are available: 3 Insufficient memory."),
        "{job}"
    );
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &name).is_none()));
}

#[test]
fn config_check_on_a_laptop_with_a_kubeconfig_only_warns_about_the_cluster() {
    let fake = FakeKube::start();
    fake.put_json(
        NS,
        json!({"kind": "LimitRange", "metadata": {"name": "small"},
               "spec": {"limits": [{"type": "Container", "max": {"memory": "1Gi"}}]}}),
    )
    .unwrap();
    let env = env_for(&fake);
    env.write_config("[notify]\nbackend = \"log\"\n");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stderr, out.stderr);
    assert!(
        out.stderr
            .contains("warning: pods.resources.limits.memory (from default) = 2Gi is above the maximum memory per Container of LimitRange default/small"),
        "{}",
        out.stderr
    );
}

/// A step the cluster could not run (never scheduled) is retried when its
/// `retry.on` has `infra`, in a pod of its own (`oj-<id>-<step>-2`), and
/// both runs are in the job's attempts.
#[test]
fn an_unschedulable_pod_is_retried_in_a_new_pod_when_retry_on_has_infra() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    env.write_config(NO_LOCK_CONFIG);
    let d = env.start_daemon(&["--set", "pods.pending_timeout=2s"]);
    let mut job = container_job();
    job["retry"] = json!({"attempts": 2, "backoff": "1s", "on": ["infra"]});
    let id = d.submit(&job);
    let first = format!("oj-{id}-0");
    assert!(fake.wait_for_blocking(WAIT, |f| f.pod(NS, &first).is_some()));
    fake.set_pod_unschedulable(NS, &first, "0/1 nodes are available: 1 Insufficient cpu.");
    let second = format!("oj-{id}-0-2");
    assert!(
        fake.wait_for_blocking(WAIT, |f| f.pod(NS, &second).is_some()),
        "the retry runs in a pod of its own\n{}",
        d.stderr()
    );
    assert!(fake.finish_pod(NS, &second, 0));
    let job = d.wait_job(&id, &["done", "failed"], WAIT);
    assert_eq!(job["state"], "done", "{job}");
    let attempts = job["steps"][0]["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(attempts.len(), 2, "{job}");
    assert_eq!(job["steps"][0]["pod"], second, "{job}");
}
