//! The config CI and ConfigMaps can trust (issue 15): unknown `OJ_*`
//! variables, `~/` and file-relative paths, lenient loading, per-layer
//! records, exact quantities — with the environment injected as a map.

use std::path::PathBuf;

use oj_config::{Environment, Flag, Layer, LoadOptions, load, load_tolerant};

fn env(dir: &std::path::Path, vars: &[(&str, &str)]) -> Environment {
    let mut all: Vec<(String, String)> = vec![
        ("HOME".into(), dir.join("home").display().to_string()),
        (
            "XDG_CONFIG_HOME".into(),
            dir.join("cfg").display().to_string(),
        ),
    ];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Environment::new(all, "testhost").with_cwd(dir.join("work"))
}

fn errors(e: &Environment, opts: &LoadOptions) -> String {
    match load(opts, e) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn plain_oj_variables_that_are_no_alias_are_errors_with_the_right_name() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, want) in [
        ("OJ_LOG_FORMAT", "json", "OJ_LOG__FORMAT"),
        ("OJ_LOG_LEVEL", "debug", "OJ_LOG__LEVEL"),
        ("OJ_DRAIN_TIMEOUT", "30s", "OJ_SHUTDOWN__DRAIN_TIMEOUT"),
        ("OJ_MAX_CONCURRENT", "3", "OJ_JOBS__MAX_CONCURRENT"),
    ] {
        let err = errors(&env(dir.path(), &[(var, value)]), &LoadOptions::default());
        assert!(err.contains(&format!("env {var}")), "{err}");
        assert!(err.contains(want), "{var}: {err}");
    }
}

#[test]
fn aliases_selectors_and_step_variables_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(
        dir.path(),
        &[
            ("OJ_LOG_STDOUT", "1"),
            ("OJ_PROFILE", "desktop"),
            ("OJ_JOB_ID", "x"),
            ("OJ_JOB_NAME", "y"),
            ("OJ_STEP", "z"),
        ],
    );
    let loaded = load(&LoadOptions::default(), &e).unwrap();
    assert!(loaded.config.log.stdout);
    for v in oj_config::accepted_variables() {
        assert!(v.starts_with("OJ_"), "{v}");
    }
}

#[test]
fn home_and_file_relative_paths_resolve_and_remember_how_they_were_written() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let file = etc.join("config.toml");
    std::fs::write(
        &file,
        "[tls]\ncert = \"certs/tls.crt\"\nkey = \"~/tls.key\"\n[log.file]\npath = \"oj.log\"\n",
    )
    .unwrap();
    let e = env(dir.path(), &[("OJ_CLIENT__CA", "ca.pem")]);
    let opts = LoadOptions {
        config_files: vec![file.clone()],
        sets: vec!["daemon.state_dir=~/state".into()],
        ..Default::default()
    };
    let l = load(&opts, &e).unwrap();
    assert_eq!(l.config.tls.cert, Some(etc.join("certs/tls.crt")));
    assert_eq!(l.config.tls.key, Some(dir.path().join("home/tls.key")));
    assert_eq!(l.config.client.ca, Some(dir.path().join("work/ca.pem")));
    assert_eq!(l.config.daemon.state_dir, dir.path().join("home/state"));
    // Stays relative to state_dir, as SPEC §2.4 says.
    assert_eq!(l.config.log.file.path, PathBuf::from("oj.log"));
    assert_eq!(l.written("tls.cert"), Some("certs/tls.crt"));
    let origin = l.origin("tls.cert");
    assert!(
        origin.contains("certs/tls.crt") && origin.contains("config.toml"),
        "{origin}"
    );
    assert_eq!(l.written("log.level"), None);
}

#[test]
fn a_relative_config_file_is_found_from_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("work")).unwrap();
    std::fs::write(
        dir.path().join("work/oj.toml"),
        "[jobs]\nmax_concurrent = 9\n",
    )
    .unwrap();
    let opts = LoadOptions {
        config_files: vec!["oj.toml".into()],
        ..Default::default()
    };
    let l = load(&opts, &env(dir.path(), &[])).unwrap();
    assert_eq!(l.config.jobs.max_concurrent, 9);
    assert_eq!(l.files, vec![dir.path().join("work/oj.toml")]);
}

#[test]
fn a_tolerant_load_leaves_out_what_it_may_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(
        dir.path(),
        &[("OJ_LOG__FORMAT", "yaml"), ("OJ_CLIENT__URL", "http://h:1")],
    );
    let opts = LoadOptions {
        sets: vec!["jobs.max_concurrnt=3".into()],
        ..Default::default()
    };
    let t = load_tolerant(&opts, &e, |err| {
        !err.key
            .as_deref()
            .is_some_and(oj_config::keys::used_by_client)
    })
    .unwrap();
    assert_eq!(t.loaded.config.client.url.as_deref(), Some("http://h:1"));
    assert_eq!(t.ignored.len(), 2, "{:?}", t.ignored);
    // An error in a key the predicate keeps is returned.
    let e = env(dir.path(), &[("OJ_CLIENT__URL", "ftp://h")]);
    assert!(
        load_tolerant(&LoadOptions::default(), &e, |err| {
            !err.key
                .as_deref()
                .is_some_and(oj_config::keys::used_by_client)
        })
        .is_err()
    );
}

#[test]
fn every_layer_is_recorded_with_what_it_sets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[jobs]\nmax_concurrent = 6\n").unwrap();
    let e = env(dir.path(), &[("OJ_JOBS__MAX_CONCURRENT", "7")]);
    let opts = LoadOptions {
        config_files: vec![file.clone()],
        sets: vec!["jobs.max_concurrent=8".into()],
        ..Default::default()
    };
    let l = load(&opts, &e).unwrap();
    let setters: Vec<(&Layer, String)> = l
        .layers
        .iter()
        .filter_map(|r| {
            r.values()
                .get("jobs.max_concurrent")
                .map(|v| (&r.layer, v.to_string()))
        })
        .collect();
    assert_eq!(
        setters,
        vec![
            (&Layer::Default, "4".to_string()),
            (&Layer::profile("desktop"), "4".to_string()),
            (&Layer::file(&file), "6".to_string()),
            (&Layer::env("OJ_JOBS__MAX_CONCURRENT"), "7".to_string()),
            (&Layer::Flag(Flag::Set), "8".to_string()),
        ]
    );
    let names: Vec<String> = setters.iter().map(|(l, _)| l.to_string()).collect();
    assert_eq!(
        names,
        [
            "default".to_string(),
            "profile desktop".into(),
            format!("file {}", file.display()),
            "env OJ_JOBS__MAX_CONCURRENT".into(),
            "flag --set".into(),
        ]
    );
    assert_eq!(l.options.sets, vec!["jobs.max_concurrent=8".to_string()]);
}

#[test]
fn requests_equal_to_limits_in_another_spelling_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LoadOptions {
        sets: vec![
            "pods.resources.requests.cpu=700m".into(),
            "pods.resources.limits.cpu=0.7".into(),
            "pods.resources.requests.memory=1Gi".into(),
            "pods.resources.limits.memory=1073741824".into(),
        ],
        ..Default::default()
    };
    load(&opts, &env(dir.path(), &[])).unwrap();
    let opts = LoadOptions {
        sets: vec![
            "pods.resources.requests.cpu=701m".into(),
            "pods.resources.limits.cpu=0.7".into(),
        ],
        ..Default::default()
    };
    let err = errors(&env(dir.path(), &[]), &opts);
    assert!(err.contains("pods.resources.requests.cpu"), "{err}");
}

#[test]
fn explain_lists_every_layer_and_diff_names_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(dir.path(), &[("OJ_LOG__LEVEL", "debug")]);
    let l = load(&LoadOptions::default(), &e).unwrap();
    let text = oj_config::inspect::explain(&l, "log.level").unwrap();
    assert!(text.contains("\"info\"  (shadowed)"), "{text}");
    assert!(text.contains("env OJ_LOG__LEVEL"), "{text}");
    assert!(text.contains("<- effective"), "{text}");
    assert!(oj_config::inspect::explain(&l, "log.levl").is_err());
    let section = oj_config::inspect::explain(&l, "log.file").unwrap();
    assert!(section.contains("log.file.rotation"), "{section}");

    let base = load(&LoadOptions::default(), &env(dir.path(), &[])).unwrap();
    let d = oj_config::inspect::diff(
        &oj_config::render::View::of(&base),
        &oj_config::render::View::of(&l),
        |_| false,
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].to_string(),
        "log.level: \"info\" (default) -> \"debug\" (env OJ_LOG__LEVEL)"
    );
}

#[test]
fn secrets_stay_redacted_in_explain() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(dir.path(), &[("OJ_CLIENT__TOKEN", "hunter2-secret")]);
    let l = load(&LoadOptions::default(), &e).unwrap();
    let text = oj_config::inspect::explain(&l, "client.token").unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
}

#[test]
fn errors_and_the_profile_name_their_layer_by_variant() {
    let dir = tempfile::tempdir().unwrap();
    let layer_of = |vars: &[(&str, &str)], opts: LoadOptions| -> Vec<Option<Layer>> {
        match load(&opts, &env(dir.path(), vars)) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.0.into_iter().map(|e| e.layer).collect(),
        }
    };
    assert_eq!(
        layer_of(&[("OJ_NO__SUCH_KEY", "1")], LoadOptions::default()),
        [Some(Layer::env("OJ_NO__SUCH_KEY"))]
    );
    let missing = dir.path().join("missing.toml");
    assert_eq!(
        layer_of(
            &[],
            LoadOptions {
                config_files: vec![missing.clone()],
                ..Default::default()
            }
        ),
        [Some(Layer::File(missing))]
    );
    assert_eq!(
        layer_of(
            &[],
            LoadOptions {
                sets: vec!["no.such.key=1".into()],
                ..Default::default()
            }
        ),
        [Some(Layer::Flag(Flag::Set))]
    );
    assert_eq!(
        layer_of(&[("OJ_PROFILE", "nope")], LoadOptions::default()),
        [Some(Layer::env("OJ_PROFILE"))]
    );
    let profile = dir.path().join("cfg/oj/profiles/ci.toml");
    std::fs::create_dir_all(profile.parent().unwrap()).unwrap();
    std::fs::write(
        &profile,
        "extends = \"desktop\"\n[jobs]\nmax_concurrnt = 2\n",
    )
    .unwrap();
    assert_eq!(
        layer_of(
            &[],
            LoadOptions {
                profile: Some("ci".into()),
                ..Default::default()
            }
        ),
        [Some(Layer::profile("ci"))]
    );
    std::fs::write(&profile, "extends = \"desktop\"\n").unwrap();

    let selected_by = |vars: &[(&str, &str)], profile: Option<&str>| {
        let opts = LoadOptions {
            profile: profile.map(str::to_string),
            ..Default::default()
        };
        load(&opts, &env(dir.path(), vars)).unwrap().profile_source
    };
    assert_eq!(selected_by(&[], None), Layer::Default);
    assert_eq!(selected_by(&[], Some("ci")), Layer::Flag(Flag::Profile));
    assert_eq!(
        selected_by(&[("OJ_PROFILE", "ci")], None),
        Layer::env("OJ_PROFILE")
    );
    assert_eq!(
        selected_by(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")], None),
        Layer::env("KUBERNETES_SERVICE_HOST")
    );
}

#[test]
fn a_lenient_load_leaves_out_the_file_or_variable_an_error_names() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[jobs\n").unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[jobs]\nmax_concurrent = 5\n").unwrap();
    let opts = LoadOptions {
        config_files: vec![broken.clone(), good.clone()],
        ..Default::default()
    };
    let e = env(dir.path(), &[("OJ_STRAY", "1")]);
    let t = load_tolerant(&opts, &e, |_| true).unwrap();
    let layers: Vec<Option<Layer>> = t.ignored.iter().map(|e| e.layer.clone()).collect();
    assert_eq!(
        layers,
        [Some(Layer::File(broken)), Some(Layer::env("OJ_STRAY"))]
    );
    assert_eq!(t.loaded.files, std::slice::from_ref(&good));
    assert_eq!(*t.loaded.source("jobs.max_concurrent"), Layer::File(good));
}
