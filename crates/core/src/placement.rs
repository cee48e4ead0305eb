//! Where a job runs and what it carries (SPEC §8.1): the checks of a spec's
//! `dir` and `labels`, and the spec of a rerun.

use crate::labels::{self, LabelError};
use crate::spec::JobSpec;

/// The longest `dir`, in bytes (Linux's `PATH_MAX`).
pub const MAX_DIR_BYTES: usize = 4096;

/// Why a spec's `dir` or `labels` are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "\"dir\" {0:?} is not an absolute path; the daemon does not know the client's working directory, send an absolute path (oj exec/run --dir makes a relative one absolute)"
    )]
    RelativeDir(String),
    #[error("\"dir\" is {0} bytes; a path may have at most {MAX_DIR_BYTES}")]
    DirTooLong(usize),
    #[error("\"dir\" contains a NUL byte or a control character; no directory is named like that")]
    BadDirByte,
    #[error("{0}")]
    Label(#[from] LabelError),
}

/// Checks `dir` (absolute, a plausible path) and `labels` (Kubernetes syntax).
pub fn validate(spec: &JobSpec) -> Result<(), PlacementError> {
    if let Some(dir) = &spec.dir {
        if dir.len() > MAX_DIR_BYTES {
            return Err(PlacementError::DirTooLong(dir.len()));
        }
        if dir.chars().any(|c| c == '\0' || c.is_control()) {
            return Err(PlacementError::BadDirByte);
        }
        if !dir.starts_with('/') {
            return Err(PlacementError::RelativeDir(dir.clone()));
        }
    }
    labels::check_labels(&spec.labels)?;
    Ok(())
}

/// Why a rerun cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RerunError {
    #[error("job {job:?} has no step {step:?}; its steps are: {}", .steps.join(", "))]
    UnknownStep {
        job: String,
        step: String,
        steps: Vec<String>,
    },
}

impl JobSpec {
    /// The spec a rerun submits: the same job (name, dir, env, labels,
    /// queue, priority, containers, retries, notifications), from step
    /// `from_step` on when given.
    ///
    /// The one place that decides what a rerun keeps: `after`, `hold` and
    /// `not_before` (SPEC §8.2) are dropped here; a rerun starts as soon as
    /// its queue allows.
    pub fn for_rerun(&self, from_step: Option<&str>) -> Result<JobSpec, RerunError> {
        let mut spec = self.clone();
        spec.after.clear();
        spec.hold = false;
        spec.not_before = None;
        if let Some(name) = from_step {
            let Some(i) = self.steps.iter().position(|s| s.name == name) else {
                return Err(RerunError::UnknownStep {
                    job: self.name.clone(),
                    step: name.to_string(),
                    steps: self.steps.iter().map(|s| s.name.clone()).collect(),
                });
            };
            spec.steps = self.steps[i..].to_vec();
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> JobSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn dir_must_be_absolute_and_labels_well_formed() {
        let ok = spec(serde_json::json!({
            "name": "a", "dir": "/tmp/x", "labels": {"example.com/team": "x", "tier": ""},
            "steps": [{"name": "s", "run": "true"}]
        }));
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.queue, "default");
        let mut rel = ok.clone();
        rel.dir = Some("src".into());
        let err = rel.validate().unwrap_err().to_string();
        assert!(err.contains("\"src\"") && err.contains("absolute"), "{err}");
        let mut nul = ok.clone();
        nul.dir = Some("/a\0b".into());
        assert!(nul.validate().is_err());
        let mut bad = ok.clone();
        bad.labels.insert("team".into(), "-x".into());
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("\"team\"") && err.contains("\"-x\""), "{err}");
    }

    #[test]
    fn a_rerun_keeps_the_spec_and_can_start_later() {
        let s = spec(serde_json::json!({
            "name": "a", "dir": "/w", "env": {"K": "v"}, "labels": {"t": "1"}, "queue": "ci",
            "steps": [{"name": "one", "run": "1"}, {"name": "two", "run": "2"}, {"name": "three", "run": "3"}]
        }));
        assert_eq!(s.for_rerun(None).unwrap(), s);
        let from = s.for_rerun(Some("two")).unwrap();
        assert_eq!(
            from.steps
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["two", "three"]
        );
        assert_eq!(
            (from.dir, from.env, from.labels, from.queue),
            (
                s.dir.clone(),
                s.env.clone(),
                s.labels.clone(),
                s.queue.clone()
            )
        );
        let err = s.for_rerun(Some("four")).unwrap_err().to_string();
        assert!(
            err.contains("\"four\"") && err.contains("one, two, three"),
            "{err}"
        );
    }
}
