//! Edges of oj: notifications, Kubernetes, logging sinks, TLS.
