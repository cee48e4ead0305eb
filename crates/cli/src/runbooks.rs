//! Finding and resolving the project's runbooks for `oj run` (SPEC §3.3).
//!
//! The client does all of it: it finds `.oj/runbooks/` by walking up from
//! the current directory (or reads `--file`), merges every `*.toml` in it,
//! and turns the named job into a self-contained job spec, so the daemon
//! never needs the project's checkout. Every problem here is refused before
//! the daemon is contacted, as a usage error (exit 2).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oj_core::{JobSpec, Runbook};

use crate::exit::Failure;

/// The runbook directory, relative to a project root.
pub const RUNBOOK_DIR: &str = ".oj/runbooks";

/// The nearest `.oj/runbooks/` directory at or above `start`.
pub fn find_dir(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(RUNBOOK_DIR))
        .find(|candidate| candidate.is_dir())
}

/// Every `*.toml` file in `dir`, in name order (so errors are stable).
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Failure::usage(format!(
            "cannot read the runbook directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Reads and merges runbook files; a job defined twice names both files.
pub fn load(files: &[PathBuf]) -> Result<Runbook, Failure> {
    let mut merged = Runbook::empty();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::usage(format!("cannot read the runbook {}: {e}", path.display()))
        })?;
        let runbook = Runbook::parse(&text, &path.display().to_string())
            .map_err(|e| Failure::usage(format!("invalid runbook: {e}")))?;
        merged
            .merge(runbook)
            .map_err(|e| Failure::usage(e.to_string()))?;
    }
    Ok(merged)
}

/// The job spec `oj run NAME` submits: from `--file`, else from the nearest
/// `.oj/runbooks/` above `cwd`, with `${var.…}` filled from `vars`.
pub fn resolve(
    name: &str,
    vars: &BTreeMap<String, String>,
    file: Option<&Path>,
    cwd: &Path,
) -> Result<JobSpec, Failure> {
    let files = match file {
        Some(f) => {
            let f = cwd.join(f);
            if !f.is_file() {
                return Err(Failure::usage(format!(
                    "--file {}: no such runbook file",
                    f.display()
                )));
            }
            vec![f]
        }
        None => {
            let Some(dir) = find_dir(cwd) else {
                return Err(Failure::usage(format!(
                    "no {RUNBOOK_DIR}/ directory in {} or any directory above it; create one \
                     with a runbook (e.g. {RUNBOOK_DIR}/jobs.toml holding [job.{name}]) or \
                     pass --file RUNBOOK",
                    cwd.display()
                )));
            };
            let files = list_files(&dir)?;
            if files.is_empty() {
                return Err(Failure::usage(format!(
                    "{} holds no *.toml runbook; add one with a [job.{name}] table",
                    dir.display()
                )));
            }
            files
        }
    };
    let base = project_dir(&files[0]);
    let runbook = load(&files)?;
    let spec = runbook
        .job_in(name, vars, base.as_deref().and_then(Path::to_str))
        .map_err(|e| Failure::usage(e.to_string()))?;
    spec.validate().map_err(|e| {
        Failure::usage(format!(
            "job {name:?} ({}): {e}",
            runbook.origin(name).unwrap_or("runbook")
        ))
    })?;
    Ok(spec)
}

/// What a runbook's relative `dir` is relative to: the directory that
/// holds `.oj/` for a runbook in `.oj/runbooks/`, else (a `--file` kept
/// elsewhere) the runbook file's own directory.
fn project_dir(runbook: &Path) -> Option<PathBuf> {
    let parent = std::path::absolute(runbook).ok()?.parent()?.to_path_buf();
    if parent.ends_with(RUNBOOK_DIR) {
        return parent.parent()?.parent().map(Path::to_path_buf);
    }
    Some(parent)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::exit;

    const BUILD: &str = r#"
[job.build]
vars = ["target", "profile"]
[[job.build.step]]
name = "compile"
run = "cargo build --target ${var.target} --profile ${var.profile}"
"#;

    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(RUNBOOK_DIR)).unwrap();
        fs::create_dir_all(dir.path().join("src/deep/er")).unwrap();
        dir
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn discovery_walks_up_to_the_nearest_runbook_dir() {
        let p = project();
        fs::write(p.path().join(RUNBOOK_DIR).join("build.toml"), BUILD).unwrap();
        let deep = p.path().join("src/deep/er");
        assert_eq!(find_dir(&deep), Some(p.path().join(RUNBOOK_DIR)));
        let spec = resolve(
            "build",
            &vars(&[("target", "x86"), ("profile", "dev")]),
            None,
            &deep,
        )
        .expect("resolves from a subdirectory");
        assert_eq!(spec.steps[0].run, "cargo build --target x86 --profile dev");
        // A nearer .oj/runbooks shadows the outer one.
        fs::create_dir_all(p.path().join("src/.oj/runbooks")).unwrap();
        assert_eq!(find_dir(&deep), Some(p.path().join("src/.oj/runbooks")));
    }

    /// A runbook's relative `dir` is relative to the directory holding
    /// `.oj/`, wherever `oj run` is started; labels come along.
    #[test]
    fn a_relative_runbook_dir_is_relative_to_the_project() {
        let p = project();
        let text = "[job.b]\nvars = [\"sub\"]\ndir = \"src/${var.sub}\"\nlabels = { team = \"web\" }\n[[job.b.step]]\nname = \"s\"\nrun = \"true\"\n\n[job.abs]\ndir = \"/srv/x\"\n[[job.abs.step]]\nname = \"s\"\nrun = \"true\"\n";
        fs::write(p.path().join(RUNBOOK_DIR).join("b.toml"), text).unwrap();
        let deep = p.path().join("src/deep/er");
        let spec = resolve("b", &vars(&[("sub", "deep")]), None, &deep).unwrap();
        let root = std::path::absolute(p.path()).unwrap();
        assert_eq!(spec.dir.unwrap(), root.join("src/deep").to_str().unwrap());
        assert_eq!(spec.labels["team"], "web");
        let spec = resolve("abs", &vars(&[]), None, &deep).unwrap();
        assert_eq!(spec.dir.as_deref(), Some("/srv/x"));
        // --file elsewhere: relative to the file's directory.
        fs::write(p.path().join("src/other.toml"), text.replace("src/", "")).unwrap();
        let spec = resolve(
            "b",
            &vars(&[("sub", "deep")]),
            Some(Path::new("../../other.toml")),
            &deep,
        )
        .unwrap();
        assert_eq!(spec.dir.unwrap(), root.join("src/deep").to_str().unwrap());
    }

    #[test]
    fn missing_vars_are_all_listed() {
        let p = project();
        fs::write(p.path().join(RUNBOOK_DIR).join("build.toml"), BUILD).unwrap();
        let err = resolve("build", &vars(&[]), None, p.path()).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(
            err.message.contains("target") && err.message.contains("profile"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_job_in_two_files_names_both() {
        let p = project();
        let dir = p.path().join(RUNBOOK_DIR);
        fs::write(dir.join("a.toml"), BUILD).unwrap();
        fs::write(dir.join("b.toml"), BUILD).unwrap();
        fs::write(dir.join("notes.txt"), "not a runbook").unwrap();
        let err = resolve("build", &vars(&[]), None, p.path()).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(
            err.message.contains("a.toml") && err.message.contains("b.toml"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_job_lists_the_available_ones() {
        let p = project();
        fs::write(p.path().join(RUNBOOK_DIR).join("build.toml"), BUILD).unwrap();
        let err = resolve("deploy", &vars(&[]), None, p.path()).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(err.message.contains("build"), "{}", err.message);
    }

    #[test]
    fn no_runbook_dir_and_explicit_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve("build", &vars(&[]), None, dir.path()).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(
            err.message.contains(".oj/runbooks") && err.message.contains("--file"),
            "{}",
            err.message
        );
        fs::write(dir.path().join("mine.toml"), BUILD).unwrap();
        let spec = resolve(
            "build",
            &vars(&[("target", "t"), ("profile", "p")]),
            Some(Path::new("mine.toml")),
            dir.path(),
        )
        .unwrap();
        assert_eq!(spec.name, "build");
        let err = resolve(
            "build",
            &vars(&[]),
            Some(Path::new("nope.toml")),
            dir.path(),
        )
        .unwrap_err();
        assert!(err.message.contains("nope.toml"), "{}", err.message);
    }

    #[test]
    fn a_broken_runbook_names_its_file() {
        let p = project();
        fs::write(p.path().join(RUNBOOK_DIR).join("bad.toml"), "[job.x\n").unwrap();
        let err = resolve("x", &vars(&[]), None, p.path()).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(err.message.contains("bad.toml"), "{}", err.message);
    }
}
