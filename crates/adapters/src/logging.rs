//! The daemon's own log, set up from `log.*` alone (SPEC §3.6).
//!
//! Why it exists: a daemon that only writes `state_dir/daemon.log` is
//! invisible to `kubectl logs` and to log collectors, and one that writes
//! only to stdout is lost on a laptop. This module sends the `tracing` events
//! of the whole process to the sinks the config names (stdout and/or a
//! rotating file), in the format it names (`text` or `json`), through
//! non-blocking writers that are flushed when the [`LogGuard`] is dropped.
//!
//! Contract details:
//! * `json`: one object per line, keys `timestamp` (RFC 3339, UTC,
//!   microseconds), `level` (`INFO`…), `target`, `message`, then the event's
//!   fields flattened, then the fields of the enclosing spans (innermost
//!   wins; event fields and the four keys above are never overwritten; an
//!   event field called `timestamp`, `level` or `target` is written as
//!   `field.<name>`). Events coming from the `log` crate carry their real
//!   target and no `log.*` fields.
//! * `log.level` is parsed as EnvFilter directives from the config string;
//!   `RUST_LOG` is never read. The startup line (target `oj`) is always
//!   written, whatever the directives, so every log starts with it.
//! * The first line names version, profile, sinks and where each setting
//!   came from (`oj starting version=… profile=… sinks="…"`).
//! * Secrets: `oj_config::Secret` prints `<redacted>`; on top of that every
//!   secret listed in [`LoggingInput::secrets`] (filled by
//!   [`LoggingInput::from_loaded`]; add file-loaded tokens with
//!   [`LoggingInput::add_secret`]) is replaced by `<redacted>` in every
//!   line before it reaches a sink, whichever crate logged it.
//! * The file: exactly `log.file.path` (relative = under state_dir,
//!   resolved by the caller); at each period of `log.file.rotation` it is
//!   renamed `<path>.<period>` and a new one is opened; `max_files` prunes
//!   the rotated ones (see [`crate::log_file`]).
//! * The writers never drop lines (back-pressure instead of loss), so the
//!   last lines before exit are on disk once the guard is dropped: keep the
//!   guard alive until the very end and do not `process::exit` before it drops.

use std::collections::BTreeMap;
use std::fmt as stdfmt;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::log_file::RotatingFile;
use oj_config::{LogConfig, LogFormat, LogRotation, Secret};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Subscriber};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{
    DefaultFields, FormatEvent, FormatFields, JsonFields, Writer,
};
use tracing_subscriber::fmt::{FmtContext, FormattedFields, MakeWriter};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::{LookupSpan, Registry};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, filter::FilterExt};

/// The target of the startup line; it passes every `log.level` filter.
pub const STARTUP_TARGET: &str = "oj";

/// Everything logging needs, as plain values.
#[derive(Debug, Clone)]
pub struct LoggingInput {
    pub log: LogConfig,
    /// `log.file.path` already resolved against `daemon.state_dir`.
    pub file_path: PathBuf,
    pub version: String,
    pub profile: String,
    /// The layer that set each `log.*` key (`Loaded::sources`); missing = `default`.
    pub sources: BTreeMap<String, oj_config::Layer>,
    /// Values scrubbed from every line (`<redacted>`). Values shorter than
    /// [`MIN_SECRET_LEN`] are ignored to avoid mangling ordinary words.
    pub secrets: Vec<Secret>,
    /// `NO_COLOR` is set: no colour codes on stdout even when it is a
    /// terminal (<https://no-color.org>). Files never get colour.
    pub no_color: bool,
}

/// Shorter secrets are not scrubbed from output (they would match ordinary text).
pub const MIN_SECRET_LEN: usize = 4;

impl LoggingInput {
    /// The input for `loaded`: its `log.*` section, resolved file path,
    /// profile, the layers of the `log.*` keys, and every secret the config
    /// holds (`listen.auth_token`, `notify.webhook.url`/`secret`/`headers.*`,
    /// `client.token`) or points to (the contents of
    /// `listen.auth_token_file`, `notify.webhook.secret_file`,
    /// `client.token_file`, when readable).
    pub fn from_loaded(loaded: &oj_config::Loaded, version: impl Into<String>) -> Self {
        let c = &loaded.config;
        let sources = loaded
            .sources
            .iter()
            .filter(|(k, _)| k.starts_with("log."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut secrets: Vec<Secret> = Vec::new();
        secrets.extend(c.listen.auth_token.iter().cloned());
        secrets.extend(c.notify.webhook.url.iter().cloned());
        secrets.extend(c.notify.webhook.secret.iter().cloned());
        secrets.extend(c.notify.webhook.headers.values().cloned());
        secrets.extend(c.client.token.iter().cloned());
        // Secrets kept in files: scrub their contents too. An unreadable file
        // is skipped here; the subsystem that needs it reports the error.
        for path in [
            &c.listen.auth_token_file,
            &c.notify.webhook.secret_file,
            &c.client.token_file,
        ]
        .into_iter()
        .flatten()
        {
            if let Ok(secret) = Secret::read_file(path)
                && !secret.is_empty()
            {
                secrets.push(secret);
            }
        }
        LoggingInput {
            log: c.log.clone(),
            file_path: c.log_file_path(),
            version: version.into(),
            profile: loaded.profile.clone(),
            sources,
            secrets,
            no_color: false,
        }
    }

    /// Adds a secret to scrub (e.g. a token read from `listen.auth_token_file`).
    pub fn add_secret(&mut self, secret: Secret) {
        self.secrets.push(secret);
    }

    /// The layer that set `key` (it prints as its name: `env OJ_LOG__FORMAT`).
    fn source(&self, key: &str) -> &oj_config::Layer {
        static DEFAULT: oj_config::Layer = oj_config::Layer::Default;
        self.sources.get(key).unwrap_or(&DEFAULT)
    }

    /// The sinks and where their settings came from, for the startup line.
    pub fn sinks_summary(&self) -> String {
        let mut parts = Vec::new();
        if self.log.stdout {
            parts.push(format!(
                "stdout (log.stdout from {})",
                self.source("log.stdout")
            ));
        }
        if self.log.file.enabled {
            parts.push(format!(
                "file {} (log.file.enabled from {}), rotation {} (log.file.rotation from {}), max_files {} (log.file.max_files from {})",
                self.file_path.display(),
                self.source("log.file.enabled"),
                rotation_name(self.log.file.rotation),
                self.source("log.file.rotation"),
                self.log.file.max_files,
                self.source("log.file.max_files"),
            ));
        }
        if parts.is_empty() {
            parts.push(format!(
                "none (log.stdout from {}, log.file.enabled from {})",
                self.source("log.stdout"),
                self.source("log.file.enabled")
            ));
        }
        parts.push(format!(
            "{} (log.format from {})",
            format_name(self.log.format),
            self.source("log.format")
        ));
        parts.join(", ")
    }
}

fn rotation_name(r: LogRotation) -> &'static str {
    match r {
        LogRotation::Hourly => "hourly",
        LogRotation::Daily => "daily",
        LogRotation::Never => "never",
    }
}

fn format_name(f: LogFormat) -> &'static str {
    match f {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    }
}

/// What stops logging from starting. Each names the key and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error(
        "log.level = {value:?} is not a valid EnvFilter directive ({reason}); e.g. \"info\" or \"info,oj_daemon=debug\""
    )]
    Level { value: String, reason: String },
    #[error("log.file.path = {}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    #[error("logging is already set up in this process ({0})")]
    AlreadySet(String),
}

/// Keeps the non-blocking writers running; dropping it flushes every line
/// written so far to its sink.
#[must_use = "dropping the guard stops the log writers"]
pub struct LogGuard {
    guards: Vec<WorkerGuard>,
    level: LevelControl,
}

/// The filter of one sink: `log.level` directives, plus the startup line.
type SinkFilter = tracing_subscriber::filter::combinator::Or<
    EnvFilter,
    tracing_subscriber::filter::FilterFn,
    Registry,
>;

/// Changes `log.level` of every sink of the installed subscriber at once
/// (a config reload), through `tracing_subscriber::reload`.
#[derive(Clone, Default)]
pub struct LevelControl {
    handles: Arc<std::sync::Mutex<Vec<tracing_subscriber::reload::Handle<SinkFilter, Registry>>>>,
}

impl LevelControl {
    /// Applies new EnvFilter directives; an invalid one changes nothing.
    pub fn set(&self, level: &str) -> Result<(), LoggingError> {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        for h in handles.iter() {
            h.reload(level_filter(level)?)
                .map_err(|e| LoggingError::AlreadySet(e.to_string()))?;
        }
        Ok(())
    }
}

impl stdfmt::Debug for LogGuard {
    fn fmt(&self, f: &mut stdfmt::Formatter<'_>) -> stdfmt::Result {
        f.debug_struct("LogGuard")
            .field("writers", &self.guards.len())
            .finish()
    }
}

impl LogGuard {
    /// The handle that changes `log.level` while the daemon runs.
    pub fn level_control(&self) -> LevelControl {
        self.level.clone()
    }

    /// Flushes and stops the writers (same as dropping the guard).
    pub fn flush(self) {
        drop(self);
    }
}

/// Sets up the process-wide subscriber from `input` (also bridging the
/// `log` crate), then writes the startup line.
pub fn init(input: &LoggingInput) -> Result<LogGuard, LoggingError> {
    let (dispatch, guard) = build(input)?;
    dispatch
        .try_init()
        .map_err(|e| LoggingError::AlreadySet(e.to_string()))?;
    emit_startup_line(input);
    Ok(guard)
}

/// Builds the subscriber for `input` with its real sinks without installing
/// it (tests use `tracing::dispatcher::with_default`).
pub fn build(input: &LoggingInput) -> Result<(Dispatch, LogGuard), LoggingError> {
    let secrets = Redactions::new(&input.secrets);
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    let mut guards = Vec::new();
    let level = LevelControl::default();
    if input.log.stdout {
        let (writer, guard) = NonBlockingBuilder::default()
            .lossy(false)
            .thread_name("oj-log-stdout")
            .finish(io::stdout());
        guards.push(guard);
        let ansi = io::stdout().is_terminal() && !input.no_color;
        layers.push(sink_layer(
            input,
            Redact::new(writer, secrets.clone()),
            ansi,
            &level,
        )?);
    }
    if input.log.file.enabled {
        let appender = file_appender(input)?;
        let (writer, guard) = NonBlockingBuilder::default()
            .lossy(false)
            .thread_name("oj-log-file")
            .finish(appender);
        guards.push(guard);
        layers.push(sink_layer(
            input,
            Redact::new(writer, secrets.clone()),
            false,
            &level,
        )?);
    }
    // Parse the directives even with no sink, so a bad one is always reported.
    level_filter(&input.log.level)?;
    let subscriber = Registry::default().with(layers);
    Ok((Dispatch::new(subscriber), LogGuard { guards, level }))
}

/// Builds a subscriber that writes `input`'s format, filter and redaction to
/// `writer` instead of the configured sinks (for tests and tools).
pub fn build_with_writer<W>(input: &LoggingInput, writer: W) -> Result<Dispatch, LoggingError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let layer = sink_layer(
        input,
        Redact::new(writer, Redactions::new(&input.secrets)),
        false,
        &LevelControl::default(),
    )?;
    Ok(Dispatch::new(Registry::default().with(layer)))
}

/// Writes the startup line (version, profile, sinks and their sources)
/// through the current subscriber. [`init`] calls it.
pub fn emit_startup_line(input: &LoggingInput) {
    let sinks = input.sinks_summary();
    let level = format!(
        "{} (log.level from {})",
        input.log.level,
        input.source("log.level")
    );
    tracing::info!(
        target: STARTUP_TARGET,
        version = %input.version,
        profile = %input.profile,
        sinks = %sinks,
        log_level = %level,
        "oj starting"
    );
}

fn level_filter(level: &str) -> Result<SinkFilter, LoggingError> {
    let env = EnvFilter::builder()
        .parse(level)
        .map_err(|e| LoggingError::Level {
            value: level.to_string(),
            reason: e.to_string(),
        })?;
    let startup = tracing_subscriber::filter::FilterFn::new(
        is_startup_line as fn(&tracing::Metadata<'_>) -> bool,
    );
    Ok(env.or(startup))
}

fn is_startup_line(meta: &tracing::Metadata<'_>) -> bool {
    meta.target() == STARTUP_TARGET
}

fn sink_layer<W>(
    input: &LoggingInput,
    writer: W,
    ansi: bool,
    level: &LevelControl,
) -> Result<Box<dyn Layer<Registry> + Send + Sync>, LoggingError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let (filter, handle) = tracing_subscriber::reload::Layer::new(level_filter(&input.log.level)?);
    level
        .handles
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(handle);
    Ok(match input.log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .fmt_fields(EscapedFields::default())
            .with_ansi(ansi)
            .with_target(true)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    })
}

fn file_appender(input: &LoggingInput) -> Result<RotatingFile, LoggingError> {
    let path = &input.file_path;
    let err = |problem: String| LoggingError::File {
        path: path.clone(),
        problem,
    };
    if path.file_name().is_none() {
        return Err(err(
            "does not name a file; give a file name such as \"daemon.log\"".into(),
        ));
    }
    RotatingFile::open(
        path,
        input.log.file.rotation,
        input.log.file.max_files.max(1) as usize,
    )
    .map_err(|e| {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        err(format!(
            "cannot open the log file ({e}); make {} writable, choose another log.file.path or set log.file.enabled = false",
            dir.display()
        ))
    })
}

// ---------------------------------------------------------------- text lines

/// The text format's fields (the message included) with control characters
/// escaped (`\n`, `\u{1b}`): one event is one line, whatever a job name or
/// an error message holds, so nobody can forge a line or colour a terminal.
#[derive(Default)]
struct EscapedFields(DefaultFields);

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> stdfmt::Result {
        let mut plain = String::new();
        self.0.format_fields(Writer::new(&mut plain), fields)?;
        writer.write_str(&crate::escape::control_chars(&plain))
    }
}

// ---------------------------------------------------------------- JSON lines

/// One JSON object per line, keys as described in the module doc.
struct JsonLines;

const RESERVED: [&str; 4] = ["timestamp", "level", "target", "message"];

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> stdfmt::Result {
        let meta = event.metadata();
        let mut fields = FieldCollector::default();
        event.record(&mut fields);
        // Records bridged from the `log` crate carry their real target in `log.target`.
        let target = fields
            .log_target
            .take()
            .unwrap_or_else(|| meta.target().to_string());

        let mut obj = Map::new();
        obj.insert(
            "timestamp".into(),
            Value::String(humantime::format_rfc3339_micros(SystemTime::now()).to_string()),
        );
        obj.insert("level".into(), Value::String(meta.level().to_string()));
        obj.insert("target".into(), Value::String(target));
        obj.insert(
            "message".into(),
            fields
                .message
                .take()
                .unwrap_or(Value::String(String::new())),
        );
        for (k, v) in fields.fields {
            let key = if RESERVED.contains(&k.as_str()) {
                format!("field.{k}")
            } else {
                k
            };
            obj.entry(key).or_insert(v);
        }
        // Span fields, innermost first, so the closest span wins.
        if let Some(scope) = ctx.event_scope() {
            for span in scope {
                let ext = span.extensions();
                if let Some(formatted) = ext.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) =
                        serde_json::from_str::<Value>(formatted.as_str())
                {
                    for (k, v) in map {
                        if !RESERVED.contains(&k.as_str()) {
                            obj.entry(k).or_insert(v);
                        }
                    }
                }
            }
        }
        // serde_json's Map keeps insertion order only with `preserve_order`;
        // write the four fixed keys first by hand so the line reads well.
        let mut line = String::with_capacity(256);
        line.push('{');
        let mut first = true;
        let mut put = |line: &mut String, k: &str, v: &Value| {
            if !first {
                line.push(',');
            }
            first = false;
            line.push_str(&serde_json::to_string(k).unwrap_or_else(|_| "\"?\"".into()));
            line.push(':');
            line.push_str(&serde_json::to_string(v).unwrap_or_else(|_| "null".into()));
        };
        for k in RESERVED {
            if let Some(v) = obj.get(k) {
                put(&mut line, k, v);
            }
        }
        for (k, v) in &obj {
            if !RESERVED.contains(&k.as_str()) {
                put(&mut line, k, v);
            }
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

#[derive(Default)]
struct FieldCollector {
    message: Option<Value>,
    log_target: Option<String>,
    fields: Vec<(String, Value)>,
}

impl FieldCollector {
    fn put(&mut self, field: &Field, v: Value) {
        let name = field.name();
        if name == "message" {
            self.message = Some(match v {
                Value::String(_) => v,
                other => Value::String(other.to_string()),
            });
        } else if name == "log.target" {
            self.log_target = Some(match v {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else if !name.starts_with("log.") {
            self.fields.push((name.to_string(), v));
        }
    }
}

impl Visit for FieldCollector {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(
            field,
            serde_json::Number::from_f64(value)
                .map(Value::Number)
                .unwrap_or(Value::String(value.to_string())),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn stdfmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

// ---------------------------------------------------------------- redaction

/// The forms a secret can take in a line: raw, JSON-escaped, Debug-escaped.
#[derive(Clone, Default)]
struct Redactions(Arc<Vec<String>>);

impl Redactions {
    fn new(secrets: &[Secret]) -> Self {
        let mut forms: Vec<String> = Vec::new();
        for s in secrets {
            let raw = s.expose();
            if raw.len() < MIN_SECRET_LEN {
                continue;
            }
            forms.push(raw.to_string());
            if let Ok(json) = serde_json::to_string(raw) {
                forms.push(json[1..json.len() - 1].to_string());
            }
            let dbg = format!("{raw:?}");
            forms.push(dbg[1..dbg.len() - 1].to_string());
        }
        // Longest first, so a secret containing another is replaced whole.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        Redactions(Arc::new(forms))
    }

    fn apply<'b>(&self, buf: &'b [u8]) -> std::borrow::Cow<'b, [u8]> {
        if self.0.is_empty() {
            return buf.into();
        }
        let text = String::from_utf8_lossy(buf);
        if !self.0.iter().any(|f| text.contains(f.as_str())) {
            return buf.into();
        }
        let mut out = text.into_owned();
        for f in self.0.iter() {
            out = out.replace(f.as_str(), "<redacted>");
        }
        out.into_bytes().into()
    }
}

/// A `MakeWriter` that scrubs secrets from each formatted line (the fmt
/// layer writes a whole event in one `write_all`).
struct Redact<M> {
    inner: M,
    secrets: Redactions,
}

impl<M> Redact<M> {
    fn new(inner: M, secrets: Redactions) -> Self {
        Redact { inner, secrets }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redact<M> {
    type Writer = RedactWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactWriter {
            inner: self.inner.make_writer(),
            secrets: self.secrets.clone(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactWriter {
            inner: self.inner.make_writer_for(meta),
            secrets: self.secrets.clone(),
        }
    }
}

struct RedactWriter<W> {
    inner: W,
    secrets: Redactions,
}

impl<W: Write> Write for RedactWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let clean = self.secrets.apply(buf);
        self.inner.write_all(&clean)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
