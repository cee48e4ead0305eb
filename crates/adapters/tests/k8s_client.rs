//! Where oj finds the Kubernetes API and which namespace it uses, from an
//! injected environment (never the test process's own).

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use oj_adapters::k8s::client::{
    ClientError, ClientSource, client_config_with, connect, resolve_namespace_with,
};
use oj_config::Environment;
use oj_k8s_fake::FakeKube;

// The PKI helper of the end-to-end tests (rcgen only).
#[allow(dead_code)]
#[path = "../../../tests/common/pki.rs"]
mod pki;

fn env(vars: &[(&str, &str)]) -> Environment {
    Environment::new(
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        "testhost",
    )
}

const NO_SA: &str = "/nonexistent/serviceaccount";

#[tokio::test]
async fn kubeconfig_from_the_injected_environment_reaches_the_fake() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&path).unwrap();
    let missing = dir.path().join("missing");
    let list = format!("{}:{}", missing.display(), path.display());
    let e = env(&[("KUBECONFIG", &list)]);

    let (config, source) = client_config_with(&e, Path::new(NO_SA)).await.unwrap();
    assert_eq!(source, ClientSource::Kubeconfig { path: path.clone() });
    assert_eq!(
        config.cluster_url.to_string().trim_end_matches('/'),
        fake.url()
    );

    let (client, _) = connect(&e).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    assert!(
        pods.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        fake.count("GET", &FakeKube::pods_path("default")) >= 1,
        "the request reached the fake"
    );
}

#[tokio::test]
async fn home_kube_config_is_the_fallback() {
    let fake = FakeKube::start();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".kube")).unwrap();
    fake.write_kubeconfig(&home.path().join(".kube/config"))
        .unwrap();
    let e = env(&[("HOME", &home.path().display().to_string())]);
    let (_, source) = client_config_with(&e, Path::new(NO_SA)).await.unwrap();
    assert_eq!(
        source,
        ClientSource::Kubeconfig {
            path: home.path().join(".kube/config")
        }
    );
}

#[tokio::test]
async fn nothing_configured_names_what_was_tried() {
    let home = tempfile::tempdir().unwrap();
    let e = env(&[("HOME", &home.path().display().to_string())]);
    let err = client_config_with(&e, Path::new(NO_SA)).await.unwrap_err();
    assert!(matches!(err, ClientError::NotConfigured { .. }));
    let msg = err.to_string();
    assert!(msg.contains("KUBERNETES_SERVICE_HOST is not set"), "{msg}");
    assert!(
        msg.contains(&home.path().join(".kube/config").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("KUBECONFIG"), "{msg}");

    let err = client_config_with(
        &env(&[("KUBECONFIG", "/no/such/kubeconfig")]),
        Path::new(NO_SA),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("/no/such/kubeconfig (from KUBECONFIG: no such file)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_broken_kubeconfig_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kc");
    std::fs::write(&path, "not: [valid").unwrap();
    let err = client_config_with(
        &env(&[("KUBECONFIG", &path.display().to_string())]),
        Path::new(NO_SA),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Kubeconfig { .. }));
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

fn service_account_dir(namespace: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new("kubernetes");
    std::fs::write(dir.path().join("ca.crt"), &ca.pem).unwrap();
    std::fs::write(dir.path().join("token"), "sa-token").unwrap();
    if let Some(ns) = namespace {
        std::fs::write(dir.path().join("namespace"), ns).unwrap();
    }
    dir
}

#[tokio::test]
async fn in_cluster_config_comes_from_the_injected_environment_and_service_account() {
    let sa = service_account_dir(Some("jobs\n"));
    // KUBECONFIG is ignored inside a pod.
    let e = env(&[
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("KUBERNETES_SERVICE_PORT", "6443"),
        ("KUBECONFIG", "/elsewhere"),
    ]);
    let (config, source) = client_config_with(&e, sa.path()).await.unwrap();
    assert_eq!(
        source,
        ClientSource::InCluster {
            url: "https://10.96.0.1:6443".into()
        }
    );
    assert_eq!(config.cluster_url.to_string(), "https://10.96.0.1:6443/");
    assert_eq!(config.default_namespace, "jobs");
    assert_eq!(config.root_cert.as_ref().map(|c| c.len()), Some(1));
    assert_eq!(
        config.auth_info.token_file.as_deref(),
        Some(sa.path().join("token").to_str().unwrap())
    );

    let v6 = env(&[
        ("KUBERNETES_SERVICE_HOST", "fd00::1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
    ]);
    let (_, source) = client_config_with(&v6, sa.path()).await.unwrap();
    assert_eq!(
        source,
        ClientSource::InCluster {
            url: "https://[fd00::1]".into()
        }
    );
}

#[tokio::test]
async fn in_cluster_without_credentials_says_what_is_missing() {
    let empty = tempfile::tempdir().unwrap();
    let e = env(&[
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
    ]);
    let err = client_config_with(&e, empty.path()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ClientError::InCluster { .. }));
    assert!(
        msg.contains("ca.crt") && msg.contains("KUBERNETES_SERVICE_HOST=10.96.0.1"),
        "{msg}"
    );

    let sa = service_account_dir(None);
    let bad_port = env(&[
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("KUBERNETES_SERVICE_PORT", "https"),
    ]);
    let msg = client_config_with(&bad_port, sa.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("KUBERNETES_SERVICE_PORT=\"https\""), "{msg}");
}

#[test]
fn namespace_is_explicit_then_the_pods_own_then_default() {
    let sa = service_account_dir(Some("from-pod"));
    assert_eq!(resolve_namespace_with(Some("jobs"), sa.path()), "jobs");
    assert_eq!(resolve_namespace_with(None, sa.path()), "from-pod");
    assert_eq!(resolve_namespace_with(Some(""), sa.path()), "from-pod");
    assert_eq!(resolve_namespace_with(None, Path::new(NO_SA)), "default");
}
