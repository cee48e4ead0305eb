//! Prometheus metrics of the daemon (`/metrics` on `admin.addr`). Gauges
//! that mirror state (jobs per state, leader, draining, queue depth) are
//! refreshed when scraped; counters are bumped where things happen.

use std::sync::Mutex;

use oj_core::{JobCounts, JobState};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Content type of `/metrics` (the text format prometheus-client writes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of the daemon.
pub struct Metrics {
    registry: Mutex<Registry>,
    jobs: Family<Labels, Gauge>,
    pub jobs_submitted: Counter,
    notifications: Family<Labels, Counter>,
    notify_queue_depth: Gauge,
    leader: Gauge,
    draining: Gauge,
    config_reloads: Family<Labels, Counter>,
    config_generation: Gauge,
}

/// What a scrape reads from the rest of the daemon.
pub struct Observed {
    pub counts: JobCounts,
    pub leader: bool,
    pub draining: bool,
    pub notify_depth: usize,
    /// `(backend, result, total)`.
    pub notify_counts: Vec<(&'static str, &'static str, u64)>,
}

impl Metrics {
    pub fn new(version: &str, profile: &str) -> Metrics {
        let mut registry = Registry::default();
        let jobs = Family::<Labels, Gauge>::default();
        let jobs_submitted = Counter::default();
        let notifications = Family::<Labels, Counter>::default();
        let notify_queue_depth = Gauge::default();
        let leader = Gauge::default();
        let draining = Gauge::default();
        let build_info = Family::<Labels, Gauge>::default();
        registry.register("oj_jobs", "Jobs by state", jobs.clone());
        registry.register(
            "oj_jobs_submitted",
            "Jobs accepted since the daemon started",
            jobs_submitted.clone(),
        );
        registry.register(
            "oj_notifications",
            "Notifications by backend and result (delivered, failed, dropped, retried)",
            notifications.clone(),
        );
        registry.register(
            "oj_notify_queue_depth",
            "Notifications waiting for delivery",
            notify_queue_depth.clone(),
        );
        registry.register(
            "oj_leader",
            "1 when this daemon holds the lock and may run jobs",
            leader.clone(),
        );
        registry.register(
            "oj_draining",
            "1 while the daemon drains before exiting",
            draining.clone(),
        );
        registry.register(
            "oj_build_info",
            "Version and profile of this daemon (always 1)",
            build_info.clone(),
        );
        build_info
            .get_or_create(&vec![
                ("version".into(), version.into()),
                ("profile".into(), profile.into()),
            ])
            .set(1);
        for s in JobState::ALL {
            jobs.get_or_create(&vec![("state".into(), s.as_str().into())])
                .set(0);
        }
        let config_reloads = Family::<Labels, Counter>::default();
        let config_generation = Gauge::default();
        registry.register(
            "oj_config_reloads",
            "Config reloads (SIGHUP or a changed file) by result: ok or rejected",
            config_reloads.clone(),
        );
        registry.register(
            "oj_config_generation",
            "Generation of the running config: 1 at start, +1 per accepted reload",
            config_generation.clone(),
        );
        for result in ["ok", "rejected"] {
            let _ = config_reloads.get_or_create(&vec![("result".into(), result.into())]);
        }
        config_generation.set(1);
        Metrics {
            config_reloads,
            config_generation,
            registry: Mutex::new(registry),
            jobs,
            jobs_submitted,
            notifications,
            notify_queue_depth,
            leader,
            draining,
        }
    }

    /// Counts a reload and publishes the generation now running.
    pub fn config_reloaded(&self, accepted: bool, generation: u64) {
        let result = if accepted { "ok" } else { "rejected" };
        self.config_reloads
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
        self.config_generation.set(generation as i64);
    }

    /// Refreshes the mirrored gauges and renders the text exposition.
    pub fn render(&self, o: &Observed) -> String {
        for s in JobState::ALL {
            self.jobs
                .get_or_create(&vec![("state".into(), s.as_str().into())])
                .set(o.counts.get(s) as i64);
        }
        self.leader.set(o.leader as i64);
        self.draining.set(o.draining as i64);
        self.notify_queue_depth.set(o.notify_depth as i64);
        for (backend, result, total) in &o.notify_counts {
            let c = self.notifications.get_or_create(&vec![
                ("backend".into(), (*backend).into()),
                ("result".into(), (*result).into()),
            ]);
            let now = c.get();
            if *total > now {
                c.inc_by(total - now);
            }
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_required_metric() {
        let m = Metrics::new("0.1.0", "desktop");
        m.jobs_submitted.inc();
        let text = m.render(&Observed {
            counts: JobCounts {
                queued: 2,
                ..Default::default()
            },
            leader: true,
            draining: false,
            notify_depth: 3,
            notify_counts: vec![("log", "delivered", 5)],
        });
        for needle in [
            "oj_jobs{state=\"queued\"} 2",
            "oj_jobs_submitted_total 1",
            "oj_notifications_total{backend=\"log\",result=\"delivered\"} 5",
            "oj_notify_queue_depth 3",
            "oj_leader 1",
            "oj_draining 0",
            "oj_build_info{version=\"0.1.0\",profile=\"desktop\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
