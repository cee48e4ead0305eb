//! The `lease` lock strategy: a single leader among daemon replicas through
//! a `coordination.k8s.io/v1` Lease, with client-go's leader-election rules.
//!
//! kube-rs has no leader election, and `kube-lease-manager` hides the loop
//! behind its own timings; this is the loop written out so that every rule
//! of SPEC §3.7 is visible and tested against the fake API server:
//!
//! - holderIdentity = `daemon.instance`; a lease is free when it does not
//!   exist, has an empty holder, or has expired (`renewTime +
//!   leaseDurationSeconds < now`);
//! - every `retry_period` a standby tries to acquire and the leader renews;
//! - every write carries the resourceVersion it read (optimistic
//!   concurrency): a 409 means another replica wrote first, a lost race, not
//!   an error;
//! - a leader that has not renewed for `renew_deadline` steps down at once
//!   (the leadership channel goes `false`) and [`LeaseLock::run`] returns
//!   [`LeaseLost`], so the daemon can drain and exit non-zero;
//! - on a clean shutdown the leader releases the lease (empty holder), so a
//!   standby takes over without waiting for expiry.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// The wall clock written into and compared with `renewTime`; injected so
/// tests can skew one replica's clock.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Timings of the lease, as in `lock.lease.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTimings {
    /// `leaseDurationSeconds`: how long a record is valid after its renewTime.
    pub duration: Duration,
    /// A leader that has not renewed for this long steps down.
    pub renew_deadline: Duration,
    /// Interval between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl From<&oj_config::LeaseConfig> for LeaseTimings {
    fn from(c: &oj_config::LeaseConfig) -> Self {
        LeaseTimings {
            duration: c.duration,
            renew_deadline: c.renew_deadline,
            retry_period: c.retry_period,
        }
    }
}

/// The leader lost the lease: it could not renew within `renew_deadline`,
/// or another replica holds it now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lost the Kubernetes lease {namespace}/{name}: {reason}; this instance stops leading")]
pub struct LeaseLost {
    pub namespace: String,
    pub name: String,
    pub reason: String,
}

/// What one acquire-or-renew attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease now (acquired or renewed).
    Held,
    /// Another holder's record is still valid.
    HeldBy(String),
    /// Another replica wrote between our read and our write (409).
    LostRace,
}

/// The `result` label of one renewal attempt.
fn renewal_result<E>(outcome: &Result<Result<Attempt, kube::Error>, E>) -> &'static str {
    match outcome {
        Ok(Ok(Attempt::Held)) => "ok",
        Ok(Ok(Attempt::HeldBy(_) | Attempt::LostRace)) => "conflict",
        Ok(Err(_)) => "error",
        Err(_) => "timeout",
    }
}

/// A Lease-based lock for one identity.
#[derive(Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timings: LeaseTimings,
    clock: Arc<dyn Clock>,
    on_renewal: RenewalHook,
}

/// Called after every renewal attempt of the leader with its result: `ok`,
/// `conflict` (409, or another holder took over), `error`, `timeout`
/// (`oj_lease_renewals_total{result}`).
pub type RenewalHook = Arc<dyn Fn(&'static str) + Send + Sync>;

impl std::fmt::Debug for LeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseLock")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("identity", &self.identity)
            .field("timings", &self.timings)
            .finish()
    }
}

impl LeaseLock {
    /// `api` must be namespaced (`Api::namespaced(client, ns)`); `namespace`
    /// is only used in messages.
    pub fn new(
        api: Api<Lease>,
        namespace: impl Into<String>,
        name: impl Into<String>,
        timings: LeaseTimings,
        identity: impl Into<String>,
    ) -> Self {
        LeaseLock {
            api,
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            timings,
            clock: Arc::new(SystemClock),
            on_renewal: Arc::new(|_| {}),
        }
    }

    /// From `lock.lease.*`: the lease `cfg.name` in `cfg.namespace`, else
    /// the pod's namespace, else `default`.
    pub fn from_config(
        client: kube::Client,
        cfg: &oj_config::LeaseConfig,
        identity: impl Into<String>,
    ) -> Self {
        let namespace = super::client::resolve_namespace(cfg.namespace.as_deref());
        let api = Api::namespaced(client, &namespace);
        LeaseLock::new(
            api,
            namespace,
            cfg.name.clone(),
            LeaseTimings::from(cfg),
            identity,
        )
    }

    /// Replaces the wall clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reports the result of each renewal attempt to `hook` (metrics).
    pub fn on_renewal(mut self, hook: RenewalHook) -> Self {
        self.on_renewal = hook;
        self
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn duration_seconds(&self) -> i32 {
        let d = self.timings.duration;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }

    /// Whether a record no longer protects its holder at `now`.
    fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
        let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
            return true;
        };
        let secs = i64::from(spec.lease_duration_seconds.unwrap_or(0));
        match renewed.0.checked_add(SignedDuration::from_secs(secs)) {
            Ok(until) => until < now,
            Err(_) => false,
        }
    }

    /// One client-go `tryAcquireOrRenew`: read, decide, write with the
    /// resourceVersion that was read.
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let now = self.clock.now();
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::LostRace),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.identity;
        if !holder.is_empty() && !ours && !Self::expired(&spec, now) {
            return Ok(Attempt::HeldBy(holder));
        }
        let mut next = spec.clone();
        next.holder_identity = Some(self.identity.clone());
        next.lease_duration_seconds = Some(self.duration_seconds());
        next.renew_time = Some(MicroTime(now));
        if !ours {
            next.acquire_time = Some(MicroTime(now));
            next.lease_transitions =
                Some(spec.lease_transitions.unwrap_or(0) + i32::from(!holder.is_empty()));
        }
        let mut lease = current;
        lease.spec = Some(next);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::LostRace),
            Err(e) => Err(e),
        }
    }

    /// Runs the election until `shutdown` resolves (then releases the lease
    /// if held and returns `Ok`) or leadership is lost (returns
    /// [`LeaseLost`]). `leader` is `true` exactly while this instance holds
    /// the lease; it goes `false` before this returns.
    pub async fn run(
        self,
        leader: watch::Sender<bool>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), LeaseLost> {
        tokio::pin!(shutdown);
        let retry = self.timings.retry_period.max(Duration::from_millis(10));
        let mut leading = false;
        let mut last_renew = Instant::now();
        let mut last_problem = String::from("no renewal attempt succeeded");
        // Logged at info only when it changes, not every retry_period.
        let mut seen_holder: Option<String> = None;
        loop {
            // A leader's attempt may not outlive its renew deadline; a
            // standby's is bounded so a hung API cannot stall it forever.
            let deadline = if leading {
                last_renew + self.timings.renew_deadline
            } else {
                Instant::now() + self.timings.renew_deadline.max(retry)
            };
            let outcome = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                r = tokio::time::timeout_at(deadline, self.try_acquire_or_renew()) => r,
            };
            if leading {
                (self.on_renewal)(renewal_result(&outcome));
            }
            match outcome {
                Ok(Ok(Attempt::Held)) => {
                    last_renew = Instant::now();
                    if !leading {
                        leading = true;
                        tracing::info!(
                            lease = %self.name, namespace = %self.namespace, identity = %self.identity,
                            "acquired the lease: this instance is the leader"
                        );
                        leader.send_replace(true);
                    }
                }
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    if leading {
                        leader.send_replace(false);
                        return Err(self.lost(format!("{holder:?} holds it now")));
                    }
                    if seen_holder.as_deref() != Some(holder.as_str()) {
                        tracing::info!(
                            lease = %self.name, namespace = %self.namespace, holder = %holder,
                            "the lease is held by another instance; standby"
                        );
                        seen_holder = Some(holder);
                    }
                }
                Ok(Ok(Attempt::LostRace)) => {
                    last_problem =
                        "another instance updated the lease at the same time (409 Conflict)".into();
                    tracing::debug!(lease = %self.name, "lost a race for the lease (409); will retry");
                }
                Ok(Err(e)) => {
                    last_problem = e.to_string();
                    tracing::warn!(lease = %self.name, error = %e, leading, "lease update failed; will retry");
                }
                Err(_) => {
                    last_problem = "the API server did not answer in time".into();
                    tracing::warn!(lease = %self.name, leading, "lease request timed out; will retry");
                }
            }
            if leading && Instant::now() >= last_renew + self.timings.renew_deadline {
                leader.send_replace(false);
                return Err(self.lost(format!(
                    "not renewed within renew_deadline ({}); last problem: {last_problem}",
                    humantime::format_duration(self.timings.renew_deadline)
                )));
            }
            let mut wake = Instant::now() + retry;
            if leading {
                // Never sleep past the point where we must have stepped down.
                wake = wake.min(last_renew + self.timings.renew_deadline);
            }
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        if leading {
            leader.send_replace(false);
            self.release().await;
        }
        Ok(())
    }

    fn lost(&self, reason: String) -> LeaseLost {
        tracing::error!(lease = %self.name, namespace = %self.namespace, reason = %reason, "lost the lease");
        LeaseLost {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            reason,
        }
    }

    /// Gives the lease up if this identity holds it: empty holder, so a
    /// standby acquires it at its next attempt. Bounded by `renew_deadline`;
    /// true if the release was written.
    pub async fn release(&self) -> bool {
        let attempt = async {
            for _ in 0..3 {
                let current = match self.api.get_opt(&self.name).await {
                    Ok(Some(l)) => l,
                    Ok(None) => return false,
                    Err(e) => {
                        tracing::warn!(lease = %self.name, error = %e, "could not read the lease to release it");
                        return false;
                    }
                };
                let mut spec = current.spec.clone().unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                    return false;
                }
                let now = MicroTime(self.clock.now());
                spec.holder_identity = Some(String::new());
                spec.lease_duration_seconds = Some(1);
                spec.renew_time = Some(now.clone());
                spec.acquire_time = Some(now);
                let mut lease = current;
                lease.spec = Some(spec);
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(lease = %self.name, namespace = %self.namespace, "released the lease");
                        return true;
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => {
                        tracing::warn!(lease = %self.name, error = %e, "could not release the lease; it expires on its own");
                        return false;
                    }
                }
            }
            false
        };
        tokio::time::timeout(
            self.timings.renew_deadline.max(Duration::from_secs(1)),
            attempt,
        )
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(renewed: Option<Timestamp>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some("x".into()),
            renew_time: renewed.map(MicroTime),
            lease_duration_seconds: seconds,
            ..Default::default()
        }
    }

    #[test]
    fn expiry_is_renew_time_plus_duration() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| t0 + SignedDuration::from_secs(s);
        let s = spec(Some(t0), Some(15));
        assert!(!LeaseLock::expired(&s, at(0)));
        assert!(
            !LeaseLock::expired(&s, at(15)),
            "valid up to and including renewTime + duration"
        );
        assert!(LeaseLock::expired(&s, at(16)));
        assert!(
            LeaseLock::expired(&spec(None, Some(15)), at(0)),
            "never renewed = free"
        );
        assert!(
            LeaseLock::expired(&spec(Some(t0), None), at(1)),
            "no duration = expires at once"
        );
    }
}
