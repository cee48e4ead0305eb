//! Glue between the engine's [`NotifySink`] and the notifier of
//! `oj_adapters::notify` (delivery, retries, backends live there).

use oj_adapters::notify::{Notification as Outgoing, Notifier};
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

/// The engine's view of the notifier.
pub struct NotifierSink(pub Notifier);

impl NotifySink for NotifierSink {
    fn wants(&self, kind: NotificationKind) -> bool {
        self.0.wants(kind.config_event())
    }

    fn enqueue(&self, n: &Notification) {
        // A full queue is logged and counted by the notifier; the
        // notification stays in the WAL and is re-delivered after a restart.
        let _ = self.0.enqueue(to_adapter(n));
    }
}
