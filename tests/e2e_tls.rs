//! End to end: the real `oj daemon` serving its TCP API over TLS, checked
//! with curl, `openssl s_client`, a rustls client and `oj status`: token and
//! TLS together, plaintext refused, `tls.min_version`, mTLS, rotation
//! through a Kubernetes-style `..data` symlink swap, startup refusals (78)
//! and the 14-day expiry warning of `oj config check`.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::pki::{Ca, SecretVolume, ServerPki, Ymd};
use common::{Daemon, TestEnv, free_port, wait_until};

const TOKEN: &str = "e2e-tls-token-7f3a9c";

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The daemon's config: TCP with TLS on `port`, a token, fast reloads.
fn config(port: u16, cert: &Path, key: &Path, extra_tls: &str) -> String {
    format!(
        r#"
[listen]
tcp = "127.0.0.1:{port}"
auth_token = "{TOKEN}"

[tls]
enabled = true
cert = "{}"
key = "{}"
reload_interval = "100ms"
{extra_tls}

[notify]
backend = "none"
"#,
        s(cert),
        s(key)
    )
}

/// curl with a 10 s limit: (curl exit code, HTTP status, body).
fn curl(args: &[&str]) -> (i32, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        body.to_string(),
    )
}

fn status_url(port: u16) -> String {
    format!("https://localhost:{port}/v1/status")
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

/// `openssl s_client` with extra args; true when the handshake completed.
fn s_client(port: u16, ca: &Path, extra: &[&str]) -> (bool, String) {
    let mut child = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", "localhost", "-CAfile"])
        .arg(ca)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    // Closing stdin ends the session once the handshake is done.
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = text.contains("Verify return code: 0 (ok)")
        && !text.contains("Cipher is (NONE)")
        && !text.contains("alert");
    (ok, text)
}

/// The serial of the certificate the daemon presents to a new connection.
fn served_serial(port: u16, ca: &Path) -> Result<String, String> {
    let cfg = oj_adapters::tls::client_config(&oj_config::ClientConfig {
        url: None,
        ca: Some(ca.to_path_buf()),
        cert: None,
        key: None,
        token: None,
        token_file: None,
    })
    .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| e.to_string())?;
    }
    let der = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?
        .clone();
    let _ = tls.flush();
    Ok(oj_adapters::tls::cert_info(&der)?.serial)
}

/// `ca` and a server certificate with `serial` from it, under `pki/`.
fn pki(env: &TestEnv, ca: &Ca, serial: u64) -> ServerPki {
    let leaf = ca.server().serial(serial).issue();
    ServerPki::write_with(&env.path().join("pki"), ca, &leaf)
}

#[test]
fn curl_needs_the_ca_and_the_token_and_plaintext_fails() {
    let env = TestEnv::new();
    let ca = Ca::new("oj e2e CA");
    let p = pki(&env, &ca, 0x101);
    let port = free_port();
    env.write_config(&config(port, &p.cert, &p.key, ""));
    let d = env.start_daemon_on_tcp(port);

    let (code, status, body) = curl(&["--cacert", &s(&p.ca), "-H", &bearer(), &status_url(port)]);
    assert_eq!((code, status), (0, 200), "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
    assert!(v.get("version").is_some(), "{v}");

    let (code, status, body) = curl(&["--cacert", &s(&p.ca), &status_url(port)]);
    assert_eq!((code, status), (0, 401), "no token: {body}");
    let (_, status, _) = curl(&[
        "--cacert",
        &s(&p.ca),
        "-H",
        "Authorization: Bearer wrong",
        &status_url(port),
    ]);
    assert_eq!(status, 401);

    // HTTP/2 by ALPN works as well.
    let (code, status, _) = curl(&[
        "--http2",
        "--cacert",
        &s(&p.ca),
        "-H",
        &bearer(),
        &status_url(port),
    ]);
    assert_eq!((code, status), (0, 200));

    // Without the CA, curl refuses the certificate.
    let (code, status, _) = curl(&["-H", &bearer(), &status_url(port)]);
    assert_ne!(code, 0);
    assert_eq!(status, 0);

    // Plaintext to the TLS port gets no HTTP answer.
    let (code, status, body) = curl(&[
        "-H",
        &bearer(),
        &format!("http://127.0.0.1:{port}/v1/status"),
    ]);
    assert!(
        code != 0 && status != 200,
        "plaintext was served: {status} {body}"
    );
    assert!(!body.contains("version"), "{body}");
    drop(d);
}

#[test]
fn tls12_is_refused_when_min_version_is_13() {
    let env = TestEnv::new();
    let ca = Ca::new("oj e2e CA");
    let p = pki(&env, &ca, 0x13);
    let port = free_port();
    env.write_config(&config(port, &p.cert, &p.key, "min_version = \"1.3\""));
    let _d = env.start_daemon_on_tcp(port);

    let (ok12, out12) = s_client(port, &p.ca, &["-tls1_2"]);
    assert!(!ok12, "TLS 1.2 must be refused:\n{out12}");
    let (ok13, out13) = s_client(port, &p.ca, &["-tls1_3"]);
    assert!(ok13, "TLS 1.3 must work:\n{out13}");
}

#[test]
fn tls12_is_accepted_by_default() {
    let env = TestEnv::new();
    let ca = Ca::new("oj e2e CA");
    let p = pki(&env, &ca, 0x12);
    let port = free_port();
    env.write_config(&config(port, &p.cert, &p.key, ""));
    let _d = env.start_daemon_on_tcp(port);
    let (ok, out) = s_client(port, &p.ca, &["-tls1_2"]);
    assert!(ok, "{out}");
}

#[test]
fn mtls_refuses_missing_and_foreign_client_certificates() {
    let env = TestEnv::new();
    let ca = Ca::new("oj e2e CA");
    let clients = Ca::new("oj e2e client CA");
    let rogue = Ca::new("rogue CA");
    let p = pki(&env, &ca, 0x77);
    let client_ca = env.write("pki/client-ca.crt", &clients.pem);
    let good = clients.client().serial(0x600d).issue();
    let bad = rogue.client().serial(0xbad).issue();
    let good_cert = env.write("pki/good.crt", &good.cert);
    let good_key = env.write("pki/good.key", &good.key);
    let bad_cert = env.write("pki/bad.crt", &bad.cert);
    let bad_key = env.write("pki/bad.key", &bad.key);
    let port = free_port();
    env.write_config(&config(
        port,
        &p.cert,
        &p.key,
        &format!("client_ca = \"{}\"", s(&client_ca)),
    ));
    let _d = env.start_daemon_on_tcp(port);

    let base = ["--cacert".to_string(), s(&p.ca), "-H".into(), bearer()];
    let args = |extra: &[String]| -> Vec<String> {
        base.iter()
            .cloned()
            .chain(extra.iter().cloned())
            .chain([status_url(port)])
            .collect()
    };
    let run = |a: Vec<String>| curl(&a.iter().map(String::as_str).collect::<Vec<_>>());

    let (code, status, _) = run(args(&[]));
    assert!(
        code != 0 && status == 0,
        "no client cert: curl {code} status {status}"
    );
    let (code, status, _) = run(args(&[
        "--cert".into(),
        s(&bad_cert),
        "--key".into(),
        s(&bad_key),
    ]));
    assert!(
        code != 0 && status == 0,
        "foreign client cert: curl {code} status {status}"
    );
    let (code, status, body) = run(args(&[
        "--cert".into(),
        s(&good_cert),
        "--key".into(),
        s(&good_key),
    ]));
    assert_eq!((code, status), (0, 200), "{body}");
    // The token is still required with a good client certificate.
    let (_, status, _) = curl(&[
        "--cacert",
        &s(&p.ca),
        "--cert",
        &s(&good_cert),
        "--key",
        &s(&good_key),
        &status_url(port),
    ]);
    assert_eq!(status, 401);

    // oj status with client.cert/client.key.
    let out = env
        .oj()
        .args(["status", "--json"])
        .env("OJ_DAEMON_URL", format!("https://localhost:{port}"))
        .env("OJ_AUTH_TOKEN", TOKEN)
        .env("OJ_CLIENT__CA", &p.ca)
        .env("OJ_CLIENT__CERT", &good_cert)
        .env("OJ_CLIENT__KEY", &good_key)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The daemon's own log (desktop profile: text files in the state dir).
fn daemon_log(state: &Path) -> String {
    let mut text = String::new();
    for e in std::fs::read_dir(state).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("daemon") && name.ends_with(".log") {
            text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    text
}

#[test]
fn rotation_is_served_without_restart_and_a_broken_pair_keeps_the_old_one() {
    let env = TestEnv::new();
    let ca = Ca::new("oj e2e CA");
    let ca_path = env.write("pki/ca.crt", &ca.pem);
    let mut vol = SecretVolume::new(&env.path().join("tls"), &ca.server().serial(0xa1).issue());
    let port = free_port();
    env.write_config(&config(
        port,
        &vol.root.join("tls.crt"),
        &vol.root.join("tls.key"),
        "",
    ));
    let mut d = env.start_daemon_on_tcp(port);
    let pid = d.pid();
    assert_eq!(served_serial(port, &ca_path).unwrap(), "a1");

    // A broken pair: the certificate of one key with another key.
    let x = ca.server().serial(0xb2).issue();
    let y = ca.server().serial(0xc3).issue();
    vol.swap(&x.cert, &y.key);
    // Wait until the reloader has looked at it and said so in the log.
    let state = env.state_dir();
    let warned = wait_until(Duration::from_secs(10), || {
        daemon_log(&state).contains("still serving the previous certificate")
    });
    assert!(
        warned,
        "no warning about the broken pair:\n{}",
        daemon_log(&state)
    );
    assert_eq!(
        served_serial(port, &ca_path).unwrap(),
        "a1",
        "the old pair keeps serving"
    );
    let (code, status, _) = curl(&["--cacert", &s(&ca_path), "-H", &bearer(), &status_url(port)]);
    assert_eq!((code, status), (0, 200));

    // A good pair is picked up without a restart.
    vol.swap(&x.cert, &x.key);
    let seen = wait_until(Duration::from_secs(10), || {
        served_serial(port, &ca_path).as_deref() == Ok("b2")
    });
    assert!(
        seen,
        "the new certificate was not served\nstderr:\n{}",
        d.stderr()
    );
    let (code, status, _) = curl(&["--cacert", &s(&ca_path), "-H", &bearer(), &status_url(port)]);
    assert_eq!((code, status), (0, 200));
    assert!(d.exited().is_none());
    assert_eq!(d.pid(), pid);
    assert!(
        wait_until(Duration::from_secs(10), || daemon_log(&state)
            .contains("TLS certificate reloaded")),
        "the reload is logged:\n{}",
        daemon_log(&state)
    );
}

#[test]
fn oj_status_over_https() {
    let env = TestEnv::new();
    let ca = Ca::new("oj e2e CA");
    let p = pki(&env, &ca, 0x5);
    let port = free_port();
    env.write_config(&config(port, &p.cert, &p.key, ""));
    let _d = env.start_daemon_on_tcp(port);

    let run = |vars: &[(&str, String)]| {
        let mut c = env.oj();
        c.args(["status", "--json"]);
        for (k, v) in vars {
            c.env(k, v);
        }
        c.stdin(Stdio::null()).output().unwrap()
    };
    let url = ("OJ_DAEMON_URL", format!("https://localhost:{port}"));
    let out = run(&[
        url.clone(),
        ("OJ_AUTH_TOKEN", TOKEN.into()),
        ("OJ_CLIENT__CA", s(&p.ca)),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert!(
        v.get("version").is_some() && v.get("listeners").is_some(),
        "{v}"
    );

    // Untrusted server certificate: one clear line, not success.
    let out = run(&[url.clone(), ("OJ_AUTH_TOKEN", TOKEN.into())]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("certificate") || err.contains("tls"), "{err}");

    // Wrong token: refused, and the token is not echoed.
    let out = run(&[
        url,
        ("OJ_AUTH_TOKEN", "not-the-token-xyz".into()),
        ("OJ_CLIENT__CA", s(&p.ca)),
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("not-the-token-xyz"));
}

fn start_fails(env: &TestEnv) -> (Option<i32>, String) {
    let mut cmd = env.oj();
    cmd.arg("daemon");
    let mut d = Daemon::spawn_raw(cmd, env.path(), env.socket());
    let st = d.wait_exit(Duration::from_secs(15));
    (st.and_then(|s| s.code()), d.stderr())
}

#[test]
fn startup_refuses_missing_mismatched_and_expired_files_with_78() {
    let env = TestEnv::new();
    let ca = Ca::new("oj e2e CA");
    let a = ca.server().serial(1).issue();
    let b = ca.server().serial(2).issue();
    let old = ca.server().serial(3).until((2021, 1, 1)).issue();
    let cert = env.write("pki/a.crt", &a.cert);
    let key_b = env.write("pki/b.key", &b.key);
    let old_cert = env.write("pki/old.crt", &old.cert);
    let old_key = env.write("pki/old.key", &old.key);
    let port = free_port();

    env.write_config(&config(
        port,
        &env.path().join("pki/missing.crt"),
        &key_b,
        "",
    ));
    let (code, err) = start_fails(&env);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("tls.cert") && err.contains("missing.crt"),
        "{err}"
    );

    env.write_config(&config(port, &cert, &key_b, ""));
    let (code, err) = start_fails(&env);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("tls.key") && err.contains("match"), "{err}");

    env.write_config(&config(port, &old_cert, &old_key, ""));
    let (code, err) = start_fails(&env);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("tls.cert") && err.contains("expired"), "{err}");
}

/// (y, m, d) of `now + days`, in UTC.
fn ymd_in(days: u64) -> Ymd {
    let t = SystemTime::now() + Duration::from_secs(days * 86_400);
    let ts = humantime::format_rfc3339_seconds(t).to_string();
    (
        ts[0..4].parse().unwrap(),
        ts[5..7].parse().unwrap(),
        ts[8..10].parse().unwrap(),
    )
}

#[test]
fn config_check_warns_when_the_certificate_expires_within_14_days() {
    let env = TestEnv::new();
    let ca = Ca::new("oj e2e CA");
    let soon = ca.server().serial(0x14).until(ymd_in(7)).issue();
    let later = ca.server().serial(0x15).until(ymd_in(60)).issue();
    let port = free_port();

    let cert = env.write("pki/soon.crt", &soon.cert);
    let key = env.write("pki/soon.key", &soon.key);
    env.write_config(&config(port, &cert, &key, ""));
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("tls.cert") && all.contains("expires"), "{all}");

    let cert = env.write("pki/later.crt", &later.cert);
    let key = env.write("pki/later.key", &later.key);
    env.write_config(&config(port, &cert, &key, ""));
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        !format!("{}{}", out.stdout, out.stderr).contains("expires"),
        "{out:?}"
    );
}

#[test]
fn certificates_made_with_openssl_as_in_the_docs_work() {
    let env = TestEnv::new();
    let dir = env.path().join("openssl");
    std::fs::create_dir_all(&dir).unwrap();
    // The recipe of docs/tls.md, verbatim apart from the directory.
    let script = r#"set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=oj local CA" -keyout ca.key -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=localhost" -keyout tls.key -out tls.csr
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > tls.ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 90 \
  -extfile tls.ext -out tls.crt
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=e2e" -keyout client.key -out client.csr
printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' > client.ext
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 90 \
  -extfile client.ext -out client.crt
"#;
    let st = Command::new("sh")
        .args(["-c", script])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sh and openssl are installed");
    assert!(st.success(), "the openssl recipe failed");
    let port = free_port();
    env.write_config(&config(
        port,
        &dir.join("tls.crt"),
        &dir.join("tls.key"),
        &format!("client_ca = \"{}\"", s(&dir.join("ca.crt"))),
    ));
    let _d = env.start_daemon_on_tcp(port);
    let (code, status, body) = curl(&[
        "--cacert",
        &s(&dir.join("ca.crt")),
        "--cert",
        &s(&dir.join("client.crt")),
        "--key",
        &s(&dir.join("client.key")),
        "-H",
        &bearer(),
        &status_url(port),
    ]);
    assert_eq!((code, status), (0, 200), "{body}");
}

#[test]
fn a_config_reload_switches_to_new_certificate_paths_and_min_version() {
    let env = TestEnv::new();
    let ca = Ca::new("oj e2e CA");
    let ca_path = env.write("pki/ca.crt", &ca.pem);
    let first = ca.server().serial(0xd1).issue();
    let (cert_a, key_a) = (
        env.write("a/tls.crt", &first.cert),
        env.write("a/tls.key", &first.key),
    );
    let port = free_port();
    let file = env.write_config(&config(port, &cert_a, &key_a, ""));
    let d = env.start_daemon_on_tcp(port);
    assert_eq!(served_serial(port, &ca_path).unwrap(), "d1");

    // New files under other paths: only a config reload can find them.
    let second = ca.server().serial(0xe2).issue();
    let (cert_b, key_b) = (
        env.write("b/tls.crt", &second.cert),
        env.write("b/tls.key", &second.key),
    );
    std::fs::write(
        &file,
        config(port, &cert_b, &key_b, "min_version = \"1.3\""),
    )
    .unwrap();
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || {
            served_serial(port, &ca_path).as_deref() == Ok("e2")
        }),
        "the new paths are served after the reload\nstderr:\n{}",
        d.stderr()
    );
    let (code, _, _) = curl(&[
        "--cacert",
        &s(&ca_path),
        "--tls-max",
        "1.2",
        "-H",
        &bearer(),
        &status_url(port),
    ]);
    assert_ne!(
        code, 0,
        "TLS 1.2 is refused after min_version = 1.3 was reloaded"
    );
    let (_, v) = d.get("/v1/config");
    let pending = v["pending_restart"].to_string();
    assert!(
        !pending.contains("tls.cert") && !pending.contains("tls.min_version"),
        "{v}"
    );
}
