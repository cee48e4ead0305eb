//! Kubernetes for oj: container steps as pods (builder and runner), the
//! API client from in-cluster config or a kubeconfig, and the `lease` lock
//! strategy. See `docs/kubernetes.md` for the behaviour end to end.

pub mod client;
pub mod lease;
pub mod logs;
pub mod pods;
pub mod preflight;
pub mod runner;
pub mod status;
pub mod watch;
pub mod workspace;

pub use client::{ClientError, ClientSource, connect, resolve_namespace};
pub use lease::{LeaseLock, LeaseLost, LeaseTimings};
pub use pods::{
    PodBuildError, PodExtras, PodInput, PodOwner, RBAC_RULES, build_owned_pod, build_pod,
};
pub use runner::{PodRunner, RunOptions, StepResult};
pub use watch::{PodState, PodWatch};
