//! The daemon's life as types, driven by a test instead of signals: build
//! binds and starts nothing, spawn starts, and the run ends when its
//! shutdown input asks. In a process of its own: building a daemon makes
//! the process a child subreaper and sets up its cgroup subtree.
//!
//! The daemon's own tasks are seen from outside: the engine answers only
//! once spawned, and the fake Kubernetes API server records every request,
//! so a built daemon with a lease that sends nothing has started neither
//! the election nor the in-cluster checks.

use std::time::Duration;

use futures::StreamExt;
use oj_config::{Environment, Loaded};
use oj_daemon::{Daemon, Plugins};
use oj_k8s_fake::FakeKube;

fn loaded(state_dir: &std::path::Path) -> Loaded {
    let env = Environment::new([("HOME", "/nonexistent-home")], "h");
    let opts = oj_config::LoadOptions {
        sets: vec![format!("daemon.state_dir={}", state_dir.display())],
        ..Default::default()
    };
    oj_config::load(&opts, &env).expect("loads")
}

/// A shutdown input that fires when the returned sender does.
fn shutdown_input() -> (
    tokio::sync::oneshot::Sender<()>,
    oj_daemon::ShutdownRequests,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let input = futures::stream::once(async move {
        let _ = stopped.await;
        "test"
    })
    .boxed();
    (stop, input)
}

/// Asks a running daemon to stop through its input and waits for the run's
/// result; an idle daemon drains at once.
async fn stop_and_join<T>(
    stop: tokio::sync::oneshot::Sender<()>,
    run: tokio::task::JoinHandle<T>,
) -> T {
    stop.send(())
        .expect("the run still listens for its shutdown input");
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("an idle daemon drains at once")
        .expect("the run does not panic")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_is_built_spawned_and_stopped_by_its_shutdown_input() {
    let dir = tempfile::tempdir().unwrap();
    let env = Environment::new([("HOME", "/nonexistent-home")], "h");
    let built = Daemon::build(loaded(dir.path()), env, None, Plugins::default(), None)
        .await
        .expect("builds");
    // Built, not started: the socket is bound, the engine does not answer.
    let socket = built.listeners()[0]
        .strip_prefix("unix://")
        .map(std::path::PathBuf::from)
        .expect("a Unix socket");
    assert!(socket.exists());
    let engine = built.engine();
    let not_yet = tokio::time::timeout(Duration::from_millis(50), engine.page(None, None, 1));
    assert!(
        not_yet.await.is_err(),
        "the engine does not run before spawn"
    );

    let running = built.spawn().expect("spawns");
    let page = engine
        .page(None, None, 1)
        .await
        .expect("the engine answers");
    assert_eq!(page.len, 0);

    let (stop, input) = shutdown_input();
    let run = tokio::spawn(running.run(input));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!run.is_finished(), "runs until asked to stop");
    let result = stop_and_join(stop, run).await;
    assert_eq!(result, Ok(()));
    assert!(!socket.exists(), "the socket is released");
    assert!(engine.shutdown().await.is_err(), "the engine has stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_daemon_with_a_lease_sends_the_cluster_nothing_until_spawned() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let env = Environment::new(
        [
            ("HOME", "/nonexistent-home"),
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ],
        "h",
    );
    let opts = oj_config::LoadOptions {
        sets: vec![
            format!("daemon.state_dir={}", state_dir.display()),
            "daemon.instance=built-first".into(),
            "notify.backend=none".into(),
            "lock.strategy=lease".into(),
            "lock.lease.retry_period=100ms".into(),
        ],
        ..Default::default()
    };
    let loaded = oj_config::load(&opts, &env).expect("loads");
    let built = Daemon::build(loaded, env, None, Plugins::default(), None)
        .await
        .expect("builds");
    // Several retry periods: a running election would have asked by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.requests(),
        vec![],
        "built, not spawned: no lease request, no in-cluster check"
    );

    let running = built.spawn().expect("spawns");
    let holder = |f: &FakeKube| {
        f.lease("default", "oj-daemon")
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    };
    assert!(
        fake.wait_for(Duration::from_secs(10), |f| holder(f).as_deref()
            == Some("built-first"))
            .await,
        "the election runs from spawn on: {:?}",
        fake.requests()
    );
    assert!(
        fake.wait_for(Duration::from_secs(10), |f| f
            .count_requests(|r| !r.path.contains("/leases"))
            > 0)
            .await,
        "the in-cluster checks run from spawn on: {:?}",
        fake.requests()
    );

    let (stop, input) = shutdown_input();
    let run = tokio::spawn(running.run(input));
    let result = stop_and_join(stop, run).await;
    assert_eq!(result, Ok(()));
    assert_eq!(
        holder(&fake).as_deref(),
        Some(""),
        "the lease is released on a clean exit"
    );
}
