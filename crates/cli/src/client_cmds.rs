//! Client commands: talk to the daemon over its API.

use oj_config::{Environment, LoadOptions};

use crate::cli::{ExecArgs, JobCommand, RunArgs, StatusArgs};
use crate::exit::Failure;

fn not_yet() -> Failure {
    Failure::runtime("this command is not built yet")
}

pub fn daemon_stop(_opts: &LoadOptions, _env: &Environment) -> Result<i32, Failure> {
    Err(not_yet())
}

pub fn status(_args: StatusArgs, _opts: &LoadOptions, _env: &Environment) -> Result<i32, Failure> {
    Err(not_yet())
}

pub fn run(_args: RunArgs, _opts: &LoadOptions, _env: &Environment) -> Result<i32, Failure> {
    Err(not_yet())
}

pub fn exec(_args: ExecArgs, _opts: &LoadOptions, _env: &Environment) -> Result<i32, Failure> {
    Err(not_yet())
}

pub fn job(_cmd: JobCommand, _opts: &LoadOptions, _env: &Environment) -> Result<i32, Failure> {
    Err(not_yet())
}
