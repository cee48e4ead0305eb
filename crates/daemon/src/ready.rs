//! What `oj daemon` says on a terminal: one ready line (version, profile,
//! listeners, where the log goes) and every start-up warning.
//!
//! Why it exists: in the desktop profile the log goes to a file, so a
//! daemon started by hand would otherwise print nothing at all — not that it
//! is ready, not where to look, not that notifications cannot work. Under a
//! supervisor (systemd, a pod) stderr is not a terminal and nothing is
//! printed here: there the log configuration alone decides what is written.

use std::io::{IsTerminal, Write};

use oj_config::{LogRotation, RuntimeConfig};

/// Prints start-up warnings on stderr when it is a terminal (they also go
/// to the log, which may be a file nobody is reading yet).
pub fn print_warnings(warnings: &[String]) {
    if std::io::stderr().is_terminal() {
        let mut err = std::io::stderr().lock();
        for w in warnings {
            let _ = writeln!(err, "oj: warning: {w}");
        }
    }
}

/// Prints the ready line on stderr when it is a terminal.
pub fn announce(cfg: &RuntimeConfig, version: &str, profile: &str, listeners: &[String]) {
    if std::io::stderr().is_terminal() {
        let line = ready_line(cfg, version, profile, listeners);
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// Says on a terminal that the daemon is stopping, so that Ctrl-C is not
/// met with silence while running jobs finish (`nth` counts the requests:
/// the second one interrupts them).
pub fn stopping(why: &str, nth: u32) {
    if std::io::stderr().is_terminal() {
        let _ = writeln!(std::io::stderr().lock(), "{}", stopping_line(why, nth));
    }
}

/// The line [`stopping`] prints.
pub fn stopping_line(why: &str, nth: u32) -> String {
    if nth <= 1 {
        format!(
            "oj: stopping ({why}): no new jobs start; running steps get shutdown.drain_timeout \
             to finish; Ctrl-C again interrupts them now"
        )
    } else {
        format!("oj: stopping now ({why} again): interrupting the running steps")
    }
}

/// Says on a terminal that the daemon has stopped, and how long the drain took.
pub fn stopped(drain: std::time::Duration, interrupted: usize) {
    if std::io::stderr().is_terminal() {
        let steps = match interrupted {
            0 => String::new(),
            1 => "; 1 running step was interrupted".into(),
            n => format!("; {n} running steps were interrupted"),
        };
        let _ = writeln!(
            std::io::stderr().lock(),
            "oj: daemon stopped after {:.1}s{steps}",
            drain.as_secs_f64()
        );
    }
}

/// `oj 0.1.0 ready (profile desktop): unix:///…/daemon.sock; log: /…/daemon.2026-12-01.log; Ctrl-C stops it`
pub fn ready_line(
    cfg: &RuntimeConfig,
    version: &str,
    profile: &str,
    listeners: &[String],
) -> String {
    let mut serving = listeners.join(", ");
    if let Some(admin) = &cfg.admin.addr {
        serving.push_str(&format!(", admin http://{admin}"));
    }
    format!(
        "oj {version} ready (profile {profile}): {serving}; log: {}; Ctrl-C or `oj daemon stop` stops it",
        log_destination(cfg)
    )
}

/// Where the daemon's log lines go, as a user would look for them.
fn log_destination(cfg: &RuntimeConfig) -> String {
    let mut sinks = Vec::new();
    if cfg.log.stdout {
        sinks.push("stdout".to_string());
    }
    if cfg.log.file.enabled {
        // The live file keeps its name; rotated ones get a date suffix.
        let file = cfg.log_file_path();
        let rotation = match cfg.log.file.rotation {
            LogRotation::Daily => format!(" (rotated daily, {} kept)", cfg.log.file.max_files),
            LogRotation::Hourly => format!(" (rotated hourly, {} kept)", cfg.log.file.max_files),
            LogRotation::Never => String::new(),
        };
        sinks.push(format!("{}{rotation}", file.display()));
    }
    if sinks.is_empty() {
        return "none (log.stdout and log.file.enabled are off)".into();
    }
    sinks.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stopping_line_says_what_a_second_ctrl_c_does() {
        let first = stopping_line("SIGINT", 1);
        assert!(
            first.starts_with("oj: stopping (SIGINT): ") && first.contains("Ctrl-C again"),
            "{first}"
        );
        assert!(stopping_line("SIGINT", 2).contains("interrupting the running steps"));
    }

    #[test]
    fn the_ready_line_names_listeners_and_the_log_file() {
        let env = oj_config::Environment::new([("HOME", "/home/u")], "h");
        let mut cfg = oj_config::load(&oj_config::LoadOptions::default(), &env)
            .expect("defaults")
            .config;
        cfg.daemon.state_dir = "/s".into();
        let line = ready_line(&cfg, "0.1.0", "desktop", &["unix:///s/daemon.sock".into()]);
        assert!(
            line.starts_with("oj 0.1.0 ready (profile desktop)"),
            "{line}"
        );
        assert!(line.contains("unix:///s/daemon.sock"), "{line}");
        assert!(
            line.contains("/s/daemon.log (rotated daily, 7 kept)"),
            "{line}"
        );
        cfg.log.file.enabled = false;
        cfg.log.stdout = true;
        let line = ready_line(&cfg, "0.1.0", "desktop", &[]);
        assert!(line.contains("log: stdout"), "{line}");
    }
}
