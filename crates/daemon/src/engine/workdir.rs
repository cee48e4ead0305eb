//! Where a job's shell steps run (SPEC §8.1): its `dir`, else its scratch
//! directory `work/<job-id>/` next to `logs/` under the state dir, which
//! goes when the job's logs go.

use std::path::PathBuf;

use oj_core::{Job, JobId};

use super::Engine;
use crate::runner::WorkDir;

impl Engine {
    /// `state_dir/work`: beside `state_dir/logs`.
    fn work_root(&self) -> PathBuf {
        match self.cfg.logs_dir.parent() {
            Some(state_dir) => state_dir.join("work"),
            None => PathBuf::from("work"),
        }
    }

    /// The working directory of step `index`: none for a container step.
    pub(super) fn work_dir(&self, job: &Job, index: usize) -> Option<WorkDir> {
        if job.spec.step_container(index).is_some() {
            return None;
        }
        Some(match &job.spec.dir {
            Some(dir) => WorkDir::Given(PathBuf::from(dir)),
            None => WorkDir::Scratch(self.work_root().join(job.id.as_str())),
        })
    }

    /// Deletes a removed job's scratch directory, off the engine task.
    pub(super) fn remove_work_dir(&self, id: &JobId) {
        let dir = self.work_root().join(id.as_str());
        tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %dir.display(), error = %e, "cannot delete the scratch directory of a removed job; delete it by hand")
            }
        });
    }
}
