//! Retries of a failed step (SPEC §7.6). When a run fails for a cause its
//! policy lists (`retry.on`) and runs are left (`retry.attempts`), the
//! engine records [`Event::StepRetrying`] instead of ending the job: the
//! attempt is kept, the step is queued again with its `retry_at`, the job
//! stays `running`, and a `retry` notification is queued.
//!
//! The wait is a timer in the engine loop (never a sleep), armed from
//! `retry_at`, which is persisted: after a restart, recovery arms it again
//! from the state, so a step waiting for its retry is retried, not lost
//! nor marked `interrupted`. At-most-once stays: a run that was going on
//! at a crash is not a failed run, recovery ends it `interrupted` as before
//! (a container runner that finds its pod never started reports
//! [`StepOutcome::Infra`], which the policy may retry).

use std::time::SystemTime;

use oj_core::{Event, JobId, JobState, RetryCause, Timestamp};
use tokio::time::Instant;

use super::Engine;
use crate::runner::StepOutcome;

/// The retry cause of a failed run, if it has one (`Error` = the step
/// could not be started at all: running it again would not help).
pub(super) fn cause_of(outcome: &StepOutcome) -> Option<RetryCause> {
    match outcome {
        StepOutcome::Exited(c) if *c != 0 => Some(RetryCause::Failed),
        StepOutcome::Signaled(_) => Some(RetryCause::Failed),
        StepOutcome::TimedOut(_) => Some(RetryCause::Timeout),
        StepOutcome::Infra(_) => Some(RetryCause::Infra),
        _ => None,
    }
}

/// The engine-loop instant of a wall-clock time (now if it has passed).
fn instant_of(at: Timestamp) -> Instant {
    let wait = at.0.duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now() + wait
}

impl Engine {
    /// When a run of step `step` failed: records a retry and returns true
    /// if the step's policy grants one; false = end the step as usual.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn retry_or_fail(
        &mut self,
        id: &JobId,
        step: usize,
        outcome: &StepOutcome,
        step_state: JobState,
        exit_code: Option<i32>,
        error: Option<&str>,
        at: Timestamp,
    ) -> bool {
        if step_state != JobState::Failed || self.cancel_requested.contains(id) {
            return false;
        }
        let Some(cause) = cause_of(outcome) else {
            return false;
        };
        let Some(job) = self.state.job(id) else {
            return false;
        };
        let Some(policy) = job.spec.step_retry(step) else {
            return false;
        };
        let runs = job.steps.get(step).map_or(0, |s| s.attempts.len()) + 1;
        if !policy.retries(cause, runs) {
            return false;
        }
        let delay = policy.delay_after(runs);
        let retry_at = Timestamp(at.0 + delay);
        let reason = error.unwrap_or("the step failed").to_string();
        tracing::warn!(
            job_id = %id,
            step,
            attempt = runs,
            attempts = policy.attempts,
            cause = %cause,
            delay = %humantime::format_duration(delay),
            reason = %reason,
            "step failed; it runs again after the backoff"
        );
        self.record(Event::StepRetrying {
            id: id.clone(),
            step,
            at,
            exit_code,
            reason,
            retry_at,
        });
        self.step_retries
            .insert(id.clone(), (step, Instant::now() + delay));
        true
    }

    /// After a restart: arms the retry of a job whose step waits for one.
    /// Returns whether the job waits (so recovery leaves it running).
    pub(super) fn rearm_waiting_retry(&mut self, id: &JobId) -> bool {
        let armed = self.arm_retry_from_state(id);
        if let (Some((step, _)), Some(job)) = (armed, self.state.job(id)) {
            let retry_at = job.steps[step].retry_at;
            tracing::info!(job_id = %id, step = %job.steps[step].name, retry_at = ?retry_at, "a step waits for its retry from before the restart");
        }
        armed.is_some()
    }

    /// Arms the retry the state says job `id` waits for; the step and when.
    fn arm_retry_from_state(&mut self, id: &JobId) -> Option<(usize, Instant)> {
        let job = self.state.job(id)?;
        let step = job.retrying_step()?;
        let at = instant_of(job.steps[step].retry_at?);
        self.step_retries.insert(id.clone(), (step, at));
        Some((step, at))
    }

    /// After an undone turn: retries whose start was undone wait again (the
    /// state says they wait; the timer entry was taken when they started).
    pub(super) fn rearm_undone_retries(&mut self) {
        let waiting: Vec<JobId> = self
            .state
            .running()
            .filter(|id| !self.running.contains_key(*id) && !self.step_retries.contains_key(*id))
            .cloned()
            .collect();
        for id in waiting {
            self.arm_retry_from_state(&id);
        }
    }

    /// The earliest armed retry; `None` when none is.
    pub(super) fn next_step_retry(&self) -> Option<Instant> {
        self.step_retries.values().map(|(_, at)| *at).min()
    }

    /// Starts every step whose retry is due. While draining (or as a
    /// standby) nothing starts: the wait stays in the state and the next
    /// daemon arms it again.
    pub(super) fn start_due_retries(&mut self) {
        let now = Instant::now();
        let due: Vec<(JobId, usize)> = self
            .step_retries
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(id, (step, _))| (id.clone(), *step))
            .collect();
        for (id, step) in due {
            self.step_retries.remove(&id);
            if !self.is_leader || self.draining {
                continue;
            }
            let waits = self
                .state
                .job(&id)
                .is_some_and(|j| j.state == JobState::Running && j.retrying_step() == Some(step));
            if !waits || self.running.contains_key(&id) {
                continue;
            }
            // A cancel that came while the failed run was being recorded.
            if self.cancel_requested.contains(&id) {
                self.cancel_waiting_retry(&id);
                continue;
            }
            if !self.retry_has_room(&id, step) {
                continue;
            }
            tracing::info!(job_id = %id, step, "retrying step");
            self.note_retry_in_log(&id, step);
            self.start_step(&id, step);
        }
    }

    /// Writes a `[oj]` line into the step's log before its next run, so the
    /// log says where one run's output ends and the next one's begins.
    fn note_retry_in_log(&self, id: &JobId, step: usize) {
        let Some(job) = self.state.job(id) else {
            return;
        };
        let Some(status) = job.steps.get(step) else {
            return;
        };
        let run = status.attempts.len() + 1;
        let of = job
            .spec
            .step_retry(step)
            .map_or(run, |r| r.attempts as usize);
        let why = status
            .attempts
            .last()
            .and_then(|a| a.reason.as_deref())
            .unwrap_or("the step failed");
        let path = self
            .cfg
            .get()
            .logs_dir
            .join(id.as_str())
            .join(format!("{}.log", status.name));
        crate::runner::shell::append_note(&path, &format!("retry: run {run} of {of} ({why})"));
    }

    /// A cancel of a job that waits for a retry (no process to stop):
    /// records the cancel at once. Returns whether it did.
    pub(super) fn cancel_waiting_retry(&mut self, id: &JobId) -> bool {
        let Some(job) = self.state.job(id) else {
            return false;
        };
        if job.state != JobState::Running || self.running.contains_key(id) {
            return false;
        }
        let Some(step) = job.retrying_step() else {
            return false;
        };
        let error = format!(
            "cancelled while step {} waited for its retry",
            job.steps[step].name
        );
        tracing::info!(job_id = %id, "cancelling job waiting for a retry");
        self.step_retries.remove(id);
        self.record(Event::JobFinished {
            id: id.clone(),
            at: Timestamp(SystemTime::now()),
            state: JobState::Cancelled,
            error: Some(error),
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::engine::tests::{spec, start_current_thread, start_with, wait_state};
    use crate::engine::{EngineHandle, Retention};
    use crate::storage::Storage;
    use oj_core::retry::MAX_BACKOFF;
    use oj_core::{Job, RetrySpec, State};

    /// The first backoff of the policies below; it doubles per retry.
    const BACKOFF: Duration = Duration::from_secs(1);

    fn retry(attempts: u32, on: &[RetryCause]) -> Option<RetrySpec> {
        Some(RetrySpec {
            attempts,
            backoff: BACKOFF,
            on: on.to_vec(),
        })
    }

    /// `wait_state` for a paused clock: polls for up to a virtual minute.
    async fn wait_state_paused(h: &EngineHandle, id: &JobId, want: JobState) -> Job {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(j) = h.get(id.clone()).await
                && j.state == want
            {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "job {id} never reached {want}: {:?}",
            h.get(id.clone()).await
        );
    }

    /// The backoff is the engine's own timer on tokio time, paused here: the
    /// retries wait `BACKOFF`, then twice that, and not longer.
    #[tokio::test(start_paused = true)]
    async fn a_failing_step_runs_again_until_its_attempts_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _l) = start_current_thread(dir.path(), Retention::default());
        let mut flaky = spec(&["0", "flaky 3"]);
        flaky.retry = retry(3, &[RetryCause::Failed]);
        let mut hopeless = spec(&["7"]);
        hopeless.steps[0].retry = retry(2, &[RetryCause::Failed]);
        let mut infra_only = spec(&["5"]);
        infra_only.retry = retry(4, &[RetryCause::Infra]);
        let t0 = Instant::now();
        let flaky = h.submit(flaky).await.unwrap();
        let hopeless = h.submit(hopeless).await.unwrap();
        let j = wait_state_paused(&h, &flaky.id, JobState::Done).await;
        let waited = t0.elapsed();
        assert!(
            waited >= BACKOFF * 3 && waited < BACKOFF * 3 + BACKOFF / 2,
            "two retries after {BACKOFF:?} and {:?} took {waited:?}",
            BACKOFF * 2
        );
        assert_eq!(
            j.steps[0].attempts.len(),
            1,
            "the first step passed at once"
        );
        let tries = &j.steps[1].attempts;
        assert_eq!(tries.len(), 3);
        assert_eq!(tries[0].exit_code, Some(1));
        assert_eq!(
            tries[1].reason.as_deref(),
            Some("step s1 exited with code 1")
        );
        assert_eq!(tries[2].exit_code, Some(0));
        assert!(tries[0].ended_at <= tries[1].started_at);
        let j = wait_state_paused(&h, &hopeless.id, JobState::Failed).await;
        assert_eq!(j.steps[0].attempts.len(), 2);
        assert_eq!(j.error.as_deref(), Some("step s0 exited with code 7"));
        let infra_only = h.submit(infra_only).await.unwrap();
        let j = wait_state_paused(&h, &infra_only.id, JobState::Failed).await;
        assert_eq!(j.steps[0].attempts.len(), 1, "a plain failure is not infra");
        // What a reader was shown is in the WAL: the engine ends with its
        // last handle, and the state read back has every attempt.
        drop(h);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, state, _) = Storage::open(dir.path()).unwrap();
        assert_eq!(state.job(&flaky.id).unwrap().steps[1].attempts.len(), 3);
    }

    /// The seam for container runners: an `Infra` outcome is retried by
    /// the default policy (`on = ["infra"]`) and fails with its reason
    /// where the policy does not list it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn infra_failures_are_retried_by_the_default_policy() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _l) = start_with(dir.path(), true, Retention::default());
        let mut evicted = spec(&["infra 2"]);
        evicted.retry = Some(RetrySpec {
            attempts: 2,
            backoff: Duration::ZERO,
            on: vec![RetryCause::Infra],
        });
        let mut not_listed = spec(&["infra 2"]);
        not_listed.retry = retry(3, &[RetryCause::Failed, RetryCause::Timeout]);
        let evicted = h.submit(evicted).await.unwrap();
        let not_listed = h.submit(not_listed).await.unwrap();
        let j = wait_state(&h, &evicted.id, JobState::Done).await;
        assert_eq!(j.steps[0].attempts.len(), 2);
        assert_eq!(
            j.steps[0].attempts[0].reason.as_deref(),
            Some("pod was evicted (node pressure)")
        );
        let j = wait_state(&h, &not_listed.id, JobState::Failed).await;
        assert_eq!(j.steps[0].attempts.len(), 1);
        assert_eq!(j.error.as_deref(), Some("pod was evicted (node pressure)"));
    }

    /// A retry waiting when the daemon stops is armed again by the next one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_retry_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _l) = start_with(dir.path(), true, Retention::default());
        let mut s = spec(&["flaky 2"]);
        s.retry = Some(RetrySpec {
            attempts: 2,
            backoff: MAX_BACKOFF,
            on: vec![RetryCause::Failed],
        });
        let job = h.submit(s).await.unwrap();
        for _ in 0..500 {
            let j = h.get(job.id.clone()).await.unwrap();
            if j.steps[0].retry_at.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        h.shutdown().await.unwrap();
        // Move the retry time into the past, as if the daemon had been
        // down for the whole backoff.
        let (mut storage, state, _) = Storage::open(dir.path()).unwrap();
        let waiting = state.job(&job.id).unwrap();
        assert_eq!(waiting.state, JobState::Running);
        assert_eq!(waiting.retrying_step(), Some(0));
        let mut past = State::new();
        let mut copy = waiting.clone();
        copy.steps[0].retry_at = Some(Timestamp(SystemTime::now() - Duration::from_secs(1)));
        past.apply(&Event::JobSubmitted {
            job: Box::new(copy),
        })
        .ok();
        drop(state);
        storage.snapshot(&past).unwrap();
        drop(storage);
        let (h, _l) = start_with(dir.path(), true, Retention::default());
        let j = wait_state(&h, &job.id, JobState::Done).await;
        assert_eq!(j.steps[0].attempts.len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_waiting_for_a_retry_is_cancelled_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _l) = start_with(dir.path(), true, Retention::default());
        let mut s = spec(&["9", "0"]);
        s.retry = Some(RetrySpec {
            attempts: 5,
            backoff: MAX_BACKOFF,
            on: vec![RetryCause::Failed],
        });
        let job = h.submit(s).await.unwrap();
        for _ in 0..500 {
            if h.get(job.id.clone())
                .await
                .unwrap()
                .retrying_step()
                .is_some()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let j = h.cancel(job.id.clone()).await.unwrap();
        assert_eq!(j.state, JobState::Cancelled);
        assert!(j.steps.iter().all(|s| s.state == JobState::Cancelled));
        assert!(j.error.unwrap().contains("waited for its retry"));
    }

    /// An infra failure fails the step with its reason, unless a cancel or
    /// the drain stopped it (a cancel deletes the pod: that is no infra).
    #[test]
    fn infra_outcomes_give_way_to_cancel_and_drain() {
        let infra = || StepOutcome::Infra("pod oj-x-0 was evicted: node pressure".into());
        let (state, code, error) = super::super::classify(&infra(), false, false, "s");
        assert_eq!((state, code), (JobState::Failed, None));
        assert_eq!(
            error.as_deref(),
            Some("pod oj-x-0 was evicted: node pressure")
        );
        assert_eq!(
            super::super::classify(&infra(), true, false, "s").0,
            JobState::Cancelled
        );
        assert_eq!(
            super::super::classify(&infra(), false, true, "s").0,
            JobState::Interrupted
        );
    }

    #[test]
    fn only_real_failures_have_a_cause() {
        assert_eq!(cause_of(&StepOutcome::Exited(1)), Some(RetryCause::Failed));
        assert_eq!(
            cause_of(&StepOutcome::Signaled(9)),
            Some(RetryCause::Failed)
        );
        assert_eq!(
            cause_of(&StepOutcome::TimedOut(Duration::from_secs(1))),
            Some(RetryCause::Timeout)
        );
        assert_eq!(
            cause_of(&StepOutcome::Infra("evicted".into())),
            Some(RetryCause::Infra)
        );
        assert_eq!(cause_of(&StepOutcome::Exited(0)), None);
        assert_eq!(cause_of(&StepOutcome::Error("no such shell".into())), None);
        assert_eq!(cause_of(&StepOutcome::Detached), None);
    }
}
