//! When a schedule fires: cron expressions (croner, the crontab(5) subset
//! oj accepts), time zones (jiff, with its own bundled zone data so an image
//! without `/usr/share/zoneinfo` still works) and the pure functions that
//! turn them into fire times. Nothing here reads a clock: every function is
//! given the instant it counts from.
//!
//! DST (SPEC §8.3), as croner implements it for a zoned time: when minute
//! and hour are fixed (no `*`, range, list or step), a local time that does
//! not exist (a gap) fires once at the first instant after the gap, and one
//! that occurs twice fires once, at its first occurrence. Other entries
//! follow the wall clock: a time in a gap does not fire, a repeated time
//! fires at both occurrences.

use std::fmt;
use std::time::Duration;

use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp as Instant, Zoned};

use crate::job::Timestamp;
use crate::runbook::Runbook;
use crate::spec::JobSpec;
pub use jiff::tz::TimeZone as Zone;
pub use oj_config::cron::{CronError, CronExpr, ZoneError, parse_zone};

/// The job spec of a schedule's `job` table, validated: a runbook job
/// table without `vars` (`step = [...]`), the job named after the
/// schedule. The shape of a job spec (`name`?, `steps = [...]`) is
/// accepted too, `name` then naming the job.
pub fn job_spec(name: &str, table: &serde_json::Value) -> Result<JobSpec, String> {
    let origin = format!("schedules.{name}.job");
    let mut table = table.clone();
    let mut job_name = name.to_string();
    if let Some(map) = table.as_object_mut()
        && !map.contains_key("step")
        && let Some(steps) = map.remove("steps")
    {
        map.insert("step".into(), steps);
        if let Some(serde_json::Value::String(n)) = map.remove("name") {
            job_name = n;
        }
    }
    Runbook::from_table(&job_name, &table, &origin)
        .and_then(|rb| rb.job(&job_name, &std::collections::BTreeMap::new()))
        .map_err(|e| e.to_string())
}

/// An oj timestamp as a jiff instant (whole seconds, rounded down).
fn instant(t: Timestamp) -> Instant {
    let i = Instant::try_from(t.0).unwrap_or(Instant::UNIX_EPOCH);
    Instant::from_second(i.as_second()).unwrap_or(i)
}

fn timestamp(i: Instant) -> Timestamp {
    Timestamp(i.into())
}

/// The first fire time strictly after `after`, in `zone`; `None` when the
/// expression never matches again (e.g. `0 0 30 2 *`).
pub fn next_fire(cron: &CronExpr, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
    let start = instant(after).to_zoned(zone.clone());
    cron.croner()
        .find_next_occurrence(&start, false)
        .ok()
        .map(|z: Zoned| timestamp(z.timestamp()))
}

/// The next `n` fire times after `after`.
pub fn next_fires(cron: &CronExpr, after: Timestamp, zone: &TimeZone, n: usize) -> Vec<Timestamp> {
    let mut out = Vec::with_capacity(n);
    let mut at = after;
    while out.len() < n {
        match next_fire(cron, at, zone) {
            Some(t) => {
                out.push(t);
                at = t;
            }
            None => break,
        }
    }
    out
}

/// A fire time written in a zone (RFC 3339 with the zone's offset and name).
pub fn local_text(t: Timestamp, zone: &TimeZone) -> String {
    let z = instant(t).to_zoned(zone.clone());
    match zone.iana_name() {
        Some(name) => format!("{} ({name})", z.strftime("%Y-%m-%dT%H:%M:%S%:z")),
        None => z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
    }
}

/// A local time of the schedule that DST makes special.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DstNote {
    /// The wall-clock time the expression names, e.g. `2027-03-14T02:30`.
    pub wall: String,
    /// `true`: the time does not exist (gap); `false`: it occurs twice.
    pub gap: bool,
    /// What happens, in words.
    pub effect: String,
}

impl fmt::Display for DstNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.gap {
            "does not exist (DST gap)"
        } else {
            "occurs twice (DST repeat)"
        };
        write!(f, "local time {} {what}: {}", self.wall, self.effect)
    }
}

/// The first wall-clock time in (`from`, `until`] that the expression names
/// and that falls into a DST gap or repeat of `zone`, with what oj does then.
pub fn first_dst_note(
    cron: &CronExpr,
    from: Timestamp,
    until: Timestamp,
    zone: &TimeZone,
) -> Option<DstNote> {
    let (from, until) = (instant(from), instant(until));
    for transition in zone.following(from) {
        let at = transition.timestamp();
        if at > until {
            break;
        }
        let before = zone.to_offset(at.checked_sub(jiff::SignedDuration::from_secs(1)).ok()?);
        let after = transition.offset();
        if before == after {
            continue;
        }
        let gap = after > before;
        // The wall-clock range that is missing (gap) or repeated (fold).
        let (lo, hi) = if gap {
            (before.to_datetime(at), after.to_datetime(at))
        } else {
            (after.to_datetime(at), before.to_datetime(at))
        };
        // Walk the expression's wall-clock matches in that range; a fixed
        // UTC zone has none of these, so croner is asked in UTC here.
        let utc = TimeZone::UTC;
        let start = lo
            .to_zoned(utc.clone())
            .ok()?
            .checked_sub(jiff::SignedDuration::from_secs(1))
            .ok()?;
        let m = cron.croner().find_next_occurrence(&start, false).ok()?;
        let wall = m.datetime();
        if wall >= hi {
            continue;
        }
        let fixed = cron.is_fixed_time();
        let effect = match (gap, fixed) {
            (true, true) => format!(
                "fires once at {}, the first instant after the gap",
                local_text(timestamp(at), zone)
            ),
            (true, false) => "that fire is skipped (the wall clock never shows it)".to_string(),
            (false, true) => "fires once, at its first occurrence".to_string(),
            (false, false) => "fires at both occurrences".to_string(),
        };
        let ambiguous = matches!(
            zone.to_ambiguous_zoned(wall).offset(),
            AmbiguousOffset::Fold { .. } | AmbiguousOffset::Gap { .. }
        );
        if !ambiguous {
            continue;
        }
        return Some(DstNote {
            wall: wall.strftime("%Y-%m-%dT%H:%M").to_string(),
            gap,
            effect,
        });
    }
    None
}

/// `schedules.<name>.catch_up`, as the planner needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// After downtime, one run for the missed fires (the latest).
    Latest,
    /// Missed fires stay missed.
    None,
}

/// How late a fire may be handled and still count as on time (not missed)
/// when `catch_up = "none"`: the engine wakes at each fire time, so only
/// downtime or a suspend makes it later than this.
pub const ON_TIME: Duration = Duration::from_secs(15);

/// The most fire times one plan enumerates; older ones (a minute schedule
/// after weeks of downtime) are settled as missed without being counted.
const MAX_ENUMERATED: usize = 10_000;

/// What is due for one schedule at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The newest due fire time; it and every older one get settled.
    pub fire_time: Timestamp,
    /// Whether `fire_time` runs (subject to `overlap`) or is missed too.
    pub run: bool,
    /// Fire times before `fire_time` that are settled as missed.
    pub missed_before: u64,
    /// The newest of those (when there are any).
    pub missed_until: Option<Timestamp>,
}

/// The fire times in (`settled`, `now`] of a schedule, and what to do with
/// them: with `catch_up = latest` the newest one runs if it is within
/// `within` of `now`; with `none` only if it is on time ([`ON_TIME`]). The
/// others are missed. `None` when nothing is due.
pub fn plan(
    cron: &CronExpr,
    zone: &TimeZone,
    settled: Timestamp,
    now: Timestamp,
    catch_up: CatchUp,
    within: Duration,
) -> Option<Due> {
    let window = match catch_up {
        CatchUp::Latest => within,
        CatchUp::None => ON_TIME.min(within),
    };
    let mut from = settled;
    let mut count: u64 = 0;
    let mut newest = None;
    let mut previous = None;
    let mut enumerated = 0;
    while let Some(t) = next_fire(cron, from, zone) {
        if t > now {
            break;
        }
        enumerated += 1;
        if enumerated > MAX_ENUMERATED {
            // Jump ahead: what lies before the window is missed anyway.
            let jump = Timestamp(now.0.checked_sub(window).unwrap_or(now.0));
            if jump > t {
                from = jump;
                enumerated = 0;
                continue;
            }
        }
        count += 1;
        previous = newest;
        newest = Some(t);
        from = t;
    }
    let fire_time = newest?;
    let run = now.since(fire_time) <= window;
    Some(Due {
        fire_time,
        run,
        missed_before: count - 1,
        missed_until: previous.filter(|_| count > 1),
    })
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
