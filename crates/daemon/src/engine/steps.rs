//! Starting and ending steps: picking queued jobs to start, building a
//! step's [`StepContext`], classifying how a step ended and recording what
//! follows (the next step or the job's end).

use oj_core::{Event, Job, JobId, JobState, SpecError, Timestamp};
use tokio::sync::watch;

use super::commit::Effect;
use super::{Engine, Running, now};
use crate::job_span;
use crate::runner::{StepContext, StepOutcome, Stop};

impl Engine {
    pub(super) fn step_exited(&mut self, id: JobId, step: usize, outcome: StepOutcome) {
        let _in_job = job_span::of(&self.state, &id).entered();
        if outcome == StepOutcome::Detached {
            if self.running.remove(&id).is_some() {
                self.active_dirty = true;
            }
            tracing::info!(job_id = %id, step, "step left running in its pod; the next daemon follows it");
            return;
        }
        let Some(run) = self.running.get(&id) else {
            tracing::warn!(job_id = %id, step, "a step ended that the engine was not running");
            return;
        };
        if run.step != step {
            tracing::warn!(job_id = %id, step, expected = run.step, "step index mismatch");
        }
        let stop = *run.stop.borrow();
        let cancelled = stop == Stop::Cancel || self.cancel_requested.contains(&id);
        let at = now();
        let step_name = run.step_name.clone();
        let (step_state, exit_code, error) =
            classify(&outcome, cancelled, stop == Stop::Terminate, &step_name);
        if self.retry_or_fail(
            &id,
            step,
            &outcome,
            step_state,
            exit_code,
            error.as_deref(),
            at,
        ) {
            self.effects.push(Effect::Forget(id));
            return;
        }
        tracing::info!(job_id = %id, step = %step_name, state = %step_state, exit_code, "step ended");
        self.record(Event::StepFinished {
            id: id.clone(),
            step,
            at,
            state: step_state,
            exit_code,
            reason: error.clone(),
        });
        self.effects.push(Effect::Forget(id.clone()));
        // What comes next is a pure decision (oj_core::step_end).
        let steps = self.state.job(&id).map_or(&[][..], |j| &j.steps[..]);
        match oj_core::after_step(steps, step, step_state, error, cancelled, self.terminating) {
            oj_core::AfterStep::StartNext(next) => self.start_step(&id, next),
            oj_core::AfterStep::JobEnds { state, error } => {
                tracing::info!(job_id = %id, state = %state, error = error.as_deref(), "job ended");
                self.record(Event::JobFinished {
                    id,
                    at,
                    state,
                    error,
                });
            }
        }
    }

    /// Starts queued jobs while there is room, leader and not draining.
    pub(super) fn schedule(&mut self) {
        if !self.is_leader || self.draining || !self.recovered {
            return;
        }
        self.state.advance_clock(now());
        self.start_retries_with_room();
        for id in self.state.pick(&self.limits()) {
            let _in_job = job_span::of(&self.state, &id).entered();
            let at = now();
            self.record(Event::JobStarted { id: id.clone(), at });
            tracing::info!(job_id = %id, "job started");
            self.start_step(&id, 0);
        }
    }

    /// What the runner needs to start step `index`; fails when its `run`
    /// or env fill in too long to start (checked at submit, but a job
    /// queued by an older version may not have been).
    pub(super) fn step_context(&self, job: &Job, index: usize) -> Result<StepContext, SpecError> {
        let step = &job.spec.steps[index];
        let filled = job.spec.fill_step(job.id.as_str(), index)?;
        let mut env = filled.env;
        env.insert("OJ_JOB_ID".into(), job.id.to_string());
        env.insert("OJ_JOB_NAME".into(), job.name.clone());
        env.insert("OJ_STEP".into(), step.name.clone());
        Ok(StepContext {
            job_id: job.id.clone(),
            job_name: job.name.clone(),
            index,
            attempt: job
                .steps
                .get(index)
                .map_or(1, |s| s.attempts.len() as u32 + 1),
            step_name: step.name.clone(),
            run: filled.run,
            env,
            container: job.spec.step_container(index).cloned(),
            job_resources: job
                .spec
                .container
                .as_ref()
                .and_then(|c| c.resources.clone()),
            step_resources: step.container.as_ref().and_then(|c| c.resources.clone()),
            timeout: step.timeout.unwrap_or(self.cfg.get().step_timeout),
            work_dir: self.work_dir(job, index),
            log_path: self
                .cfg
                .get()
                .logs_dir
                .join(job.id.as_str())
                .join(format!("{}.log", step.name)),
            pod: crate::cluster::pod_parts(&job.spec, index),
        })
    }

    pub(super) fn start_step(&mut self, id: &JobId, index: usize) {
        let Some(job) = self.state.job(id) else {
            return;
        };
        let at = now();
        let ctx = match self.step_context(job, index) {
            Ok(ctx) => ctx,
            Err(e) => return self.fail_unstartable(id, index, at, e.to_string()),
        };
        if ctx.container.is_none() && !self.cfg.get().allow_shell {
            // Accepted before the policy changed (queued, waiting for its
            // retry, restored from the WAL): the policy holds at the start.
            let error = shell_refused(&ctx.step_name);
            return self.fail_unstartable(id, index, at, error);
        }
        let container = ctx.container.is_some();
        let pod = container.then(|| StepContext::attempt_pod_name(id, index, ctx.attempt));
        let (stop_tx, stop_rx) = watch::channel(Stop::Run);
        let running = Running {
            step: index,
            stop: stop_tx,
            container,
            step_name: ctx.step_name.clone(),
            job_name: ctx.job_name.clone(),
        };
        self.record(Event::StepStarted {
            id: id.clone(),
            step: index,
            at,
            pod,
        });
        self.effects.push(Effect::Spawn {
            ctx: Box::new(ctx),
            running,
            stop: stop_rx,
        });
    }

    /// A step that cannot be started fails, and its job with it; the
    /// daemon goes on.
    pub(super) fn fail_unstartable(
        &mut self,
        id: &JobId,
        index: usize,
        at: Timestamp,
        error: String,
    ) {
        tracing::warn!(job_id = %id, step = index, error = %error, "step cannot start; the job fails");
        self.record(Event::StepStarted {
            id: id.clone(),
            step: index,
            at,
            pod: None,
        });
        self.record(Event::StepFinished {
            id: id.clone(),
            step: index,
            at,
            state: JobState::Failed,
            exit_code: None,
            reason: Some(error.clone()),
        });
        self.record(Event::JobFinished {
            id: id.clone(),
            at,
            state: JobState::Failed,
            error: Some(error),
        });
    }
}

/// How a step ended, from what the runner saw and what the engine asked:
/// a step stopped by a cancel is `cancelled` and one stopped by the drain
/// `interrupted`, whatever its exit status (a trap may exit 0).
pub(super) fn classify(
    outcome: &StepOutcome,
    cancelled: bool,
    terminated: bool,
    step: &str,
) -> (JobState, Option<i32>, Option<String>) {
    let code = match outcome {
        StepOutcome::Exited(c) => Some(*c),
        _ => None,
    };
    match outcome {
        StepOutcome::TimedOut(d) => (
            JobState::Failed,
            None,
            Some(format!(
                "step {step} timed out after {}",
                humantime::format_duration(*d)
            )),
        ),
        StepOutcome::Error(msg) => (JobState::Failed, None, Some(msg.clone())),
        StepOutcome::Failed { exit_code, error } => {
            (JobState::Failed, Some(*exit_code), Some(error.clone()))
        }
        StepOutcome::Detached => (JobState::Running, None, None),
        _ if cancelled => (JobState::Cancelled, code, None),
        _ if terminated => (
            JobState::Interrupted,
            code,
            Some(format!(
                "the daemon shut down while step {step} ran (stopped after shutdown.drain_timeout)"
            )),
        ),
        // After the cancel check: a cancel deletes the pod, which the
        // runner may well report as deleted.
        StepOutcome::Infra(msg) => (JobState::Failed, None, Some(msg.clone())),
        StepOutcome::Exited(0) => (JobState::Done, Some(0), None),
        StepOutcome::Exited(c) => (
            JobState::Failed,
            Some(*c),
            Some(format!("step {step} exited with code {c}")),
        ),
        StepOutcome::Signaled(sig) => (
            JobState::Failed,
            None,
            Some(format!(
                "step {step} was killed by signal {}",
                signal_name(*sig)
            )),
        ),
    }
}

/// Why a shell step accepted earlier does not start now.
pub(super) fn shell_refused(step: &str) -> String {
    format!(
        "step {step:?} was not started: it would run in the daemon as a shell step, and jobs.allow_shell = false now; give the step a \"container\" or set jobs.allow_shell = true, then submit the job again"
    )
}

pub(super) fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("{sig}"),
    }
}
