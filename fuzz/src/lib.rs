//! The fuzzed code, shared by the libFuzzer targets (`cargo fuzz run`) and
//! the plain replay binaries (`cargo run --bin <target> -- <inputs>`), so a
//! crash found by one reproduces with the other. Every function must return
//! normally for any input: a panic is a bug (user input must never panic).

use std::path::PathBuf;
use std::sync::OnceLock;

use oj_config::{Environment, LoadOptions};
use oj_core::spec::JobSpec;

/// Bytes → job spec, as the daemon decodes `POST /v1/jobs`: decoding and
/// validation never panic, `JobSpec::from_json` agrees with serde, and a
/// decoded spec survives a JSON round trip unchanged.
pub fn job_spec(data: &[u8]) {
    let direct = serde_json::from_slice::<JobSpec>(data);
    let located = JobSpec::from_json(data);
    assert_eq!(
        direct.is_ok(),
        located.is_ok(),
        "JobSpec::from_json and serde disagree"
    );
    let Ok(spec) = direct else { return };
    let valid = spec.validate();
    let text = serde_json::to_vec(&spec).expect("a decoded spec serializes");
    let again: JobSpec = serde_json::from_slice(&text).unwrap_or_else(|e| {
        panic!(
            "a decoded spec does not decode again: {e}\n{}",
            String::from_utf8_lossy(&text)
        )
    });
    assert_eq!(again, spec, "round trip changed the spec");
    assert_eq!(
        again.validate(),
        valid,
        "validation changed across a round trip"
    );
}

struct Dirs {
    _root: tempfile::TempDir,
    home: PathBuf,
    config_home: PathBuf,
    file: PathBuf,
    profile: PathBuf,
}

fn dirs() -> &'static Dirs {
    static DIRS: OnceLock<Dirs> = OnceLock::new();
    DIRS.get_or_init(|| {
        let root = tempfile::tempdir().expect("tempdir");
        let home = root.path().join("home");
        let config_home = root.path().join("config");
        std::fs::create_dir_all(config_home.join("oj/profiles")).expect("mkdir");
        std::fs::create_dir_all(&home).expect("mkdir");
        Dirs {
            file: root.path().join("fuzz.toml"),
            profile: config_home.join("oj/profiles/fuzzp.toml"),
            home,
            config_home,
            _root: root,
        }
    })
}

/// Bytes → every config layer at once, through `oj_config::load` as the
/// binary calls it. The input is text (lossy UTF-8): TOML for a `--config`
/// file, then after a line `#!---` TOML for a user profile `fuzzp`; lines
/// `#!env K=V` add environment variables, `#!set K=V` add `--set` flags and
/// `#!profile NAME` selects a profile (all are TOML comments, so the rest
/// stays the file's text).
pub fn config_loader(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let d = dirs();
    let (file, profile) = match text.split_once("\n#!---") {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (text.to_string(), String::new()),
    };
    let mut vars: Vec<(String, String)> = vec![
        ("HOME".into(), d.home.display().to_string()),
        (
            "XDG_CONFIG_HOME".into(),
            d.config_home.display().to_string(),
        ),
    ];
    let mut opts = LoadOptions {
        profile: None,
        config_files: vec![d.file.clone()],
        sets: Vec::new(),
    };
    for line in text.lines() {
        if let Some(kv) = line.strip_prefix("#!env ") {
            if let Some((k, v)) = kv.split_once('=') {
                vars.push((k.to_string(), v.to_string()));
            }
        } else if let Some(s) = line.strip_prefix("#!set ") {
            opts.sets.push(s.to_string());
        } else if let Some(p) = line.strip_prefix("#!profile ") {
            opts.profile = Some(p.to_string());
        }
    }
    std::fs::write(&d.file, file).expect("write the config file");
    std::fs::write(&d.profile, profile).expect("write the profile file");
    let _ = oj_config::parse_toml(&text);
    let env = Environment::new(vars, "fuzz-host");
    match oj_config::load(&opts, &env) {
        Ok(loaded) => {
            // What `config show` does with a loaded config.
            let _ = serde_json::to_string(&loaded.config);
            let _ = loaded.source("log.format");
        }
        Err(errors) => {
            let _ = errors.to_string();
        }
    }
}

/// `main` of a replay binary: runs `target` over every file named on the
/// command line (directories: every file inside), default `seeds/<name>`.
pub fn replay_main(name: &str, target: fn(&[u8])) {
    let mut args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.is_empty() {
        args.push(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("seeds")
                .join(name),
        );
    }
    let mut files = Vec::new();
    for a in args {
        if a.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(&a)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", a.display()))
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(a);
        }
    }
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
        target(&data);
    }
    println!("{name}: {} inputs replayed, no panic", files.len());
}
