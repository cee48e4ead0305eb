//! Retention: finished jobs (done, failed, cancelled, interrupted) and their
//! `logs/<id>/` directories do not stay for ever. `jobs.keep_finished`
//! bounds their age and `jobs.max_finished` their number; both are checked
//! at start, every [`PRUNE_EVERY`], and the number also whenever a turn
//! leaves more finished jobs than allowed. `DELETE /v1/jobs/{id}` and
//! `POST /v1/jobs/prune` remove jobs on request.
//!
//! A removal is a small [`Event::JobRemoved`] in the WAL, applied like any
//! other event (and undone if its commit fails); the job is then absent
//! from the next snapshot. Its log directory is deleted only as an effect
//! of the committed turn, so a crash or a full disk can leave a log
//! without its job (the first retention check after the next start deletes
//! such directories) but never a job without its log.
//!
//! On a full disk the removal itself could not be written, so nothing
//! would ever be freed: the state directory keeps a small reserve file
//! (`space.reserve`, 1 MiB), deleted when a removal is recorded while
//! writes fail, so that the removal commits and the logs it deletes free
//! the disk; the reserve is made again once there is room.

use std::time::{Duration, SystemTime};

use oj_core::{Event, JobId, JobState};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Effect, Engine, EngineHandle};

/// How often retention looks for finished jobs past `jobs.keep_finished`
/// (more often when `keep_finished` is shorter, down to every second, so
/// that a job never outlives it by more than its own length).
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_MIN_EVERY: Duration = Duration::from_secs(1);

/// How soon retention looks again when it could not run (not yet leader
/// or not yet recovered).
const PRUNE_NOT_READY: Duration = Duration::from_secs(1);

/// `jobs.keep_finished` and `jobs.max_finished`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_finished: Duration,
    pub max_finished: usize,
}

impl Default for Retention {
    /// The compiled defaults (desktop profile).
    fn default() -> Retention {
        Retention {
            keep_finished: Duration::from_secs(30 * 24 * 3600),
            max_finished: 10_000,
        }
    }
}

impl Retention {
    pub fn from_config(jobs: &oj_config::JobsConfig) -> Retention {
        Retention {
            keep_finished: jobs.keep_finished,
            max_finished: (jobs.max_finished as usize).max(1),
        }
    }
}

/// Which finished jobs `POST /v1/jobs/prune` removes: all of them, or
/// those that ended longer than `older_than` ago, or in `state`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneFilter {
    pub older_than: Option<Duration>,
    /// A finished state (the API refuses `queued` and `running`).
    pub state: Option<JobState>,
}

/// Why a job could not be removed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoveError {
    #[error("no job with id {0}")]
    NotFound(JobId),
    #[error(
        "job {id} is {state}, not finished; cancel it first (`oj job cancel {id}`), then remove it once it has ended"
    )]
    NotFinished { id: JobId, state: JobState },
    #[error(
        "job {id} is named in the `after` of job {dependent}, which has not started; it is kept until every job waiting for it has started or ended"
    )]
    Needed { id: JobId, dependent: JobId },
    #[error("this daemon is a standby (it does not hold the lock)")]
    NotLeader,
    #[error(
        "the removal could not be stored durably, so the job is kept: {0}; free space on the state volume (or fix the error) and try again"
    )]
    Storage(String),
    #[error("the engine has stopped")]
    Gone,
}

/// Why a prune did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PruneError {
    #[error("this daemon is a standby (it does not hold the lock)")]
    NotLeader,
    #[error(
        "the removals could not be stored durably, so every job is kept: {0}; free space on the state volume (or fix the error) and try again"
    )]
    Storage(String),
    #[error("the engine has stopped")]
    Gone,
}

impl EngineHandle {
    /// Deletes a finished job and its logs.
    pub async fn remove(&self, id: JobId) -> Result<(), RemoveError> {
        self.ask(|reply| super::Command::Remove { id, reply })
            .await
            .unwrap_or(Err(RemoveError::Gone))
    }

    /// Deletes the finished jobs that match; returns how many.
    pub async fn prune(&self, filter: PruneFilter) -> Result<usize, PruneError> {
        self.ask(|reply| super::Command::Prune { filter, reply })
            .await
            .unwrap_or(Err(PruneError::Gone))
    }
}

/// Whether a job that ended at `ended` is older than `age` at `now`.
fn ended_before(ended: Option<SystemTime>, now: SystemTime, age: Duration) -> bool {
    ended.is_some_and(|e| now.duration_since(e).unwrap_or_default() > age)
}

impl Engine {
    fn finished_count(&self) -> usize {
        let c = self.state.counts();
        c.done + c.failed + c.cancelled + c.interrupted
    }

    /// Records the removal of a finished job; its logs go once it is durable.
    fn record_removal(&mut self, id: JobId) {
        if self.trouble.is_some() && self.storage.release_reserve() {
            tracing::warn!(
                "writes fail (a full disk?): the space reserve was released so that removals can be written and free the disk"
            );
        }
        self.record(Event::JobRemoved { id: id.clone() });
        self.effects.push(Effect::RemoveLogs(id));
    }

    /// `DELETE /v1/jobs/{id}`.
    pub(super) fn remove_job(
        &mut self,
        id: JobId,
        reply: oneshot::Sender<Result<(), RemoveError>>,
    ) {
        if !self.is_leader {
            let _ = reply.send(Err(RemoveError::NotLeader));
            return;
        }
        let Some(job) = self.state.job(&id) else {
            let _ = reply.send(Err(RemoveError::NotFound(id)));
            return;
        };
        if !job.state.is_terminal() {
            let state = job.state;
            let _ = reply.send(Err(RemoveError::NotFinished { id, state }));
            return;
        }
        let dependent = self.state.scheduler().dependents_of(&id).next().cloned();
        if let Some(dependent) = dependent {
            let _ = reply.send(Err(RemoveError::Needed { id, dependent }));
            return;
        }
        tracing::info!(job_id = %id, "removing finished job and its logs");
        self.record_removal(id);
        self.effects.push(Effect::Reply(Box::new(move |err| {
            let _ = reply.send(match err {
                None => Ok(()),
                Some(e) => Err(RemoveError::Storage(e.to_string())),
            });
        })));
    }

    /// `POST /v1/jobs/prune`.
    pub(super) fn prune_matching(
        &mut self,
        filter: PruneFilter,
        reply: oneshot::Sender<Result<usize, PruneError>>,
    ) {
        if !self.is_leader {
            let _ = reply.send(Err(PruneError::NotLeader));
            return;
        }
        let now = SystemTime::now();
        let ids: Vec<JobId> = self
            .state
            .jobs()
            .filter(|j| j.state.is_terminal())
            .filter(|j| !self.state.scheduler().is_needed(&j.id))
            .filter(|j| filter.state.is_none_or(|s| j.state == s))
            .filter(|j| {
                filter
                    .older_than
                    .is_none_or(|age| ended_before(j.ended_at.map(|t| t.0), now, age))
            })
            .map(|j| j.id.clone())
            .collect();
        let n = ids.len();
        tracing::info!(jobs = n, "pruning finished jobs on request");
        for id in ids {
            self.record_removal(id);
        }
        self.effects.push(Effect::Reply(Box::new(move |err| {
            let _ = reply.send(match err {
                None => Ok(n),
                Some(e) => Err(PruneError::Storage(e.to_string())),
            });
        })));
    }

    /// The periodic check: removes finished jobs past `keep_finished` and
    /// the oldest beyond `max_finished`. Only a recovered leader writes.
    pub(super) fn prune_retention(&mut self) {
        if !self.is_leader || !self.recovered {
            self.prune_at = Instant::now() + PRUNE_NOT_READY;
            return;
        }
        if self.trouble.is_none() {
            // Room again (or still): keep the reserve for the next full disk.
            blocking(|| self.storage.ensure_reserve());
        }
        let Retention {
            keep_finished,
            max_finished,
        } = self.cfg.get().retention;
        self.prune_at = Instant::now() + keep_finished.clamp(PRUNE_MIN_EVERY, PRUNE_EVERY);
        // A WAL or snapshot deleted while nothing was committed is written
        // again now, not first at the next commit (or never, after a kill).
        match blocking(|| self.storage.verify(&self.state)) {
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot write the state again after its files were deleted or replaced; the next commit tries again")
            }
        }
        if !self.orphan_logs_checked {
            self.orphan_logs_checked = true;
            self.remove_orphan_logs();
            self.remove_orphan_work_dirs();
        }
        let now = SystemTime::now();
        let mut excess = self.finished_count().saturating_sub(max_finished);
        // Oldest first (ids sort by creation).
        let ids: Vec<JobId> = self
            .state
            .jobs()
            .filter(|j| j.state.is_terminal())
            // Kept while a job that has not started waits for it (and the
            // next oldest goes instead).
            .filter(|j| !self.state.scheduler().is_needed(&j.id))
            .filter(|j| {
                let over = excess > 0;
                excess = excess.saturating_sub(1);
                over || ended_before(j.ended_at.map(|t| t.0), now, keep_finished)
            })
            .map(|j| j.id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        tracing::info!(
            jobs = ids.len(),
            keep_finished = %humantime::format_duration(keep_finished),
            max_finished,
            "retention: removing finished jobs and their logs"
        );
        for id in ids {
            self.record_removal(id);
        }
    }

    /// Runs retention at once when a turn left more finished jobs than
    /// `max_finished` (cheap: counts only).
    pub(super) fn prune_if_over_max(&mut self) {
        if self.finished_count() > self.cfg.get().retention.max_finished {
            self.prune_retention();
        }
    }

    /// Deletes the log directories of jobs the state does not know: left by
    /// a crash between a removal's commit and its log deletion. Every job
    /// that will ever write a log is in the state before its first step
    /// starts, so a directory without a job is garbage.
    fn remove_orphan_logs(&self) {
        // No job and no snapshot, yet logs: the state was lost (its files
        // deleted), not pruned; the logs are all that is left of it.
        if self.state.jobs().next().is_none()
            && !self
                .storage
                .dir()
                .join(crate::storage::SNAPSHOT_FILE)
                .exists()
        {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.cfg.get().logs_dir) else {
            return;
        };
        let orphans: Vec<JobId> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            // Only names of a generated shape (12 or 17 characters):
            // nothing else under logs/ is oj's to delete.
            .filter_map(|e| {
                let id = e.file_name().into_string().ok()?.parse::<JobId>().ok()?;
                id.is_generated().then_some(id)
            })
            .filter(|id| self.state.job(id).is_none())
            .collect();
        if !orphans.is_empty() {
            tracing::info!(
                directories = orphans.len(),
                "deleting logs of jobs removed before the last stop"
            );
        }
        for id in orphans {
            self.remove_logs(&id);
        }
    }

    /// Deletes `logs/<id>/` off the engine task (a big log takes a while).
    pub(super) fn remove_logs(&self, id: &JobId) {
        let dir = self.cfg.get().logs_dir.join(id.as_str());
        tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %dir.display(), error = %e, "cannot delete the logs of a removed job; delete the directory by hand")
            }
        });
    }
}

/// File work on the engine's task: `block_in_place` on the daemon's
/// multi-threaded runtime, inline on a current-thread one (the engine's
/// paused-time tests), where `block_in_place` would panic.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::{spec, start_current_thread, wait_state};
    use crate::storage::Storage;
    use oj_core::{Job, State, Timestamp};

    async fn finished(h: &EngineHandle, runs: &[&str], want: JobState) -> JobId {
        let job = h.submit(spec(runs)).await.unwrap();
        wait_state(h, &job.id, want).await;
        job.id
    }

    /// Over `max_finished`, the oldest finished jobs go with their logs,
    /// durably; queued and running ones stay. On paused tokio time: the
    /// waits below are for the engine's turns, never for real time.
    #[tokio::test(start_paused = true)]
    async fn the_oldest_finished_jobs_beyond_the_maximum_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            keep_finished: Duration::from_secs(3600),
            max_finished: 2,
        };
        let (h, _l) = start_current_thread(dir.path(), retention);
        let logs = dir.path().join("logs");
        let blocked = h.submit(spec(&["block"])).await.unwrap();
        let a = finished(&h, &["0"], JobState::Done).await;
        std::fs::create_dir_all(logs.join(a.as_str())).unwrap();
        std::fs::write(logs.join(a.as_str()).join("s0.log"), "x").unwrap();
        let b = finished(&h, &["3"], JobState::Failed).await;
        let c = finished(&h, &["0"], JobState::Done).await;
        for _ in 0..500 {
            if h.get(a.clone()).await.is_none() && !logs.join(a.as_str()).exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            h.get(a.clone()).await.is_none(),
            "the oldest finished job is removed"
        );
        assert!(!logs.join(a.as_str()).exists(), "and its logs");
        assert!(h.get(b.clone()).await.is_some() && h.get(c.clone()).await.is_some());
        assert_eq!(
            h.get(blocked.id.clone()).await.unwrap().state,
            JobState::Running
        );
        let counts = h.counts().await;
        assert_eq!((counts.done, counts.failed, counts.running), (1, 1, 1));

        // By hand: a running job is refused, a finished one goes.
        assert!(matches!(
            h.remove(blocked.id.clone()).await,
            Err(RemoveError::NotFinished { .. })
        ));
        h.remove(b.clone()).await.unwrap();
        assert!(matches!(
            h.remove(b.clone()).await,
            Err(RemoveError::NotFound(_))
        ));
        let n = h
            .prune(PruneFilter {
                older_than: None,
                state: Some(JobState::Failed),
            })
            .await
            .unwrap();
        assert_eq!(n, 0);
        assert_eq!(h.prune(PruneFilter::default()).await.unwrap(), 1);
        // Read back while the engine still runs (its final snapshot needs a
        // multi-threaded runtime): every answered removal is in the WAL.
        let (_, state, _) = Storage::open(dir.path()).unwrap();
        let ids: Vec<&JobId> = state.jobs().map(|j| &j.id).collect();
        assert_eq!(ids, vec![&blocked.id], "removals are durable");
    }

    /// Finished jobs older than `keep_finished` go at the first check
    /// after start, and so do logs whose job is gone; younger jobs stay.
    /// Their ages are written into the stored state (the check reads the
    /// wall clock), so nothing waits for time to pass, and the engine's
    /// timers run on paused tokio time.
    #[tokio::test(start_paused = true)]
    async fn finished_jobs_past_their_age_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let wall = SystemTime::now();
        let ended_at = |id: &JobId, ended: SystemTime| {
            let mut job = Job::new(id.clone(), spec(&["0"]), Timestamp(ended - hour / 60));
            job.state = JobState::Done;
            job.ended_at = Some(Timestamp(ended));
            job
        };
        let old = JobId::from_parts(1_700_000_000_000, 1);
        let young = JobId::from_parts(1_700_000_000_000, 2);
        {
            let (mut storage, _, _) = Storage::open(dir.path()).unwrap();
            for job in [ended_at(&old, wall - hour * 2), ended_at(&young, wall)] {
                storage.append(&Event::JobSubmitted { job: Box::new(job) });
            }
            storage.commit(&State::new()).unwrap();
        }
        let retention = Retention {
            keep_finished: hour,
            max_finished: 100,
        };
        // A log directory whose job is gone (a crash after the removal).
        let orphan = dir.path().join("logs").join("0mx49xbba000");
        std::fs::create_dir_all(&orphan).unwrap();
        let (h, _l) = start_current_thread(dir.path(), retention);
        for _ in 0..500 {
            if h.get(old.clone()).await.is_none() && !orphan.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            h.get(old).await.is_none(),
            "the job past its age is removed"
        );
        assert!(!orphan.exists(), "orphaned logs are deleted at start");
        assert!(
            h.get(young).await.is_some(),
            "a job younger than keep_finished stays"
        );
    }

    #[test]
    fn age_counts_from_the_end() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let hour = Duration::from_secs(3600);
        assert!(!ended_before(None, now, Duration::ZERO));
        assert!(ended_before(Some(now - hour * 2), now, hour));
        assert!(!ended_before(Some(now - hour / 2), now, hour));
        // A clock that stepped back makes nothing old.
        assert!(!ended_before(Some(now + hour), now, Duration::ZERO));
    }
}
