//! Following jobs to their end: `oj job logs --follow`, `--wait` of `run`
//! and `exec`, and `oj job wait`.
//!
//! Why it exists: "did it work?" is the question behind every one of these
//! commands, so they all end the same way: the exit status says it (0 for
//! `done`, 1 otherwise, 124 when `oj job wait --timeout` ran out) and one
//! final line on stderr names the state. A job that waits in the queue says
//! so ("queued, 3 ahead") instead of waiting silently, and a log stream that
//! breaks midway is an error, never a partial log with exit 0.

use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use serde_json::Value;

use crate::api_client::{ApiClient, ApiError};
use crate::client_cmds::{emit, job_failure, path_segment, str_field};
use crate::exit::{self, Failure};
use crate::table;
use crate::term::Style;

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);
/// How often a queued job's place in the queue is looked up.
const QUEUE_POLL: Duration = Duration::from_millis(500);
/// The exit code of a wait that ran out of time (as timeout(1)).
pub const TIMED_OUT: i32 = 124;

pub fn is_terminal(state: &str) -> bool {
    matches!(state, "done" | "failed" | "cancelled" | "interrupted")
}

/// Streams the job's logs to stdout until it ends and returns the final
/// job. A queued job first reports its place in the queue on stderr.
pub async fn follow(client: &ApiClient, id: &str, style: Style) -> Result<Value, Failure> {
    wait_while_queued(client, id, style).await?;
    let path = format!("/v1/jobs/{}/logs?follow=true", path_segment(id));
    match client.get_stream(&path).await {
        Ok(mut resp) => loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => emit(&chunk),
                Ok(None) => break,
                Err(e) => return Err(broken_stream(client, id, &e).await),
            }
        },
        Err(ApiError::Status {
            status: StatusCode::NOT_FOUND,
            message,
        }) => {
            return Err(job_failure(
                client,
                id,
                ApiError::Status {
                    status: StatusCode::NOT_FOUND,
                    message,
                },
            ));
        }
        // Logs are a nicety; the state is what the exit status reports.
        Err(ApiError::Status { .. }) => {}
        Err(e @ ApiError::Failure(_)) => return Err(e.into_failure(client)),
    }
    wait_ended(client, id).await
}

/// A log stream that ended without its last chunk. If the daemon is gone,
/// that is the failure (69, with how to find the job again); if it still
/// answers, it hit an error while reading the log: exit 1, never a partial
/// log that looks whole.
pub async fn broken_stream(client: &ApiClient, id: &str, e: &reqwest::Error) -> Failure {
    let cause = client.transport_error(e).into_failure(client).message;
    let status = client
        .get_json(&format!("/v1/jobs/{}", path_segment(id)))
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

/// While the job is queued, prints `queued (n ahead)` on stderr whenever
/// its place changes; returns once it left the queue.
async fn wait_while_queued(client: &ApiClient, id: &str, style: Style) -> Result<(), Failure> {
    let mut shown: Option<usize> = None;
    loop {
        let job = get_job(client, id).await?;
        if str_field(&job, "state") != Some("queued") {
            return Ok(());
        }
        let ahead = jobs_ahead(client, &job).await;
        if shown != Some(ahead) {
            eprintln!("oj: {}", queued_line(id, ahead, style));
            shown = Some(ahead);
        }
        tokio::time::sleep(QUEUE_POLL).await;
    }
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

/// How many queued jobs were submitted before `job` (they start first).
/// A daemon that cannot list them counts as "0 ahead": the line is a hint.
async fn jobs_ahead(client: &ApiClient, job: &Value) -> usize {
    let (Some(id), Some(created)) = (
        str_field(job, "id"),
        str_field(job, "created_at").and_then(table::parse_time),
    ) else {
        return 0;
    };
    let Ok(page) = client.get_json("/v1/jobs?status=queued&limit=1000").await else {
        return 0;
    };
    page.get("jobs")
        .and_then(Value::as_array)
        .map(|jobs| {
            jobs.iter()
                .filter_map(|j| {
                    let t = str_field(j, "created_at").and_then(table::parse_time)?;
                    Some((t, str_field(j, "id")?))
                })
                // Submission order; the id breaks ties within a millisecond.
                .filter(|&(t, other)| (t, other) < (created, id))
                .count()
        })
        .unwrap_or(0)
}

async fn get_job(client: &ApiClient, id: &str) -> Result<Value, Failure> {
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

/// Polls the job until it ended.
async fn wait_ended(client: &ApiClient, id: &str) -> Result<Value, Failure> {
    loop {
        let job = get_job(client, id).await?;
        if str_field(&job, "state").is_some_and(is_terminal) {
            return Ok(job);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The end of a follow: `done` prints its final line and exits 0; any other
/// state is the failure (one line with the state and the error), exit 1.
pub fn finish(id: &str, job: &Value, style: Style) -> Result<i32, Failure> {
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
fn final_line(id: &str, job: &Value, style: Style) -> (bool, String) {
    let state_raw = table::escape_for_terminal(str_field(job, "state").unwrap_or("unknown"));
    let state = state_raw.as_ref();
    let name = table::escape_for_terminal(str_field(job, "name").unwrap_or("?"));
    let id = table::escape_for_terminal(id);
    if state == "done" {
        let took = table::run_time(
            str_field(job, "started_at"),
            str_field(job, "ended_at"),
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
fn error_of(job: &Value) -> String {
    str_field(job, "error")
        .map(str::to_string)
        .or_else(|| failed_step(job))
        .unwrap_or_else(|| "no error recorded".into())
}

fn failed_step(job: &Value) -> Option<String> {
    let steps = job.get("steps")?.as_array()?;
    let step = steps
        .iter()
        .find(|s| str_field(s, "state") == Some("failed"))?;
    let name = str_field(step, "name")?;
    Some(match step.get("exit_code").and_then(Value::as_i64) {
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
    let deadline = timeout.map(|t| Instant::now() + t);
    // Unknown ids are a mistake to report before any waiting.
    for id in ids {
        get_job(client, id).await?;
    }
    let mut pending: Vec<&String> = ids.iter().collect();
    let mut not_done: Vec<String> = Vec::new();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            let job = get_job(client, id).await?;
            let state = str_field(&job, "state").unwrap_or("unknown");
            if !is_terminal(state) {
                still.push(id);
                continue;
            }
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
        pending = still;
        if pending.is_empty() {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let waiting = pending
                .iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Failure::new(
                TIMED_OUT,
                format!(
                    "timed out after {} waiting for {waiting}; the job{} keep{} running \
                     (`oj job wait` again, or `oj job cancel ID`)",
                    humantime::format_duration(timeout.unwrap_or_default()),
                    if pending.len() == 1 { "" } else { "s" },
                    if pending.len() == 1 { "s" } else { "" },
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    if not_done.is_empty() {
        Ok(exit::OK)
    } else {
        Err(Failure::runtime(format!(
            "{} of {} job{} did not end done: {}",
            not_done.len(),
            ids.len(),
            if ids.len() == 1 { "" } else { "s" },
            not_done.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reports_state_and_error() {
        let plain = Style::default();
        assert_eq!(
            finish("x", &serde_json::json!({"state": "done"}), plain).unwrap(),
            0
        );
        let f = finish(
            "x",
            &serde_json::json!({"state": "failed", "name": "b",
                "steps": [{"name": "t", "state": "failed", "exit_code": 3}]}),
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
            &serde_json::json!({"state": "cancelled", "error": "cancelled by request"}),
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
            &serde_json::json!({"state": "cancelled", "name": "b", "error": "cancelled"}),
            plain,
        )
        .unwrap_err();
        assert_eq!(
            f.message,
            "job x (b) was cancelled; `oj job logs x` shows its output"
        );
        let f = finish(
            "x",
            &serde_json::json!({"state": "interrupted", "name": "b", "error": "daemon restarted"}),
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
    fn terminal_states() {
        for s in ["done", "failed", "cancelled", "interrupted"] {
            assert!(is_terminal(s), "{s}");
        }
        assert!(!is_terminal("queued") && !is_terminal("running"));
    }
}
