//! What the Kubernetes runner tests share: the default pod settings and a
//! step to run.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use oj_adapters::k8s::pods::PodInput;
use oj_config::{Environment, LoadOptions, PodsConfig};

/// The compiled `pods.*` defaults (desktop profile, an empty HOME).
pub fn default_pods_config() -> PodsConfig {
    let home = tempfile::tempdir().unwrap();
    let env = Environment::new([("HOME", home.path().display().to_string())], "testhost");
    oj_config::load(&LoadOptions::default(), &env)
        .unwrap()
        .config
        .pods
}

/// Step `compile` of job `build` (`echo hello` in busybox).
pub fn input(job_id: &str) -> PodInput {
    PodInput {
        job_id: job_id.into(),
        job_name: "build".into(),
        step_index: 0,
        step_name: "compile".into(),
        image: "busybox".into(),
        shell: vec!["/bin/sh".into(), "-c".into()],
        command: "echo hello".into(),
        env: BTreeMap::new(),
        timeout: Duration::from_secs(600),
        job_resources: None,
        step_resources: None,
        extras: Default::default(),
    }
}
