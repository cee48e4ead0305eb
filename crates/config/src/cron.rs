//! Cron expressions and time zones of `schedules.<name>`, parsed the way
//! the daemon uses them: croner for the expression (the crontab(5) subset
//! oj accepts, day-of-month/day-of-week OR rule), jiff with its bundled zone
//! data for the zone. `oj config check` and every load validate with these,
//! so a value that passes here is one the daemon can fire. The fire-time
//! computation itself lives in `oj_core::schedule`.

use std::fmt;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;

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

    /// The parsed expression.
    pub fn croner(&self) -> &Cron {
        &self.cron
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
