//! User-named tables (`queues.<name>`, `schedules.<name>`): every layer sets
//! them, provenance and explain name the concrete key, bad names and
//! missing required keys are errors naming key and layer.

use std::time::Duration;

use oj_config::{Environment, LoadOptions, ScheduleCatchUp, ScheduleOverlap, load};

fn env(dir: &std::path::Path, extra: &[(&str, &str)]) -> Environment {
    let mut vars = vec![
        ("HOME".to_string(), dir.join("home").display().to_string()),
        (
            "XDG_CONFIG_HOME".to_string(),
            dir.join("cfg").display().to_string(),
        ),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Environment::new(vars, "testhost")
}

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("cfg/oj/config.toml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn queues_come_from_files_env_and_flags_with_their_layer() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        "[queues.deploy]\nmax_concurrent = 1\n[queues.gpu]\n",
    );
    let opts = LoadOptions {
        sets: vec!["queues.test.max_concurrent=3".into()],
        ..LoadOptions::default()
    };
    let loaded = load(
        &opts,
        &env(dir.path(), &[("OJ_QUEUES__BUILD__MAX_CONCURRENT", "2")]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let q = &loaded.config.queues;
    assert_eq!(q["deploy"].max_concurrent, Some(1));
    assert_eq!(q["build"].max_concurrent, Some(2));
    assert_eq!(q["test"].max_concurrent, Some(3));
    assert_eq!(q["gpu"].max_concurrent, None, "unset = jobs.max_concurrent");
    assert_eq!(
        loaded.sources["queues.deploy.max_concurrent"],
        format!("file {}", file.display())
    );
    assert_eq!(
        loaded.sources["queues.build.max_concurrent"],
        "env OJ_QUEUES__BUILD__MAX_CONCURRENT"
    );
    assert_eq!(loaded.sources["queues.test.max_concurrent"], "flag --set");
    let explained = oj_config::inspect::explain(&loaded, "queues.build.max_concurrent").unwrap();
    assert!(
        explained.contains("OJ_QUEUES__BUILD__MAX_CONCURRENT"),
        "{explained}"
    );
    assert!(explained.contains("live"), "{explained}");
    let shown = oj_config::render::show(
        &loaded,
        oj_config::render::ShowOptions {
            sources: true,
            ..Default::default()
        },
    );
    assert!(
        shown
            .contains("[queues.build]\nmax_concurrent = 2  # env OJ_QUEUES__BUILD__MAX_CONCURRENT"),
        "{shown}"
    );
    toml::from_str::<toml::Table>(&shown).expect("--sources output is valid TOML");
}

#[test]
fn a_schedule_takes_its_defaults_and_the_job_table_whole() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        r#"
[schedules.nightly]
cron = "0 3 * * *"
job = { name = "nightly", steps = [{ name = "report", run = "make report" }] }
"#,
    );
    let loaded = load(
        &LoadOptions::default(),
        &env(dir.path(), &[("OJ_SCHEDULES__NIGHTLY__OVERLAP", "replace")]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let s = &loaded.config.schedules["nightly"];
    assert_eq!(s.cron, "0 3 * * *");
    assert_eq!(s.timezone, "local");
    assert_eq!(s.overlap, ScheduleOverlap::Replace);
    assert_eq!(s.catch_up, ScheduleCatchUp::Latest);
    assert_eq!(s.catch_up_within, Duration::from_secs(86_400));
    assert!(s.enabled);
    assert_eq!(s.job["steps"][0]["run"], "make report");
}

#[test]
fn bad_names_and_missing_keys_are_errors_naming_key_and_layer() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "[queues.Build]\nmax_concurrent = 0\n[schedules.broken]\ntimezone = \"UTC\"\n",
    );
    let err = load(&LoadOptions::default(), &env(dir.path(), &[]))
        .map(|_| ())
        .expect_err("errors")
        .to_string();
    for part in [
        "queues.Build (from file",
        "is not a valid name",
        "queues.Build.max_concurrent (from file",
        "schedules.broken.cron (from file",
        "schedules.broken.job (from file",
    ] {
        assert!(err.contains(part), "missing {part:?} in:\n{err}");
    }
}

#[test]
fn a_misspelt_named_variable_is_refused_with_the_right_name() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(
        &LoadOptions::default(),
        &env(dir.path(), &[("OJ_QUEUES__BUILD__MAX_CONCURENT", "2")]),
    )
    .map(|_| ())
    .expect_err("errors")
    .to_string();
    assert!(
        err.contains("did you mean OJ_QUEUES__BUILD__MAX_CONCURRENT"),
        "{err}"
    );
}
