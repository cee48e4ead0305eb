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

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp as Instant, Zoned};

use crate::job::Timestamp;

/// The `@` shorthands oj accepts (crontab(5), without `@reboot`).
const SHORTHANDS: [&str; 6] = [
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
];

/// Month and weekday names croner accepts; stripped before looking for the
/// `L` and `W` modifiers oj refuses (`JUL` and `WED` are fine).
const NAMES: [&str; 19] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC", "SUN",
    "MON", "TUE", "WED", "THU", "FRI", "SAT",
];

/// A cron expression that oj accepts, parsed.
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    cron: Cron,
}

/// Why a cron expression is refused (the message says what would be valid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(String);

impl CronExpr {
    /// Parses `text`: five fields as in crontab(5) or one of `@hourly`
    /// `@daily` `@weekly` `@monthly` `@yearly` (`@annually`).
    pub fn parse(text: &str) -> Result<CronExpr, CronError> {
        let trimmed = text.trim();
        let refuse = |why: String| {
            Err(CronError(format!(
                "{trimmed:?} is not a valid cron expression: {why}; write five fields \
                 (minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\") or one of \
                 @hourly @daily @weekly @monthly @yearly"
            )))
        };
        if trimmed.is_empty() {
            return refuse("it is empty".into());
        }
        if trimmed.starts_with('@') {
            let lower = trimmed.to_ascii_lowercase();
            if lower == "@reboot" {
                return refuse(
                    "@reboot is not supported (a schedule fires at times, not at daemon start)"
                        .into(),
                );
            }
            if !SHORTHANDS.contains(&lower.as_str()) {
                return refuse(format!("{trimmed} is not a known shorthand"));
            }
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            match fields.len() {
                5 => {}
                6 => {
                    return refuse(
                        "it has 6 fields; a seconds (or year) field is not supported".into(),
                    );
                }
                n => return refuse(format!("it has {n} field(s), not 5")),
            }
            for field in &fields {
                let mut upper = field.to_ascii_uppercase();
                for name in NAMES {
                    upper = upper.replace(name, "");
                }
                if let Some(c) = upper
                    .chars()
                    .find(|c| matches!(c, 'L' | 'W' | '#' | '?' | '+'))
                {
                    return refuse(format!(
                        "`{c}` in field {field:?} is not crontab(5) syntax (L W # ? + are not supported)"
                    ));
                }
            }
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .dom_and_dow(false)
            .build();
        match parser.parse(trimmed) {
            Ok(cron) => Ok(CronExpr {
                text: trimmed.to_string(),
                cron,
            }),
            Err(e) => refuse(e.to_string()),
        }
    }

    /// The expression as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether minute and hour are fixed (the DST rule for such entries applies).
    pub fn is_fixed_time(&self) -> bool {
        self.cron.determine_job_type() == croner::JobType::FixedTime
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a time zone is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a known time zone; use an IANA name such as \"Europe/Paris\" or \"UTC\", or \"local\" for the daemon's zone"
)]
pub struct ZoneError(String);

/// Resolves a `timezone` value: an IANA name, or `"local"` (then `local`,
/// the daemon's zone, which the caller looks up).
pub fn parse_zone(name: &str, local: &TimeZone) -> Result<TimeZone, ZoneError> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("local") {
        return Ok(local.clone());
    }
    if name.is_empty() {
        return Err(ZoneError(name.to_string()));
    }
    TimeZone::get(name).map_err(|_| ZoneError(name.to_string()))
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
    cron.cron
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
        let m = cron.cron.find_next_occurrence(&start, false).ok()?;
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
pub const ON_TIME: Duration = Duration::from_secs(60);

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
        newest = Some(t);
        from = t;
    }
    let fire_time = newest?;
    let run = now.since(fire_time) <= window;
    Some(Due {
        fire_time,
        run,
        missed_before: count - 1,
    })
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
