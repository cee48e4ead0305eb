//! [`EngineHandle`]: the cheap, cloneable way into the engine task. Asks go
//! over the command channel; what the API reads without waiting (counts,
//! active steps, the storage error) comes from watches the engine publishes.

use std::sync::Arc;

use oj_core::{Job, JobCounts, JobFilter, JobId, JobSpec, JobState};
use tokio::sync::{mpsc, oneshot, watch};

use super::{ActiveStep, CancelError, Command, JobPage, Progress, SubmitError, SubmitMeta};

/// A cheap, cloneable handle to the engine task.
#[derive(Clone)]
pub struct EngineHandle {
    pub(super) tx: mpsc::UnboundedSender<Command>,
    pub(super) active: watch::Receiver<Vec<ActiveStep>>,
    pub(super) counts: watch::Receiver<JobCounts>,
    pub(super) storage_error: watch::Receiver<Option<String>>,
    pub(super) events: Arc<crate::events::Hub>,
}

impl EngineHandle {
    /// What the engine publishes after each commit (`GET /v1/events`).
    pub fn events(&self) -> &Arc<crate::events::Hub> {
        &self.events
    }

    pub(super) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).ok()?;
        rx.await.ok()
    }

    pub async fn submit(&self, spec: JobSpec) -> Result<Job, SubmitError> {
        self.submit_with(spec, SubmitMeta::default())
            .await
            .map(|s| s.job)
    }

    pub async fn get(&self, id: JobId) -> Option<Job> {
        self.ask(|reply| Command::Get { id, reply }).await.flatten()
    }

    /// A page of jobs, newest first, older than `after`; `limit` is capped
    /// at [`PAGE_MAX`](super::PAGE_MAX). `None` once the engine has stopped.
    pub async fn page(
        &self,
        status: Option<JobState>,
        after: Option<JobId>,
        limit: usize,
    ) -> Option<JobPage> {
        let filter = JobFilter {
            status,
            ..JobFilter::default()
        };
        self.page_filtered(filter, after, limit).await
    }

    /// A job's state and steps (cheaper than [`EngineHandle::get`]).
    pub async fn progress(&self, id: JobId) -> Option<Progress> {
        self.ask(|reply| Command::Progress { id, reply })
            .await
            .flatten()
    }

    /// Jobs per state as of the last engine turn; never waits for the
    /// engine (so `/v1/status` answers while a big request is served).
    pub async fn counts(&self) -> JobCounts {
        *self.counts.borrow()
    }

    /// [`EngineHandle::counts`] without awaiting.
    pub fn counts_now(&self) -> JobCounts {
        *self.counts.borrow()
    }

    /// The last storage error while writes fail; `None` when they work.
    pub fn storage_error(&self) -> Option<String> {
        self.storage_error.borrow().clone()
    }

    pub async fn cancel(&self, id: JobId) -> Result<Job, CancelError> {
        self.ask(|reply| Command::Cancel { id, reply })
            .await
            .unwrap_or(Err(CancelError::Gone))
    }

    /// Records that a notification is finished (called from the notifier).
    pub fn ack_notification(&self, id: &str) {
        let _ = self
            .tx
            .send(Command::NotificationAcked { id: id.to_string() });
    }

    /// Drain phase 1: start no more jobs, refuse submissions.
    pub fn drain(&self) {
        let _ = self.tx.send(Command::Drain);
    }

    /// Drain phase 3: stop every running shell step (SIGTERM, SIGKILL later).
    pub fn terminate(&self) {
        let _ = self.tx.send(Command::Terminate);
    }

    /// Writes the final snapshot and stops the engine.
    pub async fn shutdown(&self) -> Result<(), String> {
        self.ask(|reply| Command::Shutdown { reply })
            .await
            .unwrap_or_else(|| Err("the engine had already stopped".into()))
    }

    /// The steps running now (updated on every change).
    pub fn active(&self) -> watch::Receiver<Vec<ActiveStep>> {
        self.active.clone()
    }
}
