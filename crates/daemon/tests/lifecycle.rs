//! The daemon's life as types, driven by a test instead of signals: build
//! binds and starts nothing, spawn starts, and the run ends when its
//! shutdown input asks. In a process of its own: building a daemon makes
//! the process a child subreaper and sets up its cgroup subtree.

use std::time::Duration;

use futures::StreamExt;
use oj_config::{Environment, Loaded};
use oj_daemon::{Daemon, Plugins};

fn loaded(state_dir: &std::path::Path) -> Loaded {
    let env = Environment::new([("HOME", "/nonexistent-home")], "h");
    let opts = oj_config::LoadOptions {
        sets: vec![format!("daemon.state_dir={}", state_dir.display())],
        ..Default::default()
    };
    oj_config::load(&opts, &env).expect("loads")
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

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let input = futures::stream::once(async move {
        let _ = stopped.await;
        "test"
    })
    .boxed();
    let run = tokio::spawn(running.run(input));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!run.is_finished(), "runs until asked to stop");
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("an idle daemon drains at once")
        .unwrap();
    assert_eq!(result, Ok(()));
    assert!(!socket.exists(), "the socket is released");
    assert!(engine.shutdown().await.is_err(), "the engine has stopped");
}
