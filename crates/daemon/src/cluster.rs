//! The daemon's side of SPEC §8.5 ("the cluster does the work"): what a
//! submission becomes under `pods.*` (the default image applied, secrets
//! and workspaces checked), what a step pod carries beyond oj's own fields,
//! and whether a job's workspace is still there for a rerun from a later step.

use std::collections::HashSet;

use oj_adapters::k8s::PodExtras;
use oj_config::PodsConfig;
use oj_core::{Job, JobSpec, Workspace};

/// What a container step's pod needs from its job spec beyond the command:
/// the pass-through `container` fields, the secrets, the workspace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodParts {
    pub extras: PodExtras,
    /// The job's workspace; the runner creates (or finds) its claim first.
    pub workspace: Option<Workspace>,
}

/// The [`PodParts`] of step `index` of `spec`.
pub fn pod_parts(spec: &JobSpec, index: usize) -> PodParts {
    PodParts {
        extras: PodExtras {
            job_container: spec.container.as_deref().cloned(),
            step_container: spec
                .steps
                .get(index)
                .and_then(|s| s.container.as_deref().cloned()),
            secrets: spec.step_secrets(index),
            workspace_claim: None,
        },
        workspace: spec.workspace.as_deref().cloned(),
    }
}

/// A submission under the running `pods.*`: steps without a container get
/// `pods.default_image` (recorded so, a reload does not move them), then
/// secrets must be allowed and only on pod steps, and a workspace needs a
/// pod step. The error is the 400's message.
pub fn prepare_submission(spec: &mut JobSpec, pods: &PodsConfig) -> Result<(), String> {
    if let Some(image) = pods
        .default_image
        .as_deref()
        .filter(|i| !i.trim().is_empty())
    {
        spec.apply_default_image(image);
    }
    spec.check_cluster(&pods.allowed_secrets)
        .map_err(|e| e.to_string())
}

/// What the runners hold for jobs that can go (see [`crate::runner::StepRunner::release`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// The job ended (durably): its workspace is deleted unless `pods.keep_finished`.
    Job(String),
    /// After becoming leader, before any step starts: what belongs to no
    /// job that still runs (`unfinished`) is deleted; with
    /// `pods.keep_finished`, only what belongs to no job the daemon knows.
    Sweep {
        unfinished: HashSet<String>,
        known: HashSet<String>,
    },
}

/// The jobs a [`Release::Sweep`] keeps apart.
pub fn sweep_of<'a>(jobs: impl Iterator<Item = &'a Job>) -> Release {
    let mut unfinished = HashSet::new();
    let mut known = HashSet::new();
    for job in jobs {
        if !job.state.is_terminal() {
            unfinished.insert(job.id.to_string());
        }
        known.insert(job.id.to_string());
    }
    Release::Sweep { unfinished, known }
}

/// Why `rerun --from-step` of `job` must be refused (409): the steps
/// before that one left their files in the job's workspace, and it is
/// gone. `None` when the job has no workspace or it still exists. For the
/// rerun endpoint (SPEC §8.1): answer 409 with this message.
pub async fn rerun_workspace_gone(
    pods: Option<&crate::k8s::PodStepRunner>,
    job: &Job,
) -> Option<String> {
    job.spec.workspace.as_ref()?;
    let claim = oj_adapters::k8s::workspace::claim_name(job.id.as_str());
    let gone = |why: String| {
        Some(format!(
            "job {} kept its files in the workspace {claim}, which {why}; a rerun from a later step would not find what the earlier steps left: rerun the whole job (without --from-step), or set pods.keep_finished = true to keep workspaces",
            job.id
        ))
    };
    let Some(pods) = pods else {
        return gone("cannot be looked up: this daemon has no Kubernetes API".into());
    };
    match pods.workspace_exists(job.id.as_str()).await {
        Ok(true) => None,
        Ok(false) => gone("no longer exists".into()),
        Err(e) => gone(format!("could not be checked ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> PodsConfig {
        let env = oj_config::Environment::new([("HOME", "/h")], "host");
        oj_config::RuntimeConfig::defaults(&env, oj_config::BuiltinProfile::Kubernetes).pods
    }

    #[test]
    fn a_submission_gets_the_default_image_and_then_its_secrets_are_checked() {
        let mut cfg = pods();
        let mut spec = JobSpec::from_json(
            br#"{"name":"j","secrets":{"T":"creds/token"},"steps":[{"name":"a","run":"make"}]}"#,
        )
        .unwrap();
        let err = prepare_submission(&mut spec.clone(), &cfg).unwrap_err();
        assert!(err.contains("pods.default_image"), "{err}");
        cfg.default_image = Some("alpine:3".into());
        let err = prepare_submission(&mut spec, &cfg).unwrap_err();
        assert!(err.contains("pods.allowed_secrets"), "{err}");
        assert_eq!(spec.steps[0].container.as_ref().unwrap().image, "alpine:3");
        cfg.allowed_secrets = vec!["creds".into()];
        prepare_submission(&mut spec, &cfg).unwrap();
        let parts = pod_parts(&spec, 0);
        assert_eq!(parts.extras.secrets["T"].key, "token");
        assert_eq!(parts.extras.step_container.unwrap().image, "alpine:3");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rerun_from_a_later_step_needs_the_workspace_still_there() {
        let fake = oj_k8s_fake::FakeKube::start();
        let runner = oj_adapters::k8s::PodRunner::new(fake.client(), "default", pods())
            .with_instance("oj-test");
        let pods_runner = crate::k8s::PodStepRunner::new(runner.clone(), vec![]);
        let spec = JobSpec::from_json(
            br#"{"name":"j","container":"i","workspace":{"size":"1Gi"},"steps":[{"name":"a","run":"x"}]}"#,
        )
        .unwrap();
        let job = Job::new(
            oj_core::JobId::from_parts(1, 0),
            spec,
            oj_core::Timestamp(std::time::UNIX_EPOCH),
        );
        let gone = rerun_workspace_gone(Some(&pods_runner), &job)
            .await
            .unwrap();
        assert!(
            gone.contains(&format!("oj-{}-ws", job.id)) && gone.contains("no longer exists"),
            "{gone}"
        );
        let ws = job.spec.workspace.clone().unwrap();
        runner
            .workspaces()
            .ensure(job.id.as_str(), "j", &ws)
            .await
            .unwrap();
        assert_eq!(rerun_workspace_gone(Some(&pods_runner), &job).await, None);
        let none = rerun_workspace_gone(None, &job).await.unwrap();
        assert!(none.contains("no Kubernetes API"), "{none}");

        let mut plain = job.clone();
        plain.spec.workspace = None;
        assert_eq!(rerun_workspace_gone(None, &plain).await, None);
    }
}
