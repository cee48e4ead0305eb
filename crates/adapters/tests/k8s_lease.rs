//! The `lease` lock strategy against the fake API server, with short real
//! timings (duration 3s, renew deadline 2s, retry 300ms). Waits are bounded;
//! nothing asserts how fast anything happened.
//!
//! Time, two kinds:
//! - Expiry is judged on the wall clock the lease is given ([`Clock`]): a
//!   test that waits for a record to expire gives the standby a
//!   [`JumpClock`] and moves it past the record's duration instead of
//!   sleeping through it (the takeover after a kill).
//! - The renewal loop (retry period, renew deadline, the bound on a hung
//!   request) runs on tokio timers, in real time here: paused tokio time
//!   cannot be used, because every attempt is a real HTTP request over
//!   loopback to the fake API server on its own thread and runtime, and a
//!   paused clock auto-advances while such a request is in flight (the
//!   timeouts would fire before any answer). The tests that wait for the
//!   renew deadline (renewals failing, a hung API, the renewal reports)
//!   therefore take about 2 s each.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use oj_adapters::k8s::lease::{Attempt, Clock, LeaseLock, LeaseLost, LeaseTimings};
use oj_k8s_fake::{FakeKube, Fault};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const NS: &str = "default";
const NAME: &str = "oj-daemon";
const WAIT: Duration = Duration::from_secs(20);

fn timings() -> LeaseTimings {
    LeaseTimings {
        duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
    }
}

fn lock(fake: &FakeKube, identity: &str) -> LeaseLock {
    lock_with(fake, identity, timings())
}

fn lock_with(fake: &FakeKube, identity: &str, timings: LeaseTimings) -> LeaseLock {
    LeaseLock::new(
        Api::namespaced(fake.client(), NS),
        NS,
        NAME,
        timings,
        identity,
    )
}

/// [`timings`] with a lease valid for an hour: it never expires on its
/// own during a test, only when a [`JumpClock`] moves past it.
fn hour_long() -> LeaseTimings {
    LeaseTimings {
        duration: Duration::from_secs(3600),
        ..timings()
    }
}

/// A wall clock the test moves forward: the system clock plus a jump.
#[derive(Default)]
struct JumpClock {
    ahead: std::sync::Mutex<SignedDuration>,
}

impl JumpClock {
    fn jump(&self, by: SignedDuration) {
        *self.ahead.lock().unwrap() += by;
    }
}

impl Clock for JumpClock {
    fn now(&self) -> Timestamp {
        Timestamp::now() + *self.ahead.lock().unwrap()
    }
}

struct Running {
    leader: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), LeaseLost>>,
}

fn start(lock: LeaseLock) -> Running {
    let (tx, rx) = watch::channel(false);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(lock.run(tx, async {
        let _ = stopped.await;
    }));
    Running {
        leader: rx,
        stop: Some(stop),
        task,
    }
}

async fn until(rx: &mut watch::Receiver<bool>, value: bool) -> bool {
    tokio::time::timeout(WAIT, rx.wait_for(|v| *v == value))
        .await
        .is_ok()
}

fn holder(fake: &FakeKube) -> Option<String> {
    fake.lease(NS, NAME)
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

fn lease_held_by(holder: &str, renewed: Timestamp, seconds: i32) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(renewed)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(4),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn one_leads_the_other_stands_by_and_takes_over_after_a_kill() {
    let fake = FakeKube::start();
    // Records valid for an hour: only the standby's clock, moved past the
    // record, lets it take over (no waiting for the expiry in real time).
    let clock = Arc::new(JumpClock::default());
    let mut a = start(lock_with(&fake, "pod-a", hour_long()));
    assert!(
        until(&mut a.leader, true).await,
        "the first instance acquires the free lease"
    );
    let mut b = start(lock_with(&fake, "pod-b", hour_long()).with_clock(clock.clone()));
    // b has seen the lease held by a at least once (its GET came after a's create).
    let gets = fake.count("GET", &FakeKube::lease_path(NS, NAME));
    assert!(
        fake.wait_for(WAIT, |f| f.count("GET", &FakeKube::lease_path(NS, NAME))
            >= gets + 3)
            .await
    );
    assert!(!*b.leader.borrow(), "the second instance is standby");
    assert!(*a.leader.borrow());
    assert_eq!(holder(&fake).as_deref(), Some("pod-a"));
    let spec = fake.lease(NS, NAME).unwrap().spec.unwrap();
    assert_eq!(spec.lease_duration_seconds, Some(3600));
    assert_eq!(spec.lease_transitions, Some(0));

    // kill -9: the leader's task vanishes without releasing.
    a.task.abort();
    let _ = a.task.await;
    assert_eq!(
        holder(&fake).as_deref(),
        Some("pod-a"),
        "a killed leader leaves its record behind"
    );
    let gets = fake.count("GET", &FakeKube::lease_path(NS, NAME));
    assert!(
        fake.wait_for(WAIT, |f| f.count("GET", &FakeKube::lease_path(NS, NAME))
            >= gets + 2)
            .await
    );
    assert!(
        !*b.leader.borrow(),
        "the standby waits while the killed leader's record is valid"
    );
    clock.jump(SignedDuration::from_secs(2 * 3600));
    assert!(
        until(&mut b.leader, true).await,
        "the standby takes over once the lease expires"
    );
    let spec = fake.lease(NS, NAME).unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-b"));
    assert_eq!(spec.lease_transitions, Some(1));
    b.stop.take().unwrap().send(()).unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, b.task).await.unwrap().unwrap(),
        Ok(())
    );
}

#[tokio::test]
async fn a_leader_whose_renewals_fail_steps_down_and_reports_it() {
    let fake = FakeKube::start();
    let mut a = start(lock(&fake, "pod-a"));
    assert!(until(&mut a.leader, true).await);
    fake.fail_lease_updates(NS, NAME, 500);
    assert!(until(&mut a.leader, false).await, "leadership is withdrawn");
    let result = tokio::time::timeout(WAIT, a.task)
        .await
        .expect("run returns")
        .unwrap();
    let lost = result.expect_err("losing the lease is an error the daemon exits on");
    assert_eq!((lost.namespace.as_str(), lost.name.as_str()), (NS, NAME));
    let msg = lost.to_string();
    assert!(
        msg.contains("renew_deadline") && msg.contains("oj-daemon"),
        "{msg}"
    );
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.method == "PUT" && r.status == 500)
    );
}

#[tokio::test]
async fn a_leader_whose_api_hangs_steps_down() {
    let fake = FakeKube::start();
    let mut a = start(lock(&fake, "pod-a"));
    assert!(until(&mut a.leader, true).await);
    fake.inject_fault(
        Fault::new("GET", &FakeKube::lease_path(NS, NAME), 500)
            .forever()
            .delay(Duration::from_secs(30)),
    );
    let result = tokio::time::timeout(WAIT, a.task)
        .await
        .expect("run returns despite the hung API")
        .unwrap();
    assert!(result.is_err());
    assert!(!*a.leader.borrow());
}

#[tokio::test]
async fn a_409_on_a_concurrent_update_is_a_lost_race() {
    let fake = FakeKube::start();
    let l = lock(&fake, "pod-a");
    assert_eq!(l.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    fake.inject_fault(Fault::new("PUT", &FakeKube::lease_path(NS, NAME), 409));
    assert_eq!(l.try_acquire_or_renew().await.unwrap(), Attempt::LostRace);

    // While leading, a couple of 409s neither end leadership nor the loop.
    let mut a = start(l.clone());
    assert!(until(&mut a.leader, true).await);
    fake.inject_fault(Fault::new("PUT", &FakeKube::lease_path(NS, NAME), 409).times(2));
    let conflicts = |f: &FakeKube| {
        f.requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.status == 409)
            .count()
    };
    assert!(fake.wait_for(WAIT, |f| conflicts(f) == 3).await);
    let ok_puts = |f: &FakeKube| {
        f.requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.status == 200)
            .count()
    };
    let before = ok_puts(&fake);
    assert!(
        fake.wait_for(WAIT, |f| ok_puts(f) > before).await,
        "renewals resume"
    );
    assert!(*a.leader.borrow() && !a.task.is_finished());
    a.stop.take().unwrap().send(()).unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, a.task).await.unwrap().unwrap(),
        Ok(())
    );
}

#[tokio::test]
async fn a_real_stale_write_loses_the_race() {
    // a reads the expired record, but its answer is held back while b reads
    // and takes the lease; a then writes with a stale resourceVersion, the
    // server answers 409, and a reports a lost race (not an error).
    let fake = FakeKube::start();
    fake.put_lease(
        NS,
        lease_held_by(
            "gone",
            Timestamp::now() - SignedDuration::from_secs(3600),
            3,
        ),
    );
    fake.inject_fault(Fault::slow_response(
        "GET",
        &FakeKube::lease_path(NS, NAME),
        Duration::from_secs(2),
    ));
    let a = lock(&fake, "pod-a");
    let b = lock(&fake, "pod-b");
    let slow = tokio::spawn(async move { a.try_acquire_or_renew().await });
    // Only start b once a's read has been served (the fault is used up).
    assert!(fake.wait_for(WAIT, fault_used).await);
    assert_eq!(b.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    assert_eq!(
        tokio::time::timeout(WAIT, slow)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        Attempt::LostRace
    );
    let conflicts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.status == 409)
        .collect();
    assert_eq!(
        conflicts.len(),
        1,
        "a's stale write was refused by the server"
    );
    let spec = fake.lease(NS, NAME).unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-b"));
    assert_eq!(
        spec.lease_transitions,
        Some(5),
        "exactly one transition was written"
    );
}

/// True once the slow-response fault has fired (a's GET arrived and was
/// served; only its answer is still held back).
fn fault_used(fake: &FakeKube) -> bool {
    fake.pending_faults() == 0
}

#[tokio::test]
async fn a_valid_lease_of_another_holder_keeps_us_standby_an_expired_one_is_taken() {
    let fake = FakeKube::start();
    fake.put_lease(NS, lease_held_by("someone", Timestamp::now(), 3600));
    let l = lock(&fake, "pod-a");
    assert_eq!(
        l.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy("someone".into())
    );

    fake.put_lease(
        NS,
        lease_held_by(
            "someone",
            Timestamp::now() - SignedDuration::from_secs(7200),
            3600,
        ),
    );
    assert_eq!(l.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    let spec = fake.lease(NS, NAME).unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(spec.lease_transitions, Some(5));
}

struct Skewed(SignedDuration);

impl Clock for Skewed {
    fn now(&self) -> Timestamp {
        Timestamp::now() + self.0
    }
}

#[tokio::test]
async fn expiry_is_judged_with_the_injected_clock() {
    let fake = FakeKube::start();
    fake.put_lease(NS, lease_held_by("someone", Timestamp::now(), 60));
    let now = lock(&fake, "pod-a");
    assert_eq!(
        now.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy("someone".into())
    );
    let later = lock(&fake, "pod-a").with_clock(Arc::new(Skewed(SignedDuration::from_secs(120))));
    assert_eq!(later.try_acquire_or_renew().await.unwrap(), Attempt::Held);
}

#[tokio::test]
async fn clean_exit_releases_the_lease_for_the_standby() {
    let fake = FakeKube::start();
    let mut a = start(lock(&fake, "pod-a"));
    assert!(until(&mut a.leader, true).await);
    // A long lease: the standby can only get it this soon through the release.
    let mut b = start(lock_with(&fake, "pod-b", hour_long()));
    a.stop.take().unwrap().send(()).unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, a.task).await.unwrap().unwrap(),
        Ok(())
    );
    assert!(!*a.leader.borrow());
    assert!(
        until(&mut b.leader, true).await,
        "the standby acquires the released lease"
    );
    assert_eq!(holder(&fake).as_deref(), Some("pod-b"));
    // b releases too: the holder is emptied.
    b.stop.take().unwrap().send(()).unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, b.task).await.unwrap().unwrap(),
        Ok(())
    );
    assert_eq!(holder(&fake).as_deref(), Some(""));
}

#[tokio::test]
async fn release_of_a_lease_we_do_not_hold_changes_nothing() {
    let fake = FakeKube::start();
    fake.put_lease(NS, lease_held_by("someone", Timestamp::now(), 60));
    assert!(!lock(&fake, "pod-a").release().await);
    assert_eq!(holder(&fake).as_deref(), Some("someone"));
}

#[tokio::test]
async fn each_renewal_attempt_of_the_leader_is_reported_with_its_result() {
    let fake = FakeKube::start();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<&'static str>::new()));
    let sink = seen.clone();
    let hook: oj_adapters::k8s::lease::RenewalHook =
        Arc::new(move |result| sink.lock().unwrap().push(result));
    let mut a = start(lock(&fake, "pod-a").on_renewal(hook));
    assert!(until(&mut a.leader, true).await);
    let count = |r: &str| seen.lock().unwrap().iter().filter(|x| **x == r).count();
    let deadline = tokio::time::Instant::now() + WAIT;
    while count("ok") < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(count("ok") >= 2, "renewals: {:?}", seen.lock().unwrap());
    // Renewals that the API refuses are errors, until the leader steps down.
    fake.fail_lease_updates(NS, NAME, 500);
    assert!(until(&mut a.leader, false).await);
    assert!(count("error") >= 1, "renewals: {:?}", seen.lock().unwrap());
    let _ = tokio::time::timeout(WAIT, a.task).await;
}
