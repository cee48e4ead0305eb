//! Prometheus metrics of the daemon (`/metrics` on `admin.addr`, SPEC §3.4
//! and §7.8).
//!
//! Why it is shaped this way:
//! * Gauges that mirror state (jobs per state, leader, draining, queue
//!   depth, the certificate's expiry) are refreshed when scraped, so they
//!   can never drift from the state they mirror.
//! * Everything that happens to a job is counted from the engine's events in
//!   one place, [`Metrics::observe`], so a count and the state it describes
//!   change together (and a replayed WAL counts nothing twice).
//! * Notifications, lease renewals and HTTP requests are counted where they
//!   happen, through small observer hooks the adapters call.
//! * The exposition is Prometheus text 0.0.4 unless the scraper asks for
//!   OpenMetrics ([`Format::negotiate`]): text-format tools (promtool,
//!   older agents) otherwise see every counter as untyped.

mod process;
pub mod queues;
mod schedules;

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::middleware::{self, Next};
use axum::response::Response;
use oj_core::{Event, JobCounts, JobState, State};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// `state="…"` (jobs by state).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// `backend="…",result="…"` (notification outcomes).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifyLabels {
    backend: &'static str,
    result: &'static str,
}

/// `backend="…"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: &'static str,
}

/// `result="…"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// `listener="…",code="…"` (HTTP responses).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    listener: &'static str,
    code: u16,
}

/// `version="…",profile="…"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    profile: String,
}

/// The results `oj_notifications_total` counts: outcomes only, one per
/// notification (attempts are `oj_notification_attempts_total`).
pub const NOTIFY_RESULTS: [&str; 3] = ["delivered", "failed", "dropped"];

/// The results of `oj_lease_renewals_total`.
pub const LEASE_RESULTS: [&str; 4] = ["ok", "conflict", "error", "timeout"];

/// Job run times: from a few milliseconds (`true`) to hours (builds).
const JOB_DURATION_BUCKETS: [f64; 16] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0,
    7200.0,
];
/// Queue waits: near zero on an idle daemon, minutes behind `max_concurrent`.
const QUEUE_WAIT_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Delivery times: a local log line to a webhook that retries for minutes.
const DELIVERY_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
];

/// Every metric of the daemon.
pub struct Metrics {
    registry: Mutex<Registry>,
    // Mirrored at scrape time (§3.4).
    jobs: Family<StateLabel, Gauge>,
    notify_queue_depth: Gauge,
    leader: Gauge,
    draining: Gauge,
    tls_cert_expiry: Gauge,
    /// Bumped by the engine once a submission is durable (§3.4).
    pub jobs_submitted: Counter,
    /// WAL writes that failed, plus WALs found deleted or replaced.
    pub storage_errors: Counter,
    // Counted from the engine's events in `observe` (§7.8).
    jobs_finished: Family<StateLabel, Counter>,
    job_duration: Family<StateLabel, Histogram>,
    job_queue_wait: Histogram,
    // Counted by the adapters' hooks.
    notifications: Family<NotifyLabels, Counter>,
    notification_attempts: Family<BackendLabel, Counter>,
    notification_delivery: Family<BackendLabel, Histogram>,
    lease_renewals: Family<ResultLabel, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    // Bumped by the reloader (§7.7).
    config_reloads: Family<ResultLabel, Counter>,
    config_generation: Gauge,
    /// Set by the engine when a queue changes (§8.2).
    pub queues: queues::QueueMetrics,
    /// Schedule fires, next fires and last successes (§8.3).
    pub schedules: schedules::ScheduleMetrics,
}

/// What a scrape reads from the rest of the daemon.
pub struct Observed {
    pub counts: JobCounts,
    pub leader: bool,
    pub draining: bool,
    pub notify_depth: usize,
    /// `notAfter` of the served certificate (Unix seconds), when TLS is on.
    pub tls_not_after: Option<i64>,
}

/// The exposition format of one scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4 (the default).
    Text,
    /// OpenMetrics 1.0.0, when `Accept` prefers it.
    OpenMetrics,
}

impl Format {
    /// Picks the format from an `Accept` header: OpenMetrics when it is
    /// accepted with a quality at least that of `text/plain` (Prometheus
    /// itself sends both, OpenMetrics first), text otherwise.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut open_metrics: f32 = 0.0;
        let mut text: f32 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => open_metrics = open_metrics.max(q),
                "text/plain" => text = text.max(q),
                _ => {}
            }
        }
        if open_metrics > 0.0 && open_metrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

impl Metrics {
    pub fn new(version: &str, profile: &str) -> Metrics {
        let mut r = Registry::default();
        // The metrics first (registering clones them), the registry last.
        let m = Metrics {
            registry: Mutex::default(),
            jobs: Family::default(),
            notify_queue_depth: Gauge::default(),
            leader: Gauge::default(),
            draining: Gauge::default(),
            tls_cert_expiry: Gauge::default(),
            jobs_submitted: Counter::default(),
            storage_errors: Counter::default(),
            jobs_finished: Family::default(),
            job_duration: Family::new_with_constructor(|| Histogram::new(JOB_DURATION_BUCKETS)),
            job_queue_wait: Histogram::new(QUEUE_WAIT_BUCKETS),
            notifications: Family::default(),
            notification_attempts: Family::default(),
            notification_delivery: Family::new_with_constructor(|| {
                Histogram::new(DELIVERY_BUCKETS)
            }),
            lease_renewals: Family::default(),
            http_requests: Family::default(),
            config_reloads: Family::default(),
            config_generation: Gauge::default(),
            queues: queues::QueueMetrics::default(),
            schedules: schedules::ScheduleMetrics::register(&mut r),
        };
        r.register("oj_jobs", "Jobs by state", m.jobs.clone());
        r.register(
            "oj_jobs_submitted",
            "Jobs accepted since the daemon started",
            m.jobs_submitted.clone(),
        );
        r.register(
            "oj_jobs_finished",
            "Jobs that ended since the daemon started, by final state",
            m.jobs_finished.clone(),
        );
        r.register_with_unit(
            "oj_job_duration",
            "Run time of finished jobs (start to end), by final state; jobs that never started are not observed",
            Unit::Seconds,
            m.job_duration.clone(),
        );
        r.register_with_unit(
            "oj_job_queue_wait",
            "Time jobs waited in the queue before they started",
            Unit::Seconds,
            m.job_queue_wait.clone(),
        );
        r.register(
            "oj_notifications",
            "Notifications finished, by backend and outcome (delivered, failed, dropped); one per notification",
            m.notifications.clone(),
        );
        r.register(
            "oj_notification_attempts",
            "Delivery attempts, by backend (a webhook retry is one more attempt)",
            m.notification_attempts.clone(),
        );
        r.register_with_unit(
            "oj_notification_delivery",
            "Time from the first delivery attempt to the outcome (retries and their waits included), by backend",
            Unit::Seconds,
            m.notification_delivery.clone(),
        );
        r.register(
            "oj_notify_queue_depth",
            "Notifications waiting for delivery",
            m.notify_queue_depth.clone(),
        );
        r.register(
            "oj_lease_renewals",
            "Attempts of the leader to renew its Lease, by result (ok, conflict, error, timeout)",
            m.lease_renewals.clone(),
        );
        r.register(
            "oj_leader",
            "1 when this daemon holds the lock and may run jobs",
            m.leader.clone(),
        );
        r.register(
            "oj_draining",
            "1 while the daemon drains before exiting",
            m.draining.clone(),
        );
        r.register(
            "oj_config_reloads",
            "Config reloads (SIGHUP or a changed file) by result: ok or rejected",
            m.config_reloads.clone(),
        );
        r.register(
            "oj_config_generation",
            "Generation of the running config: 1 at start, +1 per accepted reload",
            m.config_generation.clone(),
        );
        for result in ["ok", "rejected"] {
            let _ = m.config_reloads.get_or_create(&ResultLabel { result });
        }
        m.config_generation.set(1);
        r.register(
            "oj_storage_errors",
            "WAL writes that failed (nothing of them was kept), failed storage probes, and WAL files found deleted or replaced",
            m.storage_errors.clone(),
        );
        r.register(
            "oj_http_requests",
            "HTTP responses sent, by listener (unix, tcp, admin) and status code",
            m.http_requests.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        r.register(
            "oj_build_info",
            "Version and profile of this daemon (always 1)",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: version.into(),
                profile: profile.into(),
            })
            .set(1);
        r.register_collector(Box::new(process::ProcessCollector::new(SystemTime::now())));
        // Every series a dashboard or alert reads exists from the start, at 0.
        for s in JobState::ALL {
            let _ = m.jobs.get_or_create(&StateLabel { state: s.as_str() });
        }
        for s in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
            let label = StateLabel { state: s.as_str() };
            let _ = m.jobs_finished.get_or_create(&label);
            let _ = m.job_duration.get_or_create(&label);
        }
        m.queues.register(&mut r);
        Metrics {
            registry: Mutex::new(r),
            ..m
        }
    }

    /// Registers the TLS certificate gauge (only daemons that serve TLS have one).
    pub fn enable_tls(&self) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register_with_unit(
                "oj_tls_cert_expiry_timestamp",
                "notAfter of the certificate the TCP listener serves (Unix time)",
                Unit::Seconds,
                self.tls_cert_expiry.clone(),
            );
    }

    /// Creates the notification series of `backend` at 0, so that rates and
    /// alerts have a series before the first notification.
    pub fn init_notify_backend(&self, backend: &'static str) {
        for result in NOTIFY_RESULTS {
            let _ = self
                .notifications
                .get_or_create(&NotifyLabels { backend, result });
        }
        let _ = self
            .notification_attempts
            .get_or_create(&BackendLabel { backend });
        let _ = self
            .notification_delivery
            .get_or_create(&BackendLabel { backend });
    }

    /// Counts what `event` did to its job; `state` is the state after the
    /// event was applied (or later: only times the job keeps are read). The
    /// engine calls it for every event once it is durable.
    /// (`oj_jobs_submitted_total` is bumped by the engine where it answers
    /// the submission.)
    pub fn observe(&self, event: &Event, state: &State) {
        match event {
            Event::JobStarted { id, at } => {
                if let Some(job) = state.job(id) {
                    self.job_queue_wait
                        .observe(at.since(job.created_at).as_secs_f64());
                }
            }
            Event::JobFinished {
                id, at, state: end, ..
            } => {
                let label = StateLabel {
                    state: end.as_str(),
                };
                self.jobs_finished.get_or_create(&label).inc();
                if let Some(started) = state.job(id).and_then(|j| j.started_at) {
                    self.job_duration
                        .get_or_create(&label)
                        .observe(at.since(started).as_secs_f64());
                }
            }
            _ => {}
        }
    }

    /// Counts one HTTP response of `listener`.
    pub fn http_response(&self, listener: &'static str, code: u16) {
        self.http_requests
            .get_or_create(&HttpLabels { listener, code })
            .inc();
    }

    /// Creates the lease renewal series at 0 (daemons with the lease strategy).
    pub fn init_lease_renewals(&self) {
        for result in LEASE_RESULTS {
            let _ = self.lease_renewals.get_or_create(&ResultLabel { result });
        }
    }

    /// Counts a reload and publishes the generation now running.
    pub fn config_reloaded(&self, accepted: bool, generation: u64) {
        let result = if accepted { "ok" } else { "rejected" };
        self.config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
        self.config_generation.set(generation as i64);
    }

    /// Counts one renewal attempt of the leader's Lease.
    pub fn lease_renewal(&self, result: &'static str) {
        self.lease_renewals
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Refreshes the mirrored gauges and renders the exposition in `format`.
    pub fn render(&self, o: &Observed, format: Format) -> String {
        for s in JobState::ALL {
            self.jobs
                .get_or_create(&StateLabel { state: s.as_str() })
                .set(o.counts.get(s) as i64);
        }
        self.leader.set(o.leader as i64);
        self.draining.set(o.draining as i64);
        self.notify_queue_depth.set(o.notify_depth as i64);
        if let Some(t) = o.tls_not_after {
            self.tls_cert_expiry.set(t);
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let encoded = match format {
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            }
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        };
        if let Err(e) = encoded {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// Feeds the adapters' notification events into the metrics.
impl oj_adapters::notify::DeliveryObserver for Metrics {
    fn attempted(&self, backend: &'static str) {
        self.notification_attempts
            .get_or_create(&BackendLabel { backend })
            .inc();
    }

    fn finished(&self, backend: &'static str, result: &'static str, took: Option<Duration>) {
        self.notifications
            .get_or_create(&NotifyLabels { backend, result })
            .inc();
        if let Some(took) = took {
            self.notification_delivery
                .get_or_create(&BackendLabel { backend })
                .observe(took.as_secs_f64());
        }
    }
}

/// Counts every response `router` sends as `oj_http_requests_total{listener}`.
/// Put it outermost, so refusals (401, 413) are counted too.
pub fn count_requests(
    router: Router,
    metrics: std::sync::Arc<Metrics>,
    listener: &'static str,
) -> Router {
    router.layer(middleware::from_fn_with_state(
        (metrics, listener),
        count_one,
    ))
}

async fn count_one(
    AxumState((metrics, listener)): AxumState<(std::sync::Arc<Metrics>, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    let response = next.run(req).await;
    metrics.http_response(listener, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use oj_core::{Job, JobId, JobSpec, Timestamp};

    fn observed() -> Observed {
        Observed {
            counts: JobCounts {
                queued: 2,
                ..Default::default()
            },
            leader: true,
            draining: false,
            notify_depth: 3,
            tls_not_after: None,
        }
    }

    #[test]
    fn renders_every_required_metric_in_the_text_format() {
        let m = Metrics::new("0.1.0", "desktop");
        m.init_notify_backend("log");
        m.jobs_submitted.inc();
        oj_adapters::notify::DeliveryObserver::finished(&m, "log", "delivered", None);
        let text = m.render(&observed(), Format::Text);
        for needle in [
            "# TYPE oj_jobs_submitted_total counter",
            "oj_jobs{state=\"queued\"} 2",
            "oj_jobs_submitted_total 1",
            "oj_notifications_total{backend=\"log\",result=\"delivered\"} 1",
            "oj_notifications_total{backend=\"log\",result=\"failed\"} 0",
            "oj_notification_attempts_total{backend=\"log\"} 0",
            "# TYPE oj_job_duration_seconds histogram",
            "# TYPE oj_job_queue_wait_seconds histogram",
            "oj_jobs_finished_total{state=\"failed\"} 0",
            "oj_notify_queue_depth 3",
            "oj_leader 1",
            "oj_draining 0",
            "oj_build_info{version=\"0.1.0\",profile=\"desktop\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(!text.contains("# EOF"), "text 0.0.4 has no EOF marker");
    }

    #[test]
    fn open_metrics_only_when_the_scraper_prefers_it() {
        use Format::*;
        assert_eq!(Format::negotiate(None), Text);
        assert_eq!(Format::negotiate(Some("*/*")), Text);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4")), Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=1.0.0")),
            OpenMetrics
        );
        // What Prometheus sends.
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0.2,text/plain;q=0.9")),
            Text
        );
        let m = Metrics::new("0.1.0", "desktop");
        let om = m.render(&observed(), OpenMetrics);
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn job_events_move_the_job_metrics() {
        let m = Metrics::new("0.1.0", "desktop");
        let mut state = State::new();
        let t0 = Timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1000));
        let spec = JobSpec::from_json(br#"{"name":"b","steps":[{"name":"s","run":"true"}]}"#)
            .expect("spec");
        let id = JobId::from_parts(1, 1);
        let events = [
            Event::JobSubmitted {
                job: Box::new(Job::new(id.clone(), spec, t0)),
            },
            Event::JobStarted {
                id: id.clone(),
                at: Timestamp(t0.0 + Duration::from_secs(2)),
            },
            Event::JobFinished {
                id: id.clone(),
                at: Timestamp(t0.0 + Duration::from_secs(7)),
                state: JobState::Failed,
                error: Some("boom".into()),
            },
        ];
        for e in &events {
            state.apply(e).expect("applies");
            m.observe(e, &state);
        }
        let text = m.render(&observed(), Format::Text);
        for needle in [
            "oj_jobs_finished_total{state=\"failed\"} 1",
            "oj_job_queue_wait_seconds_sum 2.0",
            "oj_job_queue_wait_seconds_count 1",
            "oj_job_duration_seconds_sum{state=\"failed\"} 5.0",
            "oj_job_duration_seconds_bucket{state=\"failed\",le=\"10\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
