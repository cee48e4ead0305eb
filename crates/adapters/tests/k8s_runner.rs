//! The pod runner against the fake API server: the test plays the kubelet
//! (phases, log text, exit codes) and checks what a user of `oj` would see:
//! the step result, the step log, and which pods exist afterwards.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use oj_adapters::k8s::pods::{PodInput, pod_name};
use oj_adapters::k8s::runner::{PodRunner, StepResult};
use oj_config::PodsConfig;
use oj_k8s_fake::{FakeKube, Fault};
use tokio_util::sync::CancellationToken;

mod k8s_support;
use k8s_support::{default_pods_config, input};

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(15);

fn pods_config(keep_finished: bool) -> PodsConfig {
    PodsConfig {
        keep_finished,
        ..default_pods_config()
    }
}

fn spawn_run(
    fake: &FakeKube,
    cfg: PodsConfig,
    input: PodInput,
    log: &Path,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<StepResult> {
    let runner = PodRunner::new(fake.client(), NS, cfg);
    let log = log.to_path_buf();
    tokio::spawn(async move { runner.run(input, &log, cancel).await })
}

async fn wait_created(fake: &FakeKube, name: &str) {
    assert!(
        fake.wait_for(WAIT, |f| f.pod(NS, name).is_some()).await,
        "pod {name} was never created"
    );
}

async fn finish(handle: tokio::task::JoinHandle<StepResult>) -> StepResult {
    tokio::time::timeout(WAIT, handle)
        .await
        .expect("the runner finishes")
        .expect("the runner does not panic")
}

#[tokio::test]
async fn success_captures_logs_and_deletes_the_pod() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/job1/compile.log");
    let handle = spawn_run(
        &fake,
        pods_config(false),
        input("job1"),
        &log,
        CancellationToken::new(),
    );
    let name = pod_name("job1", 0);
    wait_created(&fake, &name).await;

    fake.set_pod_phase(NS, &name, "Running");
    fake.append_pod_log(NS, &name, "compiling\n");
    // The log is streamed while the pod runs, not only at the end.
    assert!(
        fake.wait_for(WAIT, |_| std::fs::read_to_string(&log).unwrap_or_default()
            == "compiling\n")
            .await,
        "the step log follows the running pod"
    );
    fake.append_pod_log(NS, &name, "done\n");
    fake.finish_pod(NS, &name, 0);

    let result = finish(handle).await;
    assert!(result.succeeded, "{result:?}");
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(result.error, None);
    assert_eq!(result.pod_name, name);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "compiling\ndone\n");
    assert!(fake.pod(NS, &name).is_none(), "a finished pod is deleted");
    assert_eq!(fake.pod_creates(NS), 1);
}

#[tokio::test]
async fn failure_reports_the_exit_code() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("step.log");
    let handle = spawn_run(
        &fake,
        pods_config(false),
        input("job2"),
        &log,
        CancellationToken::new(),
    );
    let name = pod_name("job2", 0);
    wait_created(&fake, &name).await;
    fake.set_pod_phase(NS, &name, "Running");
    fake.append_pod_log(NS, &name, "error: boom\n");
    fake.finish_pod(NS, &name, 3);

    let result = finish(handle).await;
    assert!(!result.succeeded);
    assert_eq!(result.exit_code, Some(3));
    let error = result.error.unwrap();
    assert!(
        error.contains(&name) && error.contains("exit code 3"),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "error: boom\n");
    assert!(fake.pod(NS, &name).is_none());
}

#[tokio::test]
async fn a_pod_that_ends_before_it_is_seen_running_still_has_its_log() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("step.log");
    let handle = spawn_run(
        &fake,
        pods_config(false),
        input("fast"),
        &log,
        CancellationToken::new(),
    );
    let name = pod_name("fast", 0);
    wait_created(&fake, &name).await;
    fake.set_pod_log(NS, &name, "quick output\n");
    fake.finish_pod(NS, &name, 0);
    let result = finish(handle).await;
    assert!(result.succeeded, "{result:?}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "quick output\n");
}

#[tokio::test]
async fn deadline_exceeded_is_explained() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let handle = spawn_run(
        &fake,
        pods_config(false),
        input("slow"),
        &dir.path().join("l"),
        CancellationToken::new(),
    );
    let name = pod_name("slow", 0);
    wait_created(&fake, &name).await;
    fake.set_pod_phase(NS, &name, "Running");
    fake.fail_pod_deadline(NS, &name);
    let result = finish(handle).await;
    assert!(!result.succeeded && result.deadline_exceeded);
    let error = result.error.unwrap();
    assert!(
        error.contains("activeDeadlineSeconds") && error.contains("10m"),
        "{error}"
    );
}

#[tokio::test]
async fn keep_finished_keeps_the_pod() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let handle = spawn_run(
        &fake,
        pods_config(true),
        input("job3"),
        &dir.path().join("l"),
        CancellationToken::new(),
    );
    let name = pod_name("job3", 0);
    wait_created(&fake, &name).await;
    fake.set_pod_phase(NS, &name, "Running");
    fake.finish_pod(NS, &name, 0);
    let result = finish(handle).await;
    assert!(result.succeeded);
    let pod = fake
        .pod(NS, &name)
        .expect("pods.keep_finished keeps the pod");
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Succeeded"));
    assert_eq!(
        fake.count("DELETE", &format!("{}/{name}", FakeKube::pods_path(NS))),
        0
    );
}

#[tokio::test]
async fn cancel_deletes_the_pod() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let handle = spawn_run(
        &fake,
        pods_config(true),
        input("job4"),
        &dir.path().join("l"),
        cancel.clone(),
    );
    let name = pod_name("job4", 0);
    wait_created(&fake, &name).await;
    fake.set_pod_phase(NS, &name, "Running");
    cancel.cancel();
    let result = finish(handle).await;
    assert!(result.cancelled && !result.succeeded, "{result:?}");
    assert!(result.error.unwrap().contains("cancelled"));
    // The delete may land just after the runner returns (the fake, like
    // the API server, finishes it asynchronously): wait for it, bounded.
    assert!(
        fake.wait_for(Duration::from_secs(5), |f| f.pod(NS, &name).is_none())
            .await,
        "cancel deletes the pod, even with keep_finished"
    );
}

#[tokio::test]
async fn restart_reattaches_without_a_second_create() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("step.log");
    let name = pod_name("job5", 0);

    // The first daemon creates the pod and dies (its task is dropped, nothing cleans up).
    let first = spawn_run(
        &fake,
        pods_config(false),
        input("job5"),
        &log,
        CancellationToken::new(),
    );
    wait_created(&fake, &name).await;
    fake.set_pod_phase(NS, &name, "Running");
    fake.append_pod_log(NS, &name, "line 1\n");
    first.abort();
    let _ = first.await;
    assert!(
        fake.pod(NS, &name).is_some(),
        "a daemon crash leaves the pod running"
    );

    // The restarted daemon finds it by label and follows it.
    let runner = PodRunner::new(fake.client(), NS, pods_config(false));
    let found = runner.find_running("job5").await.unwrap();
    assert_eq!(
        found
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        std::slice::from_ref(&name)
    );
    assert!(runner.find_running("other").await.unwrap().is_empty());

    let second = spawn_run(
        &fake,
        pods_config(false),
        input("job5"),
        &log,
        CancellationToken::new(),
    );
    fake.append_pod_log(NS, &name, "line 2\n");
    // Let the new runner see the pod before it ends (it must attach, not create).
    assert!(
        fake.wait_for(WAIT, |f| f
            .count("GET", &format!("{}/{name}/log", FakeKube::pods_path(NS)))
            >= 2)
            .await
    );
    fake.finish_pod(NS, &name, 0);
    let result = finish(second).await;
    assert!(result.succeeded && result.attached, "{result:?}");
    assert_eq!(
        fake.pod_creates(NS),
        1,
        "the step's pod was created exactly once"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "line 1\nline 2\n",
        "the whole log, not doubled"
    );
    assert!(fake.pod(NS, &name).is_none());
}

#[tokio::test]
async fn a_finished_pod_found_after_restart_gives_its_result() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let name = pod_name("job6", 0);
    let first = spawn_run(
        &fake,
        pods_config(false),
        input("job6"),
        &dir.path().join("l"),
        CancellationToken::new(),
    );
    wait_created(&fake, &name).await;
    first.abort();
    let _ = first.await;
    // It ended while no daemon was watching.
    fake.set_pod_phase(NS, &name, "Running");
    fake.append_pod_log(NS, &name, "out\n");
    fake.finish_pod(NS, &name, 7);

    let result = finish(spawn_run(
        &fake,
        pods_config(false),
        input("job6"),
        &dir.path().join("l"),
        CancellationToken::new(),
    ))
    .await;
    assert!(result.attached && !result.succeeded, "{result:?}");
    assert_eq!(result.exit_code, Some(7));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("l")).unwrap(),
        "out\n"
    );
    assert_eq!(fake.pod_creates(NS), 1);
}

#[tokio::test]
async fn cleanup_orphans_deletes_only_pods_of_unknown_jobs() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let mut handles = Vec::new();
    for job in ["known", "orphan"] {
        handles.push(spawn_run(
            &fake,
            pods_config(false),
            input(job),
            &dir.path().join(job),
            CancellationToken::new(),
        ));
        wait_created(&fake, &pod_name(job, 0)).await;
    }
    for h in handles {
        h.abort();
        let _ = h.await;
    }
    // Someone else's pod in the namespace is never touched.
    fake.insert_pod(
        NS,
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}
        }))
        .unwrap(),
    );
    let runner = PodRunner::new(fake.client(), NS, pods_config(false));
    let known: HashSet<String> = ["known".to_string()].into();
    let deleted = runner.cleanup_orphans(&known).await.unwrap();
    assert_eq!(deleted, [pod_name("orphan", 0)]);
    let left: Vec<String> = fake
        .pods(NS)
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(left, [pod_name("known", 0), "web".to_string()]);
}

#[tokio::test]
async fn api_errors_and_bad_resources_fail_the_step_with_a_reason() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    fake.inject_fault(Fault::new("POST", &FakeKube::pods_path(NS), 500));
    let result = finish(spawn_run(
        &fake,
        pods_config(false),
        input("job7"),
        &dir.path().join("l"),
        CancellationToken::new(),
    ))
    .await;
    assert!(!result.succeeded);
    let error = result.error.unwrap();
    assert!(
        error.contains("could not create pod default/oj-job7-0"),
        "{error}"
    );

    let mut bad = input("job8");
    bad.step_resources = Some(oj_adapters::k8s::pods::ContainerResources {
        requests: Some(oj_adapters::k8s::pods::ResourceAmounts {
            cpu: None,
            memory: Some("8Gi".parse().unwrap()),
        }),
        limits: None,
    });
    let result = finish(spawn_run(
        &fake,
        pods_config(false),
        bad,
        &dir.path().join("l"),
        CancellationToken::new(),
    ))
    .await;
    assert!(result.error.unwrap().contains("requests.memory (8Gi)"));
    assert_eq!(
        fake.pod_creates(NS),
        1,
        "no pod is created for a step that cannot be built"
    );
}

#[tokio::test]
async fn a_pod_deleted_by_someone_else_fails_the_step() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let handle = spawn_run(
        &fake,
        pods_config(false),
        input("job9"),
        &dir.path().join("l"),
        CancellationToken::new(),
    );
    let name = pod_name("job9", 0);
    wait_created(&fake, &name).await;
    fake.set_pod_phase(NS, &name, "Running");
    let client = fake.client();
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, NS);
    api.delete(&name, &Default::default()).await.unwrap();
    let result = finish(handle).await;
    assert!(!result.succeeded);
    assert!(
        result
            .error
            .unwrap()
            .contains("was deleted before it finished")
    );
}

#[tokio::test]
async fn attach_never_creates_a_missing_pod() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let runner = PodRunner::new(fake.client(), NS, pods_config(false));
    let result = tokio::time::timeout(
        WAIT,
        runner.attach(
            input("gone"),
            &dir.path().join("l"),
            CancellationToken::new(),
        ),
    )
    .await
    .unwrap();
    assert!(!result.succeeded);
    let error = result.error.unwrap();
    assert!(
        error.contains("no longer exists") && error.contains("not started again"),
        "{error}"
    );
    assert_eq!(fake.pod_creates(NS), 0);
}

#[tokio::test]
async fn detach_leaves_the_pod_running_for_the_next_daemon() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("l");
    let detach = CancellationToken::new();
    let runner = PodRunner::new(fake.client(), NS, pods_config(false));
    let opts = oj_adapters::k8s::RunOptions {
        attach_only: false,
        detach: detach.clone(),
        ..Default::default()
    };
    let log2 = log.clone();
    let handle = tokio::spawn(async move {
        runner
            .run_with(input("drain"), &log2, CancellationToken::new(), opts)
            .await
    });
    let name = pod_name("drain", 0);
    wait_created(&fake, &name).await;
    fake.set_pod_phase(NS, &name, "Running");
    detach.cancel();
    let result = finish(handle).await;
    assert!(
        result.detached && !result.succeeded && !result.cancelled,
        "{result:?}"
    );
    assert!(fake.pod(NS, &name).is_some(), "the pod keeps running");

    // The next daemon attaches and gets the result.
    let runner = PodRunner::new(fake.client(), NS, pods_config(false));
    let log2 = log.clone();
    let handle = tokio::spawn(async move {
        runner
            .attach(input("drain"), &log2, CancellationToken::new())
            .await
    });
    fake.append_pod_log(NS, &name, "after\n");
    fake.finish_pod(NS, &name, 0);
    let result = finish(handle).await;
    assert!(result.succeeded && result.attached, "{result:?}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "after\n");
    assert_eq!(fake.pod_creates(NS), 1);
}
