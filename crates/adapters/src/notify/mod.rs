//! Job notifications (SPEC §3.5), delivered off the engine's path.
//!
//! The engine hands a [`Notification`] to [`Notifier::enqueue`], which never
//! blocks: it puts it on a bounded queue (capacity [`QUEUE_CAPACITY`]) and
//! returns. One worker task delivers the queue in order through the backend
//! chosen by `notify.backend` (`desktop`, `webhook`, `log`, `none`) and calls
//! the daemon's `on_ack(id)` once a notification is finished — delivered, or
//! given up on — so the daemon can drop it from its WAL. Whatever was not
//! acknowledged before a restart is handed back to [`Notifier::start`] as
//! `pending` and delivered first, with the same id (at-least-once; the id is
//! the `webhook-id` receivers deduplicate on).
//!
//! Decisions the API leaves open, fixed here:
//! - `notify.events` filtering is done here, in [`Notifier::enqueue`] (and for
//!   `pending` at start): an event not in the list is not delivered, not
//!   counted, and acknowledged at once (from the worker task) so it does not
//!   linger in the WAL. [`Notifier::wants`] lets the daemon skip persisting it.
//! - A notification refused because the queue is full ([`QueueFull`]) is NOT
//!   acknowledged: if the daemon persisted it, it is re-delivered after the
//!   next restart. It is counted as `dropped` and logged (one warning per
//!   episode of a full queue, not one per notification).
//! - `on_ack` runs on the worker task, never inside `enqueue`, so it may take
//!   locks the caller of `enqueue` holds; keep it cheap (e.g. send to a channel).
//! - Secrets (the webhook URL, signing key, headers) never appear in a log
//!   line or an error: only the URL's host and port are ever printed.

mod desktop;
mod log;
mod queue;
mod webhook;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use oj_config::{Environment, NotifyBackend, NotifyConfig, NotifyEvent};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use webhook::{
    MAX_BACKOFF, parse_retry_after, retry_delay, sign, signing_key, slack_body, standard_body,
};

/// How many notifications may wait for delivery before `enqueue` refuses more.
pub const QUEUE_CAPACITY: usize = 1024;

/// One notification about a job event. Serialized into the daemon's WAL, so
/// its shape is stable; `timestamp` is RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable id, reused on every retry and after a restart (`webhook-id`).
    pub id: String,
    pub event: NotifyEvent,
    pub job_id: String,
    pub job_name: String,
    pub title: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(with = "rfc3339")]
    pub timestamp: SystemTime,
    /// The job's page in the web UI (`<ui.url>/ui/jobs/<id>`), set by the
    /// notifier when `ui.url` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Notification {
    /// The stable id of the notification of `event` for `job_id`:
    /// `msg_<job-id>_<event>` (a job has at most one of each event).
    pub fn id_for(job_id: &str, event: NotifyEvent) -> String {
        format!("msg_{job_id}_{}", event_name(event))
    }

    /// A notification as SPEC §3.5 describes it: the title is the job name,
    /// the message is the runbook's rendered template when it has one, else
    /// [`default_message`].
    pub fn for_job(
        event: NotifyEvent,
        job_id: &str,
        job_name: &str,
        template_message: Option<String>,
        error: Option<String>,
        timestamp: SystemTime,
    ) -> Notification {
        let message = template_message
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| default_message(event, job_name, error.as_deref()));
        Notification {
            id: Notification::id_for(job_id, event),
            event,
            job_id: job_id.to_string(),
            job_name: job_name.to_string(),
            title: job_name.to_string(),
            message,
            error,
            timestamp,
            url: None,
        }
    }
}

/// Who sends: goes into every webhook payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyContext {
    /// `daemon.instance`.
    pub instance: String,
    /// The selected profile's name.
    pub profile: String,
    /// `ui.url`: where people reach the web UI; notifications link to the
    /// job's page under it.
    pub ui_url: Option<String>,
}

/// `n` with the link to its job's page under `ui_url` (`<ui.url>/ui/jobs/<id>`),
/// kept if it already has one.
fn linked(mut n: Notification, ui_url: Option<&str>) -> Notification {
    if n.url.is_none()
        && let Some(base) = ui_url
    {
        n.url = Some(format!(
            "{}/ui/jobs/{}",
            base.trim_end_matches('/'),
            n.job_id
        ));
    }
    n
}

/// The default message of SPEC §3.5.
pub fn default_message(event: NotifyEvent, job_name: &str, error: Option<&str>) -> String {
    match (event, error) {
        (NotifyEvent::Start, _) => format!("Job {job_name} started"),
        (NotifyEvent::Done, _) => format!("Job {job_name} done"),
        (NotifyEvent::Fail, Some(e)) if !e.is_empty() => format!("Job {job_name} failed: {e}"),
        (NotifyEvent::Fail, _) => format!("Job {job_name} failed"),
        (NotifyEvent::Retry, Some(e)) if !e.is_empty() => {
            format!("Job {job_name}: a step failed and runs again: {e}")
        }
        (NotifyEvent::Retry, _) => format!("Job {job_name}: a step failed and runs again"),
    }
}

/// `start` / `done` / `fail`, as in `notify.events`.
pub fn event_name(event: NotifyEvent) -> &'static str {
    match event {
        NotifyEvent::Start => "start",
        NotifyEvent::Done => "done",
        NotifyEvent::Fail => "fail",
        NotifyEvent::Retry => "retry",
    }
}

/// The Standard Webhooks event type: `job.started` / `job.done` /
/// `job.failed` / `job.retrying`.
pub fn event_type(event: NotifyEvent) -> &'static str {
    match event {
        NotifyEvent::Start => "job.started",
        NotifyEvent::Done => "job.done",
        NotifyEvent::Fail => "job.failed",
        NotifyEvent::Retry => "job.retrying",
    }
}

/// The `backend` label of `oj_notifications_total`.
pub fn backend_name(backend: NotifyBackend) -> &'static str {
    match backend {
        NotifyBackend::Desktop => "desktop",
        NotifyBackend::Webhook => "webhook",
        NotifyBackend::Log => "log",
        NotifyBackend::None => "none",
    }
}

/// Why the notifier could not be built. Never contains a secret value.
///
/// Like `tls::TlsError`, a message that begins with a config key is kept
/// apart as [`Self::key`] and [`Self::detail`] (what follows the key), so
/// that `oj config check` puts the key's layer between them without
/// parsing the text; `Display` is the two together.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// `notify.backend = "webhook"` without `notify.webhook.url`.
    WebhookUrlMissing,
    WebhookUrlInvalid {
        reason: String,
    },
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    SecretInvalid {
        key: &'static str,
        path: Option<PathBuf>,
        reason: String,
    },
    Header {
        name: String,
        reason: &'static str,
    },
    HttpClient {
        reason: String,
    },
    NoRuntime,
}

impl NotifyError {
    /// The config key the message begins with (`notify.webhook.url`,
    /// `notify.webhook.headers.NAME`, …); `None` when it begins otherwise.
    pub fn key(&self) -> Option<String> {
        match self {
            NotifyError::WebhookUrlMissing => Some("notify.backend".into()),
            NotifyError::WebhookUrlInvalid { .. } => Some("notify.webhook.url".into()),
            NotifyError::SecretInvalid { key, .. } => Some((*key).into()),
            NotifyError::Header { name, .. } => Some(format!("notify.webhook.headers.{name}")),
            NotifyError::SecretFile { .. }
            | NotifyError::HttpClient { .. }
            | NotifyError::NoRuntime => None,
        }
    }

    /// The message after [`Self::key`] (the whole message when it has none).
    pub fn detail(&self) -> String {
        match self {
            NotifyError::WebhookUrlMissing => " is \"webhook\" but notify.webhook.url is unset; set notify.webhook.url (or OJ_NOTIFY_WEBHOOK_URL) or choose another backend".into(),
            NotifyError::WebhookUrlInvalid { reason } => format!(
                " is not a usable URL ({reason}); it must be an absolute http:// or https:// URL"
            ),
            NotifyError::SecretFile { path, source } => format!(
                "cannot read notify.webhook.secret_file {}: {source}; check the path and its permissions",
                path.display()
            ),
            NotifyError::SecretInvalid { path, reason, .. } => format!(
                "{} is not a Standard Webhooks signing key: expected \"whsec_\" followed by the base64 of a key of 24 to 64 bytes ({reason})",
                path.as_ref()
                    .map(|p| format!(" ({})", p.display()))
                    .unwrap_or_default()
            ),
            NotifyError::Header { reason, .. } => format!(": {reason}"),
            NotifyError::HttpClient { reason } => {
                format!("cannot build the HTTP client for notify.webhook: {reason}")
            }
            NotifyError::NoRuntime => "the notifier must be started inside a Tokio runtime".into(),
        }
    }
}

impl std::fmt::Display for NotifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(key) = self.key() {
            f.write_str(&key)?;
        }
        f.write_str(&self.detail())
    }
}

/// `enqueue` refused a notification: the queue is full, or the notifier was
/// shut down. The notification was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", if *.stopped { format!("notification {id} not queued: the notifier is shut down") } else { format!("notification {id} dropped: the notification queue is full ({capacity} waiting)") })]
pub struct QueueFull {
    pub id: String,
    pub capacity: usize,
    pub stopped: bool,
}

/// Where the notifier reports what becomes of notifications (the daemon's
/// `/metrics`). Called from the delivery worker and from `enqueue`; must not
/// block.
pub trait DeliveryObserver: Send + Sync {
    /// One attempt to hand a notification to the backend (a webhook POST, a
    /// desktop call, a log line); a webhook retry is one more attempt.
    fn attempted(&self, backend: &'static str);
    /// A notification is finished: `result` is `delivered`, `failed` or
    /// `dropped`; `took` is the time from its first attempt to the outcome
    /// (waits between retries included), `None` when it was never tried.
    fn finished(&self, backend: &'static str, result: &'static str, took: Option<Duration>);
}

/// An observer that records nothing (for callers without metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl DeliveryObserver for NoObserver {
    fn attempted(&self, _: &'static str) {}
    fn finished(&self, _: &'static str, _: &'static str, _: Option<Duration>) {}
}

/// Outcomes and attempts, read by [`Notifier::counts`] and reported to the
/// [`DeliveryObserver`].
pub(crate) struct Counters {
    backend: &'static str,
    observer: Arc<dyn DeliveryObserver>,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    attempts: AtomicU64,
}

impl Counters {
    fn new(backend: &'static str, observer: Arc<dyn DeliveryObserver>) -> Counters {
        Counters {
            backend,
            observer,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
        }
    }

    /// One delivery attempt.
    pub(crate) fn attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.observer.attempted(self.backend);
    }

    pub(crate) fn delivered(&self, took: Duration) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.observer
            .finished(self.backend, "delivered", Some(took));
    }

    pub(crate) fn failed(&self, took: Duration) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.observer.finished(self.backend, "failed", Some(took));
    }

    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.observer.finished(self.backend, "dropped", None);
    }
}

pub(crate) type AckFn = Arc<dyn Fn(&str) + Send + Sync>;

struct Shared {
    backend: &'static str,
    events: BTreeSet<NotifyEvent>,
    tx: mpsc::Sender<Notification>,
    /// `ui.url`, for the link every notification carries.
    ui_url: Option<String>,
    skip_tx: mpsc::UnboundedSender<String>,
    shutdown_tx: watch::Sender<bool>,
    counters: Arc<Counters>,
    depth: Arc<AtomicUsize>,
    stopped: AtomicBool,
    /// Set while enqueues are being refused because the queue is full, so
    /// that one warning is logged per episode, not one per notification.
    full: AtomicBool,
    full_drops: AtomicU64,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// The handle the daemon keeps. Cheap to clone; all clones share one queue.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("backend", &self.inner.backend)
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts the delivery worker for `cfg.backend`. `pending` are
    /// notifications persisted but not acknowledged before a restart; they
    /// are delivered first, in the given order. `on_ack(id)` is called once a
    /// notification is finished (delivered, or given up on). Reads
    /// `notify.webhook.secret_file` now. Must run inside a Tokio runtime.
    pub fn start(
        cfg: NotifyConfig,
        ctx: NotifyContext,
        pending: Vec<Notification>,
        on_ack: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Notifier, NotifyError> {
        Notifier::start_observed(cfg, ctx, pending, on_ack, Arc::new(NoObserver))
    }

    /// [`Notifier::start`], reporting attempts and outcomes to `observer`.
    pub fn start_observed(
        cfg: NotifyConfig,
        ctx: NotifyContext,
        pending: Vec<Notification>,
        on_ack: Box<dyn Fn(&str) + Send + Sync>,
        observer: Arc<dyn DeliveryObserver>,
    ) -> Result<Notifier, NotifyError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| NotifyError::NoRuntime)?;
        let ui_url = ctx.ui_url.clone();
        let backend = queue::Backend::build(&cfg, ctx)?;
        let name = backend_name(cfg.backend);
        let events: BTreeSet<NotifyEvent> = cfg.events.iter().copied().collect();

        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (skip_tx, skip_rx) = mpsc::unbounded_channel();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let counters = Arc::new(Counters::new(name, observer));
        let depth = Arc::new(AtomicUsize::new(0));

        let mut backlog = std::collections::VecDeque::with_capacity(pending.len());
        for n in pending {
            if events.contains(&n.event) {
                backlog.push_back(linked(n, ui_url.as_deref()));
            } else {
                // Config changed since it was persisted: finish it without delivery.
                let _ = skip_tx.send(n.id);
            }
        }
        depth.store(backlog.len(), Ordering::SeqCst);
        if !backlog.is_empty() {
            tracing::info!(
                backend = name,
                count = backlog.len(),
                "re-delivering notifications not acknowledged before the restart"
            );
        }

        let worker = queue::Worker {
            backend,
            backlog,
            rx,
            skip_rx,
            shutdown: shutdown_rx,
            counters: counters.clone(),
            depth: depth.clone(),
            on_ack: Arc::from(on_ack),
        };
        let join = handle.spawn(worker.run());

        Ok(Notifier {
            inner: Arc::new(Shared {
                backend: name,
                events,
                tx,
                ui_url,
                skip_tx,
                shutdown_tx,
                counters,
                depth,
                stopped: AtomicBool::new(false),
                full: AtomicBool::new(false),
                full_drops: AtomicU64::new(0),
                worker: Mutex::new(Some(join)),
            }),
        })
    }

    /// Whether `event` is in `notify.events` (others are ignored by `enqueue`).
    pub fn wants(&self, event: NotifyEvent) -> bool {
        self.inner.events.contains(&event)
    }

    /// Queues `n` for delivery. Never blocks and never awaits. An event not in
    /// `notify.events` is ignored (acknowledged, not delivered) and returns
    /// `Ok`. A full queue returns [`QueueFull`], counts the notification as
    /// `dropped` and logs a warning (once per episode).
    pub fn enqueue(&self, n: Notification) -> Result<(), QueueFull> {
        let s = &self.inner;
        let n = linked(n, s.ui_url.as_deref());
        if s.stopped.load(Ordering::SeqCst) {
            s.counters.dropped();
            return Err(QueueFull {
                id: n.id,
                capacity: QUEUE_CAPACITY,
                stopped: true,
            });
        }
        if !s.events.contains(&n.event) {
            let _ = s.skip_tx.send(n.id);
            return Ok(());
        }
        // Count before sending so the worker's decrement never runs first.
        s.depth.fetch_add(1, Ordering::SeqCst);
        match s.tx.try_send(n) {
            Ok(()) => {
                if s.full.swap(false, Ordering::SeqCst) {
                    let dropped = s.full_drops.swap(0, Ordering::SeqCst);
                    tracing::info!(
                        backend = s.backend,
                        dropped,
                        "notification queue accepts notifications again"
                    );
                }
                Ok(())
            }
            Err(e) => {
                s.depth.fetch_sub(1, Ordering::SeqCst);
                let stopped = matches!(e, mpsc::error::TrySendError::Closed(_));
                let n = e.into_inner();
                s.counters.dropped();
                s.full_drops.fetch_add(1, Ordering::SeqCst);
                if !s.full.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        backend = s.backend,
                        capacity = QUEUE_CAPACITY,
                        job_id = %n.job_id,
                        notification_id = %n.id,
                        "notification queue is full: dropping notifications until the backend catches up \
                         (counted in oj_notifications_total{{result=\"dropped\"}}); jobs are not slowed"
                    );
                } else {
                    tracing::debug!(job_id = %n.job_id, notification_id = %n.id, "notification queue full: dropped");
                }
                Err(QueueFull {
                    id: n.id,
                    capacity: QUEUE_CAPACITY,
                    stopped,
                })
            }
        }
    }

    /// Notifications accepted but not finished yet (`oj_notify_queue_depth`),
    /// including the one being delivered.
    pub fn depth(&self) -> usize {
        self.inner.depth.load(Ordering::SeqCst)
    }

    /// `(backend, result, count)` for every outcome (`delivered`, `failed`,
    /// `dropped`), zeros included: one per finished notification.
    pub fn counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        let c = &self.inner.counters;
        let b = self.inner.backend;
        vec![
            (b, "delivered", c.delivered.load(Ordering::Relaxed)),
            (b, "failed", c.failed.load(Ordering::Relaxed)),
            (b, "dropped", c.dropped.load(Ordering::Relaxed)),
        ]
    }

    /// Delivery attempts so far (a webhook retry is one more attempt).
    pub fn attempts(&self) -> u64 {
        self.inner.counters.attempts.load(Ordering::Relaxed)
    }

    /// The `backend` label: `desktop`, `webhook`, `log` or `none`.
    pub fn backend(&self) -> &'static str {
        self.inner.backend
    }

    /// Drain step 4: refuses new notifications, delivers what is queued until
    /// `deadline`, then stops. What is left is not acknowledged, so the daemon
    /// re-delivers it after the next start.
    pub async fn shutdown(self, deadline: tokio::time::Instant) {
        let s = &self.inner;
        s.stopped.store(true, Ordering::SeqCst);
        let _ = s.shutdown_tx.send(true);
        let join = s.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut join) = join else { return };
        if tokio::time::timeout_at(deadline, &mut join).await.is_err() {
            join.abort();
            let _ = join.await;
            let left = self.depth();
            if left > 0 {
                tracing::warn!(
                    backend = s.backend,
                    undelivered = left,
                    "shutdown deadline reached with notifications undelivered; they are delivered after the next start"
                );
            }
        }
    }
}

/// Whether a D-Bus session bus is reachable, for `oj config check` (desktop
/// notifications on Linux). Looks at `DBUS_SESSION_BUS_ADDRESS` (every
/// `unix:path=`, `unix:abstract=` or `tcp:` address in it is tried), else
/// `$XDG_RUNTIME_DIR/bus`, as the D-Bus library does; connects to the socket
/// (a stale socket file left by a dead bus does not count).
pub fn session_bus_available(env: &Environment) -> bool {
    desktop::session_bus_available(env)
}

/// Builds everything `start` would (URL, signing key, secret file, headers,
/// HTTP client) without starting anything, for `oj config check`. Only the
/// selected backend is checked.
pub fn check(cfg: &NotifyConfig) -> Result<(), NotifyError> {
    if cfg.backend == NotifyBackend::Webhook {
        webhook::WebhookBackend::build(
            cfg,
            NotifyContext {
                instance: String::new(),
                profile: String::new(),
                ui_url: None,
            },
        )?;
    }
    Ok(())
}

/// RFC 3339 (UTC, nanoseconds) for `Notification::timestamp`.
mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_nanos(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s)
            .map_err(|e| D::Error::custom(format!("timestamp {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages as users see them, and the key each begins with.
    #[test]
    fn each_error_is_its_key_then_its_detail() {
        let cases: Vec<(NotifyError, Option<&str>, &str)> = vec![
            (
                NotifyError::WebhookUrlMissing,
                Some("notify.backend"),
                "notify.backend is \"webhook\" but notify.webhook.url is unset; set notify.webhook.url (or OJ_NOTIFY_WEBHOOK_URL) or choose another backend",
            ),
            (
                NotifyError::WebhookUrlInvalid {
                    reason: "it has no host".into(),
                },
                Some("notify.webhook.url"),
                "notify.webhook.url is not a usable URL (it has no host); it must be an absolute http:// or https:// URL",
            ),
            (
                NotifyError::SecretFile {
                    path: "/s/key".into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                },
                None,
                "cannot read notify.webhook.secret_file /s/key: entity not found; check the path and its permissions",
            ),
            (
                NotifyError::SecretInvalid {
                    key: "notify.webhook.secret_file",
                    path: Some("/s/key".into()),
                    reason: "no prefix".into(),
                },
                Some("notify.webhook.secret_file"),
                "notify.webhook.secret_file (/s/key) is not a Standard Webhooks signing key: expected \"whsec_\" followed by the base64 of a key of 24 to 64 bytes (no prefix)",
            ),
            (
                NotifyError::SecretInvalid {
                    key: "notify.webhook.secret",
                    path: None,
                    reason: "no prefix".into(),
                },
                Some("notify.webhook.secret"),
                "notify.webhook.secret is not a Standard Webhooks signing key: expected \"whsec_\" followed by the base64 of a key of 24 to 64 bytes (no prefix)",
            ),
            (
                NotifyError::Header {
                    name: "Bad Header".into(),
                    reason: "not a valid HTTP header name",
                },
                Some("notify.webhook.headers.Bad Header"),
                "notify.webhook.headers.Bad Header: not a valid HTTP header name",
            ),
            (
                NotifyError::HttpClient {
                    reason: "no TLS".into(),
                },
                None,
                "cannot build the HTTP client for notify.webhook: no TLS",
            ),
            (
                NotifyError::NoRuntime,
                None,
                "the notifier must be started inside a Tokio runtime",
            ),
        ];
        for (e, key, message) in cases {
            assert_eq!(e.to_string(), message);
            assert_eq!(e.key().as_deref(), key, "{message}");
            let rebuilt = format!("{}{}", key.unwrap_or_default(), e.detail());
            assert_eq!(rebuilt, message);
        }
    }

    #[test]
    fn default_messages() {
        assert_eq!(
            default_message(NotifyEvent::Start, "build", None),
            "Job build started"
        );
        assert_eq!(
            default_message(NotifyEvent::Done, "build", None),
            "Job build done"
        );
        assert_eq!(
            default_message(NotifyEvent::Fail, "build", Some("step test exited 1")),
            "Job build failed: step test exited 1"
        );
        assert_eq!(
            default_message(NotifyEvent::Fail, "build", None),
            "Job build failed"
        );
    }

    #[test]
    fn notification_round_trips_through_json() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
        let n = Notification::for_job(
            NotifyEvent::Fail,
            "j1",
            "build",
            None,
            Some("boom".into()),
            t,
        );
        assert_eq!(n.id, "msg_j1_fail");
        assert_eq!(n.message, "Job build failed: boom");
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["timestamp"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(json["event"], "fail");
        let back: Notification = serde_json::from_value(json).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn with_ui_url_every_body_links_to_the_jobs_page() {
        let t = SystemTime::UNIX_EPOCH;
        let bare = Notification::for_job(NotifyEvent::Fail, "j1", "a<b>", None, None, t);
        let ctx = NotifyContext {
            instance: "i".into(),
            profile: "p".into(),
            ui_url: None,
        };
        // Without ui.url nothing changes.
        let n = linked(bare.clone(), None);
        let body: serde_json::Value = serde_json::from_slice(&standard_body(&n, &ctx)).unwrap();
        assert!(body["data"].get("url").is_none(), "{body}");
        assert_eq!(
            String::from_utf8(slack_body(&n)).unwrap(),
            r#"{"text":"a&lt;b&gt;: Job a&lt;b&gt; failed"}"#
        );
        // With it, one slash between the prefix and the page, whatever the
        // prefix ends with.
        for base in ["https://oj.example.com/ops", "https://oj.example.com/ops/"] {
            let n = linked(bare.clone(), Some(base));
            assert_eq!(
                n.url.as_deref(),
                Some("https://oj.example.com/ops/ui/jobs/j1")
            );
            let body: serde_json::Value = serde_json::from_slice(&standard_body(&n, &ctx)).unwrap();
            assert_eq!(body["data"]["url"], "https://oj.example.com/ops/ui/jobs/j1");
            assert_eq!(
                String::from_utf8(slack_body(&n)).unwrap(),
                r#"{"text":"a&lt;b&gt;: Job a&lt;b&gt; failed <https://oj.example.com/ops/ui/jobs/j1|job j1>"}"#
            );
        }
        // A link already set (a re-delivery) is kept.
        let mut kept = bare;
        kept.url = Some("https://old.example/ui/jobs/j1".into());
        assert_eq!(
            linked(kept, Some("https://new.example")).url.as_deref(),
            Some("https://old.example/ui/jobs/j1")
        );
    }

    #[test]
    fn template_message_wins_over_default() {
        let n = Notification::for_job(
            NotifyEvent::Start,
            "j2",
            "deploy",
            Some("deploy v2 started".into()),
            None,
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(n.message, "deploy v2 started");
        assert_eq!(n.title, "deploy");
    }
}
