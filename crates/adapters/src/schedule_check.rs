//! What `oj config check` (and every daemon start) says about
//! `schedules.*` beyond the syntax the config crate checks: each job table
//! must build a job spec the daemon would admit (an error naming the key
//! and its layer); `check` notes each schedule's next three fire times and
//! warns when, within a year, a fire time falls into a DST gap or repeat
//! of its zone (saying what oj does then).

use std::time::{Duration, SystemTime};

use oj_config::Loaded;
use oj_core::Timestamp;
use oj_core::schedule::{self, CronExpr, Zone};

use crate::preflight::{Mode, Report};

/// How far ahead DST gaps and repeats are looked for.
const DST_HORIZON: Duration = Duration::from_secs(366 * 24 * 3600);

/// Adds the schedule problems, warnings and notes of `loaded` to `r`.
pub fn check(loaded: &Loaded, mode: Mode, now: SystemTime, r: &mut Report) {
    let c = &loaded.config;
    let local = Zone::system();
    for (name, s) in &c.schedules {
        let key = format!("schedules.{name}.job");
        let spec = schedule::job_spec(name, &s.job).and_then(|spec| {
            spec.validate().map_err(|e| e.to_string())?;
            if !c.jobs.allow_shell {
                spec.refuse_shell_steps().map_err(|e| {
                    format!(
                        "{e} (jobs.allow_shell = false, from {})",
                        loaded.origin("jobs.allow_shell")
                    )
                })?;
            }
            Ok(spec)
        });
        if let Err(e) = spec {
            r.errors.push(format!(
                "{key} ({}): {e}",
                loaded.origin(&format!("schedules.{name}.job"))
            ));
        }
        if mode != Mode::Check {
            continue;
        }
        // A bad cron or zone is an error of the config crate already.
        let (Ok(cron), Ok(zone)) = (
            CronExpr::parse(&s.cron),
            schedule::parse_zone(&s.timezone, &local),
        ) else {
            continue;
        };
        let now = Timestamp(now);
        let fires = schedule::next_fires(&cron, now, &zone, 3);
        let zone_name = zone.iana_name().unwrap_or("UTC");
        let state = if s.enabled { "" } else { " (disabled)" };
        if fires.is_empty() {
            r.warnings.push(format!(
                "schedules.{name}.cron ({}): {:?} never fires again; fix the expression",
                loaded.origin(&format!("schedules.{name}.cron")),
                s.cron
            ));
        } else {
            let times: Vec<String> = fires
                .iter()
                .map(|t| schedule::local_text(*t, &zone).replace(&format!(" ({zone_name})"), ""))
                .collect();
            r.notes.push(format!(
                "schedules.{name}{state}: next fires {} ({zone_name})",
                times.join(", ")
            ));
        }
        let until = Timestamp(now.0 + DST_HORIZON);
        if let Some(note) = schedule::first_dst_note(&cron, now, until, &zone) {
            r.warnings.push(format!(
                "schedules.{name}.cron ({}): in {zone_name}, {note}; pick a time outside 01:00–03:00 or timezone = \"UTC\" to avoid it",
                loaded.origin(&format!("schedules.{name}.cron")),
            ));
        }
    }
}
