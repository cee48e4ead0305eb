//! Resolving the full configuration through all five layers: defaults, a
//! profile (user profile extending kubernetes), a config file, environment
//! variables (keys and aliases) and `--set` flags.

use criterion::{Criterion, criterion_group, criterion_main};
use oj_config::{Environment, LoadOptions, load};

fn resolve(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("cfg");
    std::fs::create_dir_all(cfg.join("oj/profiles")).expect("mkdir");
    std::fs::write(
        cfg.join("oj/profiles/ci.toml"),
        "extends = \"kubernetes\"\n[jobs]\nmax_concurrent = 8\n",
    )
    .expect("profile");
    let file = dir.path().join("extra.toml");
    std::fs::write(
        &file,
        "[notify.webhook]\nurl = \"https://hooks.example/x\"\n[pods.resources.limits]\nmemory = \"4Gi\"\n[listen]\nauth_token = \"t\"\n",
    )
    .expect("file");
    let env = Environment::new(
        [
            ("HOME", dir.path().display().to_string()),
            ("XDG_CONFIG_HOME", cfg.display().to_string()),
            ("OJ_LOG__LEVEL", "debug".to_string()),
            ("OJ_SHUTDOWN__DRAIN_TIMEOUT", "30s".to_string()),
            ("OJ_TCP_PORT", "7000".to_string()),
        ],
        "bench",
    );
    let opts = LoadOptions {
        profile: Some("ci".into()),
        config_files: vec![file],
        sets: vec!["jobs.step_timeout=2h".into(), "tls.enabled=false".into()],
    };
    load(&opts, &env).expect("bench config is valid");
    c.bench_function("resolve_full_config_5_layers", |b| {
        b.iter(|| load(&opts, &env))
    });
}

criterion_group!(benches, resolve);
criterion_main!(benches);
