//! Exit codes, and the one place that turns a failure into a stderr line
//! and a code.

use std::fmt;

pub const OK: i32 = 0;
pub const RUNTIME: i32 = 1;
pub const USAGE: i32 = 2;
pub const UNREACHABLE: i32 = 69;
/// Another daemon holds the lock or the socket.
pub const LOCKED: i32 = 75;
pub const CONFIG: i32 = 78;

/// A failure with its exit code. The first line of `message` is what the
/// user reads first: what is wrong and what to do.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
    /// The message is already escaped and may hold our own colour codes.
    escaped: bool,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            escaped: false,
        }
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(RUNTIME, message)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(CONFIG, message)
    }

    /// The message was escaped for the terminal where it was written (it
    /// may colour a state): [`Failure::report`] prints it as it is.
    pub fn already_escaped(mut self) -> Self {
        self.escaped = true;
        self
    }

    /// Prints the message on stderr and returns the exit code. What the
    /// message quotes (a job name from a runbook, a daemon's answer) may
    /// hold ESC or a bidi override: each line is escaped for the terminal
    /// ([`terminal_text`]).
    pub fn report(self) -> i32 {
        if self.escaped {
            eprintln!("oj: {}", self.message);
        } else {
            eprintln!("oj: {}", terminal_text(&self.message));
        }
        self.code
    }
}

/// `text` escaped for a terminal line by line: the message's own line
/// breaks and tabs stay, every other control character (and bidi override,
/// line separator, …) is shown as an escape.
pub fn terminal_text(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            line.split('\t')
                .map(|part| oj_adapters::escape::control_chars(part).into_owned())
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The process environment and hostname, read once here and injected
/// everywhere else.
pub fn process_environment() -> oj_config::Environment {
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    oj_config::Environment {
        vars: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
        hostname,
        cwd: std::env::current_dir().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_keeps_its_lines_but_not_a_quoted_escape_sequence() {
        assert_eq!(
            terminal_text(
                "no job named \"x\"; the runbooks define: \u{1b}[31mred\u{1b}[0m, a\u{202e}b\n\tnext"
            ),
            "no job named \"x\"; the runbooks define: \\u{1b}[31mred\\u{1b}[0m, a\\u{202e}b\n\tnext"
        );
    }
}
