//! The engine's firing, with paused tokio time and an injected wall clock
//! that follows it (and can jump, as after a suspend): fires once per fire
//! time, only as a leader, catch-up after downtime, overlap, durable pauses,
//! and no second job for a fire time after a crash.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use oj_config::{ScheduleCatchUp, ScheduleConfig, ScheduleOverlap};
use oj_core::{FireResult, JobState};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::super::{Engine, EngineConfig, EngineHandle, Retention};
use super::*;
use crate::metrics::Metrics;
use crate::runner::{Runners, StepContext, StepOutcome, StepRunner, Stop};
use crate::storage::Storage;

/// 2026-01-01T00:00:30Z.
const BASE: u64 = 1_767_225_630;

fn at(s: u64) -> Timestamp {
    Timestamp(UNIX_EPOCH + Duration::from_secs(s))
}

/// A wall clock that follows tokio's (paused) time, plus jumps.
#[derive(Clone)]
struct TestClock {
    start: Instant,
    jumped: Arc<AtomicU64>,
}

impl TestClock {
    fn new() -> TestClock {
        TestClock {
            start: Instant::now(),
            jumped: Arc::new(AtomicU64::new(0)),
        }
    }

    fn clock(&self) -> Clock {
        let c = self.clone();
        Arc::new(move || {
            UNIX_EPOCH
                + Duration::from_secs(BASE + c.jumped.load(Ordering::SeqCst))
                + (Instant::now() - c.start)
        })
    }

    /// The wall clock moves on while the monotonic clock does not (suspend).
    fn suspend(&self, d: Duration) {
        self.jumped.fetch_add(d.as_secs(), Ordering::SeqCst);
    }
}

/// "0" exits 0 at once; "block" runs until stopped.
struct Steps;

impl StepRunner for Steps {
    fn run(
        &self,
        ctx: StepContext,
        mut stop: watch::Receiver<Stop>,
    ) -> futures::future::BoxFuture<'static, StepOutcome> {
        Box::pin(async move {
            if ctx.run == "block" {
                let _ = stop.wait_for(|s| *s != Stop::Run).await;
                return StepOutcome::Signaled(15);
            }
            StepOutcome::Exited(0)
        })
    }
}

fn every_minute(run: &str, overlap: ScheduleOverlap, catch_up: ScheduleCatchUp) -> ScheduleConfigs {
    BTreeMap::from([(
        "tick".to_string(),
        ScheduleConfig {
            cron: "* * * * *".into(),
            timezone: "UTC".into(),
            job: serde_json::json!({"step": [{"name": "s", "run": run}]}),
            overlap,
            catch_up,
            catch_up_within: Duration::from_secs(86_400),
            enabled: true,
        },
    )])
}

struct Running {
    handle: EngineHandle,
    leader: watch::Sender<bool>,
    /// Publishes `schedules.*` as a reload does.
    schedules: watch::Sender<Arc<ScheduleConfigs>>,
    task: JoinHandle<()>,
}

fn start(
    dir: &std::path::Path,
    leader: bool,
    clock: &TestClock,
    configs: &ScheduleConfigs,
) -> Running {
    let (storage, state, _) = Storage::open(dir).unwrap();
    let (leader_tx, leader_rx) = watch::channel(leader);
    let runners = Runners {
        shell: Arc::new(Steps),
        container: Arc::new(Steps),
    };
    let cfg = EngineConfig {
        max_concurrent: 4,
        allow_shell: true,
        step_timeout: Duration::from_secs(3600),
        logs_dir: dir.join("logs"),
        reload_on_lead: false,
        retention: Retention::default(),
        queues: Default::default(),
    };
    let (mut engine, handle) = Engine::new(
        state,
        storage,
        crate::live::Live::fixed(cfg),
        runners,
        Arc::new(Metrics::new("t", "t")),
        leader_rx,
    );
    let (schedules, live) = crate::live::Live::channel(configs.clone());
    engine.set_schedules(clock.clock(), live);
    let task = tokio::spawn(engine.run());
    Running {
        handle,
        leader: leader_tx,
        schedules,
        task,
    }
}

/// The jobs of schedule `tick`, oldest first: (fire time, manual, state).
async fn fires(h: &EngineHandle) -> Vec<(Timestamp, bool, JobState)> {
    let page = h.page(None, None, 1000).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
    let mut out = Vec::new();
    for j in body["jobs"].as_array().unwrap().iter().rev() {
        let job: Job = serde_json::from_value(j.clone()).unwrap();
        let s = job.schedule.expect("every job here is a schedule's");
        out.push((s.fire_time, s.manual, job.state));
    }
    out
}

fn sleep(s: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_secs(s))
}

#[tokio::test(start_paused = true)]
async fn a_minute_schedule_fires_once_per_fire_time_and_only_as_leader() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let cfg = every_minute("0", ScheduleOverlap::Skip, ScheduleCatchUp::Latest);
    let e = start(dir.path(), true, &clock, &cfg);
    sleep(29).await;
    assert!(fires(&e.handle).await.is_empty(), "nothing before 00:01:00");
    sleep(2).await;
    assert_eq!(
        fires(&e.handle)
            .await
            .iter()
            .map(|f| f.0)
            .collect::<Vec<_>>(),
        vec![at(BASE + 30)]
    );
    sleep(120).await;
    let times: Vec<Timestamp> = fires(&e.handle).await.iter().map(|f| f.0).collect();
    assert_eq!(times, vec![at(BASE + 30), at(BASE + 90), at(BASE + 150)]);
    let list = e.handle.schedules().await;
    assert_eq!(list[0].last_fire, Some(at(BASE + 150)));
    assert_eq!(list[0].last_result, Some(FireResult::Submitted));
    assert_eq!(list[0].next_fire, Some(at(BASE + 210)));

    // Standby: nothing fires; on leading, one catch-up run for the newest.
    e.leader.send(false).unwrap();
    sleep(200).await;
    assert_eq!(fires(&e.handle).await.len(), 3, "a standby never fires");
    e.leader.send(true).unwrap();
    sleep(1).await;
    let f = fires(&e.handle).await;
    assert_eq!(f.len(), 4, "{f:?}");
    assert_eq!(f[3].0, at(BASE + 330), "the newest missed fire runs once");
}

#[tokio::test(start_paused = true)]
async fn after_a_crash_a_settled_fire_never_gets_a_second_job() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let cfg = every_minute("0", ScheduleOverlap::Skip, ScheduleCatchUp::Latest);
    let e = start(dir.path(), true, &clock, &cfg);
    sleep(31).await;
    assert_eq!(fires(&e.handle).await.len(), 1);
    // kill -9: the task is gone, the WAL stays.
    e.task.abort();
    let _ = e.task.await;
    let e = start(dir.path(), true, &clock, &cfg);
    sleep(1).await;
    assert_eq!(fires(&e.handle).await.len(), 1, "the 00:01 fire is settled");
    // Down over two fire times (00:02, 00:03): one catch-up run.
    e.task.abort();
    let _ = e.task.await;
    sleep(130).await;
    let e = start(dir.path(), true, &clock, &cfg);
    sleep(1).await;
    let f = fires(&e.handle).await;
    assert_eq!(
        f.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![at(BASE + 30), at(BASE + 150)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_suspend_counts_as_downtime_and_is_noticed_within_a_nap() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut cfg = every_minute("0", ScheduleOverlap::Skip, ScheduleCatchUp::Latest);
    let e = start(dir.path(), true, &clock, &cfg);
    sleep(1).await;
    // The lid closes for an hour: the wall clock jumps, tokio's does not.
    clock.suspend(Duration::from_secs(3600));
    sleep(MAX_NAP.as_secs() + 1).await;
    let f = fires(&e.handle).await;
    assert_eq!(f.len(), 1, "one catch-up run for the hour: {f:?}");
    assert_eq!(
        f[0].0,
        at(BASE + 3570),
        "the newest fire during the suspend"
    );
    drop(e);

    // catch_up = none: the missed fires stay missed.
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    cfg.get_mut("tick").unwrap().catch_up = ScheduleCatchUp::None;
    let e = start(dir.path(), true, &clock, &cfg);
    sleep(1).await;
    clock.suspend(Duration::from_secs(3600));
    sleep(MAX_NAP.as_secs() + 1).await;
    assert!(fires(&e.handle).await.is_empty());
    let info = &e.handle.schedules().await[0];
    assert_eq!(info.last_result, Some(FireResult::Missed));
    sleep(60).await;
    assert_eq!(fires(&e.handle).await.len(), 1, "on-time fires run again");
}

#[tokio::test(start_paused = true)]
async fn overlap_skip_allow_and_replace() {
    for (overlap, jobs) in [
        (ScheduleOverlap::Skip, 1),
        (ScheduleOverlap::Allow, 3),
        (ScheduleOverlap::Replace, 3),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new();
        let cfg = every_minute("block", overlap, ScheduleCatchUp::Latest);
        let e = start(dir.path(), true, &clock, &cfg);
        sleep(151).await;
        let f = fires(&e.handle).await;
        assert_eq!(f.len(), jobs, "{overlap:?}: {f:?}");
        let running = f.iter().filter(|j| j.2 == JobState::Running).count();
        match overlap {
            ScheduleOverlap::Skip => {
                assert_eq!(running, 1);
                let info = &e.handle.schedules().await[0];
                assert_eq!(info.last_result, Some(FireResult::Skipped));
                // `oj schedule run` obeys overlap too.
                let refused = e.handle.run_schedule("tick".into()).await;
                assert!(
                    matches!(refused, Err(ScheduleError::Overlap { .. })),
                    "{refused:?}"
                );
            }
            ScheduleOverlap::Allow => assert_eq!(running, 3),
            ScheduleOverlap::Replace => {
                assert_eq!(running, 1, "{f:?}");
                assert_eq!(f[0].2, JobState::Cancelled);
                assert_eq!(f[2].2, JobState::Running);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn pauses_are_durable_and_paused_fires_are_not_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let cfg = every_minute("0", ScheduleOverlap::Skip, ScheduleCatchUp::Latest);
    let e = start(dir.path(), true, &clock, &cfg);
    sleep(1).await;
    let info = e.handle.pause_schedule("tick".into(), true).await.unwrap();
    assert!(info.paused);
    assert_eq!(info.next_fire, None);
    sleep(130).await;
    assert!(fires(&e.handle).await.is_empty());
    e.task.abort();
    let _ = e.task.await;
    let e = start(dir.path(), true, &clock, &cfg);
    sleep(60).await;
    assert!(
        fires(&e.handle).await.is_empty(),
        "still paused after a restart"
    );
    assert!(e.handle.schedules().await[0].paused);
    e.handle.pause_schedule("tick".into(), false).await.unwrap();
    sleep(1).await;
    assert!(
        fires(&e.handle).await.is_empty(),
        "paused fires are not caught up"
    );
    sleep(60).await;
    assert_eq!(fires(&e.handle).await.len(), 1);
    // a manual run is a job of the schedule that settles no fire time
    let job = e.handle.run_schedule("tick".into()).await.unwrap();
    assert!(job.schedule.as_ref().unwrap().manual);
    let unknown = e.handle.pause_schedule("nope".into(), true).await;
    assert!(matches!(unknown, Err(ScheduleError::NotFound { .. })));
}

#[tokio::test(start_paused = true)]
async fn reconfiguring_adds_changes_and_removes_schedules_live() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let e = start(dir.path(), true, &clock, &BTreeMap::new());
    sleep(1).await;
    assert!(e.handle.schedules().await.is_empty());
    let cfg = every_minute("0", ScheduleOverlap::Skip, ScheduleCatchUp::Latest);
    e.schedules.send_replace(Arc::new(cfg.clone()));
    sleep(60).await;
    assert_eq!(fires(&e.handle).await.len(), 1, "added schedules fire");
    // A new cron: fires before the change are not caught up.
    let mut hourly = cfg.clone();
    hourly.get_mut("tick").unwrap().cron = "0 * * * *".into();
    e.schedules.send_replace(Arc::new(hourly));
    sleep(1).await;
    assert_eq!(
        e.handle.schedules().await[0].next_fire,
        Some(at(BASE + 3570))
    );
    e.schedules.send_replace(Arc::new(BTreeMap::new()));
    sleep(3600).await;
    assert_eq!(
        fires(&e.handle).await.len(),
        1,
        "removed schedules do not fire"
    );
    assert!(e.handle.schedules().await.is_empty());
}
