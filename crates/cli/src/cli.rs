//! The command line: every command of `oj`, with help text that helps.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// oj — a job daemon that runs the same way on a laptop and in a Kubernetes cluster.
#[derive(Debug, Parser)]
#[command(
    name = "oj",
    version,
    about = "oj — a job daemon that runs the same way on a laptop and in a Kubernetes cluster",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts; they pick and adjust the configuration.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Profile to use: desktop, kubernetes or a user profile
    /// [default: OJ_PROFILE, else `profile` in a config file, else kubernetes
    /// in a pod, else desktop]
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Config file to read after the default one (repeatable; later files win)
    #[arg(long = "config", global = true, value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Set one key, highest precedence (repeatable), e.g. --set log.level=debug
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl GlobalArgs {
    pub fn load_options(&self) -> oj_config::LoadOptions {
        oj_config::LoadOptions {
            profile: self.profile.clone(),
            config_files: self.config.clone(),
            sets: self.set.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (or stop the running one)
    Daemon(DaemonArgs),
    /// Show the daemon's version, profile, leadership, listeners and job counts
    Status(StatusArgs),
    /// Inspect and check the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Submit a job from the project's runbooks (.oj/runbooks/*.toml); prints the job id
    #[command(
        after_help = "Examples:\n  oj run build --var target=x86_64-unknown-linux-gnu\n  \
                            id=$(oj run deploy --var env=staging) && oj job logs \"$id\" --follow\n  \
                            oj run test --file ci/runbook.toml --wait"
    )]
    Run(RunArgs),
    /// Submit a one-step job that runs CMD; prints the job id
    #[command(after_help = "Examples:\n  oj exec --wait -- make test\n  \
                            oj exec --name nightly -- sh -c 'make && make install'")]
    Exec(ExecArgs),
    /// List, show, follow, wait for and cancel jobs
    #[command(subcommand)]
    Job(JobCommand),
    /// List, pause and resume queues
    #[command(subcommand)]
    Queue(crate::queue_cmds::QueueCommand),
    /// List schedules (schedules.* in the config), fire one now, pause or resume them
    #[command(subcommand)]
    Schedule(crate::schedule_cmds::ScheduleCommand),
    /// Open the web UI of the daemon this client reaches, through a private
    /// listener on 127.0.0.1 (for a daemon on its Unix socket, or a remote one)
    #[command(after_help = "Examples:\n  oj ui\n  \
                            oj ui --no-open    # print the one-time URL instead of opening a browser")]
    Ui(UiArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(after_help = "Examples:\n  \
                            oj completions bash > ~/.local/share/bash-completion/completions/oj\n  \
                            oj completions zsh > \"${fpath[1]}/_oj\"\n  \
                            oj completions fish > ~/.config/fish/completions/oj.fish")]
    Completions {
        /// The shell to write the script for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, e.g. `oj man | man -l -`
    Man,
}

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Print the URL (with its one-time code) instead of opening a browser
    #[arg(long)]
    pub no_open: bool,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(subcommand)]
    pub command: Option<DaemonCommand>,
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Ask the running daemon to drain and exit, and wait until it has
    Stop,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON (the body of GET /v1/status)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML (secrets redacted)
    Show {
        /// Add, for every key, the layer its value came from
        #[arg(long)]
        sources: bool,
        /// Print JSON instead of TOML
        #[arg(long)]
        json: bool,
        /// Print secrets instead of "<redacted>"
        #[arg(long)]
        show_secrets: bool,
        /// Show the running daemon's config (GET /v1/config) instead of the files'
        #[arg(long)]
        daemon: bool,
    },
    /// Validate the configuration and the environment it needs; exit 0 or 78
    Check,
    /// Explain one key: type, default, env variable, whether it applies live, every layer's value
    #[command(
        after_help = "Examples:\n  oj config explain log.level\n  oj config explain pods.resources"
    )]
    Explain {
        /// The dotted key (or a section such as log.file)
        key: String,
    },
    /// Show the keys that differ: files vs the running daemon (--daemon),
    /// vs --profile/--config, or (by default) the profile vs the effective config
    #[command(
        after_help = "Examples:\n  oj config diff                       what files, env and flags change\n  \
                            oj config diff --profile kubernetes  what switching profile would change\n  \
                            oj config diff --daemon              drift between the daemon and the files on disk"
    )]
    Diff {
        /// Compare the running daemon's config with the files on disk
        #[arg(long)]
        daemon: bool,
    },
    /// List built-in and user profiles
    Profiles,
    /// Print the JSON Schema (draft 2020-12) of the config file (or of a runbook)
    Schema {
        /// The schema of a runbook (.oj/runbooks/*.toml) instead
        #[arg(long)]
        runbook: bool,
    },
    /// List every environment variable oj reads and the key it sets
    Env,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Name of the job in the runbooks ([job.NAME])
    pub name: String,
    /// Runbook variable (repeatable), e.g. --var target=x86_64-unknown-linux-gnu
    #[arg(long = "var", value_name = "K=V")]
    pub vars: Vec<String>,
    /// Runbook file to use instead of searching .oj/runbooks/
    #[arg(long, value_name = "RUNBOOK")]
    pub file: Option<PathBuf>,
    /// Wait for the job to end, streaming its output; exit 0 if it is done, 1 otherwise
    #[arg(short, long)]
    pub wait: bool,
    #[command(flatten)]
    pub queueing: crate::queue_cmds::QueueFlags,
    #[command(flatten)]
    pub placement: crate::where_cmds::WhereArgs,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Job name [default: the command's file name, e.g. make for /usr/bin/make]
    #[arg(long)]
    pub name: Option<String>,
    /// Wait for the job to end, streaming its output; exit 0 if it is done, 1 otherwise
    #[arg(short, long)]
    pub wait: bool,
    /// The command and its arguments (after --)
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
    #[command(flatten)]
    pub queueing: crate::queue_cmds::QueueFlags,
    #[command(flatten)]
    pub placement: crate::where_cmds::WhereArgs,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// List jobs, newest first
    List {
        /// Print {"jobs": [...]} as JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Only jobs in this state (queued, running, done, failed, cancelled, interrupted)
        #[arg(long, value_name = "S", value_parser = job_states(), hide_possible_values = true)]
        status: Option<String>,
        /// At most N jobs, the newest [default: all]
        #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        #[command(flatten)]
        filters: crate::where_cmds::ListFilters,
    },
    /// Submit a job again with the same spec (from one step on); prints the new job's id
    #[command(after_help = "Examples:\n  oj job rerun 0mx49xbba000\n  \
                            oj job rerun 0mx49xbba000 --from-step test --wait")]
    Rerun {
        /// The job to run again
        id: String,
        /// Start at this step (the steps before it are left out)
        #[arg(long, value_name = "NAME")]
        from_step: Option<String>,
        /// Wait for the new job to end, streaming its output; exit 0 if it is done, 1 otherwise
        #[arg(short, long)]
        wait: bool,
    },
    /// Show one job with its steps, states, exit codes and times
    Show {
        /// The job id (as printed by oj run / oj exec / oj job list)
        id: String,
        /// Print the job as JSON (the body of GET /v1/jobs/ID)
        #[arg(long)]
        json: bool,
    },
    /// Print a job's output, step by step
    Logs {
        /// The job id
        id: String,
        /// Keep streaming until the job ends; exit 0 if it ended done, 1 otherwise
        #[arg(short, long)]
        follow: bool,
    },
    /// Wait until every job given has ended; exit 0 if all are done, 1 otherwise, 124 on timeout
    #[command(after_help = "Examples:\n  oj job wait 0mx49xbba000\n  \
                            oj job wait --timeout 10m $(oj exec -- make a) $(oj exec -- make b)")]
    Wait {
        /// The job ids
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// Give up after this long (e.g. 30s, 10m, 1h), exit 124
        #[arg(long, value_name = "D", value_parser = parse_duration)]
        timeout: Option<std::time::Duration>,
    },
    /// Release held jobs (submitted with --hold) so they may start
    Release {
        /// The job ids
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Cancel a queued or running job
    Cancel {
        /// The job id
        id: String,
    },
    /// Delete finished jobs and their logs
    Rm {
        /// Ids of finished jobs (done, failed, cancelled, interrupted)
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Delete the finished jobs that match (all of them without filters); prints how many
    Prune {
        /// Only jobs that ended longer ago than this, e.g. 7d or 12h
        #[arg(long, value_name = "D")]
        older_than: Option<String>,
        /// Only jobs in this finished state (done, failed, cancelled, interrupted)
        #[arg(long, value_name = "S")]
        state: Option<String>,
    },
}

/// `30s`, `10m`, `1h 30m`: the same duration syntax as the config file.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; write a duration like 30s, 10m or 1h"))
}

/// The job states, as `--status` takes them (and shells complete them).
fn job_states() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(oj_core::JobState::ALL.map(|s| s.as_str()))
}
