//! End-to-end, SPEC §8.5 "the cluster does the work": real `oj daemon`
//! processes against the fake Kubernetes API (`oj_k8s_fake`), reached
//! through `KUBECONFIG`. The test plays the kubelet, the scheduler and the
//! node lifecycle.
//!
//! - `pods.default_image` turns shell steps into pods at submission (and
//!   `jobs.allow_shell = false` accepts them);
//! - `pods.labels`/`annotations`/`node_selector`/`tolerations`/
//!   `priority_class_name` reach the pod, overlaid by the job's and step's
//!   `container`; bad or reserved keys are a 78 at `config check` and a 400
//!   at submission;
//! - an evicted, preempted, node-lost or foreign-deleted pod is `infra`
//!   (retried when `retry.on` has it) with the cause in the error;
//! - `secrets` become `secretKeyRef`s, only from `pods.allowed_secrets`;
//! - a `workspace` is a PVC made before the first pod, mounted in each,
//!   found again after `kill -9`, and deleted when the job ends, is
//!   cancelled, or ended while no daemon ran.

mod common;

use std::time::Duration;

use common::{Daemon, TestEnv};
use oj_k8s_fake::FakeKube;
use oj_k8s_fake::k8s_openapi::api::core::v1 as k8s;
use serde_json::json;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(30);

fn env_for(fake: &FakeKube) -> TestEnv {
    let mut env = TestEnv::new();
    let kubeconfig = env.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig)
        .expect("write kubeconfig");
    env.set_var("KUBECONFIG", &kubeconfig.display().to_string());
    env
}

const BASE: &str = r#"
[daemon]
instance = "oj-test"

[notify]
backend = "none"

[lock]
strategy = "none"
"#;

fn start(fake: &FakeKube, extra: &str) -> (TestEnv, Daemon) {
    let env = env_for(fake);
    env.write_config(&format!("{BASE}\n{extra}"));
    let d = env.start_daemon(&[]);
    (env, d)
}

fn pod_of(fake: &FakeKube, d: &Daemon, name: &str) -> oj_k8s_fake::k8s_openapi::api::core::v1::Pod {
    assert!(
        fake.wait_for_blocking(WAIT, |f| f.pod(NS, name).is_some()),
        "no pod {name}\n{}",
        d.stderr()
    );
    fake.pod(NS, name).unwrap()
}

fn error_of(d: &Daemon, spec: serde_json::Value) -> String {
    let (status, body) = d.post("/v1/jobs", &spec);
    assert_eq!(status, 400, "{body}");
    body["error"]
        .as_str()
        .or(body["message"].as_str())
        .unwrap_or_default()
        .to_string()
        + &body.to_string()
}

#[test]
fn the_default_image_runs_shell_steps_as_pods_even_when_shell_steps_are_refused() {
    let fake = FakeKube::start();
    let (_env, d) = start(
        &fake,
        "[jobs]\nallow_shell = false\n\n[pods]\ndefault_image = \"alpine:3.20\"\n",
    );
    let id = d.submit(&json!({"name": "hello", "env": {"A": "1"},
        "steps": [{"name": "say", "run": "echo hi from ${name}"}]}));
    let name = format!("oj-{id}-0");
    let pod = pod_of(&fake, &d, &name);
    let c = &pod.spec.clone().unwrap().containers[0];
    assert_eq!(c.image.as_deref(), Some("alpine:3.20"));
    assert_eq!(
        c.command.clone().unwrap(),
        ["/bin/sh", "-c", "echo hi from hello"]
    );
    assert!(
        c.working_dir.is_none(),
        "no workspace, no dir: the image's own"
    );
    // Recorded as a container step: a reload does not move it.
    let (_, job) = d.get(&format!("/v1/jobs/{id}"));
    assert_eq!(job["state"], "running", "{job}");
    assert_eq!(
        job["spec"]["steps"][0]["container"]["image"], "alpine:3.20",
        "{job}"
    );
    fake.set_pod_phase(NS, &name, "Running");
    fake.append_pod_log(NS, &name, "hi from hello\n");
    fake.finish_pod(NS, &name, 0);
    let job = d.wait_job(&id, &["done", "failed"], WAIT);
    assert_eq!(job["state"], "done", "{job}");
    let (_, logs) = d.get(&format!("/v1/jobs/{id}/logs"));
    assert!(
        logs["text"]
            .as_str()
            .unwrap_or_default()
            .contains("hi from hello"),
        "the step's output is the pod's log: {logs}"
    );
}

#[test]
fn pass_through_fields_reach_the_pod_overlaid_by_the_job_and_the_step() {
    let fake = FakeKube::start();
    let (_env, d) = start(
        &fake,
        r#"
[pods]
priority_class_name = "batch-low"
tolerations = [{ key = "dedicated", operator = "Equal", value = "ci", effect = "NoSchedule" }]

[pods.labels]
"kueue.x-k8s.io/queue-name" = "team-a"
tier = "batch"

[pods.annotations]
"example.com/owner" = "ci"

[pods.node_selector]
pool = "cpu"
"#,
    );
    let id = d.submit(&json!({
        "name": "train",
        "container": {"image": "pytorch:2", "labels": {"tier": "gpu"}, "node_selector": {"pool": "gpu"}},
        "steps": [
            {"name": "prep", "run": "true"},
            {"name": "fit", "run": "true", "container": {"image": "pytorch:2",
              "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
              "priority_class_name": "batch-high", "annotations": {"example.com/owner": "ml"}}}
        ]
    }));
    let first = pod_of(&fake, &d, &format!("oj-{id}-0"));
    let labels = first.metadata.labels.clone().unwrap();
    assert_eq!(labels["kueue.x-k8s.io/queue-name"], "team-a");
    assert_eq!(labels["tier"], "gpu");
    assert_eq!(labels["oj.dev/job-id"], id);
    assert_eq!(
        first.metadata.annotations.clone().unwrap()["example.com/owner"],
        "ci"
    );
    let spec = first.spec.clone().unwrap();
    assert_eq!(spec.node_selector.unwrap()["pool"], "gpu");
    assert_eq!(spec.priority_class_name.as_deref(), Some("batch-low"));
    let t = spec.tolerations.unwrap();
    assert_eq!(
        (t.len(), t[0].key.as_deref(), t[0].value.as_deref()),
        (1, Some("dedicated"), Some("ci"))
    );
    fake.finish_pod(NS, &format!("oj-{id}-0"), 0);

    let second = pod_of(&fake, &d, &format!("oj-{id}-1"));
    let spec = second.spec.clone().unwrap();
    assert_eq!(spec.priority_class_name.as_deref(), Some("batch-high"));
    let t = spec.tolerations.unwrap();
    assert_eq!(
        (t.len(), t[0].key.as_deref()),
        (1, Some("nvidia.com/gpu")),
        "replaced whole"
    );
    assert_eq!(
        second.metadata.annotations.unwrap()["example.com/owner"],
        "ml"
    );
    fake.finish_pod(NS, &format!("oj-{id}-1"), 0);
    assert_eq!(d.wait_job(&id, &["done", "failed"], WAIT)["state"], "done");
}

#[test]
fn bad_or_reserved_pass_through_keys_are_78_at_config_check_and_400_at_submit() {
    let env = TestEnv::new();
    let file = env.write_config(
        r#"
[pods]
tolerations = [{ key = "gpu", operator = "Exists", value = "yes" }]

[pods.labels]
"oj.dev/job-id" = "x"

[pods.node_selector]
"Bad Key" = "v"
"#,
    );
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(78), "{}\n{}", out.stdout, out.stderr);
    let text = &out.stderr;
    let layer = format!("file {}", file.display());
    for expected in [
        "pods.labels",
        "\"oj.dev/job-id\"",
        "oj's own",
        "pods.node_selector",
        "\"Bad Key\"",
        "pods.tolerations",
        "tolerations[0]",
        "takes no value",
        layer.as_str(),
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let fake = FakeKube::start();
    let (_env, d) = start(&fake, "");
    for (container, expected) in [
        (
            json!({"image": "i", "labels": {"oj.dev/step": "x"}}),
            "container.labels.\"oj.dev/step\"",
        ),
        (
            json!({"image": "i", "labels": {"app.kubernetes.io/managed-by": "me"}}),
            "oj's own",
        ),
        (
            json!({"image": "i", "annotations": {"-bad": "x"}}),
            "container.annotations.\"-bad\"",
        ),
        (
            json!({"image": "i", "tolerations": [{"key": "k", "effect": "NoSchedule", "toleration_seconds": 5}]}),
            "NoExecute",
        ),
    ] {
        let err = error_of(
            &d,
            json!({"name": "j", "steps": [{"name": "s", "run": "x", "container": container}]}),
        );
        assert!(err.contains(expected), "{expected:?} not in {err}");
    }
    assert_eq!(fake.pod_creates(NS), 0);
}

#[test]
fn pods_the_cluster_ends_are_infra_retried_and_named() {
    let fake = FakeKube::start();
    let (_env, d) = start(&fake, "");
    let retried = |id: &str| format!("oj-{id}-0-2");
    let job = |name: &str| {
        json!({"name": name, "container": "busybox",
               "retry": {"attempts": 2, "backoff": "1s", "on": ["infra"]},
               "steps": [{"name": "work", "run": "sleep 60"}]})
    };
    type Disrupt = fn(&FakeKube, &str);
    let cases: [(&str, Disrupt, &str); 4] = [
        (
            "evicted",
            |f, p| assert!(f.evict_pod(NS, p, "The node was low on resource: memory.")),
            "evicted",
        ),
        (
            "preempted",
            |f, p| assert!(f.preempt_pod(NS, p, "prod/urgent")),
            "preempted",
        ),
        (
            "node-lost",
            |f, p| {
                assert!(f.bind_pod(NS, p, "node-9"));
                assert_eq!(f.lose_node("node-9"), 1);
            },
            "node lost",
        ),
        (
            "deleted",
            |f, p| assert!(f.delete_pod(NS, p)),
            "someone other than oj",
        ),
    ];
    for (i, (name, disrupt, words)) in cases.into_iter().enumerate() {
        let id = d.submit(&job(&format!("case-{i}")));
        let first = format!("oj-{id}-0");
        pod_of(&fake, &d, &first);
        fake.set_pod_phase(NS, &first, "Running");
        disrupt(&fake, &first);
        pod_of(&fake, &d, &retried(&id));
        fake.finish_pod(NS, &retried(&id), 0);
        let job = d.wait_job(&id, &["done", "failed"], WAIT);
        assert_eq!(job["state"], "done", "{name}: {job}");
        let attempts = job["steps"][0]["attempts"].as_array().cloned().unwrap();
        assert_eq!(attempts.len(), 2, "{name}: {job}");
        let reason = attempts[0]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(words), "{name}: {words:?} not in {job}");
        assert!(
            reason.contains("the command did not fail") || name == "deleted",
            "{name}: {job}"
        );
    }

    // Without a retry the job fails, and the error says the cluster did it.
    let id = d.submit(&json!({"name": "once", "container": "busybox",
        "steps": [{"name": "work", "run": "sleep 60"}]}));
    let pod = format!("oj-{id}-0");
    pod_of(&fake, &d, &pod);
    fake.set_pod_phase(NS, &pod, "Running");
    fake.evict_pod(NS, &pod, "The node was low on resource: ephemeral-storage.");
    let job = d.wait_job(&id, &["done", "failed"], WAIT);
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("evicted") && error.contains("ephemeral-storage"),
        "{job}"
    );
    assert!(
        !error.contains("exit code 137"),
        "not a command failure: {job}"
    );
}

#[test]
fn secrets_become_secret_key_refs_only_from_the_allowed_list() {
    let fake = FakeKube::start();
    let (_env, d) = start(&fake, "[pods]\nallowed_secrets = [\"registry-creds\"]\n");
    let id = d.submit(&json!({"name": "push", "container": "docker:27",
        "secrets": {"REGISTRY_TOKEN": "registry-creds/token"},
        "steps": [{"name": "push", "run": "docker push", "secrets": {"REGISTRY_USER": "registry-creds/user"}}]}));
    let pod = pod_of(&fake, &d, &format!("oj-{id}-0"));
    let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
    for (var, key) in [("REGISTRY_TOKEN", "token"), ("REGISTRY_USER", "user")] {
        let e = env.iter().find(|e| e.name == var).expect(var);
        assert!(e.value.is_none());
        let r = e.value_from.clone().unwrap().secret_key_ref.unwrap();
        assert_eq!((r.name.as_str(), r.key.as_str()), ("registry-creds", key));
    }
    assert_eq!(
        fake.count_requests(|r| r.path.contains("/secrets")),
        0,
        "oj never reads a Secret"
    );

    let err = error_of(
        &d,
        json!({"name": "j", "container": "i", "secrets": {"T": "oj-token/token"},
               "steps": [{"name": "s", "run": "x"}]}),
    );
    assert!(
        err.contains("oj-token") && err.contains("pods.allowed_secrets"),
        "{err}"
    );
    let err = error_of(
        &d,
        json!({"name": "j", "secrets": {"T": "registry-creds/token"},
               "steps": [{"name": "s", "run": "x"}]}),
    );
    assert!(
        err.contains("step \"s\"")
            && err.contains("pods.default_image")
            && err.contains("container"),
        "{err}"
    );
    let err = error_of(
        &d,
        json!({"name": "j", "container": "i", "env": {"T": "plain"}, "secrets": {"T": "registry-creds/token"},
               "steps": [{"name": "s", "run": "x"}]}),
    );
    assert!(err.contains("both env and secrets"), "{err}");
}

fn workspace_job(name: &str) -> serde_json::Value {
    json!({"name": name, "container": "busybox",
           "workspace": {"size": "1Gi", "storage_class": "standard"},
           "steps": [{"name": "fetch", "run": "git clone x ."}, {"name": "build", "run": "make"}]})
}

#[test]
fn a_workspace_is_a_claim_mounted_in_each_step_pod_and_deleted_with_the_job() {
    let fake = FakeKube::start();
    let (_env, d) = start(&fake, "");
    let err = error_of(
        &d,
        json!({"name": "j", "workspace": {"size": "1Gi"}, "steps": [{"name": "s", "run": "x"}]}),
    );
    assert!(err.contains("workspace") && err.contains("pod"), "{err}");

    let id = d.submit(&workspace_job("build"));
    let claim = format!("oj-{id}-ws");
    let first = pod_of(&fake, &d, &format!("oj-{id}-0"));
    let pvc = fake
        .pvc(NS, &claim)
        .expect("the claim exists before the first pod");
    assert!(
        pvc.metadata.creation_timestamp <= first.metadata.creation_timestamp,
        "claim made first"
    );
    let spec = pvc.spec.unwrap();
    assert_eq!(spec.access_modes.unwrap(), ["ReadWriteOnce"]);
    assert_eq!(spec.storage_class_name.as_deref(), Some("standard"));
    let labels = pvc.metadata.labels.unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "oj");
    assert_eq!(labels["oj.dev/job-id"], id);
    {
        let pod = first;
        let spec = pod.spec.unwrap();
        assert_eq!(
            spec.volumes.unwrap()[0]
                .persistent_volume_claim
                .clone()
                .unwrap()
                .claim_name,
            claim
        );
        assert_eq!(
            spec.containers[0].working_dir.as_deref(),
            Some("/workspace")
        );
    }
    fake.finish_pod(NS, &format!("oj-{id}-0"), 0);
    let second = pod_of(&fake, &d, &format!("oj-{id}-1"));
    assert_eq!(
        second.spec.unwrap().volumes.unwrap()[0]
            .persistent_volume_claim
            .clone()
            .unwrap()
            .claim_name,
        claim,
        "the same claim"
    );
    fake.finish_pod(NS, &format!("oj-{id}-1"), 0);
    assert_eq!(d.wait_job(&id, &["done", "failed"], WAIT)["state"], "done");
    assert!(
        fake.wait_for_blocking(WAIT, |f| f.pvc(NS, &claim).is_none()),
        "the claim goes with the job\n{}",
        d.stderr()
    );
    assert_eq!(
        fake.count_requests(|r| r.method == "POST" && r.path.ends_with("/persistentvolumeclaims")),
        1
    );

    // Cancelled: the claim goes too.
    let id = d.submit(&workspace_job("cancel-me"));
    let claim = format!("oj-{id}-ws");
    pod_of(&fake, &d, &format!("oj-{id}-0"));
    assert!(fake.pvc(NS, &claim).is_some());
    assert_eq!(d.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).0, 202);
    assert_eq!(
        d.wait_job(&id, &["cancelled", "failed", "done"], WAIT)["state"],
        "cancelled"
    );
    assert!(fake.wait_for_blocking(WAIT, |f| f.pvc(NS, &claim).is_none()));
}

#[test]
fn a_workspace_survives_kill_9_and_one_left_by_an_ended_job_is_swept() {
    let fake = FakeKube::start();
    let (env, mut d) = start(&fake, "");
    let id = d.submit(&workspace_job("build"));
    let claim = format!("oj-{id}-ws");
    let first = format!("oj-{id}-0");
    pod_of(&fake, &d, &first);
    fake.set_pod_phase(NS, &first, "Running");
    d.kill9();

    // A claim of a job no daemon knows (ended and removed while down).
    let stale = workspace_claim_of(&fake, "0mx00000gone");
    fake.insert_pvc(NS, stale);

    let d = env.start_daemon(&[]);
    assert!(
        fake.wait_for_blocking(WAIT, |f| f.pvc(NS, "oj-0mx00000gone-ws").is_none()),
        "the orphaned workspace is swept\n{}",
        d.stderr()
    );
    assert!(
        fake.pvc(NS, &claim).is_some(),
        "the running job keeps its own"
    );
    fake.finish_pod(NS, &first, 0);
    let second = pod_of(&fake, &d, &format!("oj-{id}-1"));
    assert_eq!(
        second.spec.unwrap().volumes.unwrap()[0]
            .persistent_volume_claim
            .clone()
            .unwrap()
            .claim_name,
        claim,
        "found again after the restart"
    );
    fake.finish_pod(NS, &format!("oj-{id}-1"), 0);
    assert_eq!(d.wait_job(&id, &["done", "failed"], WAIT)["state"], "done");
    assert!(fake.wait_for_blocking(WAIT, |f| f.pvc(NS, &claim).is_none()));
    assert_eq!(
        fake.count_requests(|r| r.method == "POST" && r.path.ends_with("/persistentvolumeclaims")),
        1,
        "the claim was created once"
    );
}

#[test]
fn keep_finished_keeps_the_workspace() {
    let fake = FakeKube::start();
    let (_env, d) = start(&fake, "[pods]\nkeep_finished = true\n");
    let mut spec = workspace_job("keep");
    spec["steps"] = json!([{"name": "only", "run": "true"}]);
    let id = d.submit(&spec);
    pod_of(&fake, &d, &format!("oj-{id}-0"));
    fake.finish_pod(NS, &format!("oj-{id}-0"), 0);
    assert_eq!(d.wait_job(&id, &["done", "failed"], WAIT)["state"], "done");
    std::thread::sleep(Duration::from_millis(500));
    assert!(fake.pvc(NS, &format!("oj-{id}-ws")).is_some());
}

/// A workspace claim as oj labels it, for job `job_id` of instance `oj-test`.
fn workspace_claim_of(
    _fake: &FakeKube,
    job_id: &str,
) -> oj_k8s_fake::k8s_openapi::api::core::v1::PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("oj-{job_id}-ws"),
            "labels": {"app.kubernetes.io/managed-by": "oj", "oj.dev/job-id": job_id,
                       "oj.dev/instance": "oj-test", "oj.dev/workspace": "true"},
            "annotations": {"oj.dev/job-id": job_id}
        },
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap()
}

#[test]
fn config_check_in_a_cluster_names_missing_workspace_permissions() {
    let fake = FakeKube::start();
    let rules = [
        (
            "",
            "pods",
            &["create", "get", "list", "watch", "patch", "delete"][..],
        ),
        ("", "pods/log", &["get"][..]),
        ("", "persistentvolumeclaims", &["get", "list"][..]),
        (
            "coordination.k8s.io",
            "leases",
            &["get", "create", "update"][..],
        ),
        ("", "limitranges", &["list"][..]),
        ("", "resourcequotas", &["list"][..]),
    ];
    fake.set_rbac(Some(
        rules
            .iter()
            .map(|(g, r, v)| oj_k8s_fake::RbacRule::new(NS, g, r, v))
            .collect(),
    ));
    fake.put_json(
        NS,
        json!({"kind": "Pod", "metadata": {"name": "oj-0"},
               "spec": {"terminationGracePeriodSeconds": 30,
                        "containers": [{"name": "oj", "image": "oj"}]}}),
    )
    .unwrap();
    let mut env = env_for(&fake);
    env.set_var("POD_NAME", "oj-0");
    env.set_var("POD_NAMESPACE", NS);
    // With the lease, the cluster is where the daemon runs: its problems are errors.
    env.write_config(
        "[notify]\nbackend = \"log\"\n\n[lock]\nstrategy = \"lease\"\n\n[shutdown]\ndrain_timeout = \"25s\"\n",
    );
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(78), "{}\n{}", out.stdout, out.stderr);
    for expected in [
        "may not create, delete persistentvolumeclaims in namespace default",
        r#"{apiGroups: [""], resources: ["persistentvolumeclaims"], verbs: ["create", "delete"]}"#,
    ] {
        assert!(
            out.stderr.contains(expected),
            "missing {expected:?} in:\n{}",
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains("get, list persistentvolumeclaims")
            && !out.stderr.contains("may not get"),
        "only what is missing:\n{}",
        out.stderr
    );
}

#[test]
fn a_reload_of_the_default_image_does_not_move_queued_steps() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    let config = |image: &str| {
        format!("{BASE}\n[jobs]\nmax_concurrent = 1\n\n[pods]\ndefault_image = \"{image}\"\n")
    };
    let file = env.write_config(&config("tools:1"));
    let d = env.start_daemon(&[]);
    let shell = |name: &str| json!({"name": name, "steps": [{"name": "s", "run": "make"}]});
    let running = d.submit(&shell("first"));
    pod_of(&fake, &d, &format!("oj-{running}-0"));
    let queued = d.submit(&shell("second"));
    assert_eq!(d.get(&format!("/v1/jobs/{queued}")).1["state"], "queued");

    std::fs::write(&file, config("tools:2")).unwrap();
    d.signal("HUP");
    assert!(
        common::wait_until(WAIT, || {
            d.get("/v1/config").1["config"]["pods"]["default_image"] == "tools:2"
        }),
        "reload not applied\n{}",
        d.stderr()
    );
    let later = d.submit(&shell("third"));
    fake.finish_pod(NS, &format!("oj-{running}-0"), 0);
    let image = |pod: &k8s::Pod| pod.spec.clone().unwrap().containers[0].image.clone();
    let second = pod_of(&fake, &d, &format!("oj-{queued}-0"));
    assert_eq!(
        image(&second).as_deref(),
        Some("tools:1"),
        "recorded at submission"
    );
    fake.finish_pod(NS, &format!("oj-{queued}-0"), 0);
    let third = pod_of(&fake, &d, &format!("oj-{later}-0"));
    assert_eq!(image(&third).as_deref(), Some("tools:2"));
}

#[test]
fn a_restart_sweeps_the_workspace_of_a_finished_job_even_under_a_new_pod_name() {
    let fake = FakeKube::start();
    let env = env_for(&fake);
    let with = |instance: &str, keep: bool| {
        format!(
            "[daemon]\ninstance = \"{instance}\"\n\n[notify]\nbackend = \"none\"\n\n[lock]\nstrategy = \"none\"\n\n[pods]\nkeep_finished = {keep}\n"
        )
    };
    env.write_config(&with("oj-7d9f-aaaaa", true));
    let mut d = env.start_daemon(&[]);
    let mut spec = workspace_job("kept");
    spec["steps"] = json!([{"name": "only", "run": "true"}]);
    let id = d.submit(&spec);
    pod_of(&fake, &d, &format!("oj-{id}-0"));
    fake.finish_pod(NS, &format!("oj-{id}-0"), 0);
    assert_eq!(d.wait_job(&id, &["done", "failed"], WAIT)["state"], "done");
    let claim = format!("oj-{id}-ws");
    assert!(fake.pvc(NS, &claim).is_some(), "kept: pods.keep_finished");
    // Another oj instance's claim in the same namespace is not ours to sweep.
    let theirs = workspace_claim_of(&fake, "0mx00000othr");
    let mut theirs = theirs;
    theirs
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("oj.dev/instance".into(), "someone-else".into());
    fake.insert_pvc(NS, theirs);
    d.kill9();

    // The next daemon pod has another name and no longer keeps finished work.
    env.write_config(&with("oj-7d9f-bbbbb", false));
    let d = env.start_daemon(&[]);
    assert!(
        fake.wait_for_blocking(WAIT, |f| f.pvc(NS, &claim).is_none()),
        "the finished job's workspace is swept\n{}",
        d.stderr()
    );
    assert!(fake.pvc(NS, "oj-0mx00000othr-ws").is_some());
}
