//! Client commands (`oj run`, `exec`, `job …`, `status`, `daemon stop`):
//! each builds what it needs from the configuration, talks to the daemon
//! over its API (SPEC §3.2, the `oj-api` types) and turns the answer into
//! output and an exit code (SPEC §1).
//!
//! This file holds what every client command shares (runtime, connection,
//! output, job failures) and the submitting commands, `oj run` and `oj
//! exec`; `oj status` is in [`status`], `oj daemon stop` and the running
//! config in [`daemon`], `oj job …` in [`jobs`].

use std::collections::BTreeMap;
use std::io::Write;

use oj_api::{ErrorCode, JobReport};
use oj_config::{Environment, LoadOptions, Loaded};
use oj_core::{JobSpec, StepSpec};
use serde_json::Value;

use crate::api_client::{ApiClient, ApiError};
use crate::cli::{ExecArgs, RunArgs};
use crate::config_cmds;
use crate::exit::{self, Failure};
use crate::follow;
use crate::runbooks;
use crate::term::{Stream, Style};

mod daemon;
mod jobs;
mod status;

pub use daemon::{daemon_config, daemon_stop};
pub use jobs::job;
pub use status::status;

/// The job and step states of SPEC §3.2.
pub const STATES: [&str; 6] = [
    "queued",
    "running",
    "done",
    "failed",
    "cancelled",
    "interrupted",
];

/// A small single-threaded runtime: a client command does one thing at a time.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))
}

pub(crate) fn connect(
    opts: &LoadOptions,
    env: &Environment,
) -> Result<(Loaded, ApiClient), Failure> {
    let loaded = config_cmds::load_for_client(opts, env)?;
    let client = ApiClient::from_loaded(&loaded)?;
    Ok((loaded, client))
}

/// Writes to stdout; a closed pipe (`oj job logs ID | head`) ends the
/// command quietly, as for any Unix filter.
pub(crate) fn emit(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(exit::OK);
    }
}

pub(crate) fn emit_line(s: &str) {
    let mut line = String::with_capacity(s.len() + 1);
    line.push_str(s);
    if !s.ends_with('\n') {
        line.push('\n');
    }
    emit(line.as_bytes());
}

pub(crate) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Escapes a job id for use as one URL path segment.
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Maps a failed call about one job: `not_found` is "no job <id>".
pub(crate) fn job_failure(client: &ApiClient, id: &str, e: ApiError) -> Failure {
    match e.refusal(&[ErrorCode::NotFound]) {
        Ok(_) => Failure::runtime(format!(
            "no job {id} on the daemon at {}; `oj job list` shows the jobs it knows",
            client.endpoint().display()
        )),
        Err(other) => other.into_failure(client),
    }
}

/// The id of a job the daemon accepted (`what`: "the job", "the rerun");
/// an answer without one is not from a daemon this client understands.
pub(crate) fn accepted_id(
    client: &ApiClient,
    job: JobReport,
    what: &str,
) -> Result<String, Failure> {
    job.id.ok_or_else(|| {
        Failure::runtime(format!(
            "the daemon at {} accepted {what} but sent no job id; is it an oj daemon of the same version?",
            client.endpoint().display()
        ))
    })
}

/// Parses `--var K=V` flags; a later value for the same name wins.
pub fn parse_vars(raw: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut vars = BTreeMap::new();
    for item in raw {
        match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                vars.insert(k.trim().to_string(), v.to_string());
            }
            _ => {
                return Err(Failure::usage(format!(
                    "--var {item:?} is not NAME=VALUE; write e.g. --var target=x86_64-unknown-linux-gnu"
                )));
            }
        }
    }
    Ok(vars)
}

pub fn run(args: RunArgs, opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    let vars = parse_vars(&args.vars)?;
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::runtime(format!("cannot read the current directory: {e}")))?;
    // Everything about the runbook is checked before the daemon is contacted.
    let mut spec = runbooks::resolve(&args.name, &vars, args.file.as_deref(), &cwd)?;
    args.queueing
        .apply(&mut spec, std::time::SystemTime::now())?;
    let (_loaded, client) = connect(opts, env)?;
    args.placement
        .apply(&mut spec, client.endpoint(), env, &cwd)?;
    runtime()?.block_on(submit(
        &client,
        &spec,
        args.placement.idempotency_key.as_deref(),
        args.wait,
        Style::detect(Stream::Stderr, env),
    ))
}

/// Quotes one word for `/bin/sh` so it reaches the command unchanged.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'-' | b'.' | b'/' | b':' | b',' | b'+' | b'=' | b'@' | b'%'
                )
        });
    if safe {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// A command line as one `/bin/sh` string.
pub fn shell_join(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `/usr/bin/make` → `make`.
fn basename(cmd: &str) -> &str {
    cmd.trim_end_matches('/').rsplit('/').next().unwrap_or(cmd)
}

/// A step name safe as a file name (SPEC §3.2), from any job name.
fn step_name_for(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(oj_core::spec::MAX_STEP_NAME)
        .collect();
    if oj_core::spec::is_safe_step_name(&cleaned)
        && cleaned.chars().any(|c| c.is_ascii_alphanumeric())
    {
        cleaned
    } else {
        "main".into()
    }
}

/// The one-step job spec of `oj exec`.
pub fn exec_spec(name: Option<&str>, command: &[String]) -> Result<JobSpec, Failure> {
    let Some(first) = command.first() else {
        return Err(Failure::usage(
            "oj exec needs a command after --, e.g. oj exec -- make test",
        ));
    };
    if first.trim().is_empty() {
        return Err(Failure::usage(format!(
            "the command after -- is empty ({first:?}); give the program to run, e.g. oj exec -- make test"
        )));
    }
    let name = match name {
        Some(n) if !n.trim().is_empty() => n.to_string(),
        Some(_) => return Err(Failure::usage("--name must not be empty")),
        None => {
            let b = basename(first);
            if b.is_empty() {
                first.clone()
            } else {
                b.to_string()
            }
        }
    };
    let spec = JobSpec {
        name: name.clone(),
        queue: "default".into(),
        dir: None,
        labels: Default::default(),
        env: BTreeMap::new(),
        notify: None,
        container: None,
        retry: None,
        priority: 0,
        after: Vec::new(),
        hold: false,
        not_before: None,
        steps: vec![StepSpec {
            name: step_name_for(&name),
            run: shell_join(command),
            timeout: None,
            container: None,
            retry: None,
            secrets: Default::default(),
        }],
        workspace: None,
        secrets: Default::default(),
    };
    spec.validate()
        .map_err(|e| Failure::usage(format!("cannot submit this command: {e}")))?;
    Ok(spec)
}

pub fn exec(args: ExecArgs, opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    let mut spec = exec_spec(args.name.as_deref(), &args.command)?;
    args.queueing
        .apply(&mut spec, std::time::SystemTime::now())?;
    let cwd = crate::where_cmds::working_dir(&args.placement)?;
    let (_loaded, client) = connect(opts, env)?;
    args.placement
        .apply(&mut spec, client.endpoint(), env, &cwd)?;
    runtime()?.block_on(submit(
        &client,
        &spec,
        args.placement.idempotency_key.as_deref(),
        args.wait,
        Style::detect(Stream::Stderr, env),
    ))
}

/// The refusals of a submission that are the user's to fix (a usage error, exit 2): the
/// spec, the request or its `Idempotency-Key`.
pub(crate) const REFUSED_SPEC: &[ErrorCode] = &[
    ErrorCode::InvalidSpec,
    ErrorCode::BadRequest,
    ErrorCode::BadIdempotencyKey,
];

/// Submits a job, prints its id, and with `wait` follows it to the end.
async fn submit(
    client: &ApiClient,
    spec: &JobSpec,
    idempotency_key: Option<&str>,
    wait: bool,
    style: Style,
) -> Result<i32, Failure> {
    let body = serde_json::to_value(spec)
        .map_err(|e| Failure::runtime(format!("cannot encode the job spec: {e}")))?;
    let key = idempotency_key
        .map(crate::where_cmds::idempotency_header)
        .transpose()?;
    let job: JobReport = client
        .post_json_keyed("/v1/jobs", &body, key.as_deref())
        .await
        .map_err(|e| match e.refusal(REFUSED_SPEC) {
            Ok(body) => Failure::usage(format!(
                "the daemon refused job {:?}: {}",
                spec.name, body.error
            )),
            Err(other) => other.into_failure(client),
        })?;
    let id = accepted_id(client, job, "the job")?;
    emit_line(&id);
    follow_submitted(client, &id, wait, style).await
}

/// After a job was submitted (its id printed): with `wait`, follows it to
/// the end and exits as `--wait` does.
pub(crate) async fn follow_submitted(
    client: &ApiClient,
    id: &str,
    wait: bool,
    style: Style,
) -> Result<i32, Failure> {
    let id = id.to_string();
    if !wait {
        return Ok(exit::OK);
    }
    // Ctrl-C stops the waiting, not the job: say so, and how to stop it.
    tokio::select! {
        job = follow::follow(client, &id, style) => follow::finish(&id, &job?, style),
        _ = tokio::signal::ctrl_c() => Err(Failure::new(
            INTERRUPTED,
            format!(
                "stopped waiting; job {id} keeps running in the daemon \
                 (`oj job logs {id} --follow` to watch it, `oj job cancel {id}` to stop it)"
            ),
        )),
    }
}

/// The conventional exit code of a command ended by Ctrl-C (128 + SIGINT).
const INTERRUPTED: i32 = 130;

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// What /bin/sh makes of a quoted command line: one argument per line.
    fn through_sh(words: &[&str]) -> Vec<String> {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let script = format!("printf '%s\\n' {}", shell_join(&words));
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{script}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn shell_quoting_keeps_every_word_intact() {
        let words = [
            "plain",
            "two words",
            "it's",
            "$HOME",
            "`id`",
            "a;b|c&d",
            "*",
            "back\\slash",
            "\"dq\"",
            "tab\there",
            "ünï",
            "--flag=x",
        ];
        assert_eq!(through_sh(&words), words);
    }

    #[test]
    fn shell_quoting_leaves_plain_words_alone() {
        assert_eq!(shell_quote("cargo"), "cargo");
        assert_eq!(shell_quote("/usr/bin/make"), "/usr/bin/make");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn exec_spec_names_the_job_after_the_command() {
        let spec = exec_spec(None, &["/usr/bin/env".into(), "A=1".into(), "sh".into()]).unwrap();
        assert_eq!(spec.name, "env");
        assert_eq!(spec.steps.len(), 1);
        assert_eq!(spec.steps[0].run, "/usr/bin/env A=1 sh");
        let spec = exec_spec(Some("my job!"), &["true".into()]).unwrap();
        assert_eq!(spec.name, "my job!");
        assert!(oj_core::spec::is_safe_step_name(&spec.steps[0].name));
        assert_eq!(exec_spec(None, &[]).unwrap_err().code, exit::USAGE);
    }

    #[test]
    fn vars_need_an_equals_sign() {
        let v = parse_vars(&["a=1".into(), "b=x=y".into(), "a=2".into()]).unwrap();
        assert_eq!(v.get("a").map(String::as_str), Some("2"));
        assert_eq!(v.get("b").map(String::as_str), Some("x=y"));
        assert_eq!(
            parse_vars(&["novalue".into()]).unwrap_err().code,
            exit::USAGE
        );
        assert_eq!(parse_vars(&["=v".into()]).unwrap_err().code, exit::USAGE);
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("abc-123"), "abc-123");
        assert_eq!(path_segment("a/b?c"), "a%2Fb%3Fc");
    }
}
