//! Glue between the engine's [`NotifySink`] and the notifier of
//! `oj_adapters::notify` (delivery, retries, backends live there): the
//! notifier for a `notify.*` slice, and the swap to a new one when a reload
//! publishes a new slice.

use oj_adapters::notify::{Notification as Outgoing, Notifier, NotifyError};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use oj_config::{NotifyBackend, NotifyConfig};
use oj_core::{Notification, NotificationKind};

use crate::engine::{EngineHandle, NotifySink};
use crate::live::Live;
use crate::metrics::Metrics;

/// How long a notifier replaced by a reload may deliver what it holds.
const RETIRE_GRACE: Duration = Duration::from_secs(10);

/// What every notifier of this daemon shares, whatever its `notify.*`.
#[derive(Clone)]
pub struct NotifierParts {
    /// `daemon.instance` and the profile, which notifications carry.
    pub instance: String,
    pub profile: String,
    /// `ui.url`: notifications link to the job's page under it.
    pub ui_url: Option<String>,
    /// Acknowledgements go to the engine.
    pub engine: EngineHandle,
    /// Attempts and outcomes are counted here.
    pub metrics: Arc<Metrics>,
}

/// A notifier for `notify` (none for backend `none`), acknowledging to
/// the engine; `pending` are delivered first.
pub fn build_notifier(
    notify: &NotifyConfig,
    parts: &NotifierParts,
    pending: Vec<Outgoing>,
) -> Result<Option<Notifier>, NotifyError> {
    if notify.backend == NotifyBackend::None {
        // The series exist (at 0) for dashboards and alerts all the same.
        parts.metrics.init_notify_backend("none");
        return Ok(None);
    }
    let ack = parts.engine.clone();
    let n = Notifier::start_observed(
        notify.clone(),
        oj_adapters::notify::NotifyContext {
            instance: parts.instance.clone(),
            profile: parts.profile.clone(),
            ui_url: parts.ui_url.clone(),
        },
        pending,
        Box::new(move |id: &str| ack.ack_notification(id)),
        parts.metrics.clone(),
    )?;
    parts.metrics.init_notify_backend(n.backend());
    Ok(Some(n))
}

/// The adapter's notification for one of ours (same id, so a re-delivery
/// after a restart carries the same `webhook-id`).
pub fn to_adapter(n: &Notification) -> Outgoing {
    Outgoing {
        id: n.id.clone(),
        event: n.kind.config_event(),
        job_id: n.job_id.to_string(),
        job_name: n.job_name.clone(),
        title: n.title.clone(),
        message: n.message.clone(),
        error: n.error.clone(),
        timestamp: n.created_at.0,
        url: None,
    }
}

/// The notifier in use (none for `notify.backend = "none"`); a reload of
/// `notify.*` swaps it for one built from the new slice, so the engine,
/// the drain and `/metrics` always reach the current one.
#[derive(Clone, Default)]
pub struct LiveNotifier(Arc<RwLock<Option<Notifier>>>);

impl LiveNotifier {
    pub fn new(n: Option<Notifier>) -> LiveNotifier {
        LiveNotifier(Arc::new(RwLock::new(n)))
    }

    pub fn current(&self) -> Option<Notifier> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `n` in place and returns the one it replaces.
    pub fn replace(&self, n: Option<Notifier>) -> Option<Notifier> {
        std::mem::replace(&mut *self.0.write().unwrap_or_else(|p| p.into_inner()), n)
    }

    /// Follows the `notify.*` slice: each new value starts a notifier for
    /// it and retires the old one, which gets [`RETIRE_GRACE`] to deliver
    /// what it holds; what it cannot is still in the WAL, unacknowledged,
    /// and is delivered after a restart. A slice whose notifier cannot
    /// start leaves the old one in place.
    pub fn follow(&self, slice: Live<NotifyConfig>, parts: NotifierParts) {
        let live = self.clone();
        crate::live::follow(slice, move |notify| {
            match build_notifier(notify, &parts, Vec::new()) {
                Ok(new) => {
                    let backend = new.as_ref().map_or("none", |n| n.backend());
                    if let Some(old) = live.replace(new) {
                        tokio::spawn(old.shutdown(tokio::time::Instant::now() + RETIRE_GRACE));
                    }
                    tracing::info!(backend, "notifications: new notify.* settings in use");
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the notifier for the new notify.* settings; the old one stays");
                }
            }
        });
    }
}

/// The engine's view of the notifier.
pub struct NotifierSink(pub LiveNotifier);

impl NotifySink for NotifierSink {
    fn wants(&self, kind: NotificationKind) -> bool {
        self.0
            .current()
            .is_some_and(|n| n.wants(kind.config_event()))
    }

    fn enqueue(&self, n: &Notification) {
        // A full queue is logged and counted by the notifier; the
        // notification stays in the WAL and is re-delivered after a restart.
        if let Some(notifier) = self.0.current() {
            let _ = notifier.enqueue(to_adapter(n));
        }
    }
}
