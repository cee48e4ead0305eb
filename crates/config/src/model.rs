//! The typed `RuntimeConfig`: every key of the contract as a real type.
//! Each subsystem takes its own section (`cfg.notify`, `cfg.log`, …) as a
//! plain value; nothing here touches the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::quantity::Quantity;
use crate::secret::Secret;

/// The whole configuration of `oj`, after merging every layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    pub daemon: DaemonConfig,
    pub jobs: JobsConfig,
    pub listen: ListenConfig,
    pub tls: TlsConfig,
    pub admin: AdminConfig,
    pub notify: NotifyConfig,
    pub log: LogConfig,
    pub lock: LockConfig,
    pub pods: PodsConfig,
    pub shutdown: ShutdownConfig,
    pub ui: UiConfig,
    pub client: ClientConfig,
    /// `queues.<name>`: named queues and their limits (SPEC §8.2). The
    /// queue `default` exists whether or not it is listed here.
    #[serde(default)]
    pub queues: BTreeMap<String, QueueConfig>,
    /// `schedules.<name>`: jobs submitted on a cron schedule (SPEC §8.3).
    #[serde(default)]
    pub schedules: BTreeMap<String, ScheduleConfig>,
}

/// `queues.<name>`: one named queue.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Jobs of this queue running at once; unset = `jobs.max_concurrent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
}

/// `schedules.<name>`: a job submitted at the fire times of a cron
/// expression. The config crate checks the shape; the cron expression, the
/// zone and the job table are checked by the scheduler's own parsers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// 5 cron fields as in crontab(5), or `@hourly` … `@yearly`.
    pub cron: String,
    /// IANA zone name, or `"local"` (the daemon's zone).
    #[serde(default = "local_zone")]
    pub timezone: String,
    /// The job table a fire submits (as in a runbook, without `vars`).
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub job: serde_json::Value,
    #[serde(default)]
    pub overlap: ScheduleOverlap,
    #[serde(default)]
    pub catch_up: ScheduleCatchUp,
    /// Missed fires older than this are dropped.
    #[serde(default = "one_day", with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub catch_up_within: Duration,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn local_zone() -> String {
    "local".to_string()
}

fn one_day() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn enabled() -> bool {
    true
}

/// `schedules.<name>.overlap`: what a fire does while the schedule's last
/// job is still queued or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleOverlap {
    /// No new run (the fire is settled `skipped`).
    #[default]
    Skip,
    /// Start another run beside it.
    Allow,
    /// Cancel the running job and start the new one.
    Replace,
}

/// `schedules.<name>.catch_up`: what happens to fires missed while no
/// leader ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleCatchUp {
    /// One run for the missed fires (within `catch_up_within`).
    #[default]
    Latest,
    /// Missed fires are settled `missed`.
    None,
}

/// Where the daemon keeps its state and how it names itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Holds the lock, the WAL and snapshot, job logs, the socket and the log file.
    pub state_dir: PathBuf,
    /// This daemon's identity (Lease holder, notifications, status).
    pub instance: String,
    /// Reload when a config file read at start changes (SIGHUP always does).
    pub watch_config: bool,
}

/// How jobs run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Jobs running at once; the rest wait `queued`, first in first out.
    pub max_concurrent: u32,
    /// Default timeout of a step that sets none.
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub step_timeout: Duration,
    /// A step's `run` is appended to this argv.
    pub shell: Vec<String>,
    /// When a step ends, every process it started (its group, or escaped
    /// with `setsid`) gets SIGTERM, then SIGKILL after 2 s.
    pub kill_leftovers: bool,
    /// `false` = only container steps are accepted (a shell step runs
    /// inside the daemon, with its user and its files).
    pub allow_shell: bool,
    /// Finished jobs (and their logs) older than this are deleted.
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub keep_finished: Duration,
    /// At most this many finished jobs are kept (oldest deleted first).
    pub max_finished: u32,
}

/// The API listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Unix socket path (relative = under state_dir); unset = no socket.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub unix_socket: Option<PathBuf>,
    /// `host:port` of the TCP listener; unset = no TCP.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp: Option<String>,
    /// Bearer token required on TCP.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_token: Option<Secret>,
    /// File holding the bearer token (trailing newline trimmed).
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_token_file: Option<PathBuf>,
    /// Serve TCP without a token (only for trusted networks).
    pub insecure_no_auth: bool,
    /// Request bodies above this many bytes get 413.
    pub max_request_bytes: u64,
    /// A TCP connection that has not sent a whole request head by then is closed.
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub header_timeout: Duration,
    /// An idle keep-alive TCP connection is closed after this long.
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
    /// Open TCP connections at once (the Unix socket and admin port are not counted).
    pub max_connections: u32,
}

/// TLS on the TCP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub enabled: bool,
    /// Certificate chain (PEM).
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub cert: Option<PathBuf>,
    /// Private key (PEM).
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub key: Option<PathBuf>,
    /// When set, clients must present a certificate signed by this CA (mTLS).
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_ca: Option<PathBuf>,
    pub min_version: TlsVersion,
    /// How often cert and key are checked for changes on disk.
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub reload_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// Admin endpoints: `/healthz`, `/readyz`, `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `host:port`; unset = off.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub addr: Option<String>,
}

/// Job notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub backend: NotifyBackend,
    /// Which job events notify.
    pub events: Vec<NotifyEvent>,
    pub webhook: WebhookConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyBackend {
    Desktop,
    Webhook,
    Log,
    None,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NotifyEvent {
    Start,
    Done,
    Fail,
    /// A step failed and runs again (not in the default list).
    Retry,
}

/// Webhook delivery (Standard Webhooks v1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<Secret>,
    /// `whsec_…` signing key.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret: Option<Secret>,
    /// File holding the `whsec_…` signing key.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_file: Option<PathBuf>,
    /// Extra request headers.
    pub headers: BTreeMap<String, Secret>,
    pub format: WebhookFormat,
    /// Timeout of one attempt.
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, capped at 5 minutes.
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub backoff: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    Standard,
    Slack,
}

/// The daemon's own log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// EnvFilter directives, e.g. `info,oj_daemon=debug`.
    pub level: String,
    pub format: LogFormat,
    pub stdout: bool,
    pub file: LogFileConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogFileConfig {
    pub enabled: bool,
    /// Relative = under state_dir.
    pub path: PathBuf,
    pub rotation: LogRotation,
    pub max_files: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogRotation {
    Hourly,
    Daily,
    Never,
}

/// Single-instance guarantee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockConfig {
    pub strategy: LockStrategy,
    pub lease: LeaseConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LockStrategy {
    File,
    None,
    Lease,
}

/// A `coordination.k8s.io/v1` Lease, client-go timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    pub name: String,
    /// Unset = the pod's namespace.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub namespace: Option<String>,
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub duration: Duration,
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub renew_deadline: Duration,
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub retry_period: Duration,
}

/// Pods for container steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodsConfig {
    /// Unset = the pod's namespace, else `default`.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub namespace: Option<String>,
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_account: Option<String>,
    pub image_pull_policy: ImagePullPolicy,
    pub keep_finished: bool,
    pub resources: PodResources,
    /// A step pod that cannot pull its image for this long fails.
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub image_pull_grace: Duration,
    /// A step pod still `Pending` after this fails.
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub pending_timeout: Duration,
    /// When set, steps without `container` run as pods of this image
    /// (applied at submission, SPEC §8.5).
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_image: Option<String>,
    /// Labels of every step pod (a job's or step's `container.labels` win key by key).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations of every step pod (overlaid key by key).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `nodeSelector` of every step pod (overlaid key by key).
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of every step pod (a `container.tolerations` replaces them whole).
    #[serde(default)]
    pub tolerations: Vec<crate::k8s_syntax::Toleration>,
    /// `priorityClassName` of every step pod.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub priority_class_name: Option<String>,
    /// Secrets a job's `secrets` may reference; any other is refused.
    #[serde(default)]
    pub allowed_secrets: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// Default requests and limits of every pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodResources {
    pub requests: ResourceList,
    pub limits: ResourceList,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceList {
    pub cpu: Quantity,
    pub memory: Quantity,
}

/// Drain on SIGTERM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long running shell steps may finish before they are terminated.
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub drain_timeout: Duration,
    /// What the drain does with running container steps.
    pub container_steps: ContainerStepsOnDrain,
}

/// `shutdown.container_steps`: leave step pods running (the next daemon
/// follows them) or delete them (steps end `interrupted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStepsOnDrain {
    Detach,
    Cancel,
}

/// The web UI on the API listeners (SPEC §8.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// Serve the UI at `/ui/` on the API listeners (`GET /` redirects there).
    pub enabled: bool,
    /// How long a UI session cookie stays good.
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub session_ttl: Duration,
    /// The origin (`https://host[:port]`) browsers use when the daemon is
    /// behind a proxy; unset = the request's own `Host`.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub origin: Option<String>,
    /// Where people reach this daemon's UI (`https://host[:port][/prefix]`):
    /// notifications link to each job's page under it. Unset = no links.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<String>,
}

/// How client commands reach the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `unix:///path`, `http://…`, `https://…`; unset = the local socket.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<String>,
    /// CA that signed the daemon's certificate.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub ca: Option<PathBuf>,
    /// Client certificate for mTLS.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub cert: Option<PathBuf>,
    /// Client key for mTLS.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub key: Option<PathBuf>,
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<Secret>,
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub token_file: Option<PathBuf>,
}

/// For optional keys an empty string means unset, so that an environment
/// variable can clear what a profile set (`OJ_LISTEN__AUTH_TOKEN_FILE=`).
fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()).map(T::from))
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

impl RuntimeConfig {
    /// The Unix socket path, resolved against `daemon.state_dir`.
    pub fn unix_socket_path(&self) -> Option<PathBuf> {
        self.listen
            .unix_socket
            .as_ref()
            .map(|p| self.daemon.state_dir.join(p))
    }

    /// The log file path, resolved against `daemon.state_dir`.
    pub fn log_file_path(&self) -> PathBuf {
        self.daemon.state_dir.join(&self.log.file.path)
    }
}
