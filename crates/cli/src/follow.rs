//! Following jobs to their end: `oj job logs --follow`, `--wait` of `run`
//! and `exec`, and `oj job wait`.
//!
//! Why it exists: "did it work?" is the question behind every one of these
//! commands, so they all end the same way: the exit status says it (0 for
//! `done`, 1 otherwise, 124 when `oj job wait --timeout` ran out) and one
//! final line on stderr names the state. A job that waits in the queue says
//! so ("queued, 3 ahead") instead of waiting silently, and a log stream that
//! breaks midway is an error, never a partial log with exit 0.
//!
//! Nothing here polls: each waits on the daemon's event stream
//! (`GET /v1/events?job=ID`, which opens with the job as it is now, so an
//! end that came first is not missed) and the pushed log stream. A job that
//! retention deleted right after it ended still reports its end state: the
//! stream carries its last JSON with `"removed": true`.

use std::time::{Duration, SystemTime};

use oj_api::{ErrorCode, EventKind, JobPage, JobReport};
use oj_core::JobState;

use crate::api_client::{ApiClient, ApiError};
use crate::client_cmds::{emit, job_failure, path_segment};
use crate::events_client::{EventStream, OpenError, StreamEnd};
use crate::exit::{self, Failure};
use crate::table;
use crate::term::Style;

/// Job ids one event stream may filter on (the daemon's limit).
const IDS_PER_STREAM: usize = 1000;
/// The exit code of a wait that ran out of time (as timeout(1)).
pub const TIMED_OUT: i32 = 124;

/// Streams the job's logs to stdout until it ends and returns the final
/// job. A queued job first reports its place in the queue on stderr.
pub async fn follow(client: &ApiClient, id: &str, style: Style) -> Result<JobReport, Failure> {
    let ids = [id.to_string()];
    let mut watch = JobWatch::open(client, &ids).await?;
    let mut job = match &mut watch {
        Some(w) => w.next_job().await?,
        // An older daemon: its log stream alone waits for the end.
        None => get_job(client, id).await?,
    };
    if let Some(w) = &mut watch
        && job.is(JobState::Queued)
    {
        job = wait_in_queue(client, w, job, style).await?;
    }
    if job.removed {
        // Deleted by retention right after it ended: its log is gone.
        return Ok(job);
    }
    let path = format!("/v1/jobs/{}/logs?follow=true", path_segment(id));
    match client.get_stream(&path).await {
        Ok(mut resp) => loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => emit(&chunk),
                Ok(None) => break,
                Err(e) => return Err(broken_stream(client, id, &e).await),
            }
        },
        // Deleted before its log was asked for (retention): the event
        // stream still tells how it ended. Other refusals: logs are a
        // nicety; the state is what the exit status reports.
        Err(ApiError::Status { .. }) => {}
        Err(e @ ApiError::Failure(_)) => return Err(e.into_failure(client)),
    }
    let Some(watch) = &mut watch else {
        return get_job(client, id).await;
    };
    while !job.is_terminal() {
        job = watch.next_job().await?;
    }
    Ok(job)
}

/// The daemon's event stream about some jobs: each one as it is when the
/// stream opens, then every change to them.
struct JobWatch<'a> {
    client: &'a ApiClient,
    ids: &'a [String],
    stream: EventStream,
    /// The id of the last event read.
    last_id: Option<u64>,
}

impl<'a> JobWatch<'a> {
    /// `None` when the daemon has no event stream (an older one).
    async fn open(
        client: &'a ApiClient,
        ids: &'a [String],
    ) -> Result<Option<JobWatch<'a>>, Failure> {
        let stream = match Self::connect(client, ids).await {
            Ok(s) => s,
            Err(OpenError::NotAStream) => return Ok(None),
            Err(e) => return Err(Self::refused(client, ids, e).await),
        };
        Ok(Some(JobWatch {
            client,
            ids,
            stream,
            last_id: None,
        }))
    }

    async fn connect(client: &ApiClient, ids: &[String]) -> Result<EventStream, OpenError> {
        let query = ids
            .iter()
            .map(|id| format!("job={}", path_segment(id)))
            .collect::<Vec<_>>()
            .join("&");
        EventStream::open(client, &format!("/v1/events?{query}")).await
    }

    /// A stream again after a reset or a broken connection.
    async fn reconnect(&mut self) -> Result<(), Failure> {
        self.stream = match Self::connect(self.client, self.ids).await {
            Ok(s) => s,
            Err(e) => return Err(Self::refused(self.client, self.ids, e).await),
        };
        Ok(())
    }

    /// The failure for a stream that could not be opened.
    async fn refused(client: &ApiClient, ids: &[String], e: OpenError) -> Failure {
        if let OpenError::Api(api) = &e
            && api.code() == Some(&ErrorCode::NotFound)
        {
            // Name the id the daemon does not know.
            for id in ids {
                if let Err(f) = get_job(client, id).await {
                    return f;
                }
            }
            return e.into_failure(client);
        }
        waiting_failure(ids, e.into_failure(client))
    }

    /// The next state of one of the jobs (the first ones are the states
    /// when the stream opened).
    async fn next_job(&mut self) -> Result<JobReport, Failure> {
        loop {
            match self.stream.next().await {
                Ok(ev) if ev.event_kind() == EventKind::Job => {
                    self.last_id = ev.id.or(self.last_id);
                    // A frame that is not a job (not from an oj daemon) says nothing.
                    if let Some(job) = ev.data_as() {
                        return Ok(job);
                    }
                }
                // Fell behind: start again from the jobs as they are now.
                Ok(ev) if ev.event_kind() == EventKind::Reset => self.reconnect().await?,
                Ok(_) => {}
                // The stream ends when the daemon's engine stops: the
                // daemon is exiting before the job ended.
                Err(StreamEnd::Closed) => {
                    let f = Failure::new(
                        exit::UNREACHABLE,
                        format!("the daemon at {} stopped", self.client.endpoint().display()),
                    );
                    return Err(waiting_failure(self.ids, f));
                }
                // The connection broke: if the daemon still answers, carry
                // on with a new stream.
                Err(StreamEnd::Broken) => self.reconnect().await?,
            }
        }
    }
}

/// The daemon went away (or refused) while jobs were waited for.
fn waiting_failure(ids: &[String], f: Failure) -> Failure {
    match ids {
        [id] if f.code == exit::UNREACHABLE => unreachable_while_waiting(id, f),
        _ if f.code == exit::UNREACHABLE => Failure::new(
            f.code,
            format!(
                "stopped waiting for {}: {}; once the daemon runs again, `oj job show ID` \
                 tells how each job ended",
                ids.join(", "),
                f.message
            ),
        ),
        _ => f,
    }
}

/// A log stream that ended without its last chunk. If the daemon is gone,
/// that is the failure (69, with how to find the job again); if it still
/// answers, it hit an error while reading the log: exit 1, never a partial
/// log that looks whole.
pub async fn broken_stream(client: &ApiClient, id: &str, e: &reqwest::Error) -> Failure {
    let cause = client.transport_error(e).into_failure(client).message;
    let status = client
        .get_json::<JobReport>(&format!("/v1/jobs/{}", path_segment(id)))
        .await;
    match status {
        Err(ApiError::Failure(f)) if f.code == exit::UNREACHABLE => {
            unreachable_while_waiting(id, f)
        }
        _ => Failure::runtime(format!(
            "the log of job {id} was cut off by the daemon ({cause}); the output above is \
             incomplete: run `oj job logs {id}` again, and check the daemon's log if it repeats"
        )),
    }
}

/// While the job is queued, says on stderr how many jobs are ahead of it,
/// and again whenever that changes: one look at the queue, then every
/// job's changes from the event stream (resumed right after the job's own
/// first event, so nothing in between is missed).
async fn wait_in_queue(
    client: &ApiClient,
    watch: &mut JobWatch<'_>,
    mut job: JobReport,
    style: Style,
) -> Result<JobReport, Failure> {
    let id = job.id.clone().unwrap_or_default();
    let mut ahead = jobs_ahead(client, &job).await;
    let say = |n: usize| eprintln!("oj: {}", queued_line(&id, n, style));
    say(ahead.len());
    let all = match watch.last_id {
        Some(n) => EventStream::open(client, &format!("/v1/events?after={n}"))
            .await
            .ok(),
        None => None,
    };
    if let Some(mut all) = all {
        while let Ok(ev) = all.next().await {
            match ev.event_kind() {
                EventKind::Reset => break,
                EventKind::Job => {}
                _ => continue,
            }
            let Some(other) = ev.data_as::<JobReport>() else {
                continue;
            };
            let (Some(other_id), Some(state)) = (&other.id, &other.state) else {
                continue;
            };
            let started = !state.is(JobState::Queued);
            if *other_id == id {
                job = other;
                if started {
                    return Ok(job);
                }
            } else if started && ahead.remove(other_id) {
                say(ahead.len());
            }
        }
    }
    // Without the whole stream, the job's own events still tell its start.
    while job.is(JobState::Queued) {
        job = watch.next_job().await?;
    }
    Ok(job)
}

/// `job X is queued (2 ahead); …`, or `… queued, next to start; …` when
/// no job is ahead of it (it waits for a free slot).
fn queued_line(id: &str, ahead: usize, style: Style) -> String {
    let place = if ahead == 0 {
        ", next to start".to_string()
    } else {
        format!(" ({ahead} ahead)")
    };
    format!(
        "job {id} is {}{place}; its output follows once it starts",
        style.state("queued")
    )
}

/// The queued jobs submitted before `job` (they start first). A daemon
/// that cannot list them counts as none ahead: the line is a hint.
async fn jobs_ahead(client: &ApiClient, job: &JobReport) -> std::collections::HashSet<String> {
    let (Some(id), Some(created)) = (
        job.id.as_deref(),
        job.created_at.as_deref().and_then(table::parse_time),
    ) else {
        return Default::default();
    };
    let Ok(page) = client
        .get_json::<JobPage<JobReport>>("/v1/jobs?status=queued&limit=1000")
        .await
    else {
        return Default::default();
    };
    page.jobs
        .iter()
        .filter_map(|j| {
            let t = j.created_at.as_deref().and_then(table::parse_time)?;
            Some((t, j.id.as_deref()?))
        })
        // Submission order; the id breaks ties within a millisecond.
        .filter(|&(t, other)| (t, other) < (created, id))
        .map(|(_, other)| other.to_string())
        .collect()
}

async fn get_job(client: &ApiClient, id: &str) -> Result<JobReport, Failure> {
    let path = format!("/v1/jobs/{}", path_segment(id));
    client.get_json(&path).await.map_err(|e| {
        let f = job_failure(client, id, e);
        if f.code == exit::UNREACHABLE {
            unreachable_while_waiting(id, f)
        } else {
            f
        }
    })
}

/// The job lives on in the daemon's state; say how to find it again.
fn unreachable_while_waiting(id: &str, f: Failure) -> Failure {
    Failure::new(
        f.code,
        format!(
            "stopped waiting for job {id}: {}; once the daemon runs again, \
             `oj job show {id}` tells how the job ended",
            f.message
        ),
    )
}

/// The end of a follow: `done` prints its final line and exits 0; any other
/// state is the failure (one line with the state and the error), exit 1.
pub fn finish(id: &str, job: &JobReport, style: Style) -> Result<i32, Failure> {
    match final_line(id, job, style) {
        (true, line) => {
            eprintln!("oj: {line}");
            Ok(exit::OK)
        }
        (false, line) => Err(Failure::runtime(line).already_escaped()),
    }
}

/// Whether an ended job is `done`, and the line that says how it ended
/// (what the daemon sent is escaped; the colour is ours).
fn final_line(id: &str, job: &JobReport, style: Style) -> (bool, String) {
    let state_raw =
        table::escape_for_terminal(job.state.as_ref().map_or("unknown", |s| s.as_str()));
    let state = state_raw.as_ref();
    let name = table::escape_for_terminal(job.name.as_deref().unwrap_or("?"));
    let id = table::escape_for_terminal(id);
    if job.is(JobState::Done) {
        let took = table::run_time(
            job.started_at.as_deref(),
            job.ended_at.as_deref(),
            SystemTime::now(),
        );
        return (
            true,
            format!("job {id} ({name}) {} after {took}", style.state("done")),
        );
    }
    let error = table::escape_for_terminal(&error_of(job)).into_owned();
    // "was cancelled before it started", not "ended cancelled: cancelled".
    let how = match error.strip_prefix(state) {
        Some(rest)
            if matches!(state, "cancelled" | "interrupted")
                && (rest.is_empty() || rest.starts_with(' ')) =>
        {
            format!("was {}{rest}", style.state(state))
        }
        _ => format!("ended {}: {error}", style.state(state)),
    };
    (
        false,
        format!("job {id} ({name}) {how}; `oj job logs {id}` shows its output"),
    )
}

/// What went wrong with a job that did not end `done`.
fn error_of(job: &JobReport) -> String {
    job.error
        .clone()
        .or_else(|| failed_step(job))
        .unwrap_or_else(|| "no error recorded".into())
}

fn failed_step(job: &JobReport) -> Option<String> {
    let step = job.steps.iter().find(|s| s.is(JobState::Failed))?;
    let name = step.name.as_deref()?;
    Some(match step.exit_code {
        Some(code) => format!("step {name} exited with code {code}"),
        None => format!("step {name} failed"),
    })
}

/// `oj job wait ID... [--timeout D]`: every job to its end. Each job's end
/// is one line on stderr as it happens; exit 0 if all are `done`, 1 if any
/// is not, 124 (naming what still runs) when the timeout comes first.
pub async fn wait_all(
    client: &ApiClient,
    ids: &[String],
    timeout: Option<Duration>,
    style: Style,
) -> Result<i32, Failure> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut unique: Vec<String> = Vec::new();
    for id in ids {
        if !unique.contains(id) {
            unique.push(id.clone());
        }
    }
    let mut not_done: Vec<String> = Vec::new();
    let mut left: Vec<&String> = unique.iter().collect();
    for group in unique.chunks(IDS_PER_STREAM) {
        let Some(mut watch) = JobWatch::open(client, group).await? else {
            return Err(Failure::runtime(format!(
                "cannot wait at {}: {}",
                client.endpoint().display(),
                crate::events_client::NO_STREAM
            )));
        };
        let mut pending: Vec<&String> = group.iter().collect();
        while !pending.is_empty() {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, watch.next_job()).await {
                    Ok(next) => next,
                    Err(_) => return Err(timed_out(timeout.unwrap_or_default(), &left)),
                },
                None => watch.next_job().await,
            };
            let job = next?;
            let (Some(id), Some(state)) = (job.id.as_deref(), &job.state) else {
                continue;
            };
            if !state.is_terminal() || !pending.iter().any(|p| p.as_str() == id) {
                continue;
            }
            let state = state.as_str();
            pending.retain(|p| p.as_str() != id);
            left.retain(|p| p.as_str() != id);
            let (done, line) = final_line(id, &job, style);
            if !done && ids.len() == 1 {
                // One job: its end line is the whole story, said once.
                return Err(Failure::runtime(line).already_escaped());
            }
            eprintln!("oj: {line}");
            if !done {
                not_done.push(format!("{id} {state}"));
            }
        }
    }
    if not_done.is_empty() {
        return Ok(exit::OK);
    }
    Err(Failure::runtime(format!(
        "{} of {} job{} did not end done: {}",
        not_done.len(),
        unique.len(),
        if unique.len() == 1 { "" } else { "s" },
        not_done.join(", ")
    )))
}

/// `oj job wait --timeout` ran out: name what still runs (exit 124).
fn timed_out(timeout: Duration, pending: &[&String]) -> Failure {
    let waiting = pending
        .iter()
        .map(|id| id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    Failure::new(
        TIMED_OUT,
        format!(
            "timed out after {} waiting for {waiting}; the job{} keep{} running \
             (`oj job wait` again, or `oj job cancel ID`)",
            humantime::format_duration(timeout),
            if pending.len() == 1 { "" } else { "s" },
            if pending.len() == 1 { "s" } else { "" },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(v: serde_json::Value) -> JobReport {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn finish_reports_state_and_error() {
        let plain = Style::default();
        assert_eq!(
            finish("x", &job(serde_json::json!({"state": "done"})), plain).unwrap(),
            0
        );
        let f = finish(
            "x",
            &job(serde_json::json!({"state": "failed", "name": "b",
                "steps": [{"name": "t", "state": "failed", "exit_code": 3}]})),
            plain,
        )
        .unwrap_err();
        assert_eq!(f.code, exit::RUNTIME);
        assert!(
            f.message.contains("failed") && f.message.contains("code 3"),
            "{}",
            f.message
        );
        let f = finish(
            "x",
            &job(serde_json::json!({"state": "cancelled", "error": "cancelled by request"})),
            plain,
        )
        .unwrap_err();
        assert!(
            f.message.contains("was cancelled by request"),
            "{}",
            f.message
        );
        // The state is not said twice.
        let f = finish(
            "x",
            &job(serde_json::json!({"state": "cancelled", "name": "b", "error": "cancelled"})),
            plain,
        )
        .unwrap_err();
        assert_eq!(
            f.message,
            "job x (b) was cancelled; `oj job logs x` shows its output"
        );
        let f = finish(
            "x",
            &job(serde_json::json!({"state": "interrupted", "name": "b", "error": "daemon restarted"})),
            plain,
        )
        .unwrap_err();
        assert!(
            f.message.contains("ended interrupted: daemon restarted"),
            "{}",
            f.message
        );
    }

    #[test]
    fn the_queued_line_says_next_to_start_rather_than_zero_ahead() {
        let plain = Style::default();
        assert_eq!(
            queued_line("x", 0, plain),
            "job x is queued, next to start; its output follows once it starts"
        );
        assert!(queued_line("x", 2, plain).contains("queued (2 ahead);"));
    }

    #[test]
    fn an_unknown_state_is_said_as_sent() {
        let f = finish(
            "x",
            &job(serde_json::json!({"state": "lost", "name": "b"})),
            Style::default(),
        )
        .unwrap_err();
        assert!(
            f.message.contains("ended lost: no error recorded"),
            "{}",
            f.message
        );
    }
}
