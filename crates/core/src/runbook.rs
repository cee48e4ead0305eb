//! Runbooks: TOML files of named jobs (`[job.NAME]`, `[[job.NAME.step]]`).
//! The client parses them, checks the required `vars`, fills `${var.NAME}`
//! and submits the resulting self-contained [`JobSpec`]; the daemon never
//! reads a runbook.

use std::collections::{BTreeMap, BTreeSet};

use oj_config::excerpt::{MAX_EXCERPT_CHARS, MAX_LISTED, capped_list, excerpt};
use serde::Deserialize;

use crate::retry::RetrySpec;
use crate::spec::{ContainerSpec, JobSpec, NotifyTemplates, SpecError, StepSpec};
use crate::template::{self, TemplateError};

/// A parsed runbook (one file, or several merged).
#[derive(Debug, Clone, PartialEq)]
pub struct Runbook {
    jobs: BTreeMap<String, RunbookJob>,
}

#[derive(Debug, Clone, PartialEq)]
struct RunbookJob {
    origin: String,
    raw: RawJob,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunbook {
    #[serde(default)]
    job: BTreeMap<String, RawJob>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    #[serde(default)]
    vars: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    notify: Option<NotifyTemplates>,
    #[serde(default)]
    container: Option<ContainerSpec>,
    #[serde(default)]
    retry: Option<RetrySpec>,
    /// Relative = to the directory that holds `.oj/` (see [`Runbook::job_in`]).
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    step: Vec<StepSpec>,
    #[serde(default)]
    workspace: Option<crate::cluster::Workspace>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    /// SPEC §8.2: the queue, priority and hold of the job.
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    hold: bool,
}

/// What can go wrong reading a runbook or turning one of its jobs into a spec.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunbookError {
    /// The file is not valid TOML or has the wrong shape (message has line and column).
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("job {name:?} is defined in both {first} and {second}; rename one of them")]
    DuplicateJob {
        name: String,
        first: String,
        second: String,
    },
    #[error("{}", unknown_job_message(.name, .available))]
    UnknownJob {
        name: String,
        available: Vec<String>,
    },
    #[error("{}", missing_vars_message(.job, .origin, .missing))]
    MissingVars {
        job: String,
        origin: String,
        missing: Vec<String>,
    },
    #[error("job {job:?} ({origin}) does not declare {}; it takes: {}", list_vars(.unexpected), if .declared.is_empty() { "no vars".to_string() } else { capped_list(.declared, ", ") })]
    UnexpectedVars {
        job: String,
        origin: String,
        unexpected: Vec<String>,
        declared: Vec<String>,
    },
    #[error(
        "job {job:?} ({origin}), {place}: unknown variable ${{var.{var}}}; declare it in vars = [...] and pass --var {var}=…"
    )]
    UnknownVar {
        job: String,
        origin: String,
        place: String,
        var: String,
    },
    #[error(
        "job {job:?} ({origin}), {place}: over {cap} bytes once the --var values are filled in; shorten the text or the values it repeats"
    )]
    TooLong {
        job: String,
        origin: String,
        place: String,
        cap: usize,
    },
    #[error("job {job:?} ({origin}): {source}")]
    Invalid {
        job: String,
        origin: String,
        source: Box<SpecError>,
    },
}

fn unknown_job_message(name: &str, available: &[String]) -> String {
    if available.is_empty() {
        format!(
            "no job named {name:?}: no runbook defines any job (add a [job.{name}] table to a file in .oj/runbooks/)"
        )
    } else {
        format!(
            "no job named {name:?}; the runbooks define: {}",
            capped_list(available, ", ")
        )
    }
}

fn missing_vars_message(job: &str, origin: &str, missing: &[String]) -> String {
    let flags: Vec<String> = missing
        .iter()
        .take(MAX_LISTED)
        .map(|v| format!("--var {}=…", excerpt(v, MAX_EXCERPT_CHARS)))
        .collect();
    format!(
        "job {job:?} ({origin}) needs {} {}; pass {}",
        if missing.len() == 1 {
            "variable"
        } else {
            "variables"
        },
        capped_list(missing, ", "),
        flags.join(" ")
    )
}

/// `base` + `/` + a relative `dir`, with `.` parts dropped and `..` parts
/// taking one off (as the shell's `cd` does); never above `/`.
fn join_dir(base: &str, dir: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in base.split('/').chain(dir.split('/')) {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn list_vars(v: &[String]) -> String {
    let flags: Vec<String> = v.iter().map(|n| format!("--var {n}")).collect();
    capped_list(&flags, ", ")
}

impl Runbook {
    /// Parses one runbook file's text; `origin` (usually the path) names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Runbook, RunbookError> {
        let raw: RawRunbook = toml::from_str(text).map_err(|e| RunbookError::Parse {
            origin: origin.to_string(),
            message: oj_config::excerpt::toml_error_words(text, &e),
        })?;
        Ok(Runbook {
            jobs: raw
                .job
                .into_iter()
                .map(|(name, raw)| {
                    (
                        name,
                        RunbookJob {
                            origin: origin.to_string(),
                            raw,
                        },
                    )
                })
                .collect(),
        })
    }

    /// A runbook of one job, `name`, from a job table given as JSON (a
    /// schedule's `job`); `origin` names it in errors.
    pub fn from_table(
        name: &str,
        table: &serde_json::Value,
        origin: &str,
    ) -> Result<Runbook, RunbookError> {
        let raw = RawJob::deserialize(table).map_err(|e| RunbookError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let job = RunbookJob {
            origin: origin.to_string(),
            raw,
        };
        Ok(Runbook {
            jobs: BTreeMap::from([(name.to_string(), job)]),
        })
    }

    /// An empty runbook, to merge files into.
    pub fn empty() -> Runbook {
        Runbook {
            jobs: BTreeMap::new(),
        }
    }

    /// Adds the jobs of `other`; a job name defined twice is an error.
    pub fn merge(&mut self, other: Runbook) -> Result<(), RunbookError> {
        for (name, job) in other.jobs {
            if let Some(existing) = self.jobs.get(&name) {
                return Err(RunbookError::DuplicateJob {
                    name,
                    first: existing.origin.clone(),
                    second: job.origin,
                });
            }
            self.jobs.insert(name, job);
        }
        Ok(())
    }

    /// Job names, sorted.
    pub fn job_names(&self) -> Vec<&str> {
        self.jobs.keys().map(String::as_str).collect()
    }

    /// Where job `name` is defined.
    pub fn origin(&self, name: &str) -> Option<&str> {
        self.jobs.get(name).map(|j| j.origin.as_str())
    }

    /// The `vars` job `name` requires.
    pub fn required_vars(&self, name: &str) -> Option<&[String]> {
        self.jobs.get(name).map(|j| j.raw.vars.as_slice())
    }

    /// The job spec of `name` with `vars` filled in and validated.
    pub fn job(
        &self,
        name: &str,
        vars: &BTreeMap<String, String>,
    ) -> Result<JobSpec, RunbookError> {
        self.job_in(name, vars, None)
    }

    /// Like [`Runbook::job`]; a relative `dir` is joined to `base` (the
    /// directory that holds `.oj/`, an absolute path).
    pub fn job_in(
        &self,
        name: &str,
        vars: &BTreeMap<String, String>,
        base: Option<&str>,
    ) -> Result<JobSpec, RunbookError> {
        let Some(job) = self.jobs.get(name) else {
            return Err(RunbookError::UnknownJob {
                name: name.to_string(),
                available: self.jobs.keys().cloned().collect(),
            });
        };
        let origin = &job.origin;
        let raw = &job.raw;
        let declared: BTreeSet<&str> = raw.vars.iter().map(String::as_str).collect();
        let missing: Vec<String> = raw
            .vars
            .iter()
            .filter(|v| !vars.contains_key(*v))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(RunbookError::MissingVars {
                job: name.to_string(),
                origin: origin.clone(),
                missing,
            });
        }
        let unexpected: Vec<String> = vars
            .keys()
            .filter(|k| !declared.contains(k.as_str()))
            .cloned()
            .collect();
        if !unexpected.is_empty() {
            return Err(RunbookError::UnexpectedVars {
                job: name.to_string(),
                origin: origin.clone(),
                unexpected,
                declared: raw.vars.clone(),
            });
        }

        let fill = |text: &str, place: &str| -> Result<String, RunbookError> {
            template::substitute_vars(text, vars, template::MAX_FILLED_BYTES).map_err(|e| match e {
                TemplateError::UnknownVar { name: var } => RunbookError::UnknownVar {
                    job: name.to_string(),
                    origin: origin.clone(),
                    place: place.to_string(),
                    var,
                },
                TemplateError::TooLong { cap } => RunbookError::TooLong {
                    job: name.to_string(),
                    origin: origin.clone(),
                    place: place.to_string(),
                    cap,
                },
            })
        };
        let fill_container =
            |c: &ContainerSpec, place: &str| -> Result<ContainerSpec, RunbookError> {
                Ok(ContainerSpec {
                    image: fill(&c.image, place)?,
                    ..c.clone()
                })
            };

        let mut env = BTreeMap::new();
        for (k, v) in &raw.env {
            env.insert(k.clone(), fill(v, &format!("env.{k}"))?);
        }
        let notify = match &raw.notify {
            None => None,
            Some(n) => Some(NotifyTemplates {
                on_start: n
                    .on_start
                    .as_deref()
                    .map(|t| fill(t, "notify.on_start"))
                    .transpose()?,
                on_done: n
                    .on_done
                    .as_deref()
                    .map(|t| fill(t, "notify.on_done"))
                    .transpose()?,
                on_fail: n
                    .on_fail
                    .as_deref()
                    .map(|t| fill(t, "notify.on_fail"))
                    .transpose()?,
            }),
        };
        let container = raw
            .container
            .as_ref()
            .map(|c| fill_container(c, "container.image"))
            .transpose()?;
        let mut steps = Vec::with_capacity(raw.step.len());
        for (i, s) in raw.step.iter().enumerate() {
            let label = if s.name.is_empty() {
                format!("step #{}", i + 1)
            } else {
                format!("step {:?}", s.name)
            };
            steps.push(StepSpec {
                name: fill(&s.name, &format!("{label} name"))?,
                run: fill(&s.run, &format!("{label} run"))?,
                timeout: s.timeout,
                container: s
                    .container
                    .as_ref()
                    .map(|c| fill_container(c, &format!("{label} container.image")).map(Box::new))
                    .transpose()?,
                retry: s.retry.clone(),
                secrets: s.secrets.clone(),
            });
        }
        let dir = match raw.dir.as_deref() {
            None => None,
            Some(d) => {
                let d = fill(d, "dir")?;
                Some(match base {
                    Some(b) if !d.starts_with('/') => join_dir(b, &d),
                    _ => d,
                })
            }
        };
        let mut labels = BTreeMap::new();
        for (k, v) in &raw.labels {
            labels.insert(k.clone(), fill(v, &format!("labels.{k}"))?);
        }
        let spec = JobSpec {
            name: name.to_string(),
            queue: raw
                .queue
                .clone()
                .unwrap_or_else(|| crate::queue::DEFAULT_QUEUE.to_string()),
            env,
            notify: notify.map(Box::new),
            container: container.map(Box::new),
            retry: raw.retry.clone(),
            priority: raw.priority,
            after: Vec::new(),
            hold: raw.hold,
            not_before: None,
            dir,
            labels,
            steps,
            workspace: raw.workspace.clone().map(Box::new),
            secrets: raw.secrets.clone(),
        };
        spec.validate().map_err(|source| RunbookError::Invalid {
            job: name.to_string(),
            origin: origin.clone(),
            source: Box::new(source),
        })?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const EXAMPLE: &str = r#"
[job.build]
vars = ["target"]                       # required --var names
env = { CARGO_TERM_COLOR = "never" }
notify = { on_start = "build ${var.target} started", on_fail = "build failed: ${error}" }

[[job.build.step]]
name = "compile"
run = "cargo build --target ${var.target}"
timeout = "20m"

[[job.build.step]]
name = "test"
run = "cargo test"
container = { image = "rust:1.95", resources = { limits = { memory = "4Gi" } } }

[job.hello]
[[job.hello.step]]
name = "hi"
run = "echo hello from ${name} ${job_id} in $HOME"
"#;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn queue_priority_and_hold_are_read_from_the_job() {
        let rb = Runbook::parse(
            "[job.deploy]\nqueue = \"deploy\"\npriority = 5\nhold = true\n[[job.deploy.step]]\nname = \"s\"\nrun = \"x\"\n[job.plain]\n[[job.plain.step]]\nname = \"s\"\nrun = \"x\"\n",
            "rb.toml",
        )
        .unwrap();
        let spec = rb.job("deploy", &BTreeMap::new()).unwrap();
        assert_eq!(
            (spec.queue.as_str(), spec.priority, spec.hold),
            ("deploy", 5, true)
        );
        let plain = rb.job("plain", &BTreeMap::new()).unwrap();
        assert_eq!(
            (plain.queue.as_str(), plain.priority, plain.hold),
            ("default", 0, false)
        );
        let bad = Runbook::parse(
            "[job.x]\nqueue = \"Bad Name\"\n[[job.x.step]]\nname = \"s\"\nrun = \"x\"\n",
            "rb.toml",
        )
        .unwrap();
        let e = bad.job("x", &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("\"Bad Name\" is not a queue name"), "{e}");
    }

    #[test]
    fn retries_are_read_from_the_job_and_the_step() {
        let rb = Runbook::parse(
            r#"
[job.flaky]
retry = { attempts = 3, backoff = "2s", on = ["failed"] }
[[job.flaky.step]]
name = "a"
run = "x"
[[job.flaky.step]]
name = "b"
run = "y"
retry = { attempts = 5, on = ["infra", "timeout"] }
"#,
            "flaky.toml",
        )
        .unwrap();
        let spec = rb.job("flaky", &BTreeMap::new()).unwrap();
        let a = spec.step_retry(0).unwrap();
        assert_eq!((a.attempts, a.backoff), (3, Duration::from_secs(2)));
        let b = spec.step_retry(1).unwrap();
        assert_eq!(b.attempts, 5);
        assert_eq!(b.backoff, crate::retry::DEFAULT_BACKOFF);
        let bad = Runbook::parse(
            "[job.x]\nretry = { attempts = 2, on = [\"oom\"] }\n[[job.x.step]]\nname = \"a\"\nrun = \"x\"\n",
            "bad.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("bad.toml") && bad.contains("retry.on") && bad.contains("oom"),
            "{bad}"
        );
        let zero = Runbook::parse(
            "[job.x]\n[[job.x.step]]\nname = \"a\"\nrun = \"x\"\nretry = { attempts = 0 }\n",
            "zero.toml",
        )
        .unwrap()
        .job("x", &BTreeMap::new())
        .unwrap_err()
        .to_string();
        assert!(
            zero.contains("step \"a\"") && zero.contains("retry.attempts = 0"),
            "{zero}"
        );
    }

    #[test]
    fn the_spec_example_parses_and_fills() {
        let rb = Runbook::parse(EXAMPLE, "build.toml").unwrap();
        assert_eq!(rb.job_names(), vec!["build", "hello"]);
        let spec = rb.job("build", &vars(&[("target", "wasm32")])).unwrap();
        assert_eq!(spec.steps[0].run, "cargo build --target wasm32");
        assert_eq!(spec.steps[0].timeout, Some(Duration::from_secs(20 * 60)));
        assert_eq!(
            spec.notify.as_ref().unwrap().on_start.as_deref(),
            Some("build wasm32 started")
        );
        assert_eq!(
            spec.notify.as_ref().unwrap().on_fail.as_deref(),
            Some("build failed: ${error}")
        );
        assert_eq!(spec.steps[1].container.as_ref().unwrap().image, "rust:1.95");
        let hello = rb.job("hello", &BTreeMap::new()).unwrap();
        assert_eq!(
            hello.steps[0].run,
            "echo hello from ${name} ${job_id} in $HOME"
        );
    }

    #[test]
    fn missing_vars_are_all_listed() {
        let rb = Runbook::parse("[job.x]\nvars = [\"a\", \"b\"]\n[[job.x.step]]\nname = \"s\"\nrun = \"${var.a}${var.b}\"\n", "x.toml")
            .unwrap();
        let err = rb.job("x", &BTreeMap::new()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("--var a=…") && text.contains("--var b=…"),
            "{text}"
        );
    }

    #[test]
    fn a_job_with_200000_vars_gets_a_short_missing_vars_message() {
        let names: Vec<String> = (0..200_000).map(|i| format!("v{i}")).collect();
        let text = format!(
            "[job.x]\nvars = [{}]\n[[job.x.step]]\nname = \"s\"\nrun = \"true\"\n",
            names
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let rb = Runbook::parse(&text, "x.toml").unwrap();
        let msg = rb.job("x", &BTreeMap::new()).unwrap_err().to_string();
        assert!(msg.len() < 1000, "{} bytes", msg.len());
        assert!(
            msg.contains("needs variables v0, v1,") && msg.contains("and 199990 more"),
            "{msg}"
        );
        assert!(msg.contains("pass --var v0=… --var v1=…"), "{msg}");
    }

    #[test]
    fn a_runbook_toml_error_names_line_and_column_without_echoing_the_line() {
        let text = format!("[job.x]\nname = \"{}", "x".repeat(200_000));
        let msg = Runbook::parse(&text, "x.toml").unwrap_err().to_string();
        assert!(msg.starts_with("x.toml: line 2, column "), "{msg}");
        assert!(msg.len() < 500, "{} bytes", msg.len());
    }

    #[test]
    fn an_undeclared_var_reference_is_an_error() {
        let rb = Runbook::parse(
            "[job.x]\n[[job.x.step]]\nname = \"s\"\nrun = \"echo ${var.who}\"\n",
            "x.toml",
        )
        .unwrap();
        let text = rb.job("x", &BTreeMap::new()).unwrap_err().to_string();
        assert!(
            text.contains("${var.who}") && text.contains("step \"s\" run"),
            "{text}"
        );
        let text = rb
            .job("x", &vars(&[("who", "me")]))
            .unwrap_err()
            .to_string();
        assert!(text.contains("does not declare --var who"), "{text}");
    }

    #[test]
    fn toml_errors_have_line_and_column() {
        let err = Runbook::parse("[job.x]\nsteps = 3\n", "bad.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad.toml: "), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("steps"), "{err}");
        let err = Runbook::parse("[job.x\n", "b.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn unknown_job_lists_the_known_ones() {
        let rb = Runbook::parse(EXAMPLE, "build.toml").unwrap();
        let text = rb.job("biuld", &BTreeMap::new()).unwrap_err().to_string();
        assert!(text.contains("build, hello"), "{text}");
    }

    #[test]
    fn invalid_jobs_name_the_step() {
        let rb = Runbook::parse(
            "[job.x]\n[[job.x.step]]\nname = \"a/b\"\nrun = \"true\"\n",
            "x.toml",
        )
        .unwrap();
        let text = rb.job("x", &BTreeMap::new()).unwrap_err().to_string();
        assert!(text.contains("\"a/b\""), "{text}");
        let rb = Runbook::parse("[job.x]\n", "x.toml").unwrap();
        assert!(matches!(
            rb.job("x", &BTreeMap::new()),
            Err(RunbookError::Invalid { .. })
        ));
    }

    #[test]
    fn merging_refuses_duplicates() {
        let mut a = Runbook::parse(EXAMPLE, "a.toml").unwrap();
        let b = Runbook::parse("[job.hello]\n", "b.toml").unwrap();
        let text = a.merge(b).unwrap_err().to_string();
        assert!(text.contains("a.toml") && text.contains("b.toml"), "{text}");
    }
}
