//! The delivery worker: one task that takes notifications off the bounded
//! queue and hands them, in order, to the configured backend, so a slow or
//! dead receiver only ever delays other notifications, never a job.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use oj_config::{NotifyBackend, NotifyConfig};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::desktop::DesktopBackend;
use super::webhook::WebhookBackend;
use super::{AckFn, Counters, Notification, NotifyContext, NotifyError};

/// What one delivery came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered,
    /// Given up on (not retried further); still acknowledged.
    Failed,
    /// `none` backend: nothing to deliver, nothing to count.
    Skipped,
}

pub(crate) enum Backend {
    Desktop(DesktopBackend),
    Webhook(Box<WebhookBackend>),
    Log,
    None,
}

impl Backend {
    pub(crate) fn build(cfg: &NotifyConfig, ctx: NotifyContext) -> Result<Backend, NotifyError> {
        Ok(match cfg.backend {
            NotifyBackend::Desktop => Backend::Desktop(DesktopBackend::new()),
            NotifyBackend::Webhook => Backend::Webhook(Box::new(WebhookBackend::build(cfg, ctx)?)),
            NotifyBackend::Log => Backend::Log,
            NotifyBackend::None => Backend::None,
        })
    }

    /// Delivers `n`, counting each attempt (the webhook backend counts its
    /// own, one per POST).
    async fn deliver(&mut self, n: &Notification, counters: &Counters) -> Outcome {
        match self {
            Backend::Desktop(d) => {
                counters.attempt();
                d.deliver(n).await
            }
            Backend::Webhook(w) => w.deliver(n, counters).await,
            Backend::Log => {
                counters.attempt();
                super::log::deliver(n)
            }
            Backend::None => Outcome::Skipped,
        }
    }
}

pub(crate) struct Worker {
    pub backend: Backend,
    /// Notifications pending from before the restart; delivered first.
    pub backlog: VecDeque<Notification>,
    pub rx: mpsc::Receiver<Notification>,
    /// Ids of notifications filtered out by `notify.events`: acknowledged only.
    pub skip_rx: mpsc::UnboundedReceiver<String>,
    pub shutdown: watch::Receiver<bool>,
    pub counters: Arc<Counters>,
    pub depth: Arc<AtomicUsize>,
    pub on_ack: AckFn,
}

impl Worker {
    pub(crate) async fn run(mut self) {
        let mut closing = *self.shutdown.borrow();
        loop {
            while let Ok(id) = self.skip_rx.try_recv() {
                (self.on_ack)(&id);
            }
            let next = match self.backlog.pop_front() {
                Some(n) => n,
                None if closing => match self.rx.try_recv() {
                    Ok(n) => n,
                    // Queue empty at shutdown: done.
                    Err(_) => break,
                },
                None => {
                    tokio::select! {
                        biased;
                        changed = self.shutdown.changed() => {
                            closing = changed.is_err() || *self.shutdown.borrow();
                            continue;
                        }
                        id = self.skip_rx.recv() => {
                            if let Some(id) = id {
                                (self.on_ack)(&id);
                            }
                            continue;
                        }
                        n = self.rx.recv() => match n {
                            Some(n) => n,
                            // Every Notifier handle is gone and the queue is empty.
                            None => break,
                        },
                    }
                }
            };
            self.process(next).await;
        }
        while let Ok(id) = self.skip_rx.try_recv() {
            (self.on_ack)(&id);
        }
    }

    async fn process(&mut self, n: Notification) {
        // Everything logged while delivering belongs to the job's span.
        let span = tracing::info_span!("job", job_id = %n.job_id, name = %n.job_name);
        let started = Instant::now();
        let outcome = self
            .backend
            .deliver(&n, &self.counters)
            .instrument(span)
            .await;
        match outcome {
            Outcome::Delivered => self.counters.delivered(started.elapsed()),
            Outcome::Failed => self.counters.failed(started.elapsed()),
            Outcome::Skipped => {}
        }
        (self.on_ack)(&n.id);
        self.depth.fetch_sub(1, Ordering::SeqCst);
    }
}
