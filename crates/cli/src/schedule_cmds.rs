//! `oj schedule list|run|pause|resume` (SPEC §8.3), over `GET
//! /v1/schedules` and `POST /v1/schedules/{name}/run|pause|resume`. The
//! schedules themselves live in the config (`schedules.<name>`); these
//! commands show them, fire one now, and pause or resume them durably.

use clap::Subcommand;
use oj_api::{ErrorCode, JobReport, ScheduleInfo, ScheduleList};
use oj_config::{Environment, LoadOptions};
use serde_json::{Value, json};

use crate::api_client::{ApiClient, ApiError};
use crate::client_cmds::{connect, emit, path_segment, runtime};
use crate::exit::{self, Failure};
use crate::table;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// List the schedules: cron, zone, next fire, last fire with its job and state, paused
    List {
        /// Print {"schedules": [...]} as JSON (the body of GET /v1/schedules)
        #[arg(long)]
        json: bool,
    },
    /// Fire a schedule now (obeying its overlap); prints the job id
    #[command(after_help = "Examples:\n  oj schedule run nightly\n  \
                            oj job logs --follow \"$(oj schedule run nightly)\"")]
    Run {
        /// The schedule's name (schedules.<name> in the config)
        name: String,
    },
    /// Pause schedules: they do not fire (and are not caught up) until resumed; survives restarts
    Pause {
        /// Schedule names
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Resume paused schedules; fires that fell while paused are not caught up
    Resume {
        /// Schedule names
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
}

pub fn run(cmd: ScheduleCommand, opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    let (_loaded, client) = connect(opts, env)?;
    let rt = runtime()?;
    match cmd {
        ScheduleCommand::List { json } => rt.block_on(list(&client, json)),
        ScheduleCommand::Run { name } => rt.block_on(fire(&client, &name)),
        ScheduleCommand::Pause { names } => rt.block_on(set_paused(&client, &names, true)),
        ScheduleCommand::Resume { names } => rt.block_on(set_paused(&client, &names, false)),
    }
}

async fn list(client: &ApiClient, json: bool) -> Result<i32, Failure> {
    // Read raw first: `--json` prints the body as the daemon sent it.
    let body: Value = client
        .get_json("/v1/schedules")
        .await
        .map_err(|e| e.into_failure(client))?;
    if json {
        emit(format!("{body}\n").as_bytes());
        return Ok(exit::OK);
    }
    let ScheduleList::<ScheduleInfo> { schedules } = client.read_as(&body)?;
    if schedules.is_empty() {
        eprintln!(
            "no schedules; add a [schedules.<name>] table to the config (see docs/schedules.md)"
        );
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|sc| {
            let last = match (&sc.last_fire, sc.last_result) {
                (Some(t), Some(r)) => {
                    format!("{} {}", table::short_time(&t.to_string()), r.as_str())
                }
                _ => "-".to_string(),
            };
            let job = match (&sc.last_job, sc.last_job_state) {
                (Some(id), Some(st)) => format!("{id} {st}"),
                (Some(id), None) => id.to_string(),
                _ => "-".to_string(),
            };
            let state = if !sc.enabled {
                "disabled"
            } else if sc.paused {
                "paused"
            } else {
                "active"
            };
            vec![
                sc.name.clone(),
                sc.cron.clone(),
                sc.timezone.clone(),
                sc.next_fire
                    .map_or("-".to_string(), |t| table::short_time(&t.to_string())),
                last,
                job,
                state.to_string(),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "CRON",
        "TIMEZONE",
        "NEXT FIRE (UTC)",
        "LAST FIRE",
        "LAST JOB",
        "STATE",
    ];
    emit(table::render_fitted(&header, &rows, &table::Fit::default()).as_bytes());
    Ok(exit::OK)
}

/// The failure for a refused schedule request; an unknown schedule, an
/// overlap or a spec the daemon refuses are the user's to fix (exit 1
/// with the daemon's explanation).
fn refused(client: &ApiClient, name: &str, e: ApiError) -> Failure {
    match e.refusal(&[
        ErrorCode::NotFound,
        ErrorCode::Overlap,
        ErrorCode::InvalidSpec,
    ]) {
        Ok(body) => Failure::runtime(format!("schedule {name}: {}", body.error)),
        Err(other) => other.into_failure(client),
    }
}

async fn fire(client: &ApiClient, name: &str) -> Result<i32, Failure> {
    let path = format!("/v1/schedules/{}/run", path_segment(name));
    let job: JobReport = client
        .post_json(&path, &json!({}))
        .await
        .map_err(|e| refused(client, name, e))?;
    match job.id {
        Some(id) => {
            emit(format!("{id}\n").as_bytes());
            Ok(exit::OK)
        }
        None => Err(Failure::runtime(format!(
            "the daemon accepted schedule {name}'s run but sent no job id"
        ))),
    }
}

async fn set_paused(client: &ApiClient, names: &[String], paused: bool) -> Result<i32, Failure> {
    let (verb, done) = if paused {
        ("pause", "paused")
    } else {
        ("resume", "resumed")
    };
    let mut failed = 0;
    for name in names {
        let path = format!("/v1/schedules/{}/{verb}", path_segment(name));
        match client.post_json::<ScheduleInfo, _>(&path, &json!({})).await {
            Ok(_) => println!("{done} {name}"),
            Err(e) => {
                let f = refused(client, name, e);
                if f.code == exit::UNREACHABLE {
                    return Err(f);
                }
                eprintln!("oj: {}", f.message);
                failed += 1;
            }
        }
    }
    if failed == 0 {
        return Ok(exit::OK);
    }
    Err(Failure::runtime(format!(
        "{failed} of {} schedules could not be {done} (see above)",
        names.len()
    )))
}
