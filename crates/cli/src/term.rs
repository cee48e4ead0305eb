//! What the terminal on the other end of stdout/stderr can take: colour and
//! width.
//!
//! Why it exists: a table that wraps every row in an 80-column terminal, or
//! colour codes that end up in a file or a pipe, are the first things a user
//! notices. Colour is used only when the stream is a terminal, `NO_COLOR` is
//! unset or empty (<https://no-color.org>) and `TERM` is not `dumb`; tables
//! are fitted to the terminal's width only on a terminal, so a pipe
//! (`oj job list | grep …`) always gets whole cells.

use std::io::IsTerminal;

use oj_config::Environment;

/// How output to one stream is styled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    /// Colour escape codes are welcome.
    pub color: bool,
    /// Columns to fit tables into; `None` = do not truncate.
    pub width: Option<usize>,
}

/// The streams a style can be worked out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Style {
    /// The style for `stream` of this process, from what it is connected to
    /// and the environment (`NO_COLOR`, `TERM`, `COLUMNS`).
    pub fn detect(stream: Stream, env: &Environment) -> Style {
        let tty = match stream {
            Stream::Stdout => std::io::stdout().is_terminal(),
            Stream::Stderr => std::io::stderr().is_terminal(),
        };
        let measured = || {
            match stream {
                Stream::Stdout => terminal_size::terminal_size_of(std::io::stdout()),
                Stream::Stderr => terminal_size::terminal_size_of(std::io::stderr()),
            }
            .map(|(w, _)| usize::from(w.0))
        };
        Style::decide(tty, env, measured)
    }

    /// The decision itself, apart from the file descriptors (for tests).
    pub fn decide(tty: bool, env: &Environment, measured: impl FnOnce() -> Option<usize>) -> Style {
        if !tty {
            return Style::default();
        }
        let color = env.get("NO_COLOR").is_none() && env.get("TERM") != Some("dumb");
        // COLUMNS (set by the shell, or by the user for one command) wins over
        // the measured size, as in ls and other coreutils.
        let width = env
            .get("COLUMNS")
            .and_then(|c| c.trim().parse::<usize>().ok())
            .filter(|w| *w > 0)
            .or_else(measured)
            .filter(|w| *w > 0);
        Style { color, width }
    }

    /// A job or step state, coloured by what it means for the user.
    pub fn state(&self, state: &str) -> String {
        self.paint(state_color(state), state)
    }

    /// `text` in colour `code` (an SGR parameter such as `"31"`), or plain.
    pub fn paint(&self, code: Option<&str>, text: &str) -> String {
        match code {
            Some(code) if self.color && !text.is_empty() => format!("\x1b[{code}m{text}\x1b[0m"),
            _ => text.to_string(),
        }
    }
}

/// The SGR colour of a state: green for done, red for failed, yellow for
/// ended-by-someone, cyan while it runs; queued stays plain.
pub fn state_color(state: &str) -> Option<&'static str> {
    match state {
        "done" => Some("32"),
        "failed" => Some("31"),
        "cancelled" | "interrupted" => Some("33"),
        "running" => Some("36"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment::new(vars.iter().copied(), "h")
    }

    #[test]
    fn a_pipe_gets_no_colour_and_no_width() {
        let s = Style::decide(false, &env(&[("COLUMNS", "80")]), || Some(80));
        assert_eq!(s, Style::default());
        assert_eq!(s.state("failed"), "failed");
    }

    #[test]
    fn a_terminal_gets_colour_unless_no_color_is_set() {
        let s = Style::decide(true, &env(&[]), || Some(120));
        assert_eq!(
            s,
            Style {
                color: true,
                width: Some(120)
            }
        );
        assert_eq!(s.state("failed"), "\x1b[31mfailed\x1b[0m");
        assert_eq!(s.state("queued"), "queued");
        assert!(!Style::decide(true, &env(&[("NO_COLOR", "1")]), || None).color);
        // An empty NO_COLOR does not count (no-color.org).
        assert!(Style::decide(true, &env(&[("NO_COLOR", "")]), || None).color);
        assert!(!Style::decide(true, &env(&[("TERM", "dumb")]), || None).color);
    }

    #[test]
    fn columns_beats_the_measured_width() {
        let s = Style::decide(true, &env(&[("COLUMNS", "80")]), || Some(200));
        assert_eq!(s.width, Some(80));
        let s = Style::decide(true, &env(&[("COLUMNS", "junk")]), || Some(100));
        assert_eq!(s.width, Some(100));
    }
}
