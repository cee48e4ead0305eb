//! What an operator reads: JSON lines a collector can parse, text lines,
//! the startup line, level directives, and secrets that never show up.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use oj_adapters::logging::{self, LoggingError, LoggingInput};
use oj_config::{Layer, LogConfig, LogFileConfig, LogFormat, LogRotation, Secret};
use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

struct BufWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buf {
    type Writer = BufWriter;
    fn make_writer(&'a self) -> BufWriter {
        BufWriter(self.0.clone())
    }
}

fn input(format: LogFormat, level: &str) -> LoggingInput {
    let mut sources = BTreeMap::new();
    sources.insert("log.stdout".to_string(), Layer::profile("kubernetes"));
    sources.insert("log.format".to_string(), Layer::env("OJ_LOG__FORMAT"));
    LoggingInput {
        log: LogConfig {
            level: level.to_string(),
            format,
            stdout: true,
            file: LogFileConfig {
                enabled: false,
                path: PathBuf::from("daemon.log"),
                rotation: LogRotation::Daily,
                max_files: 7,
            },
        },
        file_path: PathBuf::from("/var/lib/oj/daemon.log"),
        version: "9.8.7".to_string(),
        profile: "kubernetes".to_string(),
        sources,
        secrets: Vec::new(),
        no_color: false,
    }
}

fn capture(input: &LoggingInput, f: impl FnOnce()) -> String {
    let buf = Buf::default();
    let dispatch = logging::build_with_writer(input, buf.clone()).unwrap();
    tracing::dispatcher::with_default(&dispatch, f);
    buf.text()
}

fn json_lines(text: &str) -> Vec<serde_json::Map<String, Value>> {
    text.lines()
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => m,
            other => panic!("not a JSON object line: {l:?} ({other:?})"),
        })
        .collect()
}

#[test]
fn json_lines_carry_the_required_keys_and_flattened_fields() {
    let out = capture(&input(LogFormat::Json, "trace"), || {
        let span = tracing::info_span!("job", job_id = "j-42", attempt = 2u64);
        let _g = span.enter();
        tracing::info!(target: "oj_daemon::engine", step = "compile", exit_code = 3i64, ok = false, "step \"compile\" finished");
        tracing::warn!(level = "shadow", "odd field name");
        tracing::debug!(count = 1.5f64, "no\nnewline escapes");
    });
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{out}");
    for l in &lines {
        for k in ["timestamp", "level", "target", "message"] {
            assert!(l.contains_key(k), "missing {k}: {l:?}");
        }
        let ts = l["timestamp"].as_str().unwrap();
        humantime::parse_rfc3339(ts)
            .unwrap_or_else(|e| panic!("timestamp {ts} is not RFC 3339: {e}"));
        assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");
    }
    let first = &lines[0];
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["target"], "oj_daemon::engine");
    assert_eq!(first["message"], "step \"compile\" finished");
    assert_eq!(first["step"], "compile");
    assert_eq!(first["exit_code"], 3);
    assert_eq!(first["ok"], false);
    // Span fields are flattened too.
    assert_eq!(first["job_id"], "j-42");
    assert_eq!(first["attempt"], 2);
    assert!(
        !first.contains_key("fields") && !first.contains_key("span"),
        "{first:?}"
    );

    // An event field called `level` does not replace the real level.
    assert_eq!(lines[1]["level"], "WARN");
    assert_eq!(lines[1]["field.level"], "shadow");
    assert_eq!(lines[2]["message"], "no\nnewline escapes");
    assert_eq!(lines[2]["count"], 1.5);
    // The JSON starts with the fixed keys, as a reader expects.
    assert!(
        out.lines().all(|l| l.starts_with("{\"timestamp\":")),
        "{out}"
    );
}

#[test]
fn the_first_line_names_version_profile_sinks_and_sources() {
    let inp = input(LogFormat::Json, "info");
    let out = capture(&inp, || logging::emit_startup_line(&inp));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(l["message"], "oj starting");
    assert_eq!(l["target"], "oj");
    assert_eq!(l["version"], "9.8.7");
    assert_eq!(l["profile"], "kubernetes");
    let sinks = l["sinks"].as_str().unwrap();
    assert!(
        sinks.contains("stdout (log.stdout from profile kubernetes)"),
        "{sinks}"
    );
    assert!(
        sinks.contains("json (log.format from env OJ_LOG__FORMAT)"),
        "{sinks}"
    );
    assert!(!sinks.contains("file /"), "{sinks}");
    assert_eq!(l["level"], "INFO");
    assert_eq!(l["log_level"], "info (log.level from default)");

    let mut desktop = input(LogFormat::Text, "info");
    desktop.log.stdout = false;
    desktop.log.file.enabled = true;
    desktop.sources.clear();
    desktop
        .sources
        .insert("log.file.enabled".into(), Layer::profile("desktop"));
    let out = capture(&desktop, || logging::emit_startup_line(&desktop));
    assert!(out.contains("oj starting"), "{out}");
    assert!(
        out.contains("version=9.8.7") && out.contains("profile=kubernetes"),
        "{out}"
    );
    assert!(
        out.contains("file /var/lib/oj/daemon.log (log.file.enabled from profile desktop)"),
        "{out}"
    );
    assert!(out.contains("text (log.format from default)"), "{out}");
}

#[test]
fn level_directives_filter_by_target_and_the_startup_line_always_passes() {
    let inp = input(LogFormat::Json, "warn,oj_daemon::engine=debug");
    let out = capture(&inp, || {
        logging::emit_startup_line(&inp);
        tracing::info!(target: "oj_daemon::api", "hidden info");
        tracing::warn!(target: "oj_daemon::api", "shown warn");
        tracing::debug!(target: "oj_daemon::engine", "shown debug");
        tracing::trace!(target: "oj_daemon::engine", "hidden trace");
    });
    let messages: Vec<String> = json_lines(&out)
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(messages, vec!["oj starting", "shown warn", "shown debug"]);
}

#[test]
fn an_invalid_directive_names_log_level() {
    let err = logging::build_with_writer(&input(LogFormat::Json, "info,[[nope"), Buf::default())
        .unwrap_err();
    assert!(matches!(err, LoggingError::Level { .. }));
    let msg = err.to_string();
    assert!(msg.contains("log.level") && msg.contains("[[nope"), "{msg}");
}

#[test]
fn text_lines_are_human_lines() {
    let out = capture(&input(LogFormat::Text, "info"), || {
        tracing::info!(target: "oj_daemon::engine", job_id = "j-1", "job started");
    });
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("INFO")
            && out.contains("oj_daemon::engine")
            && out.contains("job started")
            && out.contains("job_id")
            && out.contains("j-1"),
        "{out}"
    );
    assert!(
        !out.contains('\u{1b}'),
        "no ANSI escapes in captured text: {out:?}"
    );
    assert!(serde_json::from_str::<Value>(out.trim()).is_err());
}

#[test]
fn secrets_never_reach_a_line_even_at_trace() {
    for format in [LogFormat::Json, LogFormat::Text] {
        let mut inp = input(format, "trace");
        let token = "tok-3f9a\"c1-secret";
        let webhook = "https://hooks.example.com/T000/B000/XXXXsecretpath";
        let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        inp.secrets = vec![
            Secret::new(token),
            Secret::new(webhook),
            Secret::new(whsec),
            Secret::new("ab"),
        ];
        let out = capture(&inp, || {
            let s = Secret::new(token);
            tracing::trace!(secret = ?s, "Debug of a Secret");
            tracing::trace!(header = %format!("Authorization: Bearer {token}"), "a careless line");
            tracing::debug!(url = webhook, "posting to {webhook}");
            tracing::info!(sig_key = ?whsec, "{whsec:?}");
            tracing::info!("short values like ab stay");
        });
        for s in [
            token,
            webhook,
            whsec,
            "tok-3f9a",
            "tok-3f9a\\\"c1-secret",
            "XXXXsecretpath",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(!out.contains(s), "{format:?}: {s} leaked in {out}");
        }
        assert!(out.contains("<redacted>"), "{out}");
        assert!(out.contains("short values like ab stay"), "{out}");
        if format == LogFormat::Json {
            json_lines(&out);
        }
    }
}

#[test]
fn from_loaded_takes_sources_secrets_and_the_resolved_path() {
    let dir = tempfile::tempdir().unwrap();
    let env = oj_config::Environment::new(
        [
            ("HOME", dir.path().to_str().unwrap()),
            ("XDG_CONFIG_HOME", dir.path().join("cfg").to_str().unwrap()),
            ("OJ_STATE_DIR", dir.path().join("state").to_str().unwrap()),
            ("OJ_LOG__FORMAT", "json"),
            ("OJ_LOG_STDOUT", "1"),
            ("OJ_AUTH_TOKEN", "tok-from-env-123456"),
            (
                "OJ_NOTIFY__WEBHOOK__SECRET",
                "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci1vai1lMmU=",
            ),
            (
                "OJ_CLIENT__TOKEN_FILE",
                dir.path().join("client-token").to_str().unwrap(),
            ),
        ],
        "host",
    );
    std::fs::write(dir.path().join("client-token"), "tok-in-a-file-7890\n").unwrap();
    let loaded = oj_config::load(&oj_config::LoadOptions::default(), &env).unwrap();
    let inp = LoggingInput::from_loaded(&loaded, "1.2.3");
    assert_eq!(inp.profile, "desktop");
    assert_eq!(inp.file_path, dir.path().join("state/daemon.log"));
    let exposed: Vec<&str> = inp.secrets.iter().map(|s| s.expose()).collect();
    assert!(
        exposed.contains(&"tok-from-env-123456")
            && exposed.contains(&"whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci1vai1lMmU=")
            && exposed.contains(&"tok-in-a-file-7890"),
        "{exposed:?}"
    );
    let sinks = inp.sinks_summary();
    assert!(
        sinks.contains("stdout (log.stdout from env OJ_LOG_STDOUT)"),
        "{sinks}"
    );
    assert!(
        sinks.contains("(log.file.enabled from profile desktop)"),
        "{sinks}"
    );
    assert!(
        sinks.contains("json (log.format from env OJ_LOG__FORMAT)"),
        "{sinks}"
    );

    let out = capture(&inp, || tracing::info!("token is tok-from-env-123456"));
    assert!(
        !out.contains("tok-from-env-123456") && out.contains("<redacted>"),
        "{out}"
    );
}

/// A job name or message with a newline (or an ANSI escape) stays on its
/// own line in the text format, shown escaped: it cannot forge a line.
#[test]
fn text_lines_escape_control_characters_in_fields_and_messages() {
    let inp = input(LogFormat::Text, "info");
    let forged = "x\n2026-01-01T00:00:00Z  INFO oj: FORGED admin logged in\u{1b}[2J";
    let text = capture(&inp, || {
        let name = forged.to_string();
        tracing::info!(name = %name, dbg = ?name, plain = name.as_str(), "job submitted");
        tracing::warn!("message with {name}");
        let span = tracing::info_span!("job", job_name = %name);
        let _in = span.enter();
        tracing::info!("inside");
    });
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(
        text.lines().all(|l| !l.starts_with("2026-01-01T00:00:00Z")),
        "{text}"
    );
    assert!(text.contains("x\\n2026-01-01"), "{text}");
}
