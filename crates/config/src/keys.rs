//! Every leaf key of the configuration, with its type and a description.
//! The table drives environment mapping, per-leaf type checking (so that all
//! errors are reported together), unknown-key suggestions, redaction and
//! `oj config env`.

use crate::named;

/// The type of a leaf, as the user writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// Integer with a minimum.
    Int {
        min: i64,
    },
    Str,
    Path,
    /// A humantime duration such as `"25s"` or `"1h 30m"`.
    Duration,
    Quantity,
    /// `host:port`, or `""` for off.
    HostPort,
    Url,
    Enum(&'static [&'static str]),
    StrArray,
    EnumArray(&'static [&'static str]),
    /// A table of strings with free keys (`notify.webhook.headers`).
    StrTable,
    /// A free-form table read whole by the subsystem that owns it (a
    /// schedule's `job`, a runbook job table): its inside is checked there.
    Table,
    /// An array of toleration tables (`pods.tolerations`).
    Tolerations,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// Unset is a valid value (and an empty string unsets it).
    pub optional: bool,
    pub secret: bool,
    pub description: &'static str,
}

const fn key(name: &'static str, kind: Kind, description: &'static str) -> Key {
    Key {
        name,
        kind,
        optional: false,
        secret: false,
        description,
    }
}

const fn opt(name: &'static str, kind: Kind, description: &'static str) -> Key {
    Key {
        name,
        kind,
        optional: true,
        secret: false,
        description,
    }
}

const fn secret(name: &'static str, kind: Kind, description: &'static str) -> Key {
    Key {
        name,
        kind,
        optional: true,
        secret: true,
        description,
    }
}

pub const NOTIFY_BACKENDS: &[&str] = &["desktop", "webhook", "log", "none"];
pub const NOTIFY_EVENTS: &[&str] = &["start", "done", "fail", "retry"];
pub const SCHEDULE_OVERLAP: &[&str] = &["skip", "allow", "replace"];
pub const SCHEDULE_CATCH_UP: &[&str] = &["latest", "none"];

/// Compiled defaults of the keys of user-named tables, as TOML writes them
/// (the defaults tree has no entries to hold them); keys missing here have
/// none (`schedules.*.cron` and `schedules.*.job` are required,
/// `queues.*.max_concurrent` is unset).
pub const NAMED_DEFAULTS: &[(&str, &str)] = &[
    ("schedules.*.timezone", "\"local\""),
    ("schedules.*.overlap", "\"skip\""),
    ("schedules.*.catch_up", "\"latest\""),
    ("schedules.*.catch_up_within", "\"1d\""),
    ("schedules.*.enabled", "true"),
];

/// All keys, in the order `config show` prints them.
pub const KEYS: &[Key] = &[
    key(
        "daemon.state_dir",
        Kind::Path,
        "Directory for the lock, WAL, snapshot, job logs, socket and log file",
    ),
    key(
        "daemon.instance",
        Kind::Str,
        "This daemon's name (Lease holder, notifications, status)",
    ),
    key(
        "daemon.watch_config",
        Kind::Bool,
        "Reload when a config file read at start changes (SIGHUP always reloads)",
    ),
    key(
        "jobs.max_concurrent",
        Kind::Int { min: 1 },
        "Jobs running at once; the rest wait queued",
    ),
    key(
        "jobs.step_timeout",
        Kind::Duration,
        "Timeout of a step that sets none",
    ),
    key(
        "jobs.shell",
        Kind::StrArray,
        "Command a step's `run` is appended to",
    ),
    key(
        "jobs.kill_leftovers",
        Kind::Bool,
        "When a step ends, every process it started is ended too (SIGTERM, SIGKILL after 2 s)",
    ),
    key(
        "jobs.allow_shell",
        Kind::Bool,
        "false = only container steps are accepted (400 otherwise)",
    ),
    key(
        "jobs.keep_finished",
        Kind::Duration,
        "Finished jobs (and their logs) older than this are deleted",
    ),
    key(
        "jobs.max_finished",
        Kind::Int { min: 1 },
        "At most this many finished jobs are kept, oldest deleted first",
    ),
    opt(
        "listen.unix_socket",
        Kind::Path,
        "Unix socket path, relative = under state_dir; \"\" = off",
    ),
    opt(
        "listen.tcp",
        Kind::HostPort,
        "TCP listener host:port; \"\" = off",
    ),
    secret(
        "listen.auth_token",
        Kind::Str,
        "Bearer token required on TCP",
    ),
    opt(
        "listen.auth_token_file",
        Kind::Path,
        "File holding the bearer token",
    ),
    key(
        "listen.insecure_no_auth",
        Kind::Bool,
        "Allow TCP without a token",
    ),
    key(
        "listen.max_request_bytes",
        Kind::Int { min: 1 },
        "Larger request bodies get 413",
    ),
    key(
        "listen.header_timeout",
        Kind::Duration,
        "A connection (TCP, admin port, Unix socket) without a whole request head by then is closed",
    ),
    key(
        "listen.idle_timeout",
        Kind::Duration,
        "An idle keep-alive connection (TCP, admin port, Unix socket) is closed after this",
    ),
    key(
        "listen.max_connections",
        Kind::Int { min: 1 },
        "Open TCP connections at once (Unix socket and admin port not counted)",
    ),
    key("tls.enabled", Kind::Bool, "Serve TLS on the TCP listener"),
    opt("tls.cert", Kind::Path, "Server certificate chain (PEM)"),
    opt("tls.key", Kind::Path, "Server private key (PEM)"),
    opt(
        "tls.client_ca",
        Kind::Path,
        "CA for client certificates; set = mutual TLS",
    ),
    key(
        "tls.min_version",
        Kind::Enum(&["1.2", "1.3"]),
        "Lowest TLS version accepted",
    ),
    key(
        "tls.reload_interval",
        Kind::Duration,
        "How often cert and key are checked for changes",
    ),
    opt(
        "admin.addr",
        Kind::HostPort,
        "host:port for /healthz, /readyz, /metrics; \"\" = off",
    ),
    key(
        "notify.backend",
        Kind::Enum(NOTIFY_BACKENDS),
        "Where notifications go",
    ),
    key(
        "notify.events",
        Kind::EnumArray(NOTIFY_EVENTS),
        "Job events that notify",
    ),
    secret(
        "notify.webhook.url",
        Kind::Url,
        "Webhook endpoint (http or https)",
    ),
    secret(
        "notify.webhook.secret",
        Kind::Str,
        "whsec_… key for webhook signatures",
    ),
    opt(
        "notify.webhook.secret_file",
        Kind::Path,
        "File holding the whsec_… key",
    ),
    Key {
        name: "notify.webhook.headers",
        kind: Kind::StrTable,
        optional: false,
        secret: true,
        description: "Extra webhook request headers (table)",
    },
    key(
        "notify.webhook.format",
        Kind::Enum(&["standard", "slack"]),
        "Webhook body format",
    ),
    key(
        "notify.webhook.timeout",
        Kind::Duration,
        "Timeout of one delivery attempt",
    ),
    key(
        "notify.webhook.max_attempts",
        Kind::Int { min: 1 },
        "Delivery attempts before giving up",
    ),
    key(
        "notify.webhook.backoff",
        Kind::Duration,
        "First retry delay, doubling, capped at 5 min",
    ),
    key(
        "log.level",
        Kind::Str,
        "EnvFilter directives, e.g. info,oj_daemon=debug",
    ),
    key(
        "log.format",
        Kind::Enum(&["text", "json"]),
        "Log line format",
    ),
    key("log.stdout", Kind::Bool, "Log to stdout"),
    key("log.file.enabled", Kind::Bool, "Log to a file"),
    key(
        "log.file.path",
        Kind::Path,
        "Log file, relative = under state_dir",
    ),
    key(
        "log.file.rotation",
        Kind::Enum(&["hourly", "daily", "never"]),
        "Log file rotation",
    ),
    key(
        "log.file.max_files",
        Kind::Int { min: 1 },
        "Rotated log files kept",
    ),
    key(
        "lock.strategy",
        Kind::Enum(&["file", "none", "lease"]),
        "Single-instance lock",
    ),
    key("lock.lease.name", Kind::Str, "Lease object name"),
    opt(
        "lock.lease.namespace",
        Kind::Str,
        "Lease namespace; unset = the pod's namespace",
    ),
    key("lock.lease.duration", Kind::Duration, "Lease duration"),
    key(
        "lock.lease.renew_deadline",
        Kind::Duration,
        "A leader that cannot renew within this steps down",
    ),
    key(
        "lock.lease.retry_period",
        Kind::Duration,
        "Interval between acquire/renew attempts",
    ),
    opt(
        "pods.namespace",
        Kind::Str,
        "Namespace for step pods; unset = the pod's namespace, else default",
    ),
    opt(
        "pods.service_account",
        Kind::Str,
        "Service account of step pods",
    ),
    key(
        "pods.image_pull_policy",
        Kind::Enum(&["Always", "IfNotPresent", "Never"]),
        "imagePullPolicy of step pods",
    ),
    key("pods.keep_finished", Kind::Bool, "Keep finished step pods"),
    key(
        "pods.resources.requests.cpu",
        Kind::Quantity,
        "Default CPU request of step pods",
    ),
    key(
        "pods.resources.requests.memory",
        Kind::Quantity,
        "Default memory request of step pods",
    ),
    key(
        "pods.resources.limits.cpu",
        Kind::Quantity,
        "Default CPU limit of step pods",
    ),
    key(
        "pods.resources.limits.memory",
        Kind::Quantity,
        "Default memory limit of step pods",
    ),
    key(
        "pods.image_pull_grace",
        Kind::Duration,
        "A step pod that cannot pull its image for this long fails",
    ),
    key(
        "pods.pending_timeout",
        Kind::Duration,
        "A step pod still Pending after this fails",
    ),
    opt(
        "pods.default_image",
        Kind::Str,
        "Image of steps without `container`: they run as pods of it (applied at submission); unset = in the daemon",
    ),
    Key {
        name: "pods.labels",
        kind: Kind::StrTable,
        optional: false,
        secret: false,
        description: "Labels of every step pod (table); a job's or step's container.labels win key by key",
    },
    Key {
        name: "pods.annotations",
        kind: Kind::StrTable,
        optional: false,
        secret: false,
        description: "Annotations of every step pod (table); overlaid key by key by container.annotations",
    },
    Key {
        name: "pods.node_selector",
        kind: Kind::StrTable,
        optional: false,
        secret: false,
        description: "nodeSelector of every step pod (table); overlaid key by key by container.node_selector",
    },
    key(
        "pods.tolerations",
        Kind::Tolerations,
        "Tolerations of every step pod: array of {key?, operator?, value?, effect?, toleration_seconds?}; container.tolerations replaces it whole",
    ),
    opt(
        "pods.priority_class_name",
        Kind::Str,
        "priorityClassName of every step pod",
    ),
    key(
        "pods.allowed_secrets",
        Kind::StrArray,
        "Secrets a job's `secrets` may reference (names); any other is refused",
    ),
    key(
        "shutdown.drain_timeout",
        Kind::Duration,
        "Time running steps get to finish on SIGTERM",
    ),
    key(
        "shutdown.container_steps",
        Kind::Enum(&["detach", "cancel"]),
        "At drain: detach (pods keep running, followed after restart) or cancel (pods deleted, steps interrupted)",
    ),
    key(
        "ui.enabled",
        Kind::Bool,
        "Serve the web UI at /ui/ on the API listeners (GET / redirects there)",
    ),
    key(
        "ui.session_ttl",
        Kind::Duration,
        "How long a web UI session (cookie from POST /v1/session) stays good",
    ),
    opt(
        "ui.origin",
        Kind::Url,
        "Origin browsers use behind a proxy (https://host[:port]); unset = the request's Host",
    ),
    opt(
        "ui.url",
        Kind::Url,
        "Where people reach the UI (https://host[:port][/prefix]); notifications link to each job's page there; unset = no links",
    ),
    opt(
        "queues.*.max_concurrent",
        Kind::Int { min: 1 },
        "Jobs of queue <name> running at once; unset = jobs.max_concurrent (still the daemon-wide limit)",
    ),
    key(
        "schedules.*.cron",
        Kind::Str,
        "When schedule <name> fires: 5 cron fields as in crontab(5), or @hourly @daily @weekly @monthly @yearly",
    ),
    key(
        "schedules.*.timezone",
        Kind::Str,
        "IANA time zone of the cron fields (\"Europe/Berlin\"), or \"local\" (the daemon's zone)",
    ),
    key(
        "schedules.*.job",
        Kind::Table,
        "The job a fire submits: a job table as in a runbook (name, steps, env, …), without vars",
    ),
    key(
        "schedules.*.overlap",
        Kind::Enum(SCHEDULE_OVERLAP),
        "skip = no new run while the last one is queued or running; allow; replace = cancel it and start anew",
    ),
    key(
        "schedules.*.catch_up",
        Kind::Enum(SCHEDULE_CATCH_UP),
        "After downtime: latest = one run for the missed fires; none = skip them",
    ),
    key(
        "schedules.*.catch_up_within",
        Kind::Duration,
        "Missed fires older than this are dropped, not caught up",
    ),
    key(
        "schedules.*.enabled",
        Kind::Bool,
        "false = the schedule does not fire (its fires are not caught up later)",
    ),
    opt(
        "client.url",
        Kind::Url,
        "Daemon address for client commands: unix:///path, http://…, https://…",
    ),
    opt("client.ca", Kind::Path, "CA for the daemon's certificate"),
    opt("client.cert", Kind::Path, "Client certificate for mTLS"),
    opt("client.key", Kind::Path, "Client key for mTLS"),
    secret("client.token", Kind::Str, "Bearer token the client sends"),
    opt(
        "client.token_file",
        Kind::Path,
        "File holding the client's bearer token",
    ),
];

/// The humantime grammar as a JSON Schema pattern: one or more
/// `<number><unit>` parts, e.g. `"500ms"`, `"25s"`, `"1h 30m"`.
pub const DURATION_PATTERN: &str = r"^ *([0-9]+ *(nsec|ns|usec|us|µs|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y) *)+$";

/// `host:port` (a name, an IPv4 address or `[IPv6]`, port 0-65535).
pub const HOST_PORT_PATTERN: &str = r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]\s]+):([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$";

/// Path keys that stay relative to `daemon.state_dir` (SPEC §2.4, §7.3).
pub const STATE_RELATIVE: &[&str] = &["listen.unix_socket", "log.file.path"];

/// Keys a running daemon applies on reload without a restart (SPEC §7.7):
/// an entry ending in `.` covers every key under it. Every other key that a
/// reload changes is reported as pending a restart. A key belongs here once
/// its subsystem reads it from its slice of the live config (the daemon's
/// `live.rs`: `Slices`, one `watch` per subsystem, published by
/// `reload.rs`; `take_live` there is held to this table by a test). Not yet:
/// `tls.enabled` and `tls.reload_interval` (the listener and the reloader
/// are built once), and the keys of SPEC §7.1 that reach their subsystems
/// in other changes.
pub const LIVE: &[&str] = &[
    "log.level",
    "notify.",
    "tls.cert",
    "tls.key",
    "tls.client_ca",
    "tls.min_version",
    "pods.",
    "jobs.max_concurrent",
    "jobs.step_timeout",
    "jobs.allow_shell",
    "jobs.keep_finished",
    "jobs.max_finished",
    "shutdown.",
    "queues.",
    "schedules.",
];

/// Keys only client commands read: a daemon neither uses nor reports them.
pub const CLIENT_ONLY: &[&str] = &["client."];

/// Keys a client command reads to reach the daemon (`client.*`, the
/// daemon's socket and token); errors elsewhere only warn in client commands.
pub const USED_BY_CLIENT: &[&str] = &[
    "client.",
    "daemon.state_dir",
    "listen.unix_socket",
    "listen.auth_token",
    "listen.auth_token_file",
];

fn matches_any(table: &[&str], key: &str) -> bool {
    table.iter().any(|p| match p.strip_suffix('.') {
        Some(prefix) => key.starts_with(p) || key == prefix,
        None => key == *p || (key.starts_with(p) && key.as_bytes().get(p.len()) == Some(&b'.')),
    })
}

/// Whether a running daemon applies a new value of `key` at once.
pub fn applies_live(key: &str) -> bool {
    matches_any(LIVE, key) || matches_any(CLIENT_ONLY, key)
}

/// Whether only client commands read `key`.
pub fn client_only(key: &str) -> bool {
    matches_any(CLIENT_ONLY, key)
}

/// Whether client commands (`oj status`, `oj job …`) read `key`.
pub fn used_by_client(key: &str) -> bool {
    matches_any(USED_BY_CLIENT, key)
}

/// Looks a key up by its dotted name; `queues.build.max_concurrent` finds
/// the pattern `queues.*.max_concurrent`.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter()
        .find(|k| k.name == name)
        .or_else(|| KEYS.iter().find(|k| named::matches(k.name, name)))
}

/// The key a dotted path belongs to: itself, or a free-form table above it
/// (`notify.webhook.headers.x-team` belongs to `notify.webhook.headers`,
/// `schedules.nightly.job.steps` to `schedules.*.job`).
pub fn owning_key(path: &str) -> Option<&'static Key> {
    find(path).or_else(|| {
        KEYS.iter().find(|k| {
            matches!(k.kind, Kind::StrTable | Kind::Table)
                && (1..path.len())
                    .any(|i| path.as_bytes()[i] == b'.' && named::matches(k.name, &path[..i]))
        })
    })
}

/// Whether `path` is a section (a table of keys), e.g. `notify`,
/// `log.file`, `queues` or `queues.build`.
pub fn is_section(path: &str) -> bool {
    KEYS.iter().any(|k| named::is_prefix(k.name, path))
}

/// Whether a value at `path` is a secret to redact.
pub fn is_secret(path: &str) -> bool {
    owning_key(path).is_some_and(|k| k.secret)
}

/// The valid key closest to `name`, for "did you mean" hints.
pub fn nearest(name: &str) -> Option<&'static str> {
    let mut best: Option<(&'static str, f64)> = None;
    for k in KEYS {
        let score = strsim::jaro_winkler(name, k.name);
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((k.name, score));
        }
    }
    best.filter(|(_, s)| *s > 0.7).map(|(n, _)| n)
}

/// `OJ_` + the key upper-cased with `.` as `__`; a user-named segment
/// shows as `<NAME>` (`OJ_QUEUES__<NAME>__MAX_CONCURRENT`).
pub fn env_var_name(key: &str) -> String {
    format!("OJ_{}", key.replace('.', "__").to_ascii_uppercase()).replace('*', "<NAME>")
}

/// Describes the valid values of a kind, for error messages.
pub fn describe(kind: Kind) -> String {
    match kind {
        Kind::Bool => "true or false".into(),
        Kind::Int { min } => format!("an integer ≥ {min}"),
        Kind::Str => "a string".into(),
        Kind::Path => "a path".into(),
        Kind::Duration => "a duration such as \"500ms\", \"25s\", \"1h 30m\"".into(),
        Kind::Quantity => {
            "a Kubernetes quantity such as \"250m\", \"2\", \"512Mi\", \"4Gi\"".into()
        }
        Kind::HostPort => "\"host:port\" (e.g. \"0.0.0.0:7777\") or \"\" for off".into(),
        Kind::Url => "a URL".into(),
        Kind::Enum(values) => format!("one of {}", quoted_list(values)),
        Kind::StrArray => "an array of strings".into(),
        Kind::EnumArray(values) => format!("an array with values from {}", quoted_list(values)),
        Kind::StrTable => "a table of strings".into(),
        Kind::Table => "a table".into(),
        Kind::Tolerations => {
            "an array of tables {key?, operator?, value?, effect?, toleration_seconds?}".into()
        }
    }
}

fn quoted_list(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_key() {
        assert_eq!(nearest("log.fromat"), Some("log.format"));
        assert_eq!(
            nearest("shutdown.drain_timout"),
            Some("shutdown.drain_timeout")
        );
    }

    #[test]
    fn header_subkeys_belong_to_the_headers_table() {
        assert_eq!(
            owning_key("notify.webhook.headers.x-team").map(|k| k.name),
            Some("notify.webhook.headers")
        );
        assert!(is_secret("notify.webhook.headers.authorization"));
        assert!(owning_key("notify.webhook.headersx").is_none());
        assert!(is_section("log.file"));
        assert!(!is_section("log.format"));
    }
}
