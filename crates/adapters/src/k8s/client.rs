//! How oj finds a Kubernetes API: in-cluster service-account credentials
//! when the injected environment says it runs in a pod, else a kubeconfig
//! (`KUBECONFIG`, else `~/.kube/config`). Values come from the injected
//! [`Environment`], never from the process environment, so tests point oj
//! at the fake API server with a map, and every failure names what was tried.

use std::path::{Path, PathBuf};

use oj_config::Environment;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Where the in-cluster credentials are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Where a client's settings came from (for logs and error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSource {
    /// `KUBERNETES_SERVICE_HOST`/`_PORT` and the service-account files.
    InCluster { url: String },
    /// A kubeconfig file.
    Kubeconfig { path: PathBuf },
}

impl std::fmt::Display for ClientSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientSource::InCluster { url } => write!(f, "in-cluster config ({url})"),
            ClientSource::Kubeconfig { path } => write!(f, "kubeconfig {}", path.display()),
        }
    }
}

/// Why no Kubernetes client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no Kubernetes API configured: tried {tried}; run oj inside a pod (KUBERNETES_SERVICE_HOST set) or set KUBECONFIG to a kubeconfig file"
    )]
    NotConfigured { tried: String },
    #[error(
        "in-cluster Kubernetes config (KUBERNETES_SERVICE_HOST={host}): {reason}; check the pod's service account token mount at {dir}"
    )]
    InCluster {
        host: String,
        reason: String,
        dir: String,
    },
    #[error("kubeconfig {path}: {reason}; fix the file or point KUBECONFIG at a valid one")]
    Kubeconfig { path: String, reason: String },
    #[error("Kubernetes client from {source_desc}: {reason}")]
    Client { source_desc: String, reason: String },
}

/// A kube client config from the environment, with where it came from.
pub async fn client_config(env: &Environment) -> Result<(kube::Config, ClientSource), ClientError> {
    client_config_with(env, Path::new(SERVICE_ACCOUNT_DIR)).await
}

/// [`client_config`] with the service-account directory injected (tests).
pub async fn client_config_with(
    env: &Environment,
    service_account_dir: &Path,
) -> Result<(kube::Config, ClientSource), ClientError> {
    if let Some(host) = env.get("KUBERNETES_SERVICE_HOST") {
        return in_cluster(env, host, service_account_dir);
    }
    let mut tried = vec!["in-cluster config (KUBERNETES_SERVICE_HOST is not set)".to_string()];
    let candidates: Vec<PathBuf> = match env.get("KUBECONFIG") {
        Some(list) => std::env::split_paths(list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => match env.get("HOME") {
            Some(home) => vec![PathBuf::from(home).join(".kube").join("config")],
            None => {
                tried.push("~/.kube/config (HOME is not set)".into());
                Vec::new()
            }
        },
    };
    // Like kubectl, missing entries of KUBECONFIG are skipped; the first
    // existing file decides the context, later ones fill gaps (merge).
    let mut merged: Option<(kube::config::Kubeconfig, PathBuf)> = None;
    for path in &candidates {
        if !path.exists() {
            let via = if env.get("KUBECONFIG").is_some() {
                "KUBECONFIG"
            } else {
                "HOME"
            };
            tried.push(format!("{} (from {via}: no such file)", path.display()));
            continue;
        }
        let kc =
            kube::config::Kubeconfig::read_from(path).map_err(|e| ClientError::Kubeconfig {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        merged = Some(match merged {
            None => (kc, path.clone()),
            Some((first, first_path)) => {
                let m = first.merge(kc).map_err(|e| ClientError::Kubeconfig {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                (m, first_path)
            }
        });
    }
    let Some((kubeconfig, path)) = merged else {
        return Err(ClientError::NotConfigured {
            tried: tried.join(", "),
        });
    };
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| ClientError::Kubeconfig {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok((config, ClientSource::Kubeconfig { path }))
}

fn in_cluster(
    env: &Environment,
    host: &str,
    dir: &Path,
) -> Result<(kube::Config, ClientSource), ClientError> {
    let fail = |reason: String| ClientError::InCluster {
        host: host.to_string(),
        reason,
        dir: dir.display().to_string(),
    };
    let port: u16 = match env.get("KUBERNETES_SERVICE_PORT") {
        Some(p) => p.parse().map_err(|_| {
            fail(format!(
                "KUBERNETES_SERVICE_PORT={p:?} is not a port number"
            ))
        })?,
        None => 443,
    };
    let authority = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => host.to_string(),
    };
    let url = if port == 443 {
        format!("https://{authority}")
    } else {
        format!("https://{authority}:{port}")
    };
    let ca_path = dir.join("ca.crt");
    let ca = std::fs::read(&ca_path)
        .map_err(|e| fail(format!("cannot read {}: {e}", ca_path.display())))?;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&ca)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| {
            fail(format!(
                "{} is not a PEM certificate bundle: {e}",
                ca_path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(fail(format!("{} holds no certificate", ca_path.display())));
    }
    let token_path = dir.join("token");
    if !token_path.exists() {
        return Err(fail(format!("{} does not exist", token_path.display())));
    }
    let mut config = kube::Config::new(
        url.parse()
            .map_err(|e| fail(format!("bad API URL {url}: {e}")))?,
    );
    config.root_cert = Some(certs);
    config.root_cert_file = Some(ca_path);
    // A token file (not its content) so that kube re-reads rotated tokens.
    config.auth_info.token_file = Some(token_path.display().to_string());
    config.default_namespace = service_account_namespace(dir).unwrap_or_else(|| "default".into());
    Ok((config, ClientSource::InCluster { url }))
}

/// A kube client from the environment.
pub async fn connect(env: &Environment) -> Result<(kube::Client, ClientSource), ClientError> {
    let (config, source) = client_config(env).await?;
    let client = kube::Client::try_from(config).map_err(|e| ClientError::Client {
        source_desc: source.to_string(),
        reason: e.to_string(),
    })?;
    Ok((client, source))
}

/// The namespace oj works in: `explicit` (from config), else the pod's own
/// namespace (service-account file), else `default`.
pub fn resolve_namespace(explicit: Option<&str>) -> String {
    resolve_namespace_with(explicit, Path::new(SERVICE_ACCOUNT_DIR))
}

/// [`resolve_namespace`] with the service-account directory injected (tests).
pub fn resolve_namespace_with(explicit: Option<&str>, service_account_dir: &Path) -> String {
    explicit
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| service_account_namespace(service_account_dir))
        .unwrap_or_else(|| "default".to_string())
}

fn service_account_namespace(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("namespace"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
