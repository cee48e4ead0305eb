//! `oj job …`: list (paged), show, logs, cancel, and the dispatch to the
//! job commands that live elsewhere (wait, rerun, release, rm, prune).

use std::time::SystemTime;

use oj_api::{ErrorCode, JobPage, JobReport};
use oj_config::{Environment, LoadOptions};
use serde_json::Value;

use super::{STATES, connect, emit, emit_line, job_failure, path_segment, pretty, runtime};
use crate::api_client::ApiClient;
use crate::cli::JobCommand;
use crate::exit::{self, Failure};
use crate::follow;
use crate::table;
use crate::term::{Stream, Style};

pub fn job(cmd: JobCommand, opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    // A bad --status is a usage error before anything else happens.
    if let JobCommand::List {
        status: Some(s), ..
    } = &cmd
        && !STATES.contains(&s.as_str())
    {
        return Err(Failure::usage(format!(
            "--status {s:?} is not a job state; use one of: {}",
            STATES.join(", ")
        )));
    }
    let (_loaded, client) = connect(opts, env)?;
    let rt = runtime()?;
    let out = Style::detect(Stream::Stdout, env);
    let err = Style::detect(Stream::Stderr, env);
    match cmd {
        JobCommand::List {
            json,
            status,
            limit,
            filters,
        } => rt.block_on(job_list(
            &client,
            json,
            status.as_deref(),
            limit,
            &filters,
            out,
        )),
        JobCommand::Rerun {
            id,
            from_step,
            wait,
        } => rt.block_on(crate::where_cmds::rerun(
            &client,
            &id,
            from_step.as_deref(),
            wait,
            err,
        )),
        JobCommand::Show { id, json } => rt.block_on(job_show(&client, &id, json, out)),
        JobCommand::Logs { id, follow } => rt.block_on(job_logs(&client, &id, follow, err)),
        JobCommand::Wait { ids, timeout } => {
            rt.block_on(follow::wait_all(&client, &ids, timeout, err))
        }
        JobCommand::Cancel { id } => rt.block_on(job_cancel(&client, &id)),
        JobCommand::Release { ids } => rt.block_on(crate::queue_cmds::release(&client, &ids)),
        JobCommand::Rm { ids } => rt.block_on(crate::job_cleanup::rm(&client, &ids)),
        JobCommand::Prune { older_than, state } => rt.block_on(crate::job_cleanup::prune(
            &client,
            older_than.as_deref(),
            state.as_deref(),
        )),
    }
}

/// A listed job: as the daemon sent it (what `--json` prints) and as read.
struct Listed {
    raw: Value,
    job: JobReport,
}

/// Newest first, whatever order the daemon used.
fn sort_newest_first(jobs: &mut [Listed]) {
    let key = |l: &Listed| l.job.created_at.as_deref().and_then(table::parse_time);
    jobs.sort_by_key(|l| std::cmp::Reverse(key(l)));
}

/// The most a daemon gives in one page (`GET /v1/jobs?limit=`).
const MAX_PAGE: u64 = 1000;

/// Walks `GET /v1/jobs` page by page (`?limit=N&after=ID`, following
/// `next`) until `limit` jobs or the last page. A daemon that answers
/// without `next` (the first release) sends everything in one page.
async fn list_jobs(
    client: &ApiClient,
    status: Option<&str>,
    limit: Option<u64>,
    filters: &str,
) -> Result<Vec<Listed>, Failure> {
    let mut jobs: Vec<Listed> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let want = limit.map_or(MAX_PAGE, |l| (l - jobs.len() as u64).min(MAX_PAGE));
        let mut path = format!("/v1/jobs?limit={want}");
        if let Some(s) = status {
            path.push_str(&format!("&status={s}"));
        }
        path.push_str(filters);
        if let Some(a) = &after {
            path.push_str(&format!("&after={}", path_segment(a)));
        }
        // Raw jobs: `--json` prints them as the daemon sent them.
        let page: JobPage<Value> = client
            .get_json(&path)
            .await
            .map_err(|e| e.into_failure(client))?;
        let got = page.jobs.len();
        for raw in page.jobs {
            let job = client.read_as(&raw)?;
            jobs.push(Listed { raw, job });
        }
        if limit.is_some_and(|l| jobs.len() as u64 >= l) {
            break;
        }
        match page.next {
            // A `next` that does not move on would loop forever: stop there.
            Some(next) if got > 0 && after.as_deref() != Some(next.as_str()) => {
                after = Some(next.to_string());
            }
            _ => break,
        }
    }
    if let Some(l) = limit {
        // An old daemon may ignore `limit`: newest first, then cut.
        sort_newest_first(&mut jobs);
        jobs.truncate(l as usize);
    }
    Ok(jobs)
}

async fn job_list(
    client: &ApiClient,
    json: bool,
    status: Option<&str>,
    limit: Option<u64>,
    filters: &crate::where_cmds::ListFilters,
    style: Style,
) -> Result<i32, Failure> {
    let query = filters.query(SystemTime::now());
    let mut jobs = list_jobs(client, status, limit, &query).await?;
    sort_newest_first(&mut jobs);
    if json {
        let raw: Vec<&Value> = jobs.iter().map(|l| &l.raw).collect();
        emit_line(&pretty(&serde_json::json!({ "jobs": raw })));
        return Ok(exit::OK);
    }
    let jobs: Vec<JobReport> = jobs.into_iter().map(|l| l.job).collect();
    if jobs.is_empty() && !filters.is_empty() {
        eprintln!("{}", crate::where_cmds::nothing_matches(filters));
        return Ok(exit::OK);
    }
    if jobs.is_empty() {
        match status {
            Some(s) => eprintln!("no {s} jobs"),
            None => eprintln!("no jobs yet; submit one with `oj run NAME` or `oj exec -- CMD`"),
        }
        return Ok(exit::OK);
    }
    emit(render_job_list(&jobs, SystemTime::now(), style).as_bytes());
    Ok(exit::OK)
}

/// Columns of `oj job list`; NAME and ERROR give up room on a narrow terminal.
const LIST_HEADER: [&str; 6] = ["ID", "NAME", "STATE", "CREATED", "DURATION", "ERROR"];
const LIST_STATE_COL: usize = 2;

fn render_job_list(jobs: &[JobReport], now: SystemTime, style: Style) -> String {
    let extra = crate::where_cmds::list_columns(jobs);
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let mut row = vec![
                j.id.as_deref().unwrap_or("?").to_string(),
                j.name.as_deref().unwrap_or("?").to_string(),
                crate::queue_cmds::state_text(j),
                j.created_at
                    .as_deref()
                    .map(table::short_time)
                    .unwrap_or_else(|| "-".into()),
                table::run_time(j.started_at.as_deref(), j.ended_at.as_deref(), now),
                j.error
                    .as_deref()
                    .map(one_line)
                    .unwrap_or_else(|| "-".into()),
            ];
            row.extend(extra.iter().map(|(_, cell)| cell(j)));
            row
        })
        .collect();
    let mut header = LIST_HEADER.to_vec();
    header.extend(extra.iter().map(|(h, _)| *h));
    // Free-text columns give up room, the widest first.
    let mut shrinkable = vec![5, 1];
    shrinkable.extend(LIST_HEADER.len()..header.len());
    render_with_states(&header, &rows, LIST_STATE_COL, &shrinkable, style)
}

/// An error as one table cell: its lines joined.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A table fitted to the terminal, with the state column coloured.
fn render_with_states(
    header: &[&str],
    rows: &[Vec<String>],
    state_col: usize,
    shrinkable: &[usize],
    style: Style,
) -> String {
    let paint = |col: usize, raw: &str, shown: String| {
        if col == state_col {
            style.paint(crate::term::state_color(raw), &shown)
        } else {
            shown
        }
    };
    table::render_fitted(
        header,
        rows,
        &table::Fit {
            width: style.width,
            shrinkable,
            paint: Some(&paint),
        },
    )
}

async fn job_show(client: &ApiClient, id: &str, json: bool, style: Style) -> Result<i32, Failure> {
    let path = format!("/v1/jobs/{}", path_segment(id));
    // Kept raw: `--json` prints it as the daemon sent it.
    let job: Value = client
        .get_json(&path)
        .await
        .map_err(|e| job_failure(client, id, e))?;
    if json {
        emit_line(&pretty(&job));
    } else {
        let job: JobReport = client.read_as(&job)?;
        emit(render_job(&job, SystemTime::now(), style).as_bytes());
    }
    Ok(exit::OK)
}

fn render_job(job: &JobReport, now: SystemTime, style: Style) -> String {
    let mut out = String::new();
    let mut field = |k: &str, v: String| {
        out.push_str(&format!("{k:<9} {}\n", table::escape_for_terminal(&v)));
    };
    field("id", job.id.as_deref().unwrap_or("?").into());
    field("name", job.name.as_deref().unwrap_or("?").into());
    // The state is escaped before it is painted: the colour codes are ours.
    let state = table::escape_for_terminal(job.state_str()).into_owned();
    out.push_str(&format!("{:<9} {}\n", "state", style.state(&state)));
    let mut field = |k: &str, v: String| {
        out.push_str(&format!("{k:<9} {}\n", table::escape_for_terminal(&v)));
    };
    if let Some(e) = &job.error {
        field("error", e.clone());
    }
    for (k, v) in crate::queue_cmds::show_fields(job) {
        field(k, v);
    }
    for (k, v) in crate::where_cmds::show_fields(job) {
        field(k, v);
    }
    let (started, ended) = (job.started_at.as_deref(), job.ended_at.as_deref());
    field(
        "created",
        job.created_at
            .as_deref()
            .map(table::short_time)
            .unwrap_or_else(|| "-".into()),
    );
    if let Some(t) = started {
        field("started", table::short_time(t));
    }
    if let Some(t) = ended {
        field("ended", table::short_time(t));
    }
    field("duration", table::run_time(started, ended, now));
    let steps = &job.steps;
    if !steps.is_empty() {
        let has_pod = steps.iter().any(|s| s.pod.is_some());
        let rows: Vec<Vec<String>> = steps
            .iter()
            .map(|s| {
                let (started, ended) = (s.started_at.as_deref(), s.ended_at.as_deref());
                let mut row = vec![
                    s.name.as_deref().unwrap_or("?").to_string(),
                    s.state.as_ref().map_or("?", |st| st.as_str()).to_string(),
                    s.exit_code
                        .map_or_else(|| "-".to_string(), |c| c.to_string()),
                    started.map(table::short_time).unwrap_or_else(|| "-".into()),
                    table::run_time(started, ended, now),
                ];
                if has_pod {
                    row.push(s.pod.as_deref().unwrap_or("-").to_string());
                }
                row
            })
            .collect();
        let mut header = vec!["STEP", "STATE", "EXIT", "STARTED", "DURATION"];
        if has_pod {
            header.push("POD");
        }
        out.push('\n');
        out.push_str(&render_with_states(&header, &rows, 1, &[], style));
        out.push_str(&crate::job_cleanup::render_attempts(steps, now));
    }
    out
}

/// `oj job logs ID [-f]`. Without `--follow` it prints the log as it is;
/// with it, it streams until the job ends and exits as `--wait` does.
async fn job_logs(
    client: &ApiClient,
    id: &str,
    follow: bool,
    style: Style,
) -> Result<i32, Failure> {
    if follow {
        let job = follow::follow(client, id, style).await?;
        return follow::finish(id, &job, style);
    }
    let path = format!("/v1/jobs/{}/logs", path_segment(id));
    let mut resp = client
        .get_stream(&path)
        .await
        .map_err(|e| job_failure(client, id, e))?;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => emit(&chunk),
            Ok(None) => return Ok(exit::OK),
            Err(e) => return Err(follow::broken_stream(client, id, &e).await),
        }
    }
}

async fn job_cancel(client: &ApiClient, id: &str) -> Result<i32, Failure> {
    let path = format!("/v1/jobs/{}/cancel", path_segment(id));
    client
        .post_json::<JobReport, _>(&path, &serde_json::json!({}))
        .await
        .map_err(|e| match e.refusal(&[ErrorCode::Ended]) {
            Ok(body) => Failure::runtime(format!(
                "job {id} cannot be cancelled: {}",
                if body.error.is_empty() {
                    "it has already ended".into()
                } else {
                    body.error
                }
            )),
            Err(other) => job_failure(client, id, other),
        })?;
    eprintln!("oj: cancel requested for job {id}; `oj job show {id}` shows its state");
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_list_is_newest_first_with_readable_columns() {
        let mut jobs: Vec<Listed> = [
            serde_json::json!({"id": "old", "name": "a", "state": "done",
                "created_at": "2026-11-26T08:00:00.000Z",
                "started_at": "2026-11-26T08:00:00.000Z", "ended_at": "2026-11-26T08:00:02.000Z"}),
            serde_json::json!({"id": "new", "name": "b", "state": "queued",
                "created_at": "2026-11-26T09:00:00.000Z"}),
        ]
        .into_iter()
        .map(|raw| Listed {
            job: serde_json::from_value(raw.clone()).unwrap(),
            raw,
        })
        .collect();
        sort_newest_first(&mut jobs);
        assert_eq!(jobs[0].raw["id"], "new");
        let jobs: Vec<JobReport> = jobs.into_iter().map(|l| l.job).collect();
        let out = render_job_list(&jobs, SystemTime::now(), Style::default());
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("ID"), "{out}");
        assert!(lines[1].starts_with("new"), "{out}");
        assert!(
            lines[2].starts_with("old") && lines[2].contains("2.0s"),
            "{out}"
        );
        assert!(lines[1].contains("2026-11-26 09:00:00"), "{out}");
    }
}
