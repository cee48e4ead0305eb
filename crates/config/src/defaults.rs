//! Compiled defaults (layer 1) and the built-in profiles (layer 2).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::environment::Environment;
use crate::model::*;

/// The profiles compiled into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinProfile {
    Desktop,
    Kubernetes,
}

impl BuiltinProfile {
    pub const ALL: [BuiltinProfile; 2] = [BuiltinProfile::Desktop, BuiltinProfile::Kubernetes];

    pub fn name(self) -> &'static str {
        match self {
            BuiltinProfile::Desktop => "desktop",
            BuiltinProfile::Kubernetes => "kubernetes",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The profile file, with its comments, as shipped.
    pub fn toml(self) -> &'static str {
        match self {
            BuiltinProfile::Desktop => include_str!("../../../profiles/desktop.toml"),
            BuiltinProfile::Kubernetes => include_str!("../../../profiles/kubernetes.toml"),
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            BuiltinProfile::Desktop => {
                "a laptop: Unix socket, desktop notifications, log file, file lock"
            }
            BuiltinProfile::Kubernetes => {
                "a pod: TCP with TLS and a token, JSON logs on stdout, Lease lock, webhook/log notifications, 25s drain"
            }
        }
    }
}

impl RuntimeConfig {
    /// Layer 1: a value for every key. Mostly the desktop values; the few
    /// that depend on the machine (state_dir, instance) are computed from
    /// the injected environment, differently when the base profile is
    /// `kubernetes` (instance = `$POD_NAME`).
    pub fn defaults(env: &Environment, base: BuiltinProfile) -> RuntimeConfig {
        let state_dir = env
            .state_home()
            .map(|d| d.join("oj"))
            .unwrap_or_else(|| PathBuf::from(".oj-state"));
        let instance = match base {
            BuiltinProfile::Kubernetes => env.get("POD_NAME").unwrap_or(&env.hostname).to_string(),
            BuiltinProfile::Desktop => env.hostname.clone(),
        };
        let secs = Duration::from_secs;
        RuntimeConfig {
            daemon: DaemonConfig {
                state_dir,
                instance,
                watch_config: true,
            },
            jobs: JobsConfig {
                max_concurrent: 4,
                step_timeout: secs(3600),
                shell: vec!["/bin/sh".into(), "-c".into()],
                kill_leftovers: true,
                allow_shell: true,
                keep_finished: secs(30 * 24 * 3600),
                max_finished: 10_000,
            },
            listen: ListenConfig {
                unix_socket: Some(PathBuf::from("daemon.sock")),
                tcp: None,
                auth_token: None,
                auth_token_file: None,
                insecure_no_auth: false,
                max_request_bytes: 1024 * 1024,
                header_timeout: secs(10),
                idle_timeout: secs(60),
                max_connections: 1024,
            },
            tls: TlsConfig {
                enabled: false,
                cert: None,
                key: None,
                client_ca: None,
                min_version: TlsVersion::Tls12,
                reload_interval: secs(30),
            },
            admin: AdminConfig { addr: None },
            notify: NotifyConfig {
                backend: NotifyBackend::Desktop,
                events: vec![NotifyEvent::Start, NotifyEvent::Done, NotifyEvent::Fail],
                webhook: WebhookConfig {
                    url: None,
                    secret: None,
                    secret_file: None,
                    headers: BTreeMap::new(),
                    format: WebhookFormat::Standard,
                    timeout: secs(10),
                    max_attempts: 8,
                    backoff: secs(1),
                },
            },
            log: LogConfig {
                level: "info".into(),
                format: LogFormat::Text,
                stdout: false,
                file: LogFileConfig {
                    enabled: true,
                    path: PathBuf::from("daemon.log"),
                    rotation: LogRotation::Daily,
                    max_files: 7,
                },
            },
            lock: LockConfig {
                strategy: LockStrategy::File,
                lease: LeaseConfig {
                    name: "oj-daemon".into(),
                    namespace: None,
                    duration: secs(15),
                    renew_deadline: secs(10),
                    retry_period: secs(2),
                },
            },
            pods: PodsConfig {
                namespace: None,
                service_account: None,
                image_pull_policy: ImagePullPolicy::IfNotPresent,
                keep_finished: false,
                resources: PodResources {
                    requests: ResourceList {
                        cpu: quantity("250m"),
                        memory: quantity("256Mi"),
                    },
                    limits: ResourceList {
                        cpu: quantity("2"),
                        memory: quantity("2Gi"),
                    },
                },
                image_pull_grace: secs(120),
                pending_timeout: secs(15 * 60),
                default_image: None,
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                node_selector: BTreeMap::new(),
                tolerations: Vec::new(),
                priority_class_name: None,
                allowed_secrets: Vec::new(),
            },
            shutdown: ShutdownConfig {
                drain_timeout: secs(5),
                container_steps: ContainerStepsOnDrain::Detach,
            },
            ui: UiConfig {
                enabled: true,
                session_ttl: secs(12 * 3600),
                origin: None,
                url: None,
            },
            client: ClientConfig {
                url: None,
                ca: None,
                cert: None,
                key: None,
                token: None,
                token_file: None,
            },
            queues: BTreeMap::new(),
            schedules: BTreeMap::new(),
        }
    }
}

fn quantity(s: &str) -> crate::Quantity {
    // Literals above are valid quantities; the unit test below proves it.
    s.parse()
        .unwrap_or_else(|e| panic!("built-in default {s}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build_for_both_bases() {
        let env = Environment::new([("HOME", "/home/u"), ("POD_NAME", "oj-0")], "laptop");
        let d = RuntimeConfig::defaults(&env, BuiltinProfile::Desktop);
        assert_eq!(d.daemon.state_dir, PathBuf::from("/home/u/.local/state/oj"));
        assert_eq!(d.daemon.instance, "laptop");
        let k = RuntimeConfig::defaults(&env, BuiltinProfile::Kubernetes);
        assert_eq!(k.daemon.instance, "oj-0");
    }
}
