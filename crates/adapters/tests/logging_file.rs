//! The file sink: where lines land, that dropping the guard flushes them,
//! that the live file is exactly `log.file.path`, and that pruning keeps at
//! most `max_files` rotated files and nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
fn the_live_file_is_the_configured_path_and_old_files_are_pruned_to_max_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Earlier days' files (rotated now, and as older versions named them),
    // plus state files that share the prefix.
    for day in 1..=5 {
        std::fs::write(d.join(format!("daemon.log.2026-10-0{day}")), "old\n").unwrap();
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
    let logs: Vec<&String> = all
        .iter()
        .filter(|f| f.starts_with("daemon.log") || f.ends_with(".log"))
        .collect();
    assert_eq!(
        logs.len(),
        4,
        "the live file and max_files rotated ones: {all:?}"
    );
    assert!(
        std::fs::read_to_string(d.join("daemon.log"))
            .unwrap()
            .contains("today")
    );
    // The newest rotated files are the ones kept.
    assert!(
        all.contains(&"daemon.log.2026-10-05".to_string()),
        "{all:?}"
    );
    assert!(
        !all.contains(&"daemon.log.2026-10-01".to_string()),
        "the oldest is pruned: {all:?}"
    );
    for keep in ["daemon.lock", "daemon.snapshot", "logs"] {
        assert!(
            all.iter().any(|f| f == keep),
            "{keep} must survive pruning: {all:?}"
        );
    }
}

#[test]
fn a_name_without_extension_is_used_as_it_is_and_pruning_spares_state_files() {
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
    assert!(
        std::fs::read_to_string(d.join("daemon"))
            .unwrap()
            .contains("hourly")
    );
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
