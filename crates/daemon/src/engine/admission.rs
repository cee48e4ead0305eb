//! Admission: why a job is refused, submitting (by a client or a
//! schedule) and cancelling.

use oj_core::{Event, Job, JobId, JobSpec, JobState};
use tokio::sync::oneshot;

use super::commit::Effect;
use super::{CancelError, Engine, SubmitError, SubmitMeta, Submitted, now};
use crate::job_span;
use crate::runner::Stop;

impl Engine {
    /// Why a job cannot be admitted now, if it cannot: standby, draining,
    /// a bad spec, a shell step under `jobs.allow_shell = false`, an
    /// unknown queue or dependency.
    pub(super) fn refusal(&self, spec: &JobSpec) -> Option<SubmitError> {
        if !self.is_leader {
            Some(SubmitError::NotLeader)
        } else if self.draining {
            Some(SubmitError::Draining)
        } else {
            spec.validate()
                .and_then(|()| match self.cfg.get().allow_shell {
                    true => Ok(()),
                    false => spec.refuse_shell_steps(),
                })
                .and_then(|()| self.admit(spec))
                .err()
                .map(SubmitError::Invalid)
        }
    }

    pub(super) fn submit(
        &mut self,
        spec: Box<JobSpec>,
        meta: SubmitMeta,
        reply: oneshot::Sender<Result<Submitted, SubmitError>>,
    ) {
        if let Some(e) = self.refusal(&spec) {
            let _ = reply.send(Err(e));
            return;
        }
        if let Some(answer) = self.idempotent_answer(&spec, &meta) {
            let _ = reply.send(answer);
            return;
        }
        match self.admit_job(spec, meta, None) {
            Ok(job) => self.effects.push(Effect::Reply(Box::new(move |err| {
                let _ = reply.send(match err {
                    None => Ok(Submitted { job, created: true }),
                    Some(e) => Err(SubmitError::Storage(e.to_string())),
                });
            }))),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// The admission of every job, submitted or fired by a schedule:
    /// checks the spec, records the job (with the schedule fire it
    /// settles, in the same WAL record) and returns it.
    pub(super) fn admit_job(
        &mut self,
        spec: Box<JobSpec>,
        meta: SubmitMeta,
        schedule: Option<oj_core::JobSchedule>,
    ) -> Result<Job, SubmitError> {
        if let Some(e) = self.refusal(&spec) {
            return Err(e);
        }
        let at = now();
        let id = self.ids.next(at.0);
        spec.check_filled(id.as_str())
            .map_err(SubmitError::Invalid)?;
        let mut job = Job::new(id.clone(), *spec, at);
        self.stamp(&mut job, meta);
        job.schedule = schedule;
        let _in_job = job_span::job_span(id.as_str(), &job.name).entered();
        tracing::info!(job_id = %id, name = %job.name, steps = job.steps.len(), "job submitted");
        self.record(Event::JobSubmitted {
            job: Box::new(job.clone()),
        });
        self.judge_dependents();
        let job = self.shown(&id).unwrap_or(job);
        self.effects.push(Effect::Submitted);
        Ok(job)
    }

    pub(super) fn cancel(&mut self, id: JobId, reply: oneshot::Sender<Result<Job, CancelError>>) {
        if !self.is_leader {
            let _ = reply.send(Err(CancelError::NotLeader));
            return;
        }
        if self.cancel_waiting_retry(&id) {
            return self.reply_cancelled(id, reply);
        }
        let Some(job) = self.state.job(&id) else {
            let _ = reply.send(Err(CancelError::NotFound(id)));
            return;
        };
        let _in_job = job_span::job_span(id.as_str(), &job.name).entered();
        match job.state {
            JobState::Queued => {
                tracing::info!(job_id = %id, "cancelling queued job");
                self.record(Event::JobFinished {
                    id: id.clone(),
                    at: now(),
                    state: JobState::Cancelled,
                    error: Some("cancelled before it started".into()),
                });
            }
            JobState::Running => {
                tracing::info!(job_id = %id, "cancelling running job");
                self.cancel_requested.insert(id.clone());
                if let Some(r) = self.running.get(&id) {
                    r.stop.send_if_modified(|s| {
                        if *s == Stop::Run {
                            *s = Stop::Cancel;
                            true
                        } else {
                            false
                        }
                    });
                }
            }
            state => {
                let _ = reply.send(Err(CancelError::Ended { id, state }));
                return;
            }
        }
        self.reply_cancelled(id, reply);
    }

    /// Answers a cancel once its events are durable.
    pub(super) fn reply_cancelled(
        &mut self,
        id: JobId,
        reply: oneshot::Sender<Result<Job, CancelError>>,
    ) {
        let snapshot = self.state.job(&id).cloned();
        self.effects.push(Effect::Reply(Box::new(move |err| {
            let _ = reply.send(match (err, snapshot) {
                (None, Some(job)) => Ok(job),
                (None, None) => Err(CancelError::NotFound(id)),
                (Some(e), _) => Err(CancelError::Storage(e.to_string())),
            });
        })));
    }
}
