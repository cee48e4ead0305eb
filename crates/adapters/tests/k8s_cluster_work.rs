//! SPEC §8.5 against the fake API: what a step pod carries from `pods.*`
//! and the job (pass-through fields, secrets as `secretKeyRef`, the
//! workspace mount), how the end of a pod the cluster disrupted is told
//! from a failing command, and the workspace claim's life.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use oj_adapters::k8s::pods::{self, PodExtras, PodInput};
use oj_adapters::k8s::runner::{PodRunner, StepResult};
use oj_adapters::k8s::workspace::{self, Workspaces};
use oj_config::Toleration;
use oj_core::{ContainerSpec, SecretRef, Workspace};
use oj_k8s_fake::FakeKube;
use tokio_util::sync::CancellationToken;

mod k8s_support;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(20);

fn container(json: serde_json::Value) -> ContainerSpec {
    serde_json::from_value(json).unwrap()
}

#[test]
fn a_pod_carries_the_pass_through_fields_secrets_and_the_workspace() {
    let mut cfg = k8s_support::default_pods_config();
    cfg.labels = BTreeMap::from([
        ("kueue.x-k8s.io/queue-name".into(), "team-a".into()),
        ("tier".into(), "batch".into()),
    ]);
    cfg.annotations = BTreeMap::from([("team".into(), "ci".into())]);
    cfg.node_selector = BTreeMap::from([("pool".into(), "cpu".into())]);
    cfg.tolerations = vec![Toleration {
        key: Some("dedicated".into()),
        operator: Some("Equal".into()),
        value: Some("ci".into()),
        effect: Some("NoSchedule".into()),
        toleration_seconds: None,
    }];
    cfg.priority_class_name = Some("batch-low".into());
    let input = PodInput {
        extras: PodExtras {
            job_container: Some(container(serde_json::json!({
                "image": "rust:1", "labels": {"tier": "gpu"}, "node_selector": {"gpu": "a100"}
            }))),
            step_container: Some(container(serde_json::json!({
                "image": "rust:1",
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "priority_class_name": "batch-high"
            }))),
            secrets: BTreeMap::from([(
                "REGISTRY_TOKEN".to_string(),
                SecretRef {
                    secret: "registry-creds".into(),
                    key: "token".into(),
                },
            )]),
            workspace_claim: Some("oj-job1-ws".into()),
        },
        ..k8s_support::input("job1")
    };
    let pod = pods::build_pod(&input, &cfg, NS).unwrap();
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels["kueue.x-k8s.io/queue-name"], "team-a", "pods.labels");
    assert_eq!(labels["tier"], "gpu", "the job's container wins key by key");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "oj");
    assert_eq!(labels["oj.dev/job-id"], "job1");
    assert_eq!(pod.metadata.annotations.clone().unwrap()["team"], "ci");
    let spec = pod.spec.clone().unwrap();
    assert_eq!(
        spec.node_selector.clone().unwrap(),
        BTreeMap::from([
            ("gpu".to_string(), "a100".to_string()),
            ("pool".to_string(), "cpu".to_string())
        ])
    );
    let tolerations = spec.tolerations.clone().unwrap();
    assert_eq!(
        tolerations.len(),
        1,
        "the step's list replaces pods.tolerations"
    );
    assert_eq!(tolerations[0].key.as_deref(), Some("nvidia.com/gpu"));
    assert_eq!(tolerations[0].operator.as_deref(), Some("Exists"));
    assert_eq!(spec.priority_class_name.as_deref(), Some("batch-high"));
    let volumes = spec.volumes.clone().unwrap();
    assert_eq!(
        volumes[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "oj-job1-ws"
    );
    let c = &spec.containers[0];
    assert_eq!(c.working_dir.as_deref(), Some("/workspace"));
    let mount = &c.volume_mounts.clone().unwrap()[0];
    assert_eq!(
        (mount.name.as_str(), mount.mount_path.as_str()),
        (volumes[0].name.as_str(), "/workspace")
    );
    let env = c.env.clone().unwrap();
    let token = env.iter().find(|e| e.name == "REGISTRY_TOKEN").unwrap();
    assert_eq!(token.value, None, "oj never holds the value");
    let r = token
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (r.name.as_str(), r.key.as_str()),
        ("registry-creds", "token")
    );

    // Without extras a pod has none of it.
    let plain = pods::build_pod(
        &k8s_support::input("job2"),
        &k8s_support::default_pods_config(),
        NS,
    )
    .unwrap();
    let spec = plain.spec.unwrap();
    assert!(spec.volumes.is_none() && spec.tolerations.is_none() && spec.node_selector.is_none());
    assert!(spec.containers[0].working_dir.is_none());
}

/// Runs step `job_id`'s pod until `end` (called once the pod runs) ends it.
async fn run_until(fake: &FakeKube, job_id: &str, end: impl FnOnce(&FakeKube, &str)) -> StepResult {
    let runner = PodRunner::new(fake.client(), NS, k8s_support::default_pods_config())
        .with_instance("oj-test");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("step.log");
    let input = k8s_support::input(job_id);
    let name = pods::pod_name(job_id, 0);
    let step = tokio::spawn(async move { runner.run(input, &log, CancellationToken::new()).await });
    assert!(fake.wait_for(WAIT, |f| f.pod(NS, &name).is_some()).await);
    fake.set_pod_phase(NS, &name, "Running");
    end(fake, &name);
    tokio::time::timeout(WAIT, step).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_ending_a_pod_is_infra_and_says_how() {
    let fake = FakeKube::start();
    let evicted = run_until(&fake, "e1", |f, name| {
        assert!(f.evict_pod(NS, name, "The node was low on resource: memory."));
    })
    .await;
    let preempted = run_until(&fake, "p1", |f, name| {
        assert!(f.preempt_pod(NS, name, "team-b/urgent-0"));
    })
    .await;
    let lost = run_until(&fake, "lost", |f, name| {
        assert!(f.bind_pod(NS, name, "node-7"));
        assert_eq!(f.lose_node("node-7"), 1);
    })
    .await;
    let deleted = run_until(&fake, "d1", |f, name| {
        assert!(f.delete_pod(NS, name));
    })
    .await;
    for (result, words) in [
        (
            &evicted,
            &["evicted by the kubelet", "low on resource: memory"][..],
        ),
        (&preempted, &["preempted", "higher-priority"][..]),
        (&lost, &["node lost", "node-7"][..]),
        (&deleted, &["was deleted", "someone other than oj"][..]),
    ] {
        assert!(!result.succeeded, "{result:?}");
        assert!(result.infra, "the command is not to blame: {result:?}");
        let error = result.error.as_deref().unwrap_or_default();
        for w in words {
            assert!(error.contains(w), "{w:?} not in {error:?}");
        }
    }

    // The command's own failures stay `failed`.
    let oom = run_until(&fake, "oom", |f, name| {
        assert!(f.finish_pod_with(NS, name, 137, "OOMKilled"));
    })
    .await;
    assert!(!oom.infra, "{oom:?}");
    assert_eq!(oom.reason.as_deref(), Some("OOMKilled"));
    assert_eq!(oom.exit_code, Some(137));
    let error = oom.error.unwrap_or_default();
    assert!(
        error.contains("OOMKilled") && error.contains("2Gi"),
        "{error}"
    );
    let failed = run_until(&fake, "failed", |f, name| {
        assert!(f.finish_pod(NS, name, 3));
    })
    .await;
    assert!(!failed.infra && failed.exit_code == Some(3), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_claim_is_created_once_found_again_and_deleted() {
    let fake = FakeKube::start();
    let ws = Workspace {
        size: "2Gi".parse().unwrap(),
        storage_class: Some("fast-ssd".into()),
    };
    let mine = Workspaces::new(fake.client(), NS, "oj-a");
    let name = mine.ensure("job1", "build", &ws).await.unwrap();
    assert_eq!(name, workspace::claim_name("job1"));
    assert_eq!(name, "oj-job1-ws");
    // A second step, or a restarted daemon, finds it again.
    assert_eq!(mine.ensure("job1", "build", &ws).await.unwrap(), name);
    assert_eq!(
        fake.count_requests(|r| r.method == "POST" && r.path.ends_with("/persistentvolumeclaims")),
        1
    );
    let pvc = fake.pvc(NS, &name).unwrap();
    let spec = pvc.spec.unwrap();
    assert_eq!(spec.access_modes.unwrap(), ["ReadWriteOnce"]);
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast-ssd"));
    assert_eq!(
        spec.resources.unwrap().requests.unwrap()["storage"].0,
        "2Gi"
    );
    assert_eq!(
        pvc.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
        "oj"
    );

    // A claim of the same name that is not oj's is refused, not used.
    fake.insert_pvc(
        NS,
        serde_json::from_value(serde_json::json!({"metadata": {"name": "oj-other-ws"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap(),
    );
    let err = mine.ensure("other", "x", &ws).await.unwrap_err();
    assert!(err.contains("not this job's workspace"), "{err}");

    // Deleting waits for the pods that mount it (pvc-protection).
    let mut input = k8s_support::input("job1");
    input.extras.workspace_claim = Some(name.clone());
    let pod = pods::build_pod(&input, &k8s_support::default_pods_config(), NS).unwrap();
    fake.insert_pod(NS, pod);
    assert!(mine.delete("job1").await.unwrap());
    assert!(
        !mine.exists("job1").await.unwrap(),
        "being deleted counts as gone"
    );
    assert!(
        fake.pvc(NS, &name)
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    assert!(fake.delete_pod(NS, &pods::pod_name("job1", 0)));
    assert!(fake.pvc(NS, &name).is_none());
    assert!(!mine.delete("job1").await.unwrap(), "already gone");

    // The sweep: what no running job needs goes; other instances' stay,
    // except a claim of a job this daemon knows (its predecessor's label).
    for job in ["running", "ended"] {
        mine.ensure(job, "j", &ws).await.unwrap();
    }
    let theirs = Workspaces::new(fake.client(), NS, "oj-b");
    theirs.ensure("theirs", "j", &ws).await.unwrap();
    let predecessor = Workspaces::new(fake.client(), NS, "oj-a-old-pod");
    predecessor.ensure("before", "j", &ws).await.unwrap();
    let keep: HashSet<String> = ["running".to_string()].into();
    let known: HashSet<String> = ["running", "ended", "before"].map(String::from).into();
    let mut deleted = mine.sweep(&keep, &known).await.unwrap();
    deleted.sort();
    assert_eq!(deleted, ["oj-before-ws", "oj-ended-ws"]);
    assert!(fake.pvc(NS, "oj-running-ws").is_some());
    assert!(fake.pvc(NS, "oj-theirs-ws").is_some());
    assert!(fake.pvc(NS, "oj-other-ws").is_some(), "not oj's: untouched");
}
