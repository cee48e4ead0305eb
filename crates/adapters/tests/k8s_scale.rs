//! Container steps at scale and in a hostile cluster, against the fake API
//! server: many steps share one pod watch; step logs survive cut streams
//! and the pod's deletion; pods that cannot run fail fast with the reason a
//! user needs; a second oj instance in the namespace is left alone.

use std::path::Path;
use std::time::Duration;

use oj_adapters::k8s::pods::{PodInput, pod_name};
use oj_adapters::k8s::runner::{PodRunner, RunOptions, StepResult};
use oj_config::PodsConfig;
use oj_k8s_fake::FakeKube;
use tokio_util::sync::CancellationToken;

mod k8s_support;
use k8s_support::{default_pods_config, input};

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);

fn spawn(
    runner: &PodRunner,
    input: PodInput,
    log: &Path,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<StepResult> {
    let runner = runner.clone();
    let log = log.to_path_buf();
    tokio::spawn(async move { runner.run(input, &log, cancel).await })
}

async fn finish(handle: tokio::task::JoinHandle<StepResult>) -> StepResult {
    tokio::time::timeout(WAIT, handle)
        .await
        .expect("the runner finishes")
        .expect("the runner does not panic")
}

async fn wait_created(fake: &FakeKube, name: &str) {
    assert!(
        fake.wait_for(WAIT, |f| f.pod(NS, name).is_some()).await,
        "pod {name} was never created"
    );
}

const STEPS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_steps_share_one_pod_watch() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let runner = PodRunner::new(fake.client(), NS, default_pods_config()).with_instance("oj-a");
    let mut handles = Vec::new();
    for i in 0..STEPS {
        let job = format!("scale{i}");
        let log = dir.path().join(format!("{job}.log"));
        handles.push((
            job.clone(),
            log.clone(),
            spawn(&runner, input(&job), &log, CancellationToken::new()),
        ));
    }
    assert!(
        fake.wait_for(WAIT, |f| f.pods(NS).len() == STEPS).await,
        "not every step created its pod"
    );
    for (job, _, _) in &handles {
        let name = pod_name(job, 0);
        fake.set_pod_phase(NS, &name, "Running");
        fake.append_pod_log(NS, &name, &format!("{job} says hello\n"));
    }
    for (job, _, _) in &handles {
        fake.finish_pod(NS, &pod_name(job, 0), 0);
    }
    for (job, log, handle) in handles {
        let result = finish(handle).await;
        assert!(result.succeeded, "{job}: {result:?}");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("{job} says hello\n")
        );
    }
    assert!(fake.pods(NS).is_empty(), "finished pods are deleted");

    let peak = fake.peak_pod_watches();
    assert!(
        (1..=2).contains(&peak),
        "{STEPS} steps held {peak} pod watches at once; they share one"
    );
    // Every pod request except the shared watch's.
    let per_step = fake.count_requests(|r| {
        r.path.starts_with(&FakeKube::pods_path(NS)) && !r.has_query("watch=true")
    }) as f64
        / STEPS as f64;
    // read, create, log stream, last log read, delete — a resumed log may add one.
    assert!(
        per_step <= 6.0,
        "{per_step:.1} API requests per container step"
    );
    println!("API requests per container step: {per_step:.2}");
    println!("watch connections (peak): {peak}");
}

#[tokio::test]
async fn a_cut_log_stream_resumes_without_losing_or_doubling_lines() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("step.log");
    let runner = PodRunner::new(fake.client(), NS, default_pods_config()).with_instance("oj-a");
    let name = pod_name("rotate", 0);
    let handle = spawn(&runner, input("rotate"), &log, CancellationToken::new());
    wait_created(&fake, &name).await;
    fake.set_pod_phase(NS, &name, "Running");
    fake.append_pod_log(NS, &name, "one\ntwo\n");
    assert!(
        fake.wait_for(WAIT, |_| std::fs::read_to_string(&log)
            .is_ok_and(|t| t == "one\ntwo\n"))
            .await
    );
    // Kubelet log rotation: the stream ends, the container goes on.
    fake.cut_log_streams(NS, &name);
    fake.append_pod_log(NS, &name, "three\n");
    assert!(
        fake.wait_for(WAIT, |_| std::fs::read_to_string(&log)
            .is_ok_and(|t| t == "one\ntwo\nthree\n"))
            .await,
        "the resumed stream added the new line once: {:?}",
        std::fs::read_to_string(&log)
    );
    fake.cut_log_streams(NS, &name);
    fake.append_pod_log(NS, &name, "four\n");
    fake.finish_pod(NS, &name, 0);
    let result = finish(handle).await;
    assert!(result.succeeded, "{result:?}");
    assert!(fake.pod(NS, &name).is_none(), "the pod is deleted");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "one\ntwo\nthree\nfour\n",
        "the step log is complete after the pod is gone"
    );
    let resumed = fake.count_requests(|r| {
        r.path.ends_with(&format!("{name}/log"))
            && r.query.as_deref().is_some_and(|q| q.contains("sinceTime="))
    });
    assert!(resumed >= 2, "resumed with sinceTime ({resumed} times)");
}

async fn stuck_step(
    fake: &FakeKube,
    job: &str,
    cfg: PodsConfig,
    stick: impl FnOnce(&FakeKube, &str),
) -> StepResult {
    let dir = tempfile::tempdir().unwrap();
    let runner = PodRunner::new(fake.client(), NS, cfg).with_instance("oj-a");
    let name = pod_name(job, 0);
    let handle = spawn(
        &runner,
        input(job),
        &dir.path().join("l"),
        CancellationToken::new(),
    );
    wait_created(fake, &name).await;
    stick(fake, &name);
    let result = finish(handle).await;
    assert!(fake.pod(NS, &name).is_none(), "the stuck pod is deleted");
    result
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_step_after_the_grace() {
    let fake = FakeKube::start();
    let mut cfg = default_pods_config();
    cfg.image_pull_grace = Duration::from_millis(300);
    for reason in ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"] {
        let job = format!("pull-{}", reason.to_lowercase());
        let result = stuck_step(&fake, &job, cfg.clone(), |f, name| {
            f.set_pod_waiting(
                NS,
                name,
                reason,
                "pull access denied for busybox, repository does not exist",
            );
        })
        .await;
        assert!(!result.succeeded && result.infra, "{result:?}");
        let error = result.error.unwrap();
        assert!(
            error.contains(reason)
                && error.contains("pull access denied")
                && error.contains("pods.image_pull_grace")
                && error.contains("\"busybox\""),
            "{error}"
        );
    }
}

#[tokio::test]
async fn an_unschedulable_pod_fails_after_the_pending_timeout_with_the_scheduler_message() {
    let fake = FakeKube::start();
    let mut cfg = default_pods_config();
    // creationTimestamp has whole seconds: the pod may look up to 1 s older.
    cfg.pending_timeout = Duration::from_secs(3);
    let result = stuck_step(&fake, "unsched", cfg, |f, name| {
        f.set_pod_unschedulable(NS, name, "0/3 nodes are available: 3 Insufficient memory.");
    })
    .await;
    assert!(!result.succeeded && result.infra, "{result:?}");
    let error = result.error.unwrap();
    assert!(
        error.contains("Pending")
            && error.contains("pods.pending_timeout")
            && error.contains("Unschedulable: 0/3 nodes are available: 3 Insufficient memory."),
        "{error}"
    );
}

#[tokio::test]
async fn an_oom_killed_container_fails_with_its_reason_and_exit_code() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let runner = PodRunner::new(fake.client(), NS, default_pods_config()).with_instance("oj-a");
    let name = pod_name("oom", 0);
    let handle = spawn(
        &runner,
        input("oom"),
        &dir.path().join("l"),
        CancellationToken::new(),
    );
    wait_created(&fake, &name).await;
    fake.set_pod_phase(NS, &name, "Running");
    fake.finish_pod_with(NS, &name, 137, "OOMKilled");
    let result = finish(handle).await;
    assert_eq!(result.exit_code, Some(137));
    assert_eq!(result.reason.as_deref(), Some("OOMKilled"));
    let error = result.error.unwrap();
    assert!(
        error.contains("exit code 137 (OOMKilled)")
            && error.contains("limits.memory")
            && error.contains("2Gi"),
        "{error}"
    );
}

#[tokio::test]
async fn cancelling_a_pending_step_deletes_its_pod_at_once() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let runner = PodRunner::new(fake.client(), NS, default_pods_config()).with_instance("oj-a");
    let name = pod_name("pend", 0);
    let cancel = CancellationToken::new();
    let handle = spawn(
        &runner,
        input("pend"),
        &dir.path().join("l"),
        cancel.clone(),
    );
    wait_created(&fake, &name).await;
    fake.set_pod_unschedulable(
        NS,
        &name,
        "0/1 nodes are available: 1 node(s) had untolerated taint.",
    );
    cancel.cancel();
    let result = finish(handle).await;
    assert!(result.cancelled, "{result:?}");
    assert!(fake.pod(NS, &name).is_none(), "the pending pod is deleted");
}

#[tokio::test]
async fn a_second_instance_leaves_the_first_ones_pods_alone() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let a = PodRunner::new(fake.client(), NS, default_pods_config()).with_instance("oj-a");
    let b = PodRunner::new(fake.client(), NS, default_pods_config()).with_instance("oj-b");
    let name = pod_name("shared", 0);
    let a_run = spawn(
        &a,
        input("shared"),
        &dir.path().join("a"),
        CancellationToken::new(),
    );
    wait_created(&fake, &name).await;
    let pod = fake.pod(NS, &name).unwrap();
    assert_eq!(pod.metadata.labels.unwrap()["oj.dev/instance"], "oj-a");

    // b knows no job "shared": its clean-up does not delete a's pod ...
    let deleted = b.cleanup_orphans(&Default::default()).await.unwrap();
    assert!(deleted.is_empty(), "{deleted:?}");
    // ... and b refuses to take over a pod of the same name.
    let result = b
        .run(
            input("shared"),
            &dir.path().join("b"),
            CancellationToken::new(),
        )
        .await;
    assert!(
        result
            .error
            .as_deref()
            .is_some_and(|e| e.contains("another oj instance") && e.contains("oj-a")),
        "{result:?}"
    );
    assert!(fake.pod(NS, &name).is_some(), "a's pod is untouched");

    fake.set_pod_phase(NS, &name, "Running");
    fake.finish_pod(NS, &name, 0);
    assert!(finish(a_run).await.succeeded);
}

#[tokio::test]
async fn a_restarted_daemon_with_a_new_instance_name_adopts_its_running_pod() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let old = PodRunner::new(fake.client(), NS, default_pods_config()).with_instance("oj-7d9f-old");
    let name = pod_name("adopt", 0);
    let first = spawn(
        &old,
        input("adopt"),
        &dir.path().join("l"),
        CancellationToken::new(),
    );
    wait_created(&fake, &name).await;
    fake.set_pod_phase(NS, &name, "Running");
    first.abort();
    let _ = first.await;

    // The next daemon pod has another $POD_NAME.
    let new = PodRunner::new(fake.client(), NS, default_pods_config()).with_instance("oj-7d9f-new");
    let opts = RunOptions {
        attach_only: true,
        ..Default::default()
    };
    let log = dir.path().join("l");
    let handle = {
        let new = new.clone();
        let log = log.clone();
        tokio::spawn(async move {
            new.run_with(input("adopt"), &log, CancellationToken::new(), opts)
                .await
        })
    };
    assert!(
        fake.wait_for(WAIT, |f| f
            .pod(NS, &name)
            .and_then(|p| p.metadata.labels)
            .is_some_and(|l| l["oj.dev/instance"] == "oj-7d9f-new"))
            .await,
        "the pod is relabelled for the new instance"
    );
    fake.append_pod_log(NS, &name, "done\n");
    fake.finish_pod(NS, &name, 0);
    let result = finish(handle).await;
    assert!(result.succeeded && result.attached, "{result:?}");
    assert_eq!(fake.pod_creates(NS), 1);
}

#[tokio::test]
async fn a_daemon_that_reattaches_continues_the_step_log_after_the_kubelet_rotated_it() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/j/compile.log");
    let name = pod_name("rot", 0);
    let old = PodRunner::new(fake.client(), NS, default_pods_config()).with_instance("oj-old");
    let detach = CancellationToken::new();
    let opts = RunOptions {
        detach: detach.clone(),
        ..Default::default()
    };
    let first = {
        let log = log.clone();
        tokio::spawn(async move {
            old.run_with(input("rot"), &log, CancellationToken::new(), opts)
                .await
        })
    };
    wait_created(&fake, &name).await;
    fake.set_pod_phase(NS, &name, "Running");
    fake.append_pod_log(NS, &name, "one\n");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    fake.append_pod_log(NS, &name, "two\n");
    let cursor = log.with_file_name(".compile.log.cursor");
    assert!(
        fake.wait_for(WAIT, |_| cursor.exists()
            && std::fs::read_to_string(&log).is_ok_and(|t| t == "one\ntwo\n"))
            .await,
        "the first daemon saved where its log got to"
    );
    // The daemon stops following (drain, detach); the pod runs on, and the
    // kubelet rotates its log: the old lines are gone from the API.
    detach.cancel();
    assert!(finish(first).await.detached);
    fake.set_pod_log(NS, &name, "three\n");

    let new = PodRunner::new(fake.client(), NS, default_pods_config()).with_instance("oj-new");
    let handle = {
        let log = log.clone();
        tokio::spawn(async move {
            new.attach(input("rot"), &log, CancellationToken::new())
                .await
        })
    };
    assert!(
        fake.wait_for(WAIT, |_| std::fs::read_to_string(&log)
            .is_ok_and(|t| t == "one\ntwo\nthree\n"))
            .await,
        "{:?}",
        std::fs::read_to_string(&log)
    );
    fake.finish_pod(NS, &name, 0);
    assert!(finish(handle).await.succeeded);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\nthree\n");
}

#[tokio::test]
async fn a_step_finishes_while_the_shared_watch_is_refused() {
    let fake = FakeKube::start();
    // No watch and no list of pods works (a Role without `watch`/`list`).
    fake.inject_fault(
        oj_k8s_fake::Fault::new("GET", &FakeKube::pods_path(NS), 403)
            .query("labelSelector")
            .forever(),
    );
    let dir = tempfile::tempdir().unwrap();
    let runner = PodRunner::new(fake.client(), NS, default_pods_config()).with_instance("oj-a");
    let name = pod_name("blind", 0);
    let handle = spawn(
        &runner,
        input("blind"),
        &dir.path().join("l"),
        CancellationToken::new(),
    );
    wait_created(&fake, &name).await;
    fake.set_pod_phase(NS, &name, "Running");
    fake.finish_pod(NS, &name, 0);
    let result = finish(handle).await;
    assert!(result.succeeded, "{result:?}");
}
