//! The `log` backend: one INFO line per notification in the daemon's own
//! log, for headless deployments whose log pipeline is the alerting path
//! (the `kubernetes` profile's default).

use super::queue::Outcome;
use super::{Notification, event_name};

pub(crate) fn deliver(n: &Notification) -> Outcome {
    match &n.error {
        Some(error) => tracing::info!(
            target: "oj::notify",
            job_id = %n.job_id,
            event = event_name(n.event),
            title = %n.title,
            error = %error,
            notification_id = %n.id,
            message = %n.message,
            url = n.url.as_deref(),
        ),
        None => tracing::info!(
            target: "oj::notify",
            job_id = %n.job_id,
            event = event_name(n.event),
            title = %n.title,
            notification_id = %n.id,
            message = %n.message,
            url = n.url.as_deref(),
        ),
    }
    Outcome::Delivered
}
