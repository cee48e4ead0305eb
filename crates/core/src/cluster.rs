//! The Kubernetes side of a job spec (SPEC §8.5): what a job passes through
//! to its step pods (labels, annotations, node selector, tolerations,
//! priority class), the secrets its steps read from the namespace, and the
//! workspace volume its step pods share. Pure rules: the daemon applies
//! `pods.default_image` and checks them against `pods.*` at submission (400),
//! the pod builder merges them with `pods.*`.

use std::collections::BTreeMap;

use oj_config::k8s_syntax::{self, Toleration};
use oj_config::{PodsConfig, Quantity};
use serde::{Deserialize, Serialize};

use crate::spec::{ContainerSpec, JobSpec, SpecError};

/// Where a workspace is mounted in each step pod; also its working directory.
pub const WORKSPACE_MOUNT: &str = "/workspace";

/// `workspace = { size = "10Gi", storage_class? = "…" }`: one
/// PersistentVolumeClaim per job, shared by its step pods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workspace {
    pub size: Quantity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// One entry of `secrets`: the key `key` of the Secret `secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub secret: String,
    pub key: String,
}

impl SecretRef {
    /// Parses `"<secret>/<key>"`.
    pub fn parse(text: &str) -> Result<SecretRef, String> {
        let Some((secret, key)) = text.split_once('/') else {
            return Err(format!(
                "{text:?} is not \"<secret>/<key>\" (e.g. \"registry-creds/token\")"
            ));
        };
        if !k8s_syntax::is_dns1123_subdomain(secret) {
            return Err(format!(
                "{secret:?} is not a Secret name (lowercase a-z 0-9 - . , at most 253 characters)"
            ));
        }
        let key_ok = !key.is_empty()
            && key.len() <= 253
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !key_ok {
            return Err(format!(
                "{key:?} is not a key of a Secret (1-253 characters of A-Z a-z 0-9 - _ .)"
            ));
        }
        Ok(SecretRef {
            secret: secret.to_string(),
            key: key.to_string(),
        })
    }
}

/// What a step pod carries beyond oj's own fields: `pods.*` overlaid by
/// the job's and then the step's `container` fields of the same names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodOverlay {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub priority_class_name: Option<String>,
}

impl PodOverlay {
    /// `pods.*`, then `job`, then `step`: tables merged key by key, a
    /// `tolerations` list replaces the one below it whole.
    pub fn merge(
        cfg: &PodsConfig,
        job: Option<&ContainerSpec>,
        step: Option<&ContainerSpec>,
    ) -> PodOverlay {
        let mut o = PodOverlay {
            labels: cfg.labels.clone(),
            annotations: cfg.annotations.clone(),
            node_selector: cfg.node_selector.clone(),
            tolerations: cfg.tolerations.clone(),
            priority_class_name: cfg.priority_class_name.clone(),
        };
        for c in [job, step].into_iter().flatten() {
            o.labels.extend(c.labels.clone());
            o.annotations.extend(c.annotations.clone());
            o.node_selector.extend(c.node_selector.clone());
            if let Some(t) = &c.tolerations {
                o.tolerations = t.clone();
            }
            if let Some(p) = &c.priority_class_name {
                o.priority_class_name = Some(p.clone());
            }
        }
        o
    }
}

fn cluster(place: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Cluster {
        place: place.into(),
        message: message.into(),
    }
}

impl ContainerSpec {
    /// The pass-through fields follow Kubernetes syntax and leave oj's own
    /// labels alone.
    pub(crate) fn validate_pass_through(&self, place: &str) -> Result<(), SpecError> {
        let problems = k8s_syntax::check_pass_through(
            &self.labels,
            &self.annotations,
            &self.node_selector,
            self.tolerations.as_deref(),
            self.priority_class_name.as_deref(),
        );
        match problems.into_iter().next() {
            Some((field, message)) => Err(cluster(format!("{place}: container.{field}"), message)),
            None => Ok(()),
        }
    }
}

impl JobSpec {
    /// What needs no daemon config: the syntax of `secrets` and
    /// `workspace`, and no name in both `env` and `secrets`.
    pub(crate) fn validate_cluster(&self) -> Result<(), SpecError> {
        let places = std::iter::once(("job".to_string(), &self.secrets)).chain(
            self.steps
                .iter()
                .map(|s| (format!("step {:?}", s.name), &s.secrets)),
        );
        for (place, secrets) in places {
            for (name, reference) in secrets {
                let field = format!("{place}: secrets.{name:?}");
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    return Err(cluster(
                        field,
                        "environment variable names must be non-empty and contain no '=' or NUL",
                    ));
                }
                if self.env.contains_key(name) {
                    return Err(cluster(
                        field,
                        format!(
                            "{name} is in both env and secrets; a variable comes from one of them, remove it from one"
                        ),
                    ));
                }
                SecretRef::parse(reference).map_err(|e| cluster(field, e))?;
            }
        }
        if let Some(ws) = &self.workspace {
            if "0".parse::<Quantity>().is_ok_and(|zero| ws.size <= zero) {
                return Err(cluster(
                    "workspace.size",
                    "a workspace of size 0 holds nothing; give a size such as \"1Gi\"",
                ));
            }
            if let Some(class) = &ws.storage_class
                && !k8s_syntax::is_dns1123_subdomain(class)
            {
                return Err(cluster(
                    "workspace.storage_class",
                    format!("{class:?} is not a StorageClass name (lowercase a-z 0-9 - .)"),
                ));
            }
        }
        Ok(())
    }

    /// `pods.default_image`: every step without a container (its own or
    /// the job's) gets one of `image`, so it is recorded, and runs, as a
    /// pod. Returns how many steps changed.
    pub fn apply_default_image(&mut self, image: &str) -> usize {
        if self.container.is_some() {
            return 0;
        }
        let mut changed = 0;
        for step in &mut self.steps {
            if step.container.is_none() {
                step.container = Some(Box::new(ContainerSpec {
                    image: image.to_string(),
                    ..Default::default()
                }));
                changed += 1;
            }
        }
        changed
    }

    /// What depends on the daemon (after [`Self::apply_default_image`]):
    /// secrets only from `allowed`, only on steps that run as pods; a
    /// workspace only on a job with a pod step.
    pub fn check_cluster(&self, allowed: &[String]) -> Result<(), SpecError> {
        let is_pod = |i: usize| self.step_container(i).is_some();
        for (i, step) in self.steps.iter().enumerate() {
            let secrets = self.step_secrets_raw(i);
            if !secrets.is_empty() && !is_pod(i) {
                let origin = if step.secrets.is_empty() {
                    "the job's secrets apply to it"
                } else {
                    "it has secrets"
                };
                return Err(cluster(
                    format!("step {:?}", step.name),
                    format!(
                        "{origin}, but it would run inside the daemon, where oj does not read secrets; give the step (or the job) a container, or set pods.default_image so it runs as a pod"
                    ),
                ));
            }
            for (name, reference) in secrets {
                let Ok(r) = SecretRef::parse(reference) else {
                    continue;
                };
                if !allowed.contains(&r.secret) {
                    let place = if step.secrets.contains_key(name) {
                        format!("step {:?}: secrets.{name:?}", step.name)
                    } else {
                        format!("job: secrets.{name:?}")
                    };
                    let list = if allowed.is_empty() {
                        "none is allowed".to_string()
                    } else {
                        format!("allowed: {}", allowed.join(", "))
                    };
                    return Err(cluster(
                        place,
                        format!(
                            "the Secret {:?} is not in pods.allowed_secrets ({list}); a step pod can read any Secret of its namespace, so the daemon's config must name the ones jobs may use",
                            r.secret
                        ),
                    ));
                }
            }
        }
        if self.workspace.is_some() && !(0..self.steps.len()).any(is_pod) {
            return Err(cluster(
                "workspace",
                "no step of this job runs as a pod, and a workspace is a volume of the job's pods; give a step a container, set pods.default_image, or remove the workspace",
            ));
        }
        Ok(())
    }

    fn step_secrets_raw(&self, index: usize) -> BTreeMap<&String, &String> {
        let mut out: BTreeMap<&String, &String> = self.secrets.iter().collect();
        if let Some(step) = self.steps.get(index) {
            out.extend(step.secrets.iter());
        }
        out
    }

    /// The secrets of step `index`: the job's, overridden by the step's
    /// own. Entries that do not parse (refused at submission) are skipped.
    pub fn step_secrets(&self, index: usize) -> BTreeMap<String, SecretRef> {
        self.step_secrets_raw(index)
            .into_iter()
            .filter_map(|(k, v)| Some((k.clone(), SecretRef::parse(v).ok()?)))
            .collect()
    }

    /// What step `index`'s pod carries from `pods.*` and the containers.
    pub fn pod_overlay(&self, cfg: &PodsConfig, index: usize) -> PodOverlay {
        let step = self.steps.get(index).and_then(|s| s.container.as_deref());
        PodOverlay::merge(cfg, self.container.as_deref(), step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> JobSpec {
        let s = JobSpec::from_json(json.as_bytes()).unwrap();
        s.validate().unwrap();
        s
    }

    fn pods() -> PodsConfig {
        let env = oj_config::Environment::new([("HOME", "/h")], "host");
        oj_config::RuntimeConfig::defaults(&env, oj_config::BuiltinProfile::Kubernetes).pods
    }

    #[test]
    fn default_image_turns_shell_steps_into_pod_steps() {
        let mut s = spec(
            r#"{"name":"j","steps":[{"name":"a","run":"make"},{"name":"b","run":"x","container":"rust:1"}]}"#,
        );
        assert!(s.refuse_shell_steps().is_err());
        assert_eq!(s.apply_default_image("alpine:3"), 1);
        assert_eq!(s.step_container(0).unwrap().image, "alpine:3");
        assert_eq!(s.step_container(1).unwrap().image, "rust:1");
        assert_eq!(s.refuse_shell_steps(), Ok(()));
        let mut with_job_container =
            spec(r#"{"name":"j","container":"c:1","steps":[{"name":"a","run":"x"}]}"#);
        assert_eq!(with_job_container.apply_default_image("alpine:3"), 0);
    }

    #[test]
    fn pass_through_overlays_tables_by_key_and_tolerations_whole() {
        let mut cfg = pods();
        cfg.labels
            .insert("kueue.x-k8s.io/queue-name".into(), "team-a".into());
        cfg.labels.insert("tier".into(), "batch".into());
        cfg.node_selector.insert("pool".into(), "cpu".into());
        cfg.tolerations = vec![Toleration {
            key: Some("a".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }];
        cfg.priority_class_name = Some("low".into());
        let s = spec(
            r#"{"name":"j","container":{"image":"i","labels":{"tier":"gpu"},"node_selector":{"gpu":"a100"}},
                "steps":[{"name":"a","run":"x"},
                         {"name":"b","run":"x","container":{"image":"i","labels":{"x":"1"},
                          "tolerations":[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}],
                          "priority_class_name":"high"}}]}"#,
        );
        let a = s.pod_overlay(&cfg, 0);
        assert_eq!(a.labels["kueue.x-k8s.io/queue-name"], "team-a");
        assert_eq!(a.labels["tier"], "gpu");
        assert_eq!(a.node_selector.len(), 2);
        assert_eq!(a.tolerations, cfg.tolerations);
        assert_eq!(a.priority_class_name.as_deref(), Some("low"));
        let b = s.pod_overlay(&cfg, 1);
        assert_eq!(b.labels["x"], "1");
        assert_eq!(b.labels["tier"], "gpu");
        assert_eq!(b.tolerations.len(), 1);
        assert_eq!(b.tolerations[0].key.as_deref(), Some("nvidia.com/gpu"));
        assert_eq!(b.priority_class_name.as_deref(), Some("high"));
    }

    #[test]
    fn bad_pass_through_is_refused_naming_the_field() {
        let err = JobSpec::from_json(
            br#"{"name":"j","steps":[{"name":"a","run":"x","container":{"image":"i","labels":{"oj.dev/job-id":"x"}}}]}"#,
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("step \"a\": container.labels.\"oj.dev/job-id\"")
                && err.contains("oj's own"),
            "{err}"
        );
        let err = JobSpec::from_json(
            br#"{"name":"j","container":{"image":"i","tolerations":[{"operator":"Equal"}]},"steps":[{"name":"a","run":"x"}]}"#,
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("job container: container.tolerations[0]"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_checked_against_env_the_allow_list_and_where_the_step_runs() {
        let err = JobSpec::from_json(
            br#"{"name":"j","env":{"TOKEN":"x"},"secrets":{"TOKEN":"creds/token"},"container":"i","steps":[{"name":"a","run":"x"}]}"#,
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("both env and secrets"), "{err}");
        let err = JobSpec::from_json(
            br#"{"name":"j","container":"i","steps":[{"name":"a","run":"x","secrets":{"T":"creds"}}]}"#,
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("<secret>/<key>"), "{err}");

        let s = spec(
            r#"{"name":"j","secrets":{"T":"creds/token"},"steps":[{"name":"a","run":"x","container":"i","secrets":{"U":"other/k"}}]}"#,
        );
        let allowed = vec!["creds".to_string()];
        let err = s.check_cluster(&allowed).unwrap_err().to_string();
        assert!(
            err.contains("step \"a\": secrets.\"U\"") && err.contains("pods.allowed_secrets"),
            "{err}"
        );
        s.check_cluster(&["creds".into(), "other".into()]).unwrap();
        let refs = s.step_secrets(0);
        assert_eq!(refs["T"].secret, "creds");
        assert_eq!(refs["U"].key, "k");

        let mut shell =
            spec(r#"{"name":"j","secrets":{"T":"creds/token"},"steps":[{"name":"a","run":"x"}]}"#);
        let err = shell.check_cluster(&allowed).unwrap_err().to_string();
        assert!(
            err.contains("step \"a\"")
                && err.contains("container")
                && err.contains("pods.default_image"),
            "{err}"
        );
        shell.apply_default_image("alpine:3");
        shell.check_cluster(&allowed).unwrap();
    }

    #[test]
    fn a_workspace_needs_a_pod_step() {
        let mut s = spec(
            r#"{"name":"j","workspace":{"size":"1Gi","storage_class":"fast"},"steps":[{"name":"a","run":"x"}]}"#,
        );
        let err = s.check_cluster(&[]).unwrap_err().to_string();
        assert!(err.starts_with("workspace: "), "{err}");
        s.apply_default_image("alpine:3");
        s.check_cluster(&[]).unwrap();
        let err = JobSpec::from_json(
            br#"{"name":"j","workspace":{"size":"1Gi","storage_class":"Fast_SSD"},"container":"i","steps":[{"name":"a","run":"x"}]}"#,
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("workspace.storage_class"), "{err}");
        assert!(
            JobSpec::from_json(
                br#"{"name":"j","workspace":{"size":"lots"},"steps":[{"name":"a","run":"x"}]}"#
            )
            .is_err()
        );
    }
}
