//! `RBAC_RULES` (and so the Role in deploy/) is exactly what oj's
//! Kubernetes code calls: every code path that talks to the API — a step
//! pod from create to delete, adoption after a restart, the orphan
//! clean-up, the Lease from acquire to release, the in-cluster checks — runs
//! against the fake, and each request it recorded is turned back into the
//! RBAC verb an API server would authorize it as.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::Api;
use oj_adapters::k8s::lease::{LeaseLock, LeaseTimings};
use oj_adapters::k8s::pods::{PodInput, RBAC_RULES, pod_name};
use oj_adapters::k8s::runner::{PodRunner, RunOptions};
use oj_config::{Environment, LoadOptions, RuntimeConfig};
use oj_k8s_fake::{FakeKube, RecordedRequest};
use tokio_util::sync::CancellationToken;

mod k8s_support;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(20);

fn config() -> RuntimeConfig {
    let home = tempfile::tempdir().unwrap();
    let env = Environment::new([("HOME", home.path().display().to_string())], "testhost");
    let mut cfg = oj_config::load(&LoadOptions::default(), &env)
        .unwrap()
        .config;
    cfg.lock.strategy = oj_config::LockStrategy::Lease;
    cfg
}

fn input(job_id: &str) -> PodInput {
    PodInput {
        command: "true".into(),
        ..k8s_support::input(job_id)
    }
}

/// `(apiGroup, resource, verb)` an API server authorizes `r` as.
fn rbac_of(r: &RecordedRequest) -> Option<(String, String, String)> {
    let seg: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let (group, rest) = match seg.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (resource, named) = match rest {
        ["namespaces", _, resource] => (resource.to_string(), false),
        ["namespaces", _, resource, _name] => (resource.to_string(), true),
        ["namespaces", _, resource, _name, sub] => (format!("{resource}/{sub}"), true),
        [resource] => (resource.to_string(), false),
        _ => return None,
    };
    let verb = match (r.method.as_str(), named) {
        ("GET", false) if r.has_query("watch=true") || r.has_query("watch=1") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    Some((group.to_string(), resource, verb.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rbac_rules_are_exactly_the_calls_oj_makes() {
    let fake = FakeKube::start();
    let cfg = config();
    let dir = tempfile::tempdir().unwrap();

    // A step from create to delete, its log included.
    let runner = PodRunner::new(fake.client(), NS, cfg.pods.clone()).with_instance("oj-a");
    let name = pod_name("rbac", 0);
    let log = dir.path().join("l");
    let step = {
        let runner = runner.clone();
        let log = log.clone();
        tokio::spawn(async move {
            runner
                .run(input("rbac"), &log, CancellationToken::new())
                .await
        })
    };
    assert!(fake.wait_for(WAIT, |f| f.pod(NS, &name).is_some()).await);
    fake.set_pod_phase(NS, &name, "Running");
    fake.append_pod_log(NS, &name, "ok\n");
    fake.finish_pod(NS, &name, 0);
    assert!(
        tokio::time::timeout(WAIT, step)
            .await
            .unwrap()
            .unwrap()
            .succeeded
    );

    // A restarted daemon (another $POD_NAME) adopts a running pod.
    let old = PodRunner::new(fake.client(), NS, cfg.pods.clone()).with_instance("oj-old");
    let adopt = pod_name("adopt", 0);
    let first = {
        let old = old.clone();
        let log = log.clone();
        tokio::spawn(async move {
            old.run(input("adopt"), &log, CancellationToken::new())
                .await
        })
    };
    assert!(fake.wait_for(WAIT, |f| f.pod(NS, &adopt).is_some()).await);
    first.abort();
    let opts = RunOptions {
        attach_only: true,
        ..Default::default()
    };
    let second = {
        let runner = runner.clone();
        let log = log.clone();
        tokio::spawn(async move {
            runner
                .run_with(input("adopt"), &log, CancellationToken::new(), opts)
                .await
        })
    };
    fake.set_pod_phase(NS, &adopt, "Running");
    fake.finish_pod(NS, &adopt, 0);
    assert!(
        tokio::time::timeout(WAIT, second)
            .await
            .unwrap()
            .unwrap()
            .succeeded
    );
    runner.find_running("adopt").await.unwrap();
    runner.cleanup_orphans(&Default::default()).await.unwrap();

    // A job's workspace: created (read first), checked, deleted, swept.
    let ws = oj_core::Workspace {
        size: "1Gi".parse().unwrap(),
        storage_class: None,
    };
    let workspaces = runner.workspaces();
    workspaces.ensure("ws", "build", &ws).await.unwrap();
    assert!(workspaces.exists("ws").await.unwrap());
    assert!(workspaces.delete("ws").await.unwrap());
    workspaces
        .sweep(&Default::default(), &Default::default())
        .await
        .unwrap();

    // The Lease: acquire, renew, release.
    let lock = LeaseLock::new(
        Api::namespaced(fake.client(), NS),
        NS,
        "oj-daemon",
        LeaseTimings {
            duration: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(2),
            retry_period: Duration::from_millis(200),
        },
        "oj-a",
    );
    let (leader_tx, mut leader) = tokio::sync::watch::channel(false);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let election = tokio::spawn(lock.run(leader_tx, async {
        let _ = stopped.await;
    }));
    tokio::time::timeout(WAIT, leader.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(());
    election.await.unwrap().unwrap();

    // The in-cluster checks, with the daemon's own pod.
    fake.put_json(
        NS,
        serde_json::json!({"kind": "Pod", "metadata": {"name": "oj-a"},
            "spec": {"containers": [{"name": "oj", "image": "oj"}]}}),
    )
    .unwrap();
    let env = Environment::new(
        [
            ("POD_NAME", "oj-a".to_string()),
            ("POD_NAMESPACE", NS.to_string()),
        ],
        "testhost",
    );
    let found =
        oj_adapters::k8s::preflight::check_cluster(fake.client(), &cfg, &env, &|_| String::new())
            .await;
    assert!(found.problems.is_empty(), "{found:?}");

    let used: BTreeSet<(String, String, String)> =
        fake.requests().iter().filter_map(rbac_of).collect();
    let declared: BTreeSet<(String, String, String)> = RBAC_RULES
        .iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(|v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect();
    assert_eq!(
        used, declared,
        "RBAC_RULES (and deploy/base/role.yaml) must list exactly the calls oj makes"
    );
}
