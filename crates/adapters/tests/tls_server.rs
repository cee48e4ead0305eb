//! The TLS adapter against real handshakes on 127.0.0.1: versions, mTLS,
//! rotation through a Kubernetes-style `..data` symlink swap, and the
//! errors and warnings a user sees for bad files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oj_adapters::tls::{ReloadOutcome, ServerTls, cert_info, check_files, client_config};
use oj_config::{ClientConfig, TlsConfig, TlsVersion};
use pki::{Ca, SecretVolume};
use rcgen::date_time_ymd;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// The PKI helper of the end-to-end tests (rcgen only).
#[allow(dead_code)]
#[path = "../../../tests/common/pki.rs"]
mod pki;

const LIMIT: Duration = Duration::from_secs(10);

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn tls_cfg(cert: &Path, key: &Path) -> TlsConfig {
    TlsConfig {
        enabled: true,
        cert: Some(cert.to_path_buf()),
        key: Some(key.to_path_buf()),
        client_ca: None,
        min_version: TlsVersion::Tls12,
        reload_interval: Duration::from_secs(30),
    }
}

/// Serves `hello` over TLS to every client that completes the handshake.
async fn serve(tls: ServerTls) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                if let Ok(mut stream) = tls.accept(tcp).await {
                    let _ = stream.write_all(b"hello\n").await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Connects, reads the greeting, and returns the server certificate's serial.
async fn fetch(addr: std::net::SocketAddr, config: rustls::ClientConfig) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let run = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut stream = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let mut buf = Vec::new();
        // With TLS 1.3 a refused client certificate shows up on the first read.
        stream
            .read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if buf != b"hello\n" {
            return Err(format!(
                "unexpected answer {:?}",
                String::from_utf8_lossy(&buf)
            ));
        }
        let der = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        Ok(cert_info(&der).unwrap().serial)
    };
    tokio::time::timeout(LIMIT, run)
        .await
        .map_err(|_| "timed out".to_string())?
}

fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> rustls::ClientConfig {
    client_config(&ClientConfig {
        url: None,
        ca: Some(ca.to_path_buf()),
        cert: identity.map(|i| i.0.to_path_buf()),
        key: identity.map(|i| i.1.to_path_buf()),
        token: None,
        token_file: None,
    })
    .unwrap()
}

#[tokio::test]
async fn handshake_succeeds_with_the_right_ca_and_fails_with_another() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("oj test CA");
    let leaf = ca.server().serial(0x1001).issue();
    let cert = write(dir.path(), "tls.crt", &leaf.cert);
    let key = write(dir.path(), "tls.key", &leaf.key);
    let ca_path = write(dir.path(), "ca.crt", &ca.pem);
    let other_ca = write(dir.path(), "other.crt", &Ca::new("someone else").pem);

    let addr = serve(ServerTls::build(&tls_cfg(&cert, &key)).unwrap()).await;
    assert_eq!(fetch(addr, client(&ca_path, None)).await.unwrap(), "1001");
    let err = fetch(addr, client(&other_ca, None)).await.unwrap_err();
    assert!(err.contains("handshake"), "{err}");
}

#[tokio::test]
async fn alpn_offers_h2_and_http11() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("oj test CA");
    let leaf = ca.server().serial(7).issue();
    let tls = ServerTls::build(&tls_cfg(
        &write(dir.path(), "c", &leaf.cert),
        &write(dir.path(), "k", &leaf.key),
    ))
    .unwrap();
    assert_eq!(
        tls.server_config().alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[tokio::test]
async fn tls12_is_refused_when_min_version_is_13() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("oj test CA");
    let leaf = ca.server().serial(0x12).issue();
    let cert = write(dir.path(), "tls.crt", &leaf.cert);
    let key = write(dir.path(), "tls.key", &leaf.key);
    let ca_path = write(dir.path(), "ca.crt", &ca.pem);

    let only_12 = |roots: &Path| {
        let mut store = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_file_iter(roots).unwrap() {
            store.add(c.unwrap()).unwrap();
        }
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth()
    };
    use rustls_pki_types::pem::PemObject;

    // 1.2 allowed: a TLS 1.2-only client gets through.
    let addr12 = serve(ServerTls::build(&tls_cfg(&cert, &key)).unwrap()).await;
    assert!(fetch(addr12, only_12(&ca_path)).await.is_ok());

    let mut cfg = tls_cfg(&cert, &key);
    cfg.min_version = TlsVersion::Tls13;
    let addr13 = serve(ServerTls::build(&cfg).unwrap()).await;
    let err = fetch(addr13, only_12(&ca_path)).await.unwrap_err();
    assert!(err.contains("handshake"), "{err}");
    // A TLS 1.3 client still works.
    assert!(fetch(addr13, client(&ca_path, None)).await.is_ok());
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("oj server CA");
    let clients = Ca::new("oj client CA");
    let rogue = Ca::new("rogue CA");
    let leaf = ca.server().serial(0x5e).issue();
    let cert = write(dir.path(), "tls.crt", &leaf.cert);
    let key = write(dir.path(), "tls.key", &leaf.key);
    let ca_path = write(dir.path(), "ca.crt", &ca.pem);
    let mut cfg = tls_cfg(&cert, &key);
    cfg.client_ca = Some(write(dir.path(), "client-ca.crt", &clients.pem));
    let addr = serve(ServerTls::build(&cfg).unwrap()).await;

    // No client certificate.
    assert!(fetch(addr, client(&ca_path, None)).await.is_err());
    // A certificate from another CA.
    let bad = rogue.client().serial(0xbad).issue();
    let bad_cert = write(dir.path(), "bad.crt", &bad.cert);
    let bad_key = write(dir.path(), "bad.key", &bad.key);
    assert!(
        fetch(addr, client(&ca_path, Some((&bad_cert, &bad_key))))
            .await
            .is_err()
    );
    // The right one.
    let good = clients.client().serial(0x600d).issue();
    let good_cert = write(dir.path(), "good.crt", &good.cert);
    let good_key = write(dir.path(), "good.key", &good.key);
    assert_eq!(
        fetch(addr, client(&ca_path, Some((&good_cert, &good_key))))
            .await
            .unwrap(),
        "5e"
    );
}

/// The TLS config of a Secret volume's files.
fn volume_cfg(v: &SecretVolume) -> TlsConfig {
    tls_cfg(&v.cert(), &v.key())
}

#[tokio::test]
async fn rotation_through_a_symlink_swap_is_served_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("oj test CA");
    let ca_path = write(dir.path(), "ca.crt", &ca.pem);
    let vol_dir = dir.path().join("tls");
    let mut vol = SecretVolume::new(&vol_dir, &ca.server().serial(0xa1).issue());

    let tls = ServerTls::build(&volume_cfg(&vol)).unwrap();
    let addr = serve(tls.clone()).await;
    assert_eq!(fetch(addr, client(&ca_path, None)).await.unwrap(), "a1");
    assert_eq!(tls.reload(), ReloadOutcome::Unchanged);

    let next = ca.server().serial(0xb2).issue();
    vol.swap(&next.cert, &next.key);
    // The reloader task notices within the interval; no restart, same listener.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tls.spawn_reloader(Duration::from_millis(20), async move {
        let _ = stop_rx.await;
    });
    let deadline = tokio::time::Instant::now() + LIMIT;
    while tls.current_cert().serial != "b2" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fetch(addr, client(&ca_path, None)).await.unwrap(), "b2");
    let _ = stop_tx.send(());
    tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_broken_replacement_keeps_the_old_pair_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("oj test CA");
    let ca_path = write(dir.path(), "ca.crt", &ca.pem);
    let vol_dir = dir.path().join("tls");
    let mut vol = SecretVolume::new(&vol_dir, &ca.server().serial(0xc3).issue());
    let tls = ServerTls::build(&volume_cfg(&vol)).unwrap();
    let addr = serve(tls.clone()).await;

    // New certificate with the key of another certificate.
    let a = ca.server().serial(0xd4).issue();
    let b = ca.server().serial(0xe5).issue();
    vol.swap(&a.cert, &b.key);
    match tls.reload() {
        ReloadOutcome::Failed(msg) => assert!(
            msg.contains("tls.key") && msg.contains("does not match"),
            "{msg}"
        ),
        other => panic!("expected a failed reload, got {other:?}"),
    }
    // Reported once, then quiet until the files change again.
    assert_eq!(tls.reload(), ReloadOutcome::Unchanged);
    assert_eq!(fetch(addr, client(&ca_path, None)).await.unwrap(), "c3");

    // Garbage is refused the same way.
    vol.swap("not a certificate", &a.key);
    assert!(matches!(tls.reload(), ReloadOutcome::Failed(_)));
    assert_eq!(fetch(addr, client(&ca_path, None)).await.unwrap(), "c3");

    // A good pair afterwards is taken.
    vol.swap(&a.cert, &a.key);
    assert!(matches!(tls.reload(), ReloadOutcome::Reloaded(ref i) if i.serial == "d4"));
    assert_eq!(fetch(addr, client(&ca_path, None)).await.unwrap(), "d4");
}

#[test]
fn build_errors_name_the_key_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("oj test CA");
    let a = ca.server().serial(1).issue();
    let b = ca.server().serial(2).issue();
    let cert = write(dir.path(), "tls.crt", &a.cert);
    let key = write(dir.path(), "tls.key", &a.key);
    let other_key = write(dir.path(), "other.key", &b.key);

    let missing = dir.path().join("nope.crt");
    let e = ServerTls::build(&tls_cfg(&missing, &key)).unwrap_err();
    assert_eq!(e.key(), "tls.cert");
    let msg = e.to_string();
    assert!(
        msg.contains("tls.cert") && msg.contains("nope.crt") && msg.contains("does not exist"),
        "{msg}"
    );

    let e = ServerTls::build(&tls_cfg(&cert, &dir.path().join("nope.key"))).unwrap_err();
    assert_eq!(e.key(), "tls.key");

    let e = ServerTls::build(&tls_cfg(&cert, &other_key)).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.key(), "tls.key");
    assert!(
        msg.contains("does not match") && msg.contains("other.key"),
        "{msg}"
    );

    let old = ca.server().serial(3).until((2020, 1, 1)).issue();
    let old_cert = write(dir.path(), "old.crt", &old.cert);
    let old_key = write(dir.path(), "old.key", &old.key);
    let e = ServerTls::build(&tls_cfg(&old_cert, &old_key)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("tls.cert") && msg.contains("expired") && msg.contains("2020-01-01"),
        "{msg}"
    );

    let not_pem = write(dir.path(), "junk.crt", "hello");
    let e = ServerTls::build(&tls_cfg(&not_pem, &key)).unwrap_err();
    assert!(e.to_string().contains("no certificate"), "{e}");

    let mut cfg = tls_cfg(&cert, &key);
    cfg.client_ca = Some(dir.path().join("missing-ca.crt"));
    assert_eq!(ServerTls::build(&cfg).unwrap_err().key(), "tls.client_ca");

    let mut cfg = tls_cfg(&cert, &key);
    cfg.cert = None;
    assert_eq!(ServerTls::build(&cfg).unwrap_err().key(), "tls.cert");
}

fn at(y: i32, m: u8, d: u8) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(date_time_ymd(y, m, d).unix_timestamp() as u64)
}

#[test]
fn check_files_warns_within_14_days_and_errors_when_expired() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("oj test CA");
    let leaf = ca.server().serial(9).until((2030, 6, 15)).issue();
    let cfg = tls_cfg(
        &write(dir.path(), "tls.crt", &leaf.cert),
        &write(dir.path(), "tls.key", &leaf.key),
    );

    let far = check_files(&cfg, at(2030, 1, 1));
    assert!(far.errors.is_empty() && far.warnings.is_empty(), "{far:?}");

    let soon = check_files(&cfg, at(2030, 6, 5));
    assert!(soon.errors.is_empty(), "{soon:?}");
    assert_eq!(soon.warnings.len(), 1, "{soon:?}");
    assert!(
        soon.warnings[0].key == "tls.cert"
            && soon.warnings[0].detail.contains("expires")
            && soon.warnings[0].detail.contains("2030-06-15"),
        "{soon:?}"
    );

    let late = check_files(&cfg, at(2030, 7, 1));
    assert_eq!(late.errors.len(), 1, "{late:?}");
    assert!(late.errors[0].detail.contains("expired"), "{late:?}");

    let mut off = cfg.clone();
    off.enabled = false;
    off.cert = Some(dir.path().join("missing"));
    assert_eq!(check_files(&off, at(2030, 1, 1)), Default::default());

    let mut broken = cfg.clone();
    broken.key = Some(dir.path().join("missing.key"));
    broken.client_ca = Some(dir.path().join("missing-ca.crt"));
    let r = check_files(&broken, at(2030, 1, 1));
    assert_eq!(r.errors.len(), 2, "{r:?}");
    assert!(
        r.errors.iter().any(|e| e.key == "tls.key")
            && r.errors.iter().any(|e| e.key == "tls.client_ca"),
        "{r:?}"
    );
}

#[test]
fn client_config_errors_name_the_client_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ClientConfig {
        url: None,
        ca: Some(dir.path().join("missing-ca.pem")),
        cert: None,
        key: None,
        token: None,
        token_file: None,
    };
    let e = client_config(&c).unwrap_err();
    assert_eq!(e.key(), "client.ca");
    assert!(e.to_string().contains("missing-ca.pem"), "{e}");

    let ca = Ca::new("oj test CA");
    c.ca = Some(write(dir.path(), "ca.pem", &ca.pem));
    let leaf = ca.client().serial(4).issue();
    c.cert = Some(write(dir.path(), "c.pem", &leaf.cert));
    assert_eq!(client_config(&c).unwrap_err().key(), "client.key");
    c.key = Some(write(dir.path(), "k.pem", &leaf.key));
    let cfg = client_config(&c).unwrap();
    assert!(cfg.client_auth_cert_resolver.has_certs());
}

#[tokio::test]
async fn a_new_client_ca_on_disk_takes_effect_for_new_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("oj server CA");
    let old_clients = Ca::new("old client CA");
    let new_clients = Ca::new("new client CA");
    let leaf = ca.server().serial(0x42).issue();
    let ca_path = write(dir.path(), "ca.crt", &ca.pem);
    let mut cfg = tls_cfg(
        &write(dir.path(), "tls.crt", &leaf.cert),
        &write(dir.path(), "tls.key", &leaf.key),
    );
    let client_ca = write(dir.path(), "client-ca.crt", &old_clients.pem);
    cfg.client_ca = Some(client_ca.clone());
    let tls = ServerTls::build(&cfg).unwrap();
    let addr = serve(tls.clone()).await;

    let old = old_clients.client().serial(1).issue();
    let old_id = (
        write(dir.path(), "old.crt", &old.cert),
        write(dir.path(), "old.key", &old.key),
    );
    let new = new_clients.client().serial(2).issue();
    let new_id = (
        write(dir.path(), "new.crt", &new.cert),
        write(dir.path(), "new.key", &new.key),
    );
    assert!(
        fetch(addr, client(&ca_path, Some((&old_id.0, &old_id.1))))
            .await
            .is_ok()
    );
    assert!(
        fetch(addr, client(&ca_path, Some((&new_id.0, &new_id.1))))
            .await
            .is_err()
    );

    std::fs::write(&client_ca, &new_clients.pem).unwrap();
    assert!(matches!(tls.reload(), ReloadOutcome::Reloaded(_)));
    assert!(
        fetch(addr, client(&ca_path, Some((&new_id.0, &new_id.1))))
            .await
            .is_ok()
    );
    assert!(
        fetch(addr, client(&ca_path, Some((&old_id.0, &old_id.1))))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn client_errors_are_explained_in_terms_of_client_settings() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("oj test CA");
    let leaf = ca.server().serial(0x99).issue();
    let tls = ServerTls::build(&tls_cfg(
        &write(dir.path(), "tls.crt", &leaf.cert),
        &write(dir.path(), "tls.key", &leaf.key),
    ))
    .unwrap();
    let addr = serve(tls).await;
    let other = write(dir.path(), "other.crt", &Ca::new("someone else").pem);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client(&other, None)));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let err = tokio::time::timeout(
        LIMIT,
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .unwrap()
    .unwrap_err();
    let advice = oj_adapters::tls::explain_client_error(&err).expect("a rustls error inside");
    assert!(
        advice.contains("not trusted") && advice.contains("client.ca"),
        "{advice}"
    );
}
