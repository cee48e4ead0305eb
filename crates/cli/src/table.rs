//! Human-readable output of client commands: aligned tables, times and
//! durations. Kept apart from the commands so the formatting is tested
//! with plain values.

use std::time::{Duration, SystemTime};

/// A value from the daemon made safe to print: control characters (ESC of
/// an ANSI sequence, newline, carriage return, C1) are shown as Rust-style
/// escapes (`\u{1b}`, `\n`), so a job name can neither move the cursor,
/// recolour the terminal nor forge a row.
pub fn escape_for_terminal(s: &str) -> std::borrow::Cow<'_, str> {
    // The same escaping as the daemon's text log (one place defines it).
    oj_adapters::escape::control_chars(s)
}

/// Renders rows under a header, each column as wide as its widest cell,
/// two spaces apart; the last column is not padded.
#[cfg(test)]
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    render_fitted(header, rows, &Fit::default())
}

/// How [`render_fitted`] fits a table to a terminal.
#[derive(Default)]
pub struct Fit<'a> {
    /// The terminal's width; `None` = never truncate (pipes, files).
    pub width: Option<usize>,
    /// Columns that may be narrowed, in the order they give up room (free
    /// text such as names and errors; ids and states are never cut).
    pub shrinkable: &'a [usize],
    /// Wraps a cell's visible text (already padded or cut) in escape
    /// codes, e.g. a colour for a state; gets the column and the raw cell.
    pub paint: Option<&'a Paint<'a>>,
}

/// Wraps a cell for display: `(column, raw cell, visible text) -> text`.
pub type Paint<'a> = dyn Fn(usize, &str, String) -> String + 'a;

/// Narrowest a shrinkable column gets before the table is allowed to wrap.
const MIN_SHRUNK: usize = 6;

/// [`render`], fitted to `fit.width`: the shrinkable columns are narrowed
/// (widest first) until each line fits, and cells longer than their column
/// end with `…`.
/// Cells are escaped first ([`escape_for_terminal`]).
pub fn render_fitted(header: &[&str], rows: &[Vec<String>], fit: &Fit<'_>) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| escape_for_terminal(c).into_owned())
                .collect()
        })
        .collect();
    let rows = rows.as_slice();
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    if let Some(limit) = fit.width {
        narrow(&mut widths, fit.shrinkable, limit);
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>, painted: bool| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate().take(cols) {
            let last = i + 1 == cells.len().min(cols);
            let visible = cut(cell, widths[i]);
            let shown = visible.chars().count();
            let text = match fit.paint {
                Some(paint) if painted => paint(i, cell, visible),
                _ => visible,
            };
            l.push_str(&text);
            if !last {
                l.extend(std::iter::repeat_n(' ', widths[i] - shown + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), false);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), true);
    }
    out
}

/// Narrows the `shrinkable` columns, the widest first, until the table's
/// lines fit in `limit` columns or none can give up more room.
fn narrow(widths: &mut [usize], shrinkable: &[usize], limit: usize) {
    let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
    while total(widths) > limit {
        let widest = shrinkable
            .iter()
            .copied()
            .filter(|&c| c < widths.len() && widths[c] > MIN_SHRUNK)
            .max_by_key(|&c| widths[c]);
        let Some(c) = widest else { return };
        let excess = total(widths) - limit;
        // Take from the widest column down to the next widest, at least one.
        let next = shrinkable
            .iter()
            .copied()
            .filter(|&o| o != c && o < widths.len())
            .map(|o| widths[o])
            .filter(|&w| w <= widths[c])
            .max()
            .unwrap_or(MIN_SHRUNK)
            .max(MIN_SHRUNK);
        let step = excess.min(widths[c] - next).max(1);
        widths[c] -= step;
    }
}

/// `cell` cut to `width` characters, its last one `…` when something was cut.
pub fn cut(cell: &str, width: usize) -> String {
    if cell.chars().count() <= width {
        return cell.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = cell.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// Parses an RFC 3339 time as the daemon writes it.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

/// `2026-11-26 08:24:08` (UTC, seconds): short enough for a table column.
pub fn short_time(s: &str) -> String {
    match parse_time(s) {
        Some(t) => {
            let full = humantime::format_rfc3339_seconds(t).to_string();
            full.trim_end_matches('Z').replacen('T', " ", 1)
        }
        None => s.to_string(),
    }
}

/// `850ms`, `4.2s`, `3m12s`, `2h05m`, `3d04h`: precise when short, coarse when long.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86400, (s % 86400) / 3600)
    }
}

/// How long something with these times has run: start to end, or start to
/// `now` while it still runs; `-` if it never started.
pub fn run_time(started: Option<&str>, ended: Option<&str>, now: SystemTime) -> String {
    let Some(start) = started.and_then(parse_time) else {
        return "-".into();
    };
    let end = ended.and_then(parse_time).unwrap_or(now);
    human_duration(end.duration_since(start).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let out = render(
            &["ID", "NAME", "STATE"],
            &[
                vec!["a1".into(), "build-everything".into(), "done".into()],
                vec!["b22222".into(), "t".into(), "running".into()],
            ],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ID      NAME              STATE");
        assert_eq!(lines[1], "a1      build-everything  done");
        assert_eq!(lines[2], "b22222  t                 running");
    }

    #[test]
    fn long_cells_are_cut_to_fit_the_terminal() {
        let rows = vec![
            vec![
                "0mx49xbba000".into(),
                "a-job-name-that-goes-on-and-on-for-far-too-long-to-fit".into(),
                "done".into(),
                "step compile exited with code 2 after printing a lot".into(),
            ],
            vec![
                "0mx49xbba001".into(),
                "short".into(),
                "failed".into(),
                "-".into(),
            ],
        ];
        let fit = Fit {
            width: Some(60),
            shrinkable: &[1, 3],
            paint: None,
        };
        let out = render_fitted(&["ID", "NAME", "STATE", "ERROR"], &rows, &fit);
        for line in out.lines() {
            assert!(line.chars().count() <= 60, "{line:?} is too wide\n{out}");
        }
        assert!(out.contains('…'), "{out}");
        assert!(
            out.contains("0mx49xbba000") && out.contains("failed"),
            "{out}"
        );
        // Without a width nothing is cut.
        let whole = render(&["ID", "NAME", "STATE", "ERROR"], &rows);
        assert!(whole.contains("for-far-too-long-to-fit"), "{whole}");
    }

    #[test]
    fn painted_cells_keep_their_alignment() {
        let paint = |col: usize, _raw: &str, shown: String| {
            if col == 1 {
                format!("<{shown}>")
            } else {
                shown
            }
        };
        let fit = Fit {
            width: None,
            shrinkable: &[],
            paint: Some(&paint),
        };
        let out = render_fitted(
            &["ID", "STATE", "X"],
            &[vec!["a".into(), "done".into(), "1".into()]],
            &fit,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ID  STATE  X");
        assert_eq!(lines[1], "a   <done>   1");
    }

    #[test]
    fn cut_marks_what_it_took_away() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
        assert_eq!(cut("abc", 0), "");
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(escape_for_terminal("build"), "build");
        assert_eq!(
            escape_for_terminal("a\u{1b}[31mred\nFAKE\r\u{9b}"),
            "a\\u{1b}[31mred\\nFAKE\\r\\u{9b}"
        );
        assert_eq!(escape_for_terminal("naïve ✓"), "naïve ✓");
        let out = render(&["NAME"], &[vec!["x\nforged  row".into()]]);
        assert_eq!(out.lines().count(), 2, "{out}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(4210)), "4.2s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(human_duration(Duration::from_secs(7500)), "2h05m");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 86400 + 4 * 3600)),
            "3d04h"
        );
    }

    #[test]
    fn times_are_shortened_and_run_times_computed() {
        assert_eq!(
            short_time("2026-11-26T08:24:08.123Z"),
            "2026-11-26 08:24:08"
        );
        assert_eq!(short_time("not a time"), "not a time");
        let now = parse_time("2026-11-26T08:30:00Z").unwrap();
        assert_eq!(
            run_time(
                Some("2026-11-26T08:24:08.000Z"),
                Some("2026-11-26T08:24:10.500Z"),
                now
            ),
            "2.5s"
        );
        assert_eq!(run_time(Some("2026-11-26T08:29:00Z"), None, now), "1m00s");
        assert_eq!(run_time(None, None, now), "-");
    }
}
