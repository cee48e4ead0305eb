//! The edges of oj, where it meets the outside world: notifications
//! (desktop, webhook, log), Kubernetes (pods, the Lease lock), logging
//! sinks, TLS, and the preflight checks of what the configuration needs
//! from the machine. Each module takes its slice of `RuntimeConfig` as a
//! value; none reads the process environment.

pub mod escape;
pub mod k8s;
pub mod log_file;
pub mod logging;
pub mod notify;
pub mod preflight;
pub mod schedule_check;
pub mod tls;
