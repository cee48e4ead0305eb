//! The `oj` binary: parses the command line, loads the configuration, and
//! maps every error to one exit code in one place (`exit`).

mod api_client;
mod cli;
mod client_cmds;
mod config_cmds;
mod events_client;
mod exit;
mod follow;
mod job_cleanup;
mod manual;
mod queue_cmds;
mod runbooks;
mod schedule_cmds;
mod table;
mod term;
mod ui_cmd;
mod where_cmds;

use clap::Parser;

use crate::cli::{Cli, Command, DaemonCommand};
use crate::exit::Failure;

fn main() {
    // A step entering its cgroup on its way to the shell: nothing of the
    // client or the daemon runs (see `cgroup::DOORWAY_ARG`).
    oj_daemon::runner::cgroup::enter_doorway_if_asked();
    // Then: a SIGHUP before the daemon's reload handler exists must not
    // end it (see `oj_daemon::early_signals`).
    oj_daemon::early_signals::block_hangup();
    // One rustls crypto provider for the whole process (ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version on stdout with exit 0, usage errors with 2.
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    if !matches!(&cli.command, Command::Daemon(d) if d.command.is_none()) {
        oj_daemon::early_signals::unblock_hangup();
    }
    let code = match run(cli) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    };
    std::process::exit(code);
}

/// The exit code and stderr line of a daemon that did not start, or
/// stopped on a failure (SPEC §1); the daemon's message is printed as it is.
fn daemon_failure(e: oj_daemon::StartError) -> Failure {
    let code = match &e {
        oj_daemon::StartError::Config(_) => exit::CONFIG,
        oj_daemon::StartError::Locked(_) => exit::LOCKED,
        oj_daemon::StartError::Runtime(_) => exit::RUNTIME,
    };
    Failure::new(code, e.to_string()).already_escaped()
}

fn run(cli: Cli) -> Result<i32, Failure> {
    let env = exit::process_environment();
    let opts = cli.global.load_options();
    for w in config_cmds::secret_flag_warnings(&opts.sets) {
        eprintln!("oj: {w}");
    }
    match cli.command {
        Command::Config(cmd) => config_cmds::run(cmd, &opts, &env),
        Command::Daemon(d) => match d.command {
            None => {
                let loaded = config_cmds::load_or_fail(&opts, &env)?;
                oj_daemon::run(loaded, env)
                    .map(|()| exit::OK)
                    .map_err(daemon_failure)
            }
            Some(DaemonCommand::Stop) => client_cmds::daemon_stop(&opts, &env),
        },
        Command::Status(args) => client_cmds::status(args, &opts, &env),
        Command::Run(args) => client_cmds::run(args, &opts, &env),
        Command::Exec(args) => client_cmds::exec(args, &opts, &env),
        Command::Job(cmd) => client_cmds::job(cmd, &opts, &env),
        Command::Queue(cmd) => queue_cmds::run(cmd, &opts, &env),
        Command::Schedule(cmd) => schedule_cmds::run(cmd, &opts, &env),
        Command::Completions { shell } => manual::completions(shell),
        Command::Ui(args) => ui_cmd::run(args, &opts, &env),
        Command::Man => manual::man(),
    }
}
