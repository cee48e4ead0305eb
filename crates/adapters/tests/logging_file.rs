//! The file sink: where lines land, that dropping the guard flushes them,
//! and that pruning keeps at most `max_files` log files and nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use oj_adapters::logging::{self, LoggingInput};
use oj_config::{LogConfig, LogFileConfig, LogFormat, LogRotation};

fn input(dir: &Path, name: &str, rotation: LogRotation, max_files: u32) -> LoggingInput {
    LoggingInput {
        log: LogConfig {
            level: "info".into(),
            format: LogFormat::Json,
            stdout: false,
            file: LogFileConfig {
                enabled: true,
                path: PathBuf::from(name),
                rotation,
                max_files,
            },
        },
        file_path: dir.join(name),
        version: "0.0.0-test".into(),
        profile: "desktop".into(),
        sources: BTreeMap::new(),
        secrets: Vec::new(),
        no_color: false,
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn lines_reach_the_file_once_the_guard_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/nested");
    let inp = input(&state, "daemon.log", LogRotation::Never, 7);
    let (dispatch, guard) = logging::build(&inp).unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        logging::emit_startup_line(&inp);
        for i in 0..500 {
            tracing::info!(i, "line");
        }
        tracing::info!("the last line before exit");
    });
    drop(guard);
    // `never` writes exactly the configured file, creating its directory.
    let text = std::fs::read_to_string(state.join("daemon.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 502, "every line, none dropped");
    assert!(lines[0].contains("oj starting"), "{}", lines[0]);
    assert!(lines[501].contains("the last line before exit"));
    for l in lines {
        serde_json::from_str::<serde_json::Value>(l).unwrap();
    }
}

#[test]
fn daily_files_are_named_by_date_and_pruned_to_max_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Earlier days' files, plus state files that share the prefix.
    for day in 1..=9 {
        std::fs::write(d.join(format!("daemon.2026-10-0{day}.log")), "old\n").unwrap();
    }
    std::fs::write(d.join("daemon.lock"), "123").unwrap();
    std::fs::write(d.join("daemon.snapshot"), "{}").unwrap();
    std::fs::create_dir(d.join("logs")).unwrap();

    let inp = input(d, "daemon.log", LogRotation::Daily, 3);
    let (dispatch, guard) = logging::build(&inp).unwrap();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("today"));
    drop(guard);

    let all = files(d);
    let logs: Vec<&String> = all.iter().filter(|f| f.ends_with(".log")).collect();
    assert!(logs.len() <= 3, "at most max_files log files: {all:?}");
    let today = logging::current_file_name(&inp.log, &inp.file_path, SystemTime::now()).unwrap();
    let today_name = today.file_name().unwrap().to_str().unwrap().to_string();
    assert!(all.contains(&today_name), "{today_name} in {all:?}");
    assert!(std::fs::read_to_string(&today).unwrap().contains("today"));
    for keep in ["daemon.lock", "daemon.snapshot", "logs"] {
        assert!(
            all.iter().any(|f| f == keep),
            "{keep} must survive pruning: {all:?}"
        );
    }
}

#[test]
fn a_name_without_extension_gets_log_so_pruning_spares_state_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("daemon.lock"), "123").unwrap();
    std::fs::write(d.join("daemon.wal"), "x").unwrap();
    let inp = input(d, "daemon", LogRotation::Hourly, 1);
    let (dispatch, guard) = logging::build(&inp).unwrap();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("hourly"));
    drop(guard);
    let all = files(d);
    assert!(
        all.contains(&"daemon.lock".to_string()) && all.contains(&"daemon.wal".to_string()),
        "{all:?}"
    );
    let hourly = logging::current_file_name(&inp.log, &inp.file_path, SystemTime::now()).unwrap();
    assert!(hourly.to_str().unwrap().ends_with(".log"), "{hourly:?}");
    assert!(std::fs::read_to_string(hourly).unwrap().contains("hourly"));
}

#[test]
fn an_unwritable_directory_is_an_error_naming_log_file_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let inp = input(&blocker, "daemon.log", LogRotation::Never, 1);
    let err = logging::build(&inp).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("log.file.path") && msg.contains("not-a-dir"),
        "{msg}"
    );
}
