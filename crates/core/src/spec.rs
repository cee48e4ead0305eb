//! The job spec: what a client submits (`POST /v1/jobs`) and what a runbook
//! job becomes after `${var.…}` substitution. Validation lives here so that
//! the client refuses a bad runbook before sending it and the daemon
//! answers 400 with the same reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use oj_config::Quantity;

use crate::job::Timestamp;
use crate::queue::{Dependency, QueueError};
use crate::retry::{RetryError, RetrySpec};
use crate::template::{MAX_FILLED_BYTES, RuntimeVars};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Longest step name: it becomes a file name and part of a pod label value.
pub const MAX_STEP_NAME: usize = 63;

/// Longest job name, in bytes (a DNS name's length: it is shown in logs,
/// terminals and notification titles).
pub const MAX_NAME_BYTES: usize = 253;

/// The most bytes a step's `run` and environment may fill in to, together:
/// well under Linux's `ARG_MAX` (2 MiB with the usual 8 MiB stack), so the
/// daemon never builds more than this to start one step.
pub const MAX_STEP_START_BYTES: usize = 1 << 20;

fn default_queue() -> String {
    "default".to_string()
}

/// A job as submitted: a name and an ordered list of steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    /// The queue this job waits in (SPEC §8.2).
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Extra environment of every step.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Notification message templates; unset ones use the default message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Box<NotifyTemplates>>,
    /// Default container of the steps (a step's own `container` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Box<ContainerSpec>>,
    /// Default retry policy of the steps (a step's own `retry` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// Absolute working directory of the steps the daemon runs itself (not
    /// of pods); unset = a fresh `work/<job-id>/` under the state dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Labels in Kubernetes label syntax, to find jobs by (not put on pods).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "exact_vec")]
    pub steps: Vec<StepSpec>,
    /// A volume shared by the job's step pods (SPEC §8.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Box<crate::cluster::Workspace>>,
    /// Environment from Kubernetes Secrets: env name → `"<secret>/<key>"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Higher starts first (SPEC §8.2), -1000…1000.
    #[serde(default, skip_serializing_if = "crate::queue::is_zero")]
    pub priority: i32,
    /// Jobs this one waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Dependency>,
    /// Stays queued until released.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold: bool,
    /// Not started before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
}

/// Per-job notification messages; `${name}`, `${job_id}`, `${error}` are filled in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyTemplates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_done: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_fail: Option<String>,
}

/// One step: a shell command, optionally inside a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub name: String,
    pub run: String,
    /// Overrides `jobs.step_timeout`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Box<ContainerSpec>>,
    /// Overrides the job's `retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// Added to (and overriding) the job's `secrets` for this step.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
}

/// A container: written either as the image string or as
/// `{image, resources?}`; always serialized in the table form.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ContainerSpec {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ContainerResources>,
    /// Pod pass-through (SPEC §8.5), overlaid on `pods.*`: tables key by
    /// key, tolerations whole.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<oj_config::Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Requests and limits of a container, overlaid on `pods.resources`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
}

/// CPU and memory amounts; each optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceAmounts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

impl<'de> Deserialize<'de> for ContainerSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            image: String,
            #[serde(default)]
            resources: Option<ContainerResources>,
            #[serde(default)]
            labels: BTreeMap<String, String>,
            #[serde(default)]
            annotations: BTreeMap<String, String>,
            #[serde(default)]
            node_selector: BTreeMap<String, String>,
            #[serde(default)]
            tolerations: Option<Vec<oj_config::Toleration>>,
            #[serde(default)]
            priority_class_name: Option<String>,
        }

        struct ContainerVisitor;

        impl<'de> Visitor<'de> for ContainerVisitor {
            type Value = ContainerSpec;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an image name or a table {image, resources, labels, annotations, node_selector, tolerations, priority_class_name}")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ContainerSpec, E> {
                Ok(ContainerSpec {
                    image: v.to_string(),
                    ..Default::default()
                })
            }

            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<ContainerSpec, M::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ContainerSpec {
                    image: t.image,
                    resources: t.resources,
                    labels: t.labels,
                    annotations: t.annotations,
                    node_selector: t.node_selector,
                    tolerations: t.tolerations,
                    priority_class_name: t.priority_class_name,
                })
            }
        }

        d.deserialize_any(ContainerVisitor)
    }
}

/// Why a job spec is refused. Each message names the step where there is one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("the job has no name; set \"name\"")]
    EmptyName,
    #[error("job {job:?} has no steps; add at least one step with a name and a run command")]
    NoSteps { job: String },
    #[error("step #{index} has no name; every step needs a unique \"name\"")]
    EmptyStepName { index: usize },
    #[error(
        "step {step:?}: the name must be at most {MAX_STEP_NAME} characters of A-Z a-z 0-9 . _ - and not \".\" or \"..\" (it names the step's log file)"
    )]
    BadStepName { step: String },
    #[error("step {step:?} appears twice; step names must be unique within a job")]
    DuplicateStep { step: String },
    #[error("step {step:?} has an empty \"run\"; give it the command to run")]
    EmptyRun { step: String },
    #[error("{place}: the container has an empty \"image\"")]
    EmptyImage { place: String },
    #[error(
        "{place}: resources.requests.{resource} ({request}) is above resources.limits.{resource} ({limit}); lower the request or raise the limit"
    )]
    RequestAboveLimit {
        place: String,
        resource: &'static str,
        request: String,
        limit: String,
    },
    #[error("env {key:?}: environment variable names must be non-empty and contain no '=' or NUL")]
    BadEnvName { key: String },
    #[error(
        "{place}: a timeout of 0 would kill the step at once; leave it unset or give a positive duration"
    )]
    ZeroTimeout { place: String },
    #[error(
        "step {step:?} would run in the daemon (no container), but this daemon accepts only container steps (jobs.allow_shell = false); give the step or the job a \"container\""
    )]
    ShellNotAllowed { step: String },
    #[error("\"name\" is {bytes} bytes; a job name may have at most {MAX_NAME_BYTES}")]
    NameTooLong { bytes: usize },
    #[error(
        "\"name\" contains a control character ({found}); names are shown in logs and terminals, use printable text"
    )]
    ControlCharInName { found: String },
    #[error("{place} contains a NUL byte, which no process can be given; remove it")]
    NulByte { place: String },
    #[error(
        "{place} is over {cap} bytes once ${{job_id}}, ${{name}} and ${{step}} are filled in; Linux refuses longer arguments (MAX_ARG_STRLEN), shorten it"
    )]
    FilledTooLong { place: String, cap: usize },
    #[error(
        "step {step:?}: its run and env are over {MAX_STEP_START_BYTES} bytes together once filled in; a process could not be started with them, shorten them"
    )]
    StepTooBig { step: String },
    #[error("{0}")]
    Retry(#[from] RetryError),
    #[error("{0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Where(#[from] crate::placement::PlacementError),
    /// A Kubernetes-side field (SPEC §8.5): pass-through, secrets, workspace.
    #[error("{place}: {message}")]
    Cluster { place: String, message: String },
}

/// A step's `run` and environment with `${job_id}`, `${name}` and `${step}`
/// filled in: what the runner starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilledStep {
    pub run: String,
    pub env: BTreeMap<String, String>,
}

impl JobSpec {
    /// Decodes a job spec from JSON (the body of `POST /v1/jobs`). serde's
    /// own error only gives a line and column; when the bad value sits in a
    /// step or a container, the message is prefixed with which one
    /// (`step "build": …`), so the caller can tell where to look.
    pub fn from_json(bytes: &[u8]) -> Result<JobSpec, String> {
        let err = match serde_json::from_slice::<JobSpec>(bytes) {
            Ok(spec) => return Ok(spec),
            Err(e) => e,
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            return Err(err.to_string());
        };
        if let Some(c) = value.get("container")
            && let Err(e) = ContainerSpec::deserialize(c)
        {
            return Err(format!("job container: {e}"));
        }
        if let Some(steps) = value.get("steps").and_then(|s| s.as_array()) {
            for (i, step) in steps.iter().enumerate() {
                if let Err(e) = StepSpec::deserialize(step) {
                    let place = match step.get("name").and_then(|n| n.as_str()) {
                        Some(name) => format!("step {name:?}"),
                        None => format!("step #{}", i + 1),
                    };
                    return Err(format!("{place}: {e}"));
                }
            }
        }
        Err(err.to_string())
    }

    /// Checks what serde cannot: names, uniqueness, non-empty commands,
    /// requests within limits.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.name.trim().is_empty() {
            return Err(SpecError::EmptyName);
        }
        if self.name.len() > MAX_NAME_BYTES {
            return Err(SpecError::NameTooLong {
                bytes: self.name.len(),
            });
        }
        if let Some(c) = self.name.chars().find(|c| c.is_control()) {
            return Err(SpecError::ControlCharInName {
                found: c.escape_unicode().to_string(),
            });
        }
        if self.steps.is_empty() {
            return Err(SpecError::NoSteps {
                job: self.name.clone(),
            });
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(SpecError::BadEnvName { key: key.clone() });
            }
            if value.contains('\0') {
                return Err(SpecError::NulByte {
                    place: format!("env {key:?}"),
                });
            }
        }
        if let Some(c) = &self.container {
            c.validate("job container")?;
        }
        if let Some(r) = &self.retry {
            r.validate("job")?;
        }
        crate::queue::validate(&self.queue, self.priority, &self.after)?;
        crate::placement::validate(self)?;
        self.validate_cluster()?;
        let mut seen = BTreeSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            if step.name.is_empty() {
                return Err(SpecError::EmptyStepName { index: i + 1 });
            }
            if !is_safe_step_name(&step.name) {
                return Err(SpecError::BadStepName {
                    step: step.name.clone(),
                });
            }
            if !seen.insert(step.name.as_str()) {
                return Err(SpecError::DuplicateStep {
                    step: step.name.clone(),
                });
            }
            if step.run.trim().is_empty() {
                return Err(SpecError::EmptyRun {
                    step: step.name.clone(),
                });
            }
            if step.run.contains('\0') {
                return Err(SpecError::NulByte {
                    place: format!("step {:?}: run", step.name),
                });
            }
            if step.timeout == Some(Duration::ZERO) {
                return Err(SpecError::ZeroTimeout {
                    place: format!("step {:?}", step.name),
                });
            }
            if let Some(c) = &step.container {
                c.validate(&format!("step {:?}", step.name))?;
            }
            if let Some(r) = &step.retry {
                r.validate(&format!("step {:?}", step.name))?;
            }
        }
        Ok(())
    }

    /// The first step that would run in the daemon as a shell step (no
    /// container of its own or of the job): refused when `jobs.allow_shell`
    /// is `false`.
    pub fn refuse_shell_steps(&self) -> Result<(), SpecError> {
        match (0..self.steps.len()).find(|&i| self.step_container(i).is_none()) {
            Some(i) => Err(SpecError::ShellNotAllowed {
                step: self.steps[i].name.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Checks, without building them, that every step's `run` and env fill
    /// in (with this job id) to sizes a process can be started with. The
    /// cost is linear in the spec's size, however much it would expand.
    pub fn check_filled(&self, job_id: &str) -> Result<(), SpecError> {
        let longest_step = self
            .steps
            .iter()
            .map(|s| s.name.as_str())
            .max_by_key(|n| n.len());
        let vars = RuntimeVars {
            job_id,
            name: &self.name,
            step: longest_step,
            error: None,
        };
        // With the longest step name, env sizes are an upper bound for every step.
        let mut env_bytes = 0usize;
        for (key, value) in &self.env {
            if vars.filled_len(value) > MAX_FILLED_BYTES {
                return Err(SpecError::FilledTooLong {
                    place: format!("env {key:?}"),
                    cap: MAX_FILLED_BYTES,
                });
            }
            env_bytes = env_bytes.saturating_add(key.len() + 1 + vars.filled_len(value));
        }
        for step in &self.steps {
            let vars = RuntimeVars {
                step: Some(&step.name),
                ..vars.clone()
            };
            let run = vars.filled_len(&step.run);
            if run > MAX_FILLED_BYTES {
                return Err(SpecError::FilledTooLong {
                    place: format!("step {:?}: run", step.name),
                    cap: MAX_FILLED_BYTES,
                });
            }
            if run.saturating_add(env_bytes) > MAX_STEP_START_BYTES {
                return Err(SpecError::StepTooBig {
                    step: step.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Step `index`'s `run` and env, filled in for job `job_id`. Fails (with
    /// nothing larger than the caps built) when they are too long to start.
    pub fn fill_step(&self, job_id: &str, index: usize) -> Result<FilledStep, SpecError> {
        let step = &self.steps[index];
        let vars = RuntimeVars {
            job_id,
            name: &self.name,
            step: Some(&step.name),
            error: None,
        };
        let too_long = |place: String| SpecError::FilledTooLong {
            place,
            cap: MAX_FILLED_BYTES,
        };
        let run = vars
            .fill(&step.run, MAX_FILLED_BYTES)
            .map_err(|_| too_long(format!("step {:?}: run", step.name)))?;
        let mut total = run.len();
        let mut env = BTreeMap::new();
        for (key, value) in &self.env {
            let filled = vars
                .fill(value, MAX_FILLED_BYTES)
                .map_err(|_| too_long(format!("env {key:?}")))?;
            total += key.len() + 1 + filled.len();
            if total > MAX_STEP_START_BYTES {
                return Err(SpecError::StepTooBig {
                    step: step.name.clone(),
                });
            }
            env.insert(key.clone(), filled);
        }
        Ok(FilledStep { run, env })
    }

    /// The retry policy of a step: its own, else the job's, else none.
    pub fn step_retry(&self, index: usize) -> Option<&RetrySpec> {
        self.steps
            .get(index)
            .and_then(|s| s.retry.as_ref())
            .or(self.retry.as_ref())
    }

    /// The container a step runs in: its own, else the job's, else none (shell).
    pub fn step_container(&self, index: usize) -> Option<&ContainerSpec> {
        self.steps
            .get(index)
            .and_then(|s| s.container.as_deref())
            .or(self.container.as_deref())
    }
}

impl ContainerSpec {
    fn validate(&self, place: &str) -> Result<(), SpecError> {
        if self.image.trim().is_empty() {
            return Err(SpecError::EmptyImage {
                place: place.to_string(),
            });
        }
        self.validate_pass_through(place)?;
        let Some(res) = &self.resources else {
            return Ok(());
        };
        let (Some(req), Some(lim)) = (&res.requests, &res.limits) else {
            return Ok(());
        };
        let pairs = [
            ("cpu", &req.cpu, &lim.cpu),
            ("memory", &req.memory, &lim.memory),
        ];
        for (resource, r, l) in pairs {
            if let (Some(r), Some(l)) = (r, l)
                && r > l
            {
                return Err(SpecError::RequestAboveLimit {
                    place: place.to_string(),
                    resource,
                    request: r.to_string(),
                    limit: l.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// `[A-Za-z0-9._-]{1,63}`, not `.` or `..`.
pub fn is_safe_step_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STEP_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Deserializes a list without spare room. A list read from JSON starts
/// with room for four; a one-step job would keep that room for its whole
/// life, thousands of times over in a big state. Shrunk as soon as it is
/// read, the freed tail is reused by what is read next.
pub(crate) fn exact_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let mut v = Vec::<T>::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<JobSpec, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn parses_the_documented_shape() {
        let spec = parse(
            r#"{"name":"build","env":{"A":"1"},"notify":{"on_fail":"x ${error}"},
                "container":"alpine:3",
                "steps":[{"name":"compile","run":"make","timeout":"20m"},
                         {"name":"test","run":"make test","container":{"image":"rust:1","resources":{"limits":{"memory":"4Gi"}}}}]}"#,
        )
        .unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.steps[0].timeout, Some(Duration::from_secs(1200)));
        assert_eq!(spec.container.as_ref().unwrap().image, "alpine:3");
        let c = spec.steps[1].container.as_ref().unwrap();
        assert_eq!(
            c.resources
                .as_ref()
                .unwrap()
                .limits
                .as_ref()
                .unwrap()
                .memory
                .as_ref()
                .unwrap()
                .as_str(),
            "4Gi"
        );
        assert_eq!(spec.step_container(0).unwrap().image, "alpine:3");
        assert_eq!(spec.step_container(1).unwrap().image, "rust:1");
        // Round trip.
        let again: JobSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn decode_errors_inside_a_step_name_the_step() {
        let err = JobSpec::from_json(
            br#"{"name":"a","steps":[{"name":"ok","run":"x"},{"name":"big","run":"x","container":{"image":"i","resources":{"limits":{"memory":"4GB"}}}}]}"#,
        )
        .unwrap_err();
        assert!(err.starts_with("step \"big\": "), "{err}");
        assert!(err.contains("4GB"), "{err}");
        let err = JobSpec::from_json(br#"{"name":"a","steps":[{"run":"x","timeout":"soon"}]}"#)
            .unwrap_err();
        assert!(err.starts_with("step #1: "), "{err}");
        let err = JobSpec::from_json(
            br#"{"name":"a","container":{"image":"i","resources":{"requests":{"cpu":"lots"}}},"steps":[]}"#,
        )
        .unwrap_err();
        assert!(err.starts_with("job container: "), "{err}");
        let err = JobSpec::from_json(b"{").unwrap_err();
        assert!(err.contains("EOF"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err =
            parse(r#"{"name":"a","steps":[{"name":"s","run":"x","tiemout":"1s"}]}"#).unwrap_err();
        assert!(err.to_string().contains("tiemout"), "{err}");
        let err = parse(r#"{"name":"a","steps":[],"container":{"image":"x","resource":{}}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("resource"), "{err}");
    }

    fn step(name: &str, run: &str) -> StepSpec {
        StepSpec {
            name: name.into(),
            run: run.into(),
            timeout: None,
            container: None,
            retry: None,
            secrets: BTreeMap::new(),
        }
    }

    fn job(steps: Vec<StepSpec>) -> JobSpec {
        JobSpec {
            name: "j".into(),
            queue: "default".into(),
            dir: None,
            labels: Default::default(),
            env: BTreeMap::new(),
            notify: None,
            container: None,
            retry: None,
            priority: 0,
            after: Vec::new(),
            hold: false,
            not_before: None,
            steps,
            workspace: None,
            secrets: BTreeMap::new(),
        }
    }

    #[test]
    fn validation_names_the_step() {
        assert_eq!(
            job(vec![]).validate(),
            Err(SpecError::NoSteps { job: "j".into() })
        );
        let dup = job(vec![step("a", "x"), step("a", "y")])
            .validate()
            .unwrap_err();
        assert!(dup.to_string().contains("\"a\""));
        for bad in ["..", ".", "a/b", "a b", &"x".repeat(64)] {
            let err = job(vec![step(bad, "x")]).validate().unwrap_err();
            assert_eq!(
                err,
                SpecError::BadStepName {
                    step: bad.to_string()
                }
            );
        }
        assert_eq!(
            job(vec![step("ok", " ")]).validate(),
            Err(SpecError::EmptyRun { step: "ok".into() })
        );
        job(vec![step("a.b_c-D9", "x")]).validate().unwrap();
        let mut no_name = job(vec![step("a", "x")]);
        no_name.name = "".into();
        assert_eq!(no_name.validate(), Err(SpecError::EmptyName));
    }

    #[test]
    fn requests_above_limits_are_refused() {
        let spec = parse(
            r#"{"name":"a","steps":[{"name":"s","run":"x","container":{"image":"i",
               "resources":{"requests":{"memory":"2Gi"},"limits":{"memory":"1Gi"}}}}]}"#,
        )
        .unwrap();
        let err = spec.validate().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("step \"s\"") && text.contains("memory") && text.contains("2Gi"),
            "{text}"
        );
    }

    #[test]
    fn shell_steps_are_named_when_only_containers_are_allowed() {
        let only_pods =
            parse(r#"{"name":"a","container":"alpine","steps":[{"name":"s","run":"x"}]}"#).unwrap();
        assert_eq!(only_pods.refuse_shell_steps(), Ok(()));
        let mixed = parse(
            r#"{"name":"a","steps":[{"name":"pod","run":"x","container":"alpine"},{"name":"local","run":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(
            mixed.refuse_shell_steps(),
            Err(SpecError::ShellNotAllowed {
                step: "local".into()
            })
        );
        let text = mixed.refuse_shell_steps().unwrap_err().to_string();
        assert!(
            text.contains("\"local\"") && text.contains("jobs.allow_shell"),
            "{text}"
        );
    }

    #[test]
    fn names_are_bounded_and_printable() {
        let mut spec = job(vec![step("a", "x")]);
        spec.name = "n".repeat(MAX_NAME_BYTES);
        assert_eq!(spec.validate(), Ok(()));
        spec.name.push('n');
        let err = spec.validate().unwrap_err().to_string();
        assert!(
            err.contains("\"name\"") && err.contains("254") && err.contains("253"),
            "{err}"
        );
        spec.name = "build\nINFO forged line".into();
        let err = spec.validate().unwrap_err().to_string();
        assert!(
            err.contains("control character") && err.contains("\\u{a}"),
            "{err}"
        );
        spec.name = "colour \u{1b}[31m".into();
        assert!(matches!(
            spec.validate(),
            Err(SpecError::ControlCharInName { .. })
        ));
        let mut nul = job(vec![step("a", "echo \0")]);
        assert!(matches!(nul.validate(), Err(SpecError::NulByte { .. })));
        nul.steps[0].run = "true".into();
        nul.env.insert("K".into(), "v\0".into());
        assert!(matches!(nul.validate(), Err(SpecError::NulByte { .. })));
    }

    /// A few hundred KB that would fill to gigabytes is refused at once,
    /// naming the step, without building the text.
    #[test]
    fn template_bombs_are_refused_naming_the_place() {
        let mut spec = job(vec![
            step("ok", "true"),
            step("bomb", &"${name}".repeat(40_000)),
        ]);
        spec.name = "n".repeat(253);
        let err = spec.check_filled("0mx49xbba000").unwrap_err();
        assert_eq!(
            err,
            SpecError::FilledTooLong {
                place: "step \"bomb\": run".into(),
                cap: MAX_FILLED_BYTES
            }
        );
        assert!(spec.fill_step("0mx49xbba000", 1).is_err());
        assert!(spec.fill_step("0mx49xbba000", 0).is_ok());
        let mut env_bomb = job(vec![step("s", "true")]);
        env_bomb.name = "n".repeat(253);
        for i in 0..10 {
            env_bomb.env.insert(format!("V{i}"), "${name}".repeat(300));
        }
        assert!(env_bomb.check_filled("0mx49xbba000").is_ok());
        for i in 10..20 {
            env_bomb.env.insert(format!("V{i}"), "${name}".repeat(300));
        }
        assert!(matches!(
            env_bomb.check_filled("0mx49xbba000"),
            Err(SpecError::StepTooBig { .. })
        ));
        assert!(matches!(
            env_bomb.fill_step("0mx49xbba000", 0),
            Err(SpecError::StepTooBig { .. })
        ));
        let filled = job(vec![step("s", "echo ${job_id} ${step} ${name}")])
            .fill_step("0mx49xbba000", 0)
            .unwrap();
        assert!(
            filled.run.starts_with("echo 0mx49xbba000 s "),
            "{}",
            filled.run
        );
    }

    #[test]
    fn a_read_spec_keeps_no_spare_room_for_its_steps() {
        // What a big state's memory is made of: one-step jobs by the thousand.
        let spec: JobSpec =
            serde_json::from_str(r#"{"name":"t","steps":[{"name":"s","run":"true"}]}"#).unwrap();
        assert_eq!(spec.steps.len(), 1);
        assert_eq!(spec.steps.capacity(), 1);
    }
}
