//! `oj completions SHELL` and `oj man`: generated from the same clap
//! definition as the parser, so they never drift from the real flags.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::{self, Failure};

/// Writes the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<i32, Failure> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "oj", &mut out);
    write_stdout(&out)
}

/// Writes the man page `oj(1)` (roff) on stdout: every command with its
/// flags, then the exit codes and the environment, which clap cannot know.
pub fn man() -> Result<i32, Failure> {
    let mut cmd = Cli::command();
    // Fills in what the derive leaves implicit (value counts, help flags).
    cmd.build();
    let mut out = Vec::new();
    render_man(&cmd, &mut out)
        .map_err(|e| Failure::runtime(format!("cannot render the man page: {e}")))?;
    write_stdout(&out)
}

fn render_man(cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let page = clap_mangen::Man::new(cmd.clone());
    page.render_title(out)?;
    // clap's NAME would repeat "oj —" from the about text.
    writeln!(out, ".SH NAME\noj \\- {}", roff_escape(NAME_LINE))?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_options_section(out)?;
    render_commands(cmd, out)?;
    out.write_all(EXTRA_SECTIONS.as_bytes())?;
    page.render_version_section(out)
}

/// What `oj` is, for the NAME section (`whatis oj`).
const NAME_LINE: &str =
    "a job daemon that runs the same way on a laptop and in a Kubernetes cluster";

/// One `.SS` per command (and sub-command), with its usage, its about text
/// and its arguments, so `man oj` documents `oj job wait --timeout` too.
fn render_commands(cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands() {
        render_command(&["oj"], sub, out)?;
    }
    Ok(())
}

fn render_command(parents: &[&str], cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    if cmd.get_name() == "help" {
        return Ok(());
    }
    let mut path: Vec<&str> = parents.to_vec();
    path.push(cmd.get_name());
    if cmd.is_subcommand_required_set() {
        for sub in cmd.get_subcommands() {
            render_command(&path, sub, out)?;
        }
        return Ok(());
    }
    let mut usage = cmd.clone().bin_name(path.join(" "));
    let usage = usage.render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ");
    writeln!(out, ".SS {}", roff_escape(&path.join(" ")))?;
    writeln!(out, ".B {}", roff_escape(usage))?;
    writeln!(out, ".br")?;
    if let Some(about) = cmd.get_about() {
        writeln!(out, "{}", roff_escape(&about.to_string()))?;
    }
    // Global flags are documented once, under OPTIONS.
    for arg in cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set())
    {
        if matches!(arg.get_id().as_str(), "help" | "version") {
            continue;
        }
        let value = arg
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string())
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
        let mut names: Vec<String> = Vec::new();
        if let Some(s) = arg.get_short() {
            names.push(format!("-{s}"));
        }
        if let Some(l) = arg.get_long() {
            let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
            names.push(if takes_value {
                format!("--{l} {value}")
            } else {
                format!("--{l}")
            });
        }
        if names.is_empty() {
            names.push(value);
        }
        writeln!(out, ".TP")?;
        writeln!(out, "\\fB{}\\fR", roff_escape(&names.join(", ")))?;
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        writeln!(out, "{}", roff_escape(&help))?;
    }
    for sub in cmd.get_subcommands() {
        render_command(&path, sub, out)?;
    }
    Ok(())
}

/// Escapes text for roff: backslashes, and a leading `.` or `'` that would
/// be read as a request.
fn roff_escape(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    s.lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
success
.TP
\fB1\fR
runtime failure: a job that did not end done under \-\-wait, logs \-\-follow or job wait; a daemon error
.TP
\fB2\fR
usage error
.TP
\fB69\fR
the daemon cannot be reached
.TP
\fB75\fR
another daemon holds the lock on the state directory
.TP
\fB78\fR
invalid configuration
.TP
\fB124\fR
oj job wait \-\-timeout ran out
.SH ENVIRONMENT
.TP
\fBOJ_PROFILE\fR, \fBOJ_CONFIG\fR
the profile, and a :\-separated list of config files
.TP
\fBOJ_\fIKEY\fB__\fISUB\fR
any config key, e.g. OJ_LOG__LEVEL=debug; \fBoj config env\fR lists them all
.TP
\fBOJ_DAEMON_URL\fR, \fBOJ_AUTH_TOKEN\fR
reach a remote daemon (https://host:7777) with its token
.TP
\fBNO_COLOR\fR
set (non\-empty): no colour, even on a terminal
.SH FILES
.TP
\fI~/.config/oj/config.toml\fR
the user's config file ($XDG_CONFIG_HOME/oj/config.toml)
.TP
\fI~/.local/state/oj/\fR
the daemon's state: jobs, logs, daemon.sock, daemon.log ($XDG_STATE_HOME/oj)
.SH "SEE ALSO"
The documentation in the docs/ folder of oj's source: configuration.md, client.md, daemon.md.
"#;

/// Writes generated text; a closed pipe (`oj man | head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<i32, Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::runtime(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(exit::OK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_requests_are_escaped() {
        assert_eq!(roff_escape(".x"), "\\&.x");
        assert_eq!(roff_escape("a-b \\ c"), "a\\-b \\e c");
    }
}
