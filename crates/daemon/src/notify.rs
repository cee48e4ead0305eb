//! Glue between the engine's [`NotifySink`] and the notifier of
//! `oj_adapters::notify` (delivery, retries, backends live there).

use oj_adapters::notify::{Notification as Outgoing, Notifier};
use std::sync::{Arc, RwLock};

use oj_core::{Notification, NotificationKind};

use crate::engine::NotifySink;

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
