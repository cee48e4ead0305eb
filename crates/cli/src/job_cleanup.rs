//! `oj job rm` and `oj job prune` (deleting finished jobs and their logs
//! through `DELETE /v1/jobs/{id}` and `POST /v1/jobs/prune`), and the
//! attempts of retried steps in `oj job show`. Kept apart from the other
//! client commands so each can change without the other.

use std::time::SystemTime;

use oj_api::{ErrorCode, PruneRequest, Pruned, StepReport};

use crate::api_client::ApiClient;
use crate::client_cmds::{job_failure, path_segment};
use crate::exit::{self, Failure};
use crate::table;

/// The states a finished job can be in (what `--state` accepts).
const FINISHED: [&str; 4] = ["done", "failed", "cancelled", "interrupted"];

/// Deletes each job; one line per id, on stdout when removed and on
/// stderr when not. Exit 1 if any could not be removed.
pub async fn rm(client: &ApiClient, ids: &[String]) -> Result<i32, Failure> {
    let mut failed = 0;
    for id in ids {
        match remove_one(client, id).await {
            Ok(()) => println!("removed {id}"),
            Err(f) if f.code == exit::UNREACHABLE => return Err(f),
            Err(f) => {
                eprintln!("oj: {}", exit::terminal_text(&f.message));
                failed += 1;
            }
        }
    }
    if failed == 0 {
        return Ok(exit::OK);
    }
    Err(Failure::runtime(format!(
        "{failed} of {} jobs could not be removed (see above)",
        ids.len()
    )))
}

async fn remove_one(client: &ApiClient, id: &str) -> Result<(), Failure> {
    let path = format!("/v1/jobs/{}", path_segment(id));
    client.delete(&path).await.map_err(|e| {
        match e.refusal(&[ErrorCode::NotFinished, ErrorCode::Needed]) {
            Ok(body) => Failure::runtime(format!("cannot remove job {id}: {}", body.error)),
            Err(other) => {
                let f = job_failure(client, id, other);
                Failure::new(f.code, format!("cannot remove job {id}: {}", f.message))
            }
        }
    })
}

/// The body of `POST /v1/jobs/prune`, or a usage error naming the flag.
pub fn prune_request(
    older_than: Option<&str>,
    state: Option<&str>,
) -> Result<PruneRequest, Failure> {
    let mut body = PruneRequest::default();
    if let Some(d) = older_than {
        humantime::parse_duration(d).map_err(|e| {
            Failure::usage(format!(
                "--older-than {d:?} is not a duration ({e}); use e.g. 7d, 12h or 30m"
            ))
        })?;
        body.older_than = Some(d.to_string());
    }
    if let Some(s) = state {
        if !FINISHED.contains(&s) {
            return Err(Failure::usage(format!(
                "--state {s:?} is not a finished state; use one of: {} (queued and running jobs are never pruned)",
                FINISHED.join(", ")
            )));
        }
        body.state = Some(s.to_string());
    }
    Ok(body)
}

/// Deletes the finished jobs that match and prints how many.
pub async fn prune(
    client: &ApiClient,
    older_than: Option<&str>,
    state: Option<&str>,
) -> Result<i32, Failure> {
    let body = prune_request(older_than, state)?;
    let answer: Pruned = client
        .post_json("/v1/jobs/prune", &body)
        .await
        .map_err(|e| e.into_failure(client))?;
    let n = answer.removed;
    println!("removed {n} finished job{}", if n == 1 { "" } else { "s" });
    Ok(exit::OK)
}

/// For `oj job show`: the runs of every step that ran more than once or
/// waits for its next run, one line each.
pub fn render_attempts(steps: &[StepReport], now: SystemTime) -> String {
    let mut out = String::new();
    for step in steps {
        let attempts = &step.attempts;
        let retry_at = step.retry_at.as_deref();
        if attempts.len() < 2 && retry_at.is_none() {
            continue;
        }
        let name = step.name.as_deref().unwrap_or("?");
        out.push_str(&format!("\nattempts of step {name}:\n"));
        for (i, a) in attempts.iter().enumerate() {
            let (started, ended) = (a.started_at.as_deref(), a.ended_at.as_deref());
            let exit = a
                .exit_code
                .map_or_else(|| "-".to_string(), |c| c.to_string());
            out.push_str(&format!(
                "  #{:<3} exit {exit:<4} {}  {:>8}  {}\n",
                i + 1,
                started.map(table::short_time).unwrap_or_default(),
                table::run_time(started, ended, now),
                a.reason.as_deref().unwrap_or("ok"),
            ));
        }
        if let Some(t) = retry_at {
            out.push_str(&format!(
                "  #{:<3} waits, runs at {}\n",
                attempts.len() + 1,
                table::short_time(t)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prune_flags_are_checked_before_sending() {
        let body = |r: PruneRequest| serde_json::to_value(r).unwrap();
        assert_eq!(body(prune_request(None, None).unwrap()), json!({}));
        assert_eq!(
            body(prune_request(Some("7d"), Some("failed")).unwrap()),
            json!({"older_than": "7d", "state": "failed"})
        );
        let e = prune_request(Some("soon"), None).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(e.message.contains("--older-than"), "{}", e.message);
        let e = prune_request(None, Some("running")).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(e.message.contains("--state \"running\""), "{}", e.message);
    }

    #[test]
    fn attempts_show_for_retried_steps_only() {
        let steps = json!([
            {"name": "once", "state": "done", "attempts": [
                {"exit_code": 0, "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:00:01Z"}]},
            {"name": "flaky", "state": "queued", "retry_at": "2026-01-01T00:00:20Z", "attempts": [
                {"exit_code": 1, "reason": "step flaky exited with code 1",
                 "started_at": "2026-01-01T00:00:01Z", "ended_at": "2026-01-01T00:00:03Z"}]}
        ]);
        let steps: Vec<StepReport> = serde_json::from_value(steps).unwrap();
        let text = render_attempts(&steps, SystemTime::now());
        assert!(!text.contains("step once"), "{text}");
        assert!(text.contains("attempts of step flaky:"), "{text}");
        assert!(text.contains("#1   exit 1"), "{text}");
        assert!(text.contains("step flaky exited with code 1"), "{text}");
        assert!(text.contains("#2   waits, runs at"), "{text}");
    }
}
