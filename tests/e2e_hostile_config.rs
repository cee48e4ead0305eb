//! A hostile-input corpus for the configuration: broken files, environment
//! variables and flags. Each must exit 78 with the offending key (or file)
//! and its layer named, without a panic, and without echoing a secret.

mod common;

use common::TestEnv;

/// Where a broken value is injected.
enum Via {
    /// Contents of a `--config` file.
    File(&'static str),
    /// The default config file.
    DefaultFile(&'static str),
    Env(&'static str, &'static str),
    Set(&'static str),
    /// `--profile NAME` with user profiles (name, contents).
    Profile(&'static str, &'static [(&'static str, &'static str)]),
}

struct Case {
    via: Via,
    /// Text that must appear on stderr (the key, variable or file).
    names: &'static str,
}

fn case(via: Via, names: &'static str) -> Case {
    Case { via, names }
}

fn corpus() -> Vec<Case> {
    use Via::*;
    vec![
        // wrong types in files
        case(
            File("[jobs]\nmax_concurrent = \"four\"\n"),
            "jobs.max_concurrent",
        ),
        case(File("[jobs]\nmax_concurrent = 0\n"), "jobs.max_concurrent"),
        case(File("[jobs]\nmax_concurrent = -3\n"), "jobs.max_concurrent"),
        case(
            File("[jobs]\nmax_concurrent = 1.5\n"),
            "jobs.max_concurrent",
        ),
        case(File("[jobs]\nshell = \"/bin/sh -c\"\n"), "jobs.shell"),
        case(File("[jobs]\nshell = [1, 2]\n"), "jobs.shell"),
        case(File("[jobs]\nshell = []\n"), "jobs.shell"),
        case(
            File("[listen]\ninsecure_no_auth = \"yes\"\n"),
            "listen.insecure_no_auth",
        ),
        case(
            File("[listen]\nmax_request_bytes = \"1MB\"\n"),
            "listen.max_request_bytes",
        ),
        case(File("[log]\nstdout = 1\n"), "log.stdout"),
        case(File("[log.file]\nmax_files = 0\n"), "log.file.max_files"),
        case(File("[notify]\nevents = \"start\"\n"), "notify.events"),
        case(
            File("[notify]\nevents = [\"start\", \"finish\"]\n"),
            "notify.events",
        ),
        case(
            File("[notify.webhook]\nmax_attempts = 0\n"),
            "notify.webhook.max_attempts",
        ),
        case(
            File("[notify.webhook]\nheaders = \"x\"\n"),
            "notify.webhook.headers",
        ),
        case(
            File("[notify.webhook.headers]\nx-n = 5\n"),
            "notify.webhook.headers",
        ),
        case(File("jobs = 3\n"), "jobs"),
        case(File("[daemon]\nstate_dir = 7\n"), "daemon.state_dir"),
        case(File("[daemon]\ninstance = \"\"\n"), "daemon.instance"),
        case(File("profile = 3\n"), "profile"),
        // unknown enum values
        case(File("[log]\nformat = \"yaml\"\n"), "log.format"),
        case(
            File("[log.file]\nrotation = \"weekly\"\n"),
            "log.file.rotation",
        ),
        case(File("[notify]\nbackend = \"email\"\n"), "notify.backend"),
        case(
            File("[notify.webhook]\nformat = \"teams\"\n"),
            "notify.webhook.format",
        ),
        case(File("[lock]\nstrategy = \"pidfile\"\n"), "lock.strategy"),
        case(File("[tls]\nmin_version = \"1.1\"\n"), "tls.min_version"),
        case(
            File("[pods]\nimage_pull_policy = \"always\"\n"),
            "pods.image_pull_policy",
        ),
        // bad durations
        case(
            File("[jobs]\nstep_timeout = \"forever\"\n"),
            "jobs.step_timeout",
        ),
        case(File("[jobs]\nstep_timeout = 30\n"), "jobs.step_timeout"),
        case(File("[jobs]\nstep_timeout = \"0s\"\n"), "jobs.step_timeout"),
        case(
            File("[shutdown]\ndrain_timeout = \"5 parsecs\"\n"),
            "shutdown.drain_timeout",
        ),
        case(
            File("[tls]\nreload_interval = \"-1s\"\n"),
            "tls.reload_interval",
        ),
        case(
            File("[notify.webhook]\nbackoff = \"\"\n"),
            "notify.webhook.backoff",
        ),
        // quantities
        case(
            File("[pods.resources.limits]\nmemory = \"2GB\"\n"),
            "pods.resources.limits.memory",
        ),
        case(
            File("[pods.resources.limits]\ncpu = \"two\"\n"),
            "pods.resources.limits.cpu",
        ),
        case(
            File("[pods.resources.requests]\ncpu = \"-1\"\n"),
            "pods.resources.requests.cpu",
        ),
        case(
            File("[pods.resources.requests]\nmemory = \"3Gi\"\n"),
            "pods.resources.requests.memory",
        ),
        case(
            File("[pods.resources.requests]\ncpu = \"2500m\"\n"),
            "pods.resources.requests.cpu",
        ),
        // unknown keys and sections
        case(File("[log]\nfromat = \"json\"\n"), "log.fromat"),
        case(File("[logging]\nlevel = \"info\"\n"), "logging"),
        case(
            File("[pods.resources.limits]\ngpu = \"1\"\n"),
            "pods.resources.limits.gpu",
        ),
        case(File("extends = \"desktop\"\n"), "extends"),
        // TOML syntax
        case(File("[jobs\nmax_concurrent = 2\n"), ":1:"),
        case(File("[jobs]\nmax_concurrent = = 2\n"), ":2:"),
        case(
            File("[jobs]\nmax_concurrent = 2\nmax_concurrent = 3\n"),
            ":3:",
        ),
        case(File("key with spaces = 1\n"), ":1:"),
        case(File("[log]\nlevel = \"unterminated\n"), ":2:"),
        case(DefaultFile("[jobs]]\n"), "config.toml:1:"),
        // cross-key rules
        case(File("[notify]\nbackend = \"webhook\"\n"), "notify.backend"),
        case(File("[listen]\ntcp = \"127.0.0.1:7777\"\n"), "listen.tcp"),
        case(
            File("[listen]\ntcp = \"7777\"\ninsecure_no_auth = true\n"),
            "listen.tcp",
        ),
        case(
            File("[listen]\ntcp = \"127.0.0.1:99999\"\ninsecure_no_auth = true\n"),
            "listen.tcp",
        ),
        case(File("[admin]\naddr = \"localhost\"\n"), "admin.addr"),
        case(File("[tls]\nenabled = true\n"), "tls.cert"),
        case(
            File("[lock.lease]\nduration = \"5s\"\n"),
            "lock.lease.duration",
        ),
        case(
            File("[lock.lease]\nretry_period = \"9s\"\n"),
            "lock.lease.renew_deadline",
        ),
        case(File("[log]\nlevel = \"info,=\"\n"), "log.level"),
        case(File("[client]\nurl = \"ftp://x\"\n"), "client.url"),
        case(File("[client]\ncert = \"/c.pem\"\n"), "client.cert"),
        case(
            File("[notify.webhook]\nurl = \"not a url\"\n"),
            "notify.webhook.url",
        ),
        // environment
        case(Env("OJ_LOG__FORMAT", "xml"), "env OJ_LOG__FORMAT"),
        case(Env("OJ_LOG__FROMAT", "json"), "OJ_LOG__FORMAT"),
        case(
            Env("OJ_JOBS__MAX_CONCURRENT", "many"),
            "env OJ_JOBS__MAX_CONCURRENT",
        ),
        case(Env("OJ_LOG__STDOUT", "perhaps"), "env OJ_LOG__STDOUT"),
        case(Env("OJ_TCP_PORT", "http"), "env OJ_TCP_PORT"),
        case(Env("OJ_TCP_PORT", "70000"), "env OJ_TCP_PORT"),
        case(
            Env("OJ_DRAIN_TIMEOUT_MS", "1.5s"),
            "env OJ_DRAIN_TIMEOUT_MS",
        ),
        case(Env("OJ_NOTIFY__EVENTS", "[start"), "env OJ_NOTIFY__EVENTS"),
        case(
            Env("OJ_NOTIFY__WEBHOOK__HEADERS", "x"),
            "notify.webhook.headers",
        ),
        case(
            Env("OJ_PODS__RESOURCES__LIMITS__MEMORY", "lots"),
            "env OJ_PODS__RESOURCES__LIMITS__MEMORY",
        ),
        case(
            Env("OJ_CONFIG", "/nonexistent/oj.toml"),
            "/nonexistent/oj.toml",
        ),
        case(Env("OJ_PROFILE", "prod"), "env OJ_PROFILE"),
        case(
            Env("OJ_PROFILE", "../etc/passwd"),
            "not a valid profile name",
        ),
        // flags
        case(Set("log.format=xml"), "flag --set"),
        case(Set("nope"), "KEY=VALUE"),
        case(Set("jobs.max_concurent=2"), "jobs.max_concurrent"),
        case(Set("notify.webhook.headers=x"), "notify.webhook.headers"),
        case(
            Set("shutdown.drain_timeout=soon"),
            "shutdown.drain_timeout (from flag --set)",
        ),
        // profiles
        case(
            Profile(
                "a",
                &[("a", "extends = \"b\"\n"), ("b", "extends = \"a\"\n")],
            ),
            "cycle",
        ),
        case(
            Profile("self", &[("self", "extends = \"self\"\n")]),
            "cycle",
        ),
        case(
            Profile("orphan", &[("orphan", "extends = \"ghost\"\n")]),
            "ghost",
        ),
        case(
            Profile("noext", &[("noext", "[jobs]\nmax_concurrent = 2\n")]),
            "extends",
        ),
        case(
            Profile(
                "badkey",
                &[("badkey", "extends = \"desktop\"\n[jobs]\nmax = 2\n")],
            ),
            "profile badkey",
        ),
        case(
            Profile("broken", &[("broken", "extends = \"desktop\"\n[jobs\n")]),
            "broken.toml:2:",
        ),
    ]
}

#[test]
fn every_broken_configuration_exits_78_naming_what_is_wrong() {
    let cases = corpus();
    assert!(cases.len() >= 60, "corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let mut env = TestEnv::new();
        let mut args: Vec<String> = Vec::new();
        match &c.via {
            Via::File(text) => {
                let p = env.write(&format!("case{i}.toml"), text);
                args.extend(["--config".into(), p.display().to_string()]);
            }
            Via::DefaultFile(text) => {
                env.write_config(text);
            }
            Via::Env(k, v) => env.set_var(k, v),
            Via::Set(s) => args.extend(["--set".into(), s.to_string()]),
            Via::Profile(name, files) => {
                for (n, text) in files.iter() {
                    env.write(&format!("config/oj/profiles/{n}.toml"), text);
                }
                args.extend(["--profile".into(), name.to_string()]);
            }
        }
        args.extend(["config".into(), "show".into()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.run(&refs);
        let ok = out.code == Some(78)
            && out.stderr.starts_with("oj: ")
            && out.stderr.contains(c.names)
            && !out.stderr.contains("panicked");
        if !ok {
            failures.push(format!(
                "case {i} ({}): exit {:?}\n{}",
                c.names, out.code, out.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
