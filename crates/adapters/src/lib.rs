//! Edges of oj: notifications, Kubernetes, logging sinks, TLS.
pub mod logging;
pub mod tls;
pub mod notify;
pub mod k8s;
