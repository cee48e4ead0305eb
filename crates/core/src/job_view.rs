//! A job as the API shows it: the stored [`Job`] with the spec fields a
//! user filters and reads by lifted to the top level (SPEC §8.1: `queue`,
//! `dir`, `labels`; `rerun_of` is the job's own). Every JSON answer about
//! a job (submit, show, list, cancel, rerun) goes through [`JobView`], so
//! fields added to the top level are added here, once.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::job::Job;

/// Serializes as the job's own JSON plus `queue`, `dir` and `labels`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct JobView<'a> {
    #[serde(flatten)]
    job: &'a Job,
    #[serde(skip_serializing_if = "Option::is_none")]
    dir: Option<&'a str>,
    labels: &'a BTreeMap<String, String>,
}

impl<'a> JobView<'a> {
    pub fn of(job: &'a Job) -> JobView<'a> {
        JobView {
            job,
            dir: job.spec.dir.as_deref(),
            labels: &job.spec.labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, Timestamp};

    #[test]
    fn the_view_lifts_queue_dir_and_labels() {
        let spec = serde_json::from_value(serde_json::json!({
            "name": "a", "dir": "/w", "labels": {"t": "1"},
            "steps": [{"name": "s", "run": "true"}]
        }))
        .unwrap();
        let mut job = Job::new(
            JobId::from_parts(1, 0),
            spec,
            Timestamp(std::time::UNIX_EPOCH),
        );
        job.rerun_of = Some(JobId::from_parts(0, 0));
        let v = serde_json::to_value(JobView::of(&job)).unwrap();
        assert_eq!(v["queue"], "default");
        assert_eq!(v["dir"], "/w");
        assert_eq!(v["labels"]["t"], "1");
        assert_eq!(v["rerun_of"], "000000000000");
        assert_eq!(v["spec"]["dir"], "/w");
        assert_eq!(v["id"], job.id.as_str());
        // Still readable as a job.
        let back: Job = serde_json::from_value(v).unwrap();
        assert_eq!(back, job);
    }
}
