//! The schedule metrics of SPEC §8.3: fires by result, and per schedule the
//! next fire and the last success as Unix times (an alert compares the
//! last success with the schedule's period). The engine sets them from
//! committed changes only; a schedule removed from the config loses its
//! series.

use oj_core::{FireResult, Timestamp};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// `schedule="…",result="…"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FireLabels {
    schedule: String,
    result: &'static str,
}

/// `schedule="…"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabel {
    schedule: String,
}

/// The results `oj_schedule_fires_total` counts.
pub const FIRE_RESULTS: [FireResult; 3] = [
    FireResult::Submitted,
    FireResult::Skipped,
    FireResult::Missed,
];

#[derive(Default)]
pub struct ScheduleMetrics {
    fires: Family<FireLabels, Counter>,
    next_fire: Family<ScheduleLabel, Gauge>,
    last_success: Family<ScheduleLabel, Gauge>,
    period: Family<ScheduleLabel, Gauge>,
}

fn unix(t: Timestamp) -> i64 {
    t.0.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl ScheduleMetrics {
    pub(super) fn register(r: &mut Registry) -> ScheduleMetrics {
        let m = ScheduleMetrics::default();
        r.register(
            "oj_schedule_fires",
            "Schedule fire times settled, by schedule and result (submitted, skipped, missed)",
            m.fires.clone(),
        );
        r.register_with_unit(
            "oj_schedule_next_fire_timestamp",
            "Next fire time of each active schedule (Unix time); absent while paused or disabled",
            Unit::Seconds,
            m.next_fire.clone(),
        );
        r.register_with_unit(
            "oj_schedule_last_success_timestamp",
            "When a job of each schedule last ended done (Unix time)",
            Unit::Seconds,
            m.last_success.clone(),
        );
        r.register_with_unit(
            "oj_schedule_period",
            "Time between a schedule's next two fire times (what the stale-schedule alert compares the last success with)",
            Unit::Seconds,
            m.period.clone(),
        );
        m
    }

    fn label(schedule: &str) -> ScheduleLabel {
        ScheduleLabel {
            schedule: schedule.to_string(),
        }
    }

    /// Counts `count` fire times of `schedule` settled as `result`.
    pub fn fired(&self, schedule: &str, result: FireResult, count: u64) {
        // Every result's series exists once the schedule fired at all.
        for r in FIRE_RESULTS {
            let c = self.fires.get_or_create(&FireLabels {
                schedule: schedule.to_string(),
                result: r.as_str(),
            });
            if r == result {
                c.inc_by(count);
            }
        }
    }

    pub fn set_next_fire(&self, schedule: &str, at: Option<Timestamp>) {
        match at {
            Some(t) => {
                self.next_fire
                    .get_or_create(&Self::label(schedule))
                    .set(unix(t));
            }
            None => {
                self.next_fire.remove(&Self::label(schedule));
            }
        }
    }

    pub fn set_period(&self, schedule: &str, period: Option<std::time::Duration>) {
        match period {
            Some(p) => {
                self.period
                    .get_or_create(&Self::label(schedule))
                    .set(p.as_secs() as i64);
            }
            None => {
                self.period.remove(&Self::label(schedule));
            }
        }
    }

    pub fn set_last_success(&self, schedule: &str, at: Timestamp) {
        self.last_success
            .get_or_create(&Self::label(schedule))
            .set(unix(at));
    }

    /// Drops the series of a schedule no longer configured.
    pub fn forget(&self, schedule: &str) {
        self.next_fire.remove(&Self::label(schedule));
        self.last_success.remove(&Self::label(schedule));
        self.period.remove(&Self::label(schedule));
        for r in FIRE_RESULTS {
            self.fires.remove(&FireLabels {
                schedule: schedule.to_string(),
                result: r.as_str(),
            });
        }
    }
}
