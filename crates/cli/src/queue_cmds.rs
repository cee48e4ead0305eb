//! Queues, priorities, dependencies and holds on the command line (SPEC
//! §8.2): the flags `run` and `exec` share (`--queue`, `--priority`,
//! `--after`, `--after-ended`, `--hold`, `--at`, `--in`), `oj job release`,
//! `oj queue list|pause|resume`, and the `waiting` text of a queued job.

use std::time::SystemTime;

use clap::{Args, Subcommand};
use oj_api::{ErrorCode, JobReport, QueueInfo, QueueList};
use oj_config::{Environment, LoadOptions};
use oj_core::{Dependency, JobId, JobSpec, JobState, Need, Timestamp};
use serde_json::Value;

use crate::api_client::ApiClient;
use crate::client_cmds::{connect, emit, job_failure, path_segment, runtime};
use crate::exit::{self, Failure};
use crate::table;

/// Where and when a submitted job runs (flags of `oj run` and `oj exec`).
#[derive(Debug, Clone, Default, Args)]
pub struct QueueFlags {
    /// Queue to wait in [default: the runbook's, else "default"]
    #[arg(long, value_name = "Q")]
    pub queue: Option<String>,
    /// Priority from -1000 to 1000; higher starts first [default: 0]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Start only after job ID ended done; cancelled if it ends otherwise (repeatable)
    #[arg(long, value_name = "ID")]
    pub after: Vec<String>,
    /// Start only after job ID ended, however it ended (repeatable)
    #[arg(long, value_name = "ID")]
    pub after_ended: Vec<String>,
    /// Keep the job queued until `oj job release ID`
    #[arg(long)]
    pub hold: bool,
    /// Do not start before TIME: RFC 3339 (2026-05-01T18:00:00Z) or HH:MM local time (the next one)
    #[arg(long, value_name = "TIME", conflicts_with = "in_")]
    pub at: Option<String>,
    /// Do not start before this long from now, e.g. 10m or 2h
    #[arg(long = "in", id = "in_", value_name = "D")]
    pub in_: Option<String>,
}

impl QueueFlags {
    /// Sets the spec's queue fields from the flags (flags win over the runbook).
    pub fn apply(&self, spec: &mut JobSpec, now: SystemTime) -> Result<(), Failure> {
        if let Some(q) = &self.queue {
            spec.queue = q.clone();
        }
        if let Some(p) = self.priority {
            spec.priority = p;
        }
        for (ids, need, flag) in [
            (&self.after, Need::Done, "--after"),
            (&self.after_ended, Need::Ended, "--after-ended"),
        ] {
            for id in ids {
                let job = id
                    .trim()
                    .parse::<JobId>()
                    .map_err(|e| Failure::usage(format!("{flag} {id:?}: {e}")))?;
                spec.after.push(Dependency { job, need });
            }
        }
        if self.hold {
            spec.hold = true;
        }
        if let Some(at) = &self.at {
            spec.not_before = Some(parse_at(at, now).map_err(Failure::usage)?);
        }
        if let Some(d) = &self.in_ {
            let d = humantime::parse_duration(d.trim()).map_err(|e| {
                Failure::usage(format!(
                    "--in {d:?} is not a duration ({e}); write e.g. 30s, 10m or 2h"
                ))
            })?;
            spec.not_before = Some(Timestamp(now + d));
        }
        spec.validate()
            .map_err(|e| Failure::usage(format!("cannot submit this job: {e}")))
    }
}

/// `--at`: an RFC 3339 time, or `HH:MM` local time (today, or tomorrow
/// when it has passed).
pub fn parse_at(text: &str, now: SystemTime) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(Timestamp(SystemTime::from(ts)));
    }
    let bad = || {
        format!(
            "--at {text:?} is not a time; write an RFC 3339 time (2026-05-01T18:00:00Z, 2026-05-01T20:00:00+02:00) or HH:MM in local time (18:30)"
        )
    };
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) || text.len() > 5 {
        return Err(bad());
    }
    let now = jiff::Timestamp::try_from(now).map_err(|e| e.to_string())?;
    let zone = jiff::tz::TimeZone::system();
    let today = now.to_zoned(zone.clone()).date();
    let time = jiff::civil::time(h, m, 0, 0);
    let at = |date: jiff::civil::Date| {
        date.to_datetime(time)
            .to_zoned(zone.clone())
            .map(|z| z.timestamp())
            .map_err(|e| format!("--at {text:?}: {e}"))
    };
    let mut t = at(today)?;
    if t <= now {
        t = at(today.tomorrow().map_err(|e| e.to_string())?)?;
    }
    Ok(Timestamp(SystemTime::from(t)))
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queues: name, limit, running, queued, paused
    List {
        /// Print {"queues": [...]} as JSON (the body of GET /v1/queues)
        #[arg(long)]
        json: bool,
    },
    /// Pause queues: their running jobs go on, none of their jobs starts
    Pause {
        /// Queue names
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Resume paused queues
    Resume {
        /// Queue names
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
}

/// `oj queue …`.
pub fn run(cmd: QueueCommand, opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    let (_loaded, client) = connect(opts, env)?;
    let rt = runtime()?;
    match cmd {
        QueueCommand::List { json } => rt.block_on(list(&client, json)),
        QueueCommand::Pause { names } => rt.block_on(pause_all(&client, &names, true)),
        QueueCommand::Resume { names } => rt.block_on(pause_all(&client, &names, false)),
    }
}

async fn list(client: &ApiClient, json: bool) -> Result<i32, Failure> {
    // Read raw first: `--json` prints the body as the daemon sent it.
    let body: Value = client
        .get_json("/v1/queues")
        .await
        .map_err(|e| e.into_failure(client))?;
    if json {
        emit(
            format!(
                "{}\n",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            )
            .as_bytes(),
        );
        return Ok(exit::OK);
    }
    let queues: QueueList = client.read_as(&body)?;
    emit(render_queues(&queues).as_bytes());
    Ok(exit::OK)
}

fn render_queues(list: &QueueList) -> String {
    let rows: Vec<Vec<String>> = list
        .queues
        .iter()
        .map(|q| {
            vec![
                q.name.clone(),
                q.max_concurrent.to_string(),
                q.running.to_string(),
                q.queued.to_string(),
                if q.paused { "paused" } else { "-" }.into(),
            ]
        })
        .collect();
    table::render_fitted(
        &["QUEUE", "LIMIT", "RUNNING", "QUEUED", "PAUSED"],
        &rows,
        &table::Fit::default(),
    )
}

async fn pause_all(client: &ApiClient, names: &[String], pause: bool) -> Result<i32, Failure> {
    let (verb, done) = if pause {
        ("pause", "paused")
    } else {
        ("resume", "resumed")
    };
    let mut failed = 0;
    for name in names {
        let path = format!("/v1/queues/{}/{verb}", path_segment(name));
        match client
            .post_json::<QueueInfo, _>(&path, &serde_json::json!({}))
            .await
        {
            Ok(_) => println!("{done} queue {name}"),
            Err(e) => match e.refusal(&[ErrorCode::UnknownQueue]) {
                Ok(body) => {
                    eprintln!("oj: cannot {verb} queue {name}: {}", body.error);
                    failed += 1;
                }
                Err(e) => return Err(e.into_failure(client)),
            },
        }
    }
    if failed == 0 {
        Ok(exit::OK)
    } else {
        Err(Failure::runtime(format!(
            "{failed} of {} queues could not be {done} (see above)",
            names.len()
        )))
    }
}

/// `oj job release ID...`: one line per id; exit 1 if any was not released.
pub async fn release(client: &ApiClient, ids: &[String]) -> Result<i32, Failure> {
    let mut failed = 0;
    for id in ids {
        let path = format!("/v1/jobs/{}/release", path_segment(id));
        let refused = match client
            .post_json::<JobReport, _>(&path, &serde_json::json!({}))
            .await
        {
            Ok(_) => {
                println!("released {id}");
                continue;
            }
            Err(e) => match e.refusal(&[ErrorCode::NotHeld]) {
                Ok(body) => body.error,
                Err(e) => {
                    let f = job_failure(client, id, e);
                    if f.code == exit::UNREACHABLE {
                        return Err(f);
                    }
                    f.message
                }
            },
        };
        eprintln!("oj: cannot release job {id}: {refused}");
        failed += 1;
    }
    if failed == 0 {
        Ok(exit::OK)
    } else {
        Err(Failure::runtime(format!(
            "{failed} of {} jobs could not be released (see above)",
            ids.len()
        )))
    }
}

/// A job's state as `oj job list` shows it: `queued (after 0mx49xbba000)`
/// while it waits.
pub fn state_text(job: &JobReport) -> String {
    match job.waiting.as_ref().and_then(|w| w.detail.as_deref()) {
        Some(detail) if job.is(JobState::Queued) => format!("queued ({detail})"),
        _ => job.state_str().to_string(),
    }
}

/// The lines `oj job show` adds: queue, priority, dependencies, hold,
/// start time and why the job waits.
pub fn show_fields(job: &JobReport) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(q) = &job.queue {
        out.push(("queue", q.clone()));
    }
    if job.priority != 0 {
        out.push(("priority", job.priority.to_string()));
    }
    let after: Vec<String> = job
        .after
        .iter()
        .map(|d| {
            let id = d.job.as_deref().unwrap_or("?");
            match d.need.as_deref() {
                Some("ended") => format!("{id} (ended)"),
                _ => format!("{id} (done)"),
            }
        })
        .collect();
    if !after.is_empty() {
        out.push(("after", after.join(", ")));
    }
    if job.hold {
        out.push(("hold", "yes (oj job release to start it)".into()));
    }
    if let Some(t) = &job.not_before {
        out.push(("not before", table::short_time(t)));
    }
    if let Some(w) = &job.waiting {
        let reason = w.reason.as_deref().unwrap_or("?");
        let detail = w.detail.as_deref().unwrap_or("");
        out.push(("waiting", format!("{reason}: {detail}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn at_takes_rfc3339_and_local_clock_times() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let t = parse_at("2026-05-01T18:00:00Z", now).unwrap();
        assert_eq!(t.rfc3339(), "2026-05-01T18:00:00.000Z");
        let t = parse_at("2026-05-01T20:00:00+02:00", now).unwrap();
        assert_eq!(t.rfc3339(), "2026-05-01T18:00:00.000Z");
        let t = parse_at("18:30", now).unwrap();
        let ahead = t.0.duration_since(now).unwrap();
        assert!(ahead <= Duration::from_secs(24 * 3600), "{ahead:?}");
        for bad in ["25:00", "18:61", "soon", "18", "2026-05-01"] {
            let e = parse_at(bad, now).unwrap_err();
            assert!(e.contains("HH:MM"), "{bad}: {e}");
        }
    }

    #[test]
    fn flags_fill_the_spec() {
        let mut spec = crate::client_cmds::exec_spec(None, &["true".into()]).unwrap();
        let flags = QueueFlags {
            queue: Some("build".into()),
            priority: Some(-3),
            after: vec!["0mx49xbba000".into()],
            after_ended: vec!["0mx49xbba001".into()],
            hold: true,
            at: None,
            in_: Some("10m".into()),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        flags.apply(&mut spec, now).unwrap();
        assert_eq!(spec.queue, "build");
        assert_eq!(spec.priority, -3);
        assert_eq!(spec.after.len(), 2);
        assert_eq!(spec.after[1].need, Need::Ended);
        assert!(spec.hold);
        assert_eq!(
            spec.not_before,
            Some(Timestamp(now + Duration::from_secs(600)))
        );
        let e = QueueFlags {
            priority: Some(5000),
            ..Default::default()
        }
        .apply(&mut spec, now)
        .unwrap_err();
        assert!(e.message.contains("-1000 to 1000"), "{}", e.message);
        let e = QueueFlags {
            after: vec!["NOT AN ID".into()],
            ..Default::default()
        }
        .apply(&mut spec, now)
        .unwrap_err();
        assert!(e.message.contains("--after"), "{}", e.message);
    }

    #[test]
    fn a_waiting_job_says_why() {
        let read = |v| serde_json::from_value::<JobReport>(v).unwrap();
        let job = read(
            serde_json::json!({"state": "queued", "waiting": {"reason": "dependency", "detail": "after 0mx49xbba000"}}),
        );
        assert_eq!(state_text(&job), "queued (after 0mx49xbba000)");
        assert_eq!(
            state_text(&read(serde_json::json!({"state": "done"}))),
            "done"
        );
        let fields = show_fields(&job);
        assert!(fields.contains(&("waiting", "dependency: after 0mx49xbba000".into())));
    }
}
