//! The oj daemon: engine, storage, API listeners and lifecycle.

/// Runs the daemon in the foreground until it is stopped; returns the exit code.
pub fn run(loaded: oj_config::Loaded, env: oj_config::Environment) -> i32 {
    let _ = (loaded, env);
    eprintln!("oj: the daemon is not built yet");
    1
}
