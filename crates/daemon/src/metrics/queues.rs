//! Queue gauges (SPEC §8.2): `oj_queue_jobs{queue,state}` (`queued`,
//! `running`), `oj_queue_paused{queue}` and `oj_queue_limit{queue}`. The
//! engine sets them when a turn changed a queue; a queue that is gone (no
//! longer configured and holding no job) drops its series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::engine::QueueInfo;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueStateLabels {
    queue: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

/// The queue gauges.
#[derive(Default)]
pub struct QueueMetrics {
    jobs: Family<QueueStateLabels, Gauge>,
    paused: Family<QueueLabel, Gauge>,
    limit: Family<QueueLabel, Gauge>,
}

impl QueueMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "oj_queue_jobs",
            "Jobs per queue: queued, and running (holding a slot)",
            self.jobs.clone(),
        );
        r.register(
            "oj_queue_paused",
            "1 while the queue is paused (no job of it starts)",
            self.paused.clone(),
        );
        r.register(
            "oj_queue_limit",
            "Jobs of the queue that may run at once (queues.<name>.max_concurrent)",
            self.limit.clone(),
        );
    }

    /// Sets the gauges to `now`; series of queues in `before` only are removed.
    pub fn set(&self, now: &[QueueInfo], before: &[QueueInfo]) {
        for old in before {
            if now.iter().all(|q| q.name != old.name) {
                let queue = old.name.clone();
                for state in ["queued", "running"] {
                    self.jobs.remove(&QueueStateLabels {
                        queue: queue.clone(),
                        state,
                    });
                }
                self.paused.remove(&QueueLabel {
                    queue: queue.clone(),
                });
                self.limit.remove(&QueueLabel { queue });
            }
        }
        for q in now {
            let jobs = |state| {
                self.jobs.get_or_create(&QueueStateLabels {
                    queue: q.name.clone(),
                    state,
                })
            };
            jobs("queued").set(q.queued as i64);
            jobs("running").set(q.running as i64);
            let label = QueueLabel {
                queue: q.name.clone(),
            };
            self.paused.get_or_create(&label).set(q.paused as i64);
            self.limit
                .get_or_create(&label)
                .set(q.max_concurrent as i64);
        }
    }
}
