//! Durations as the config shows them: humantime's text (`"25s"`,
//! `"1s 500ms"`, `"1h"`), with days written `d` as the keys' defaults are
//! (`"30d"`, not humantime's `"30days"`). Parsing is humantime's, so every
//! form it reads (`"30 days"`, `"2m 30s"`) is accepted.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// `d` as text, e.g. `"30d"`, `"1d 12h"`, `"1s 500ms"`.
pub fn format(d: Duration) -> String {
    let text = humantime::format_duration(d).to_string();
    text.split(' ')
        .map(|part| {
            match part
                .strip_suffix("days")
                .or_else(|| part.strip_suffix("day"))
            {
                Some(n) => format!("{n}d"),
                None => part.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    humantime_serde::Serde::<Duration>::deserialize(d).map(humantime_serde::Serde::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_written_d_and_the_text_parses_back() {
        let day = 86_400;
        for (secs, text) in [
            (30 * day, "30d"),
            (7 * day, "7d"),
            (day, "1d"),
            (day + 12 * 3600, "1d 12h"),
            (3600, "1h"),
            (25, "25s"),
        ] {
            let d = Duration::from_secs(secs);
            assert_eq!(format(d), text);
            assert_eq!(humantime::parse_duration(text).unwrap(), d);
        }
        assert_eq!(format(Duration::from_millis(1500)), "1s 500ms");
    }
}
