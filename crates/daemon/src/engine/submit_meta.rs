//! What a submission carries besides its spec (SPEC §8.1): the job it
//! reruns and its `Idempotency-Key`, and the engine's side of the key:
//! a repeat of a kept key answers with the first job and runs nothing.
//! Also the handle's filtered job pages.
//!
//! A key is held by its job (`Job::idempotency_key`, in the WAL record
//! that submits it), so it is exactly as durable as the job and goes when
//! the job is removed. A key used again in the same engine turn as its
//! first use, before that turn's commit, is "in progress" (409).

use oj_core::idempotency::{self, Decision};
use oj_core::{Job, JobFilter, JobId, JobSpec};

use super::{Command, Engine, EngineHandle, JobPage, PAGE_MAX, SubmitError};

/// Extra facts of a submission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitMeta {
    /// `POST /v1/jobs/{id}/rerun`: the job this one reruns.
    pub rerun_of: Option<JobId>,
    /// The parsed `Idempotency-Key` (see [`idempotency::parse_key`]).
    pub idempotency_key: Option<String>,
}

/// An accepted submission: the job, and whether it is new (201) or the
/// kept job of a repeated idempotency key (200).
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub job: Job,
    pub created: bool,
}

impl EngineHandle {
    /// Submits with a rerun origin and/or an idempotency key; a repeat of a
    /// kept key answers with that job (`created = false`).
    pub async fn submit_with(
        &self,
        spec: JobSpec,
        meta: SubmitMeta,
    ) -> Result<Submitted, SubmitError> {
        self.ask(|reply| Command::Submit {
            spec: Box::new(spec),
            meta,
            reply,
        })
        .await
        .unwrap_or(Err(SubmitError::Gone))
    }

    /// Like [`EngineHandle::page`], only the jobs `filter` matches (from
    /// the state's filter index, SPEC §8.1).
    pub async fn page_filtered(
        &self,
        filter: JobFilter,
        after: Option<JobId>,
        limit: usize,
    ) -> Option<JobPage> {
        self.ask(|reply| Command::Page {
            filter: Box::new(filter),
            after,
            limit: limit.clamp(1, PAGE_MAX),
            reply,
        })
        .await
    }
}

impl Engine {
    /// The answer to a submission whose key is already held; `None` when
    /// the key is new (or there is none) and the job is to be created.
    pub(super) fn idempotent_answer(
        &self,
        spec: &JobSpec,
        meta: &SubmitMeta,
    ) -> Option<Result<Submitted, SubmitError>> {
        let key = meta.idempotency_key.as_deref()?;
        let holder = self.state.idempotency_holder(key).map(|job| {
            let durable = !self.turn.keys.contains(key);
            (job, job.spec == *spec, durable)
        });
        match idempotency::decide(holder) {
            Decision::New => None,
            Decision::Existing(job) => {
                tracing::info!(job_id = %job.id, "idempotent repeat: answering with the kept job");
                Some(Ok(Submitted {
                    job: job.clone(),
                    created: false,
                }))
            }
            Decision::Conflict(job) => Some(Err(SubmitError::IdempotencyConflict(job.id.clone()))),
            Decision::InProgress(job) => {
                Some(Err(SubmitError::IdempotencyInProgress(job.id.clone())))
            }
        }
    }

    /// Marks a new job with what its submission carried.
    pub(super) fn stamp(&mut self, job: &mut Job, meta: SubmitMeta) {
        job.rerun_of = meta.rerun_of;
        if let Some(key) = meta.idempotency_key {
            self.turn.keys.insert(key.clone());
            job.idempotency_key = Some(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::{spec, start_with};
    use crate::engine::{Retention, SubmitError};

    fn keyed(key: &str) -> SubmitMeta {
        SubmitMeta {
            rerun_of: None,
            idempotency_key: Some(key.into()),
        }
    }

    /// Same key and spec: the first job again, not a second one; another
    /// spec: a conflict.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_repeated_key_gets_the_first_job() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _l) = start_with(dir.path(), true, Retention::default());
        let first = h.submit_with(spec(&["0"]), keyed("k")).await.unwrap();
        assert!(first.created);
        assert_eq!(first.job.idempotency_key.as_deref(), Some("k"));
        let again = h.submit_with(spec(&["0"]), keyed("k")).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.job.id, first.job.id);
        match h.submit_with(spec(&["1"]), keyed("k")).await {
            Err(SubmitError::IdempotencyConflict(id)) => assert_eq!(id, first.job.id),
            other => panic!("{other:?}"),
        }
        let other = h.submit_with(spec(&["0"]), keyed("k2")).await.unwrap();
        assert!(other.created && other.job.id != first.job.id);
    }

    /// A key used again in the turn of its first use, before the commit:
    /// in progress; once committed, the first job.
    #[tokio::test(flavor = "current_thread")]
    async fn a_key_not_yet_durable_is_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, state, _) = crate::storage::Storage::open(dir.path()).unwrap();
        let (_leader_tx, leader_rx) = tokio::sync::watch::channel(true);
        let runners = crate::runner::Runners {
            shell: std::sync::Arc::new(crate::runner::NoContainerRunner),
            container: std::sync::Arc::new(crate::runner::NoContainerRunner),
        };
        let cfg = crate::engine::EngineConfig {
            max_concurrent: 1,
            allow_shell: true,
            step_timeout: std::time::Duration::from_secs(60),
            logs_dir: dir.path().join("logs"),
            reload_on_lead: false,
            retention: Retention::default(),
            queues: Default::default(),
        };
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new("t", "t"));
        let (mut engine, _h) = Engine::new(
            state,
            storage,
            crate::live::Live::fixed(cfg),
            runners,
            metrics,
            leader_rx,
        );
        engine.is_leader = true;
        let (tx1, mut rx1) = tokio::sync::oneshot::channel();
        let (tx2, mut rx2) = tokio::sync::oneshot::channel();
        engine.submit(Box::new(spec(&["0"])), keyed("twice"), tx1);
        engine.submit(Box::new(spec(&["0"])), keyed("twice"), tx2);
        assert!(
            rx1.try_recv().is_err(),
            "the first answer waits for the commit"
        );
        let first_id = engine.state.idempotency_holder("twice").unwrap().id.clone();
        match rx2.try_recv().unwrap() {
            Err(SubmitError::IdempotencyInProgress(id)) => assert_eq!(id, first_id),
            other => panic!("{other:?}"),
        }
        engine.after_turn();
        let first = rx1.try_recv().unwrap().unwrap();
        assert!(first.created);
        let (tx3, mut rx3) = tokio::sync::oneshot::channel();
        engine.submit(Box::new(spec(&["0"])), keyed("twice"), tx3);
        let third = rx3.try_recv().unwrap().unwrap();
        assert_eq!((third.created, third.job.id), (false, first_id));
    }
}
