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
        match self.cfg.get().logs_dir.parent() {
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

    /// Deletes the scratch directories of jobs the state does not know
    /// (a crash between a removal's commit and the deletion), as is done
    /// for their logs.
    pub(super) fn remove_orphan_work_dirs(&self) {
        let Ok(entries) = std::fs::read_dir(self.work_root()) else {
            return;
        };
        let orphans: Vec<JobId> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                (name.len() == 12).then(|| name.parse::<JobId>().ok())?
            })
            .filter(|id| self.state.job(id).is_none())
            .collect();
        for id in orphans {
            self.remove_work_dir(&id);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::spec;
    use crate::engine::{EngineConfig, Retention};
    use crate::runner::{NoContainerRunner, Runners};
    use oj_core::{ContainerSpec, Timestamp};
    use std::sync::Arc;
    use std::time::Duration;

    fn engine(dir: &std::path::Path) -> Engine {
        let (storage, state, _) = crate::storage::Storage::open(dir).unwrap();
        let (_tx, leader) = tokio::sync::watch::channel(true);
        let runners = Runners {
            shell: Arc::new(NoContainerRunner),
            container: Arc::new(NoContainerRunner),
        };
        let cfg = EngineConfig {
            max_concurrent: 1,
            allow_shell: true,
            step_timeout: Duration::from_secs(60),
            logs_dir: dir.join("logs"),
            reload_on_lead: false,
            retention: Retention::default(),
            queues: Default::default(),
        };
        let metrics = Arc::new(crate::metrics::Metrics::new("t", "t"));
        Engine::new(
            state,
            storage,
            crate::live::Live::fixed(cfg),
            runners,
            metrics,
            leader,
        )
        .0
    }

    /// Shell steps run in the job's dir, else its scratch dir; container
    /// steps get none (a pod never sees the daemon's directories).
    #[tokio::test]
    async fn shell_steps_get_a_dir_container_steps_none() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let mut s = spec(&["0", "0"]);
        s.steps[1].container = Some(Box::new(ContainerSpec {
            image: "alpine".into(),
            ..ContainerSpec::default()
        }));
        let id = JobId::from_parts(1_795_000_000_000, 0);
        let mut job = Job::new(id.clone(), s, Timestamp(std::time::SystemTime::now()));
        assert_eq!(
            e.work_dir(&job, 0),
            Some(WorkDir::Scratch(dir.path().join("work").join(id.as_str())))
        );
        assert_eq!(e.work_dir(&job, 1), None);
        job.spec.dir = Some("/srv/project".into());
        assert_eq!(
            e.work_dir(&job, 0),
            Some(WorkDir::Given(PathBuf::from("/srv/project")))
        );
        assert_eq!(e.work_dir(&job, 1), None);
    }

    /// Scratch directories of jobs the state does not know are swept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orphan_scratch_dirs_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let orphan = dir.path().join("work/0mx49xbba000");
        let not_ours = dir.path().join("work/keep-me");
        std::fs::create_dir_all(&orphan).unwrap();
        std::fs::create_dir_all(&not_ours).unwrap();
        e.remove_orphan_work_dirs();
        for _ in 0..200 {
            if !orphan.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!orphan.exists());
        assert!(not_ours.exists());
    }
}
