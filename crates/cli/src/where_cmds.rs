//! SPEC §8.1 on the client side: where a job runs and what it carries.
//!
//! - `oj run` / `oj exec` take `--dir`, `-e/--env`, `-l/--label` and
//!   `--idempotency-key`; over the daemon's Unix socket the client's
//!   working directory is sent as `dir` unless a runbook or `--dir` says
//!   otherwise (over TCP only those do: the daemon is on another machine).
//! - `oj job list` takes `--label`, `--queue`, `--name`, `--since`.
//! - `oj job rerun ID [--from-step NAME] [-w]`.
//! - `oj job show` / `oj job list` print `dir`, labels and `rerun_of`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Args;
use oj_api::{ErrorCode, JobReport};
use oj_config::Environment;
use oj_core::JobSpec;

use crate::api_client::{ApiClient, Endpoint};
use crate::client_cmds::{accepted_id, job_failure, path_segment};
use crate::exit::Failure;
use crate::term::Style;

/// The `Idempotency-Key` header value for a key given on the command line:
/// the quoted form, checked as the daemon will check it.
pub fn idempotency_header(key: &str) -> Result<String, Failure> {
    let quoted = format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""));
    oj_core::idempotency::parse_key(quoted.as_bytes())
        .map_err(|e| Failure::usage(format!("--idempotency-key: {e}")))?;
    Ok(quoted)
}

/// Flags of `oj run` and `oj exec` about where the job runs and what it carries.
#[derive(Debug, Clone, Default, Args)]
pub struct WhereArgs {
    /// Working directory of the job's shell steps (relative = to the current
    /// directory) [default: the runbook's `dir`, else the current directory
    /// when the daemon is reached over its Unix socket, else a fresh scratch
    /// directory under the daemon's state dir]
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// Add K=V to the job's environment (repeatable); `-e K` copies K from
    /// this shell's environment
    #[arg(short = 'e', long = "env", value_name = "K=V|K")]
    pub env: Vec<String>,
    /// Label the job (repeatable), Kubernetes label syntax, e.g. -l team=web;
    /// find it again with `oj job list --label team=web`
    #[arg(short = 'l', long = "label", value_name = "K=V", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Submit at most once: a repeat with the same key (and the same job)
    /// gets the first job back instead of running it again
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

/// Filters of `oj job list`; all must hold.
#[derive(Debug, Clone, Default, Args)]
pub struct ListFilters {
    /// Only jobs with this label (repeatable: all must match), e.g. --label team=web
    #[arg(short = 'l', long = "label", value_name = "K=V", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Only jobs of this queue
    #[arg(long, value_name = "Q")]
    pub queue: Option<String>,
    /// Only jobs whose name matches this glob (* and ?), e.g. --name 'build-*'
    #[arg(long, value_name = "GLOB")]
    pub name: Option<String>,
    /// Only jobs submitted within this long, e.g. 2h or 7d
    #[arg(long, value_name = "D", value_parser = parse_since)]
    pub since: Option<Duration>,
}

/// `K=V` in Kubernetes label syntax; no `=` is a usage error (exit 2).
fn parse_label(s: &str) -> Result<(String, String), String> {
    let Some((k, v)) = oj_core::labels::split_pair(s) else {
        return Err(format!(
            "{s:?} is not KEY=VALUE; write e.g. --label team=web"
        ));
    };
    oj_core::labels::check_key(k)
        .and_then(|()| oj_core::labels::check_value(k, v))
        .map_err(|e| e.to_string())?;
    Ok((k.to_string(), v.to_string()))
}

fn parse_since(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; write a duration like 30m, 2h or 7d"))
}

impl WhereArgs {
    /// Fills the spec's `dir`, `env` and `labels` from the flags. A runbook's
    /// `dir` (already in the spec) beats the working directory; `--dir`
    /// beats both. The working directory is sent only over the Unix socket.
    pub fn apply(
        &self,
        spec: &mut JobSpec,
        endpoint: &Endpoint,
        env: &Environment,
        cwd: &Path,
    ) -> Result<(), Failure> {
        if let Some(dir) = &self.dir {
            let abs = cwd.join(dir);
            if matches!(endpoint, Endpoint::Unix(_)) && !abs.is_dir() {
                return Err(Failure::usage(format!(
                    "--dir {}: no such directory here; give a directory that exists (it is where the job's steps run)",
                    abs.display()
                )));
            }
            spec.dir = Some(path_text(&abs, "--dir")?);
        } else if spec.dir.is_none() && matches!(endpoint, Endpoint::Unix(_)) {
            spec.dir = Some(path_text(cwd, "the current directory")?);
        }
        for item in &self.env {
            let (k, v) = match item.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => match env.vars.get(item) {
                    Some(v) => (item.clone(), v.clone()),
                    None => {
                        return Err(Failure::usage(format!(
                            "-e {item}: {item} is not set in this shell's environment; set it, or pass -e {item}=VALUE"
                        )));
                    }
                },
            };
            if k.is_empty() {
                return Err(Failure::usage(format!(
                    "-e {item:?}: the variable name is empty; write -e NAME=VALUE"
                )));
            }
            spec.env.insert(k, v);
        }
        for (k, v) in &self.labels {
            spec.labels.insert(k.clone(), v.clone());
        }
        Ok(())
    }
}

/// The client's working directory; when it is gone (deleted under the
/// shell), an absolute `--dir` still lets `oj exec` submit.
pub fn working_dir(args: &WhereArgs) -> Result<PathBuf, Failure> {
    match std::env::current_dir() {
        Ok(cwd) => Ok(cwd),
        Err(_) if args.dir.as_deref().is_some_and(Path::is_absolute) => Ok(PathBuf::from("/")),
        Err(e) => Err(Failure::runtime(format!(
            "cannot read the current directory: {e} (was it deleted?); cd to a directory that exists, or pass an absolute --dir"
        ))),
    }
}

fn path_text(p: &Path, what: &str) -> Result<String, Failure> {
    p.to_str().map(str::to_string).ok_or_else(|| {
        Failure::usage(format!(
            "{what} {} is not valid UTF-8, which a job spec cannot carry; use --dir with another directory",
            p.display()
        ))
    })
}

impl ListFilters {
    /// The query string additions (`&label=…&queue=…`), percent-encoded.
    pub fn query(&self, now: SystemTime) -> String {
        let mut q = String::new();
        for (k, v) in &self.labels {
            q.push_str(&format!("&label={}", path_segment(&format!("{k}={v}"))));
        }
        if let Some(queue) = &self.queue {
            q.push_str(&format!("&queue={}", path_segment(queue)));
        }
        if let Some(name) = &self.name {
            q.push_str(&format!("&name={}", path_segment(name)));
        }
        if let Some(d) = self.since {
            let t = now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH);
            let text = humantime::format_rfc3339_millis(t).to_string();
            q.push_str(&format!("&since={}", path_segment(&text)));
        }
        q
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
            && self.queue.is_none()
            && self.name.is_none()
            && self.since.is_none()
    }
}

/// `oj job rerun ID [--from-step NAME] [-w]`: prints the new job's id and
/// with `wait` follows it as `--wait` does.
pub async fn rerun(
    client: &ApiClient,
    id: &str,
    from_step: Option<&str>,
    wait: bool,
    style: Style,
) -> Result<i32, Failure> {
    let new = post_rerun(client, id, from_step).await?;
    crate::client_cmds::emit_line(&new);
    crate::client_cmds::follow_submitted(client, &new, wait, style).await
}

/// Posts the rerun; the new job's id.
async fn post_rerun(
    client: &ApiClient,
    id: &str,
    from_step: Option<&str>,
) -> Result<String, Failure> {
    let path = format!("/v1/jobs/{}/rerun", path_segment(id));
    let body = oj_api::RerunRequest {
        from_step: from_step.map(str::to_string),
    };
    let job: JobReport =
        client
            .post_json(&path, &body)
            .await
            .map_err(|e| match e.refusal(REFUSED_RERUN) {
                Ok(body) => Failure::usage(format!("cannot rerun job {id}: {}", body.error)),
                Err(other) => job_failure(client, id, other),
            })?;
    accepted_id(client, job, "the rerun")
}

/// The refusals of a rerun that are the user's to fix (a usage error, exit 2): those of
/// a submission, and a `--from-step` the job does not have.
const REFUSED_RERUN: &[ErrorCode] = &[
    ErrorCode::InvalidSpec,
    ErrorCode::BadRequest,
    ErrorCode::BadIdempotencyKey,
    ErrorCode::UnknownStep,
];

/// `k=v, k2=v2`, or `-`.
pub fn labels_text(job: &JobReport) -> String {
    if job.labels.is_empty() {
        return "-".into();
    }
    job.labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `job show` lines for dir, labels and rerun_of (only those set).
pub fn show_fields(job: &JobReport) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(d) = &job.dir {
        out.push(("dir", d.clone()));
    }
    let labels = labels_text(job);
    if labels != "-" {
        out.push(("labels", labels));
    }
    if let Some(r) = &job.rerun_of {
        out.push(("rerun of", r.clone()));
    }
    out
}

/// A `job list` column: its header and how a job's cell is made.
pub type Column = (&'static str, fn(&JobReport) -> String);

/// Extra `job list` columns, present only when some listed job has them:
/// LABELS and RERUN OF; DIR last (it is long, and shrinks first).
pub fn list_columns(jobs: &[JobReport]) -> Vec<Column> {
    let mut cols: Vec<Column> = Vec::new();
    if jobs.iter().any(|j| labels_text(j) != "-") {
        cols.push(("LABELS", labels_text));
    }
    if jobs.iter().any(|j| j.rerun_of.is_some()) {
        cols.push(("RERUN OF", |j| {
            j.rerun_of.as_deref().unwrap_or("-").to_string()
        }));
    }
    if jobs.iter().any(|j| j.dir.is_some()) {
        cols.push(("DIR", |j| j.dir.as_deref().unwrap_or("-").to_string()));
    }
    cols
}

/// The empty-list message when filters are set.
pub fn nothing_matches(filters: &ListFilters) -> String {
    let mut parts: Vec<String> = filters
        .labels
        .iter()
        .map(|(k, v)| format!("--label {k}={v}"))
        .collect();
    if let Some(q) = &filters.queue {
        parts.push(format!("--queue {q}"));
    }
    if let Some(n) = &filters.name {
        parts.push(format!("--name {n}"));
    }
    if let Some(d) = filters.since {
        parts.push(format!("--since {}", humantime::format_duration(d)));
    }
    format!("no jobs match {}", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        serde_json::from_value(serde_json::json!({
            "name": "j", "steps": [{"name": "s", "run": "true"}]
        }))
        .unwrap()
    }

    #[test]
    fn labels_need_an_equals_sign_and_the_syntax() {
        assert_eq!(parse_label("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(parse_label("a=").unwrap(), ("a".into(), "".into()));
        assert!(parse_label("ab").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_label("a b=c").unwrap_err().contains("\"a b\""));
    }

    #[test]
    fn the_working_directory_goes_only_over_the_socket() {
        let env = Environment::new([("FROM_SHELL", "x")], "h");
        let cwd = Path::new("/");
        let unix = Endpoint::Unix("/s".into());
        let tcp = Endpoint::Http("http://h:1".into());
        let mut s = spec();
        WhereArgs::default()
            .apply(&mut s, &unix, &env, cwd)
            .unwrap();
        assert_eq!(s.dir.as_deref(), Some("/"));
        let mut s = spec();
        WhereArgs::default().apply(&mut s, &tcp, &env, cwd).unwrap();
        assert_eq!(s.dir, None);
        // A runbook's dir wins over the working directory; --dir over both.
        let mut s = spec();
        s.dir = Some("/from/runbook".into());
        WhereArgs::default()
            .apply(&mut s, &unix, &env, cwd)
            .unwrap();
        assert_eq!(s.dir.as_deref(), Some("/from/runbook"));
        let args = WhereArgs {
            dir: Some("tmp".into()),
            ..WhereArgs::default()
        };
        args.apply(&mut s, &tcp, &env, Path::new("/w")).unwrap();
        assert_eq!(s.dir.as_deref(), Some("/w/tmp"));
        let missing = WhereArgs {
            dir: Some("/no/such/dir/here".into()),
            ..WhereArgs::default()
        };
        assert!(missing.apply(&mut spec(), &unix, &env, cwd).is_err());
    }

    #[test]
    fn env_flags_set_or_copy() {
        let env = Environment::new([("FROM_SHELL", "x")], "h");
        let args = WhereArgs {
            env: vec!["A=1".into(), "FROM_SHELL".into(), "B=x=y".into()],
            ..WhereArgs::default()
        };
        let mut s = spec();
        args.apply(
            &mut s,
            &Endpoint::Http("http://h".into()),
            &env,
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(s.env["A"], "1");
        assert_eq!(s.env["FROM_SHELL"], "x");
        assert_eq!(s.env["B"], "x=y");
        let unset = WhereArgs {
            env: vec!["NOPE".into()],
            ..WhereArgs::default()
        };
        let err = unset
            .apply(
                &mut spec(),
                &Endpoint::Http("http://h".into()),
                &env,
                Path::new("/"),
            )
            .unwrap_err();
        assert!(format!("{err:?}").contains("NOPE"), "{err:?}");
    }

    #[test]
    fn list_filters_become_an_encoded_query() {
        let f = ListFilters {
            labels: vec![("example.com/team".into(), "web".into())],
            queue: Some("ci".into()),
            name: Some("build-*".into()),
            since: Some(Duration::from_secs(3600)),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(7200);
        assert_eq!(
            f.query(now),
            "&label=example.com%2Fteam%3Dweb&queue=ci&name=build-%2A&since=1970-01-01T01%3A00%3A00.000Z"
        );
    }
}
