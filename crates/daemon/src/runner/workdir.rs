//! The working directory of a shell step (SPEC §8.1): the job's `dir`,
//! which must be a directory when the step starts (else the step fails,
//! naming it, and nothing else happens), or the job's scratch directory,
//! created here mode 0700.

use std::path::Path;

use super::shell::append_note;
use super::{StepContext, StepOutcome, WorkDir};

/// What is wrong with a step's working directory right now, if anything.
pub(super) fn problem(dir: &WorkDir) -> Option<String> {
    let WorkDir::Given(path) = dir else {
        return None;
    };
    let what = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return None,
        Ok(_) => "is not a directory".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
        Err(e) => format!("cannot be used ({e})"),
    };
    Some(format!(
        "the job's working directory {} {what}; create it, or submit the job again with --dir naming a directory that exists",
        path.display()
    ))
}

/// Checks (or creates) the step's working directory; the directory to run
/// in, or the step's failure.
pub(super) fn prepare(ctx: &StepContext) -> Result<Option<&Path>, StepOutcome> {
    let Some(dir) = &ctx.work_dir else {
        return Ok(None);
    };
    let fail = |msg: String| {
        append_note(&ctx.log_path, &msg);
        StepOutcome::Error(format!("step {}: {msg}", ctx.step_name))
    };
    match dir {
        WorkDir::Given(path) => match problem(dir) {
            None => Ok(Some(path.as_path())),
            Some(msg) => Err(fail(msg)),
        },
        WorkDir::Scratch(path) => match crate::harden::create_private_dir_all(path) {
            Ok(()) => Ok(Some(path.as_path())),
            Err(e) => Err(fail(format!(
                "cannot create the job's scratch directory {}: {e}",
                path.display()
            ))),
        },
    }
}
