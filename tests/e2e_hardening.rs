//! End to end, as an attacker on the same network or the same machine
//! would try it against the real `oj` binary: blank and empty bearer
//! tokens over HTTP/1.1 and HTTP/2 (prior knowledge and ALPN, with and
//! without TLS); a flood of idle and slow TCP clients against a daemon
//! under `ulimit -n 1024` while the Unix socket and a real client keep
//! working; two daemons on one socket; file modes under umask 000; a step
//! that reads the daemon's environment; forged log lines; Slack escaping;
//! shell steps refused. Loopback only, every wait bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pki::ServerPki;
use common::webhook::Receiver;
use common::{Daemon, TestEnv, curl_unix, free_port, wait_until};
use serde_json::json;

const TOKEN: &str = "e2e-hardening-token-4c1d9e";
const WAIT: Duration = Duration::from_secs(20);

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Everything the daemon logged to its file (desktop profile: under state_dir).
fn daemon_log(env: &TestEnv) -> String {
    let mut out = String::new();
    if let Ok(entries) = std::fs::read_dir(env.state_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("daemon.") && name.ends_with(".log") {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    out
}

/// `sh -c "<prefix> && exec oj daemon"` with the test environment's
/// variables and working directory (for `ulimit` and `umask`).
fn daemon_under(env: &TestEnv, prefix: &str) -> Command {
    let template = env.oj();
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!("{prefix} && exec \"$0\" daemon"),
        common::oj_bin(),
    ])
    .env_clear()
    .current_dir(env.path());
    for (k, v) in template.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd
}

// ------------------------------------------------------------ tokens

/// An HTTP client speaking only `h2` (prior knowledge on plain TCP, ALPN
/// `h2` on TLS) or only HTTP/1.1.
fn client(h2: bool, ca: Option<&Path>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy();
    b = if h2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    };
    if let Some(ca) = ca {
        let mut tls = oj_adapters::tls::client_config(&oj_config::ClientConfig {
            url: None,
            ca: Some(ca.to_path_buf()),
            cert: None,
            key: None,
            token: None,
            token_file: None,
        })
        .expect("client TLS config");
        tls.alpn_protocols = vec![if h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        b = b.tls_backend_preconfigured(tls);
    }
    b.build().expect("reqwest client")
}

/// (status, HTTP version) of `GET /v1/status` with this `Authorization`
/// (`None` = no header); 0 = no answer.
async fn status_with(c: &reqwest::Client, base: &str, auth: Option<&str>) -> (u16, String) {
    let mut req = c.get(format!("{base}/v1/status"));
    if let Some(a) = auth {
        req = req.header(
            "authorization",
            reqwest::header::HeaderValue::from_str(a).unwrap(),
        );
    }
    match req.send().await {
        Ok(r) => (r.status().as_u16(), format!("{:?}", r.version())),
        Err(e) => (0, e.to_string()),
    }
}

/// Every malformed bearer gets 401 on every protocol; a job submitted
/// with a blank bearer never runs.
async fn check_bearers(base: &str, ca: Option<&Path>) {
    let blanks: [Option<&str>; 6] = [
        None,
        Some("Bearer "),
        Some("Bearer"),
        Some("Bearer     "),
        Some("Basic ZTJlOg=="),
        Some("Bearer e2e-hardening-token-4c1d9"),
    ];
    for h2 in [false, true] {
        let c = client(h2, ca);
        let (ok, version) = status_with(&c, base, Some(&format!("Bearer {TOKEN}"))).await;
        assert_eq!(
            ok, 200,
            "{base} h2={h2}: the real token must work ({version})"
        );
        assert_eq!(version, if h2 { "HTTP/2.0" } else { "HTTP/1.1" });
        for auth in blanks {
            let (code, _) = status_with(&c, base, auth).await;
            assert_eq!(code, 401, "{base} h2={h2} authorization {auth:?}");
        }
        let job = c
            .post(format!("{base}/v1/jobs"))
            .header("authorization", "Bearer ")
            .json(&json!({"name": "intruder", "steps": [{"name": "s", "run": "true"}]}))
            .send()
            .await
            .expect("submit");
        assert_eq!(job.status().as_u16(), 401, "{base} h2={h2}");
    }
}

#[test]
fn blank_and_empty_bearers_are_refused_on_h1_and_h2_with_and_without_tls() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Plain TCP.
    let env = TestEnv::new();
    let port = free_port();
    env.write_config(&format!(
        "[listen]\ntcp = \"127.0.0.1:{port}\"\nauth_token = \"{TOKEN}\"\n[notify]\nbackend = \"none\"\n"
    ));
    let d = env.start_daemon_on_tcp(port);
    rt.block_on(check_bearers(&format!("http://127.0.0.1:{port}"), None));
    let (_, jobs) = d.get("/v1/jobs");
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
    drop(d);

    // TLS (ALPN h2 and http/1.1).
    let env = TestEnv::new();
    let port = free_port();
    let ServerPki { ca, cert, key } = ServerPki::write(&env.path().join("pki"));
    env.write_config(&format!(
        "[listen]\ntcp = \"127.0.0.1:{port}\"\nauth_token = \"{TOKEN}\"\n[tls]\nenabled = true\ncert = \"{}\"\nkey = \"{}\"\n[notify]\nbackend = \"none\"\n",
        s(&cert),
        s(&key)
    ));
    let d = env.start_daemon_on_tcp(port);
    rt.block_on(check_bearers(
        &format!("https://localhost:{port}"),
        Some(&ca),
    ));
    let (_, jobs) = d.get("/v1/jobs");
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
}

#[test]
fn a_token_that_is_blank_once_trimmed_stops_check_and_start() {
    let port = free_port();
    let tcp = format!("listen.tcp=127.0.0.1:{port}");
    // From the environment alias, a `__` variable, a file and a token file.
    let mut env = TestEnv::new();
    env.set_var("OJ_AUTH_TOKEN", "   ");
    let out = env.run(&["--set", &tcp, "config", "check"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stderr.contains("listen.auth_token") && out.stderr.contains("env OJ_AUTH_TOKEN"),
        "{out:?}"
    );
    let out = env.run(&["--set", &tcp, "daemon"]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(out.stderr.contains("listen.auth_token"), "{out:?}");

    let env = TestEnv::new();
    let blank = env.write("blank-token", " \n\t\n");
    let out = env.run(&[
        "--set",
        &tcp,
        "--set",
        &format!("listen.auth_token_file={}", s(&blank)),
        "daemon",
    ]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(out.stderr.contains("empty"), "{out:?}");

    // A short token is accepted with a warning.
    let out = env.run(&[
        "--set",
        &tcp,
        "--set",
        "listen.auth_token=short",
        "config",
        "check",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("warning: listen.auth_token") && out.stderr.contains("16"),
        "{out:?}"
    );
    // ... and --set of a secret warns that the command line is public.
    assert!(
        out.stderr.contains("--set listen.auth_token")
            && out.stderr.contains("OJ_LISTEN__AUTH_TOKEN"),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains("=short"),
        "the secret was echoed: {out:?}"
    );
}

#[test]
fn a_webhook_key_under_24_bytes_is_refused() {
    let mut env = TestEnv::new();
    env.set_var("OJ_NOTIFY_WEBHOOK_URL", "http://127.0.0.1:9/hook");
    env.set_var(
        "OJ_NOTIFY__WEBHOOK__SECRET",
        "whsec_MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=",
    );
    for args in [&["config", "check"][..], &["daemon"][..]] {
        let out = env.run(args);
        assert_eq!(out.code, Some(78), "{args:?}: {out:?}");
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains("notify.webhook.secret") && text.contains("20 bytes"),
            "{text}"
        );
        assert!(!text.contains("MTIzNDU2"), "the key was printed: {text}");
    }
}

// ------------------------------------------------------------ flood

/// Raises this test process's soft open-file limit so it can hold the
/// flood's connections itself.
fn raise_own_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    let want = hard.min(8192);
    if soft < want && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
        return want;
    }
    soft
}

#[test]
fn idle_and_slow_clients_cannot_lock_out_the_unix_socket_or_real_clients() {
    let own = raise_own_nofile();
    if own < 2048 {
        eprintln!(
            "skipped: this test process may open only {own} files; it needs 2048 to flood a daemon limited to 1024"
        );
        return;
    }
    let env = TestEnv::new();
    let port = free_port();
    let admin = free_port();
    env.write_config(&format!(
        "[listen]\ntcp = \"127.0.0.1:{port}\"\nauth_token = \"{TOKEN}\"\nheader_timeout = \"2s\"\nidle_timeout = \"3s\"\n[admin]\naddr = \"127.0.0.1:{admin}\"\n[notify]\nbackend = \"none\"\n"
    ));
    // The daemon under `ulimit -n 1024` (soft and hard: it cannot raise it).
    let cmd = daemon_under(&env, "ulimit -n 1024");
    let mut d = Daemon::spawn_raw(cmd, env.path(), env.socket());
    assert!(
        wait_until(WAIT, || d.exited().is_none()
            && d.get("/v1/status").0 == 200),
        "daemon did not start: {}",
        d.stderr()
    );

    // 1100 idle clients that never send a byte, plus 50 slow ones that
    // send half a request head: more than the open-file limit.
    let mut held = Vec::new();
    for i in 0..1150 {
        let Ok(mut c) = TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_millis(500),
        ) else {
            continue;
        };
        if i >= 1100 {
            let _ = c.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n");
        }
        held.push(c);
    }
    assert!(held.len() > 1000, "only {} connections opened", held.len());

    // The Unix socket answers at once: `oj status` and a job.
    let out = env.run(&["status"]);
    assert_eq!(
        out.code,
        Some(0),
        "oj status over the socket during the flood: {out:?}"
    );
    let id = d.submit(&json!({"name": "during-flood", "steps": [{"name": "s", "run": "true"}]}));
    d.wait_job(&id, &["done"], WAIT);

    // The admin port is not counted against the TCP cap.
    let out = Command::new("curl")
        .args(["-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{admin}/healthz"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "admin /healthz during the flood: {out:?}"
    );

    // A real TCP client is served once the header deadline frees slots.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-m",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
        ])
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .arg(format!("http://127.0.0.1:{port}/v1/status"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{:?}", out);

    // A keep-alive client that got its answer is closed once idle.
    let mut keep = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    keep.write_all(
        format!("GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    keep.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let eof = loop {
        match keep.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        eof,
        "the idle keep-alive connection was not closed within 15 s"
    );

    // Idle and slow clients were closed by the daemon (EOF, not a hang).
    let mut closed = 0;
    for c in held.iter_mut().step_by(50) {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        if let Ok(0) = c.read(&mut buf) {
            closed += 1;
        }
    }
    assert!(
        closed >= 20,
        "only {closed} of {} sampled connections were closed",
        held.len().div_ceil(50)
    );
    drop(held);

    let out = env.run(&["daemon", "stop"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    d.wait_exit(WAIT);
    let log = daemon_log(&env);
    assert!(
        log.contains("listen.max_connections is above what the open-file limit"),
        "the lowered cap is logged:\n{log}"
    );
    let warns = log.lines().filter(|l| l.contains("accept failed")).count()
        + log
            .lines()
            .filter(|l| l.contains("connection cap reached"))
            .count();
    assert!(warns <= 2, "{warns} warnings for one flood:\n{log}");
}

// ------------------------------------------------------------ socket

#[test]
fn a_second_daemon_on_the_same_socket_exits_75_naming_the_first() {
    let shared = tempfile::tempdir().unwrap();
    let sock = shared.path().join("shared.sock");
    let cfg = format!(
        "[listen]\nunix_socket = \"{}\"\n[notify]\nbackend = \"none\"\n",
        s(&sock)
    );
    let a_env = TestEnv::new();
    a_env.write_config(&cfg);
    let b_env = TestEnv::new();
    b_env.write_config(&cfg);

    let start = |env: &TestEnv| {
        let mut cmd = env.oj();
        cmd.arg("daemon");
        Daemon::spawn_raw(cmd, env.path(), sock.clone())
    };
    let mut a = start(&a_env);
    assert!(
        wait_until(WAIT, || a.get("/v1/status").0 == 200),
        "{}",
        a.stderr()
    );

    let mut b = start(&b_env);
    let code = b.wait_exit(WAIT).and_then(|s| s.code());
    assert_eq!(code, Some(75), "{}", b.stderr());
    assert!(
        b.stderr().contains(&format!("PID {}", a.pid())),
        "the other daemon's PID is named: {}",
        b.stderr()
    );
    assert_eq!(a.get("/v1/status").0, 200, "the first daemon still serves");

    // kill -9 leaves a stale socket: the next daemon replaces it.
    a.kill9();
    assert!(sock.exists());
    let b = start(&b_env);
    assert!(
        wait_until(WAIT, || b.get("/v1/status").0 == 200),
        "{}",
        b.stderr()
    );
    let (_, st) = b.get("/v1/status");
    assert_eq!(st["pid"], b.pid(), "{st}");

    // A daemon whose socket file was replaced must not delete the new one.
    std::fs::remove_file(&sock).unwrap();
    let mut c = start(&a_env);
    assert!(
        wait_until(WAIT, || c.get("/v1/status").0 == 200),
        "{}",
        c.stderr()
    );
    b.sigterm();
    let mut b = b;
    b.wait_exit(WAIT);
    assert!(
        sock.exists(),
        "the first daemon's exit removed the second one's socket"
    );
    let (_, st) = c.get("/v1/status");
    assert_eq!(st["pid"], c.pid(), "{st}");
    c.sigterm();
    c.wait_exit(WAIT);
    assert!(!sock.exists(), "a daemon removes its own socket at exit");
}

// ------------------------------------------------------------ files

fn modes_under(dir: &Path, out: &mut Vec<(PathBuf, u32, bool)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        out.push((e.path(), mode, meta.is_dir()));
        if meta.is_dir() {
            modes_under(&e.path(), out);
        }
    }
}

#[test]
fn everything_oj_creates_is_private_under_umask_000() {
    let env = TestEnv::new();
    env.write_config("[notify]\nbackend = \"none\"\n");
    // A state dir someone left open (tmpfs, emptyDir).
    std::fs::create_dir_all(env.state_dir()).unwrap();
    std::fs::set_permissions(env.state_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("daemon.state_dir") && out.stderr.contains("0777"),
        "{out:?}"
    );

    let cmd = daemon_under(&env, "umask 000");
    let mut d = Daemon::spawn_raw(cmd, env.path(), env.socket());
    assert!(
        wait_until(WAIT, || d.get("/v1/status").0 == 200),
        "{}",
        d.stderr()
    );
    let id = d.submit(&json!({
        "name": "modes",
        "env": {"SECRET_ENV": "hunter2-in-the-wal"},
        "steps": [{"name": "write", "run": "echo output; echo more >&2"}]
    }));
    d.wait_job(&id, &["done"], WAIT);
    d.sigterm();
    d.wait_exit(WAIT);
    let mut modes = Vec::new();
    modes_under(&env.state_dir(), &mut modes);
    let state_mode = std::fs::metadata(env.state_dir())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(state_mode, 0o700, "the open state dir was tightened");
    assert!(
        modes.iter().any(|(p, _, _)| p.ends_with("write.log")),
        "{modes:?}"
    );
    for (p, mode, dir) in &modes {
        let want = if *dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", p.display());
    }
    assert!(
        daemon_log(&env).contains("tightened it to 0700"),
        "{}",
        daemon_log(&env)
    );

    // The socket, while the daemon serves (started under umask 000 again).
    let cmd = daemon_under(&env, "umask 000");
    let d = Daemon::spawn_raw(cmd, env.path(), env.socket());
    assert!(
        wait_until(WAIT, || d.get("/v1/status").0 == 200),
        "{}",
        d.stderr()
    );
    let sock_mode = std::fs::metadata(env.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(sock_mode, 0o600);
}

// ------------------------------------------------------------ environ

#[test]
fn a_step_cannot_read_the_daemons_environment() {
    let env = TestEnv::new();
    let port = free_port();
    env.write_config(&format!(
        "[listen]\ntcp = \"127.0.0.1:{port}\"\n[notify]\nbackend = \"none\"\n"
    ));
    let mut cmd = env.oj();
    cmd.env("OJ_AUTH_TOKEN", TOKEN).arg("daemon");
    // Root may read any process's environ: run the daemon as an ordinary
    // user, which is what the promise is about.
    let as_root = nix::unistd::geteuid().is_root();
    if as_root {
        if Command::new("setpriv").arg("--version").output().is_err() {
            eprintln!("skipped: running as root and setpriv (util-linux) is missing");
            return;
        }
        let status = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(env.path())
            .status()
            .expect("chown");
        assert!(status.success());
        let mut wrapped = Command::new("setpriv");
        wrapped
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(common::oj_bin())
            .arg("daemon")
            .env_clear();
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                wrapped.env(k, v);
            }
        }
        wrapped.current_dir(env.path());
        cmd = wrapped;
    }
    let d = Daemon::spawn_raw(cmd, env.path(), env.socket());
    assert!(
        wait_until(WAIT, || d.get("/v1/status").0 == 200),
        "{}",
        d.stderr()
    );
    let id = d.submit(&json!({
        "name": "snoop",
        "steps": [{"name": "snoop", "run":
            "echo \"uid $(id -u) parent $PPID\"; if tr '\\0' '\\n' < /proc/$PPID/environ; then echo READ-ENVIRON; else echo DENIED; fi"}]
    }));
    d.wait_job(&id, &["done", "failed"], WAIT);
    let (_, log) = d.get(&format!("/v1/jobs/{id}/logs"));
    let log = log["text"].as_str().unwrap_or_default().to_string();
    assert!(
        log.contains(&format!("parent {}", d.pid())),
        "the step's parent is the daemon: {log}"
    );
    assert!(log.contains("DENIED"), "{log}");
    assert!(
        !log.contains(TOKEN) && !log.contains("READ-ENVIRON"),
        "the step read the daemon's environment:\n{log}"
    );
}

// ------------------------------------------------------------ output

#[test]
fn forged_log_lines_are_escaped_in_the_text_log() {
    let env = TestEnv::new();
    env.write_config("[notify]\nbackend = \"log\"\n[log]\nformat = \"text\"\n");
    let d = env.start_daemon(&[]);
    let forged = "2030-01-01T00:00:00.000000Z  INFO oj: FORGED admin token rotated";
    let id = d.submit(&json!({
        "name": "innocent",
        "notify": {"on_start": format!("started\n{forged}\u{1b}[2J")},
        "steps": [{"name": "s", "run": "true"}]
    }));
    d.wait_job(&id, &["done"], WAIT);
    // A job name with a newline: refused (400) or logged escaped.
    let (code, _) = d.post(
        "/v1/jobs",
        &json!({"name": format!("evil\n{forged}"), "steps": [{"name": "s", "run": "true"}]}),
    );
    assert!(code == 201 || code == 400, "{code}");
    let ok = wait_until(WAIT, || daemon_log(&env).contains("FORGED"));
    assert!(ok, "the notification was logged:\n{}", daemon_log(&env));
    let log = daemon_log(&env);
    assert!(
        !log.lines().any(|l| l.starts_with("2030-01-01")),
        "a forged line made it into the log:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "a raw escape reached the log:\n{log}"
    );
    assert!(log.contains("started\\n2030-01-01"), "{log}");
}

#[test]
fn job_list_and_show_print_control_characters_escaped() {
    let env = TestEnv::new();
    env.write_config("[notify]\nbackend = \"none\"\n");
    let d = env.start_daemon(&[]);
    let (code, job) = d.post(
        "/v1/jobs",
        &json!({"name": "red\u{1b}[31mname\u{1b}[0m", "steps": [{"name": "s", "run": "true"}]}),
    );
    if code == 400 {
        // The daemon refuses control characters in names (SPEC 7.5): nothing to print.
        return;
    }
    assert_eq!(code, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    d.wait_job(&id, &["done"], WAIT);
    for args in [vec!["job", "list"], vec!["job", "show", &id]] {
        let out = env.run(&args);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(!out.stdout.contains('\u{1b}'), "{args:?}: {:?}", out.stdout);
        assert!(
            out.stdout.contains("red\\u{1b}[31mname"),
            "{args:?}: {}",
            out.stdout
        );
    }
}

#[test]
fn slack_messages_cannot_mention_a_channel() {
    let rx = Receiver::start();
    let env = TestEnv::new();
    env.write_config(&format!(
        "[notify]\nbackend = \"webhook\"\nevents = [\"start\"]\n[notify.webhook]\nurl = \"http://{}/slack\"\nformat = \"slack\"\n",
        rx.addr()
    ));
    let d = env.start_daemon(&[]);
    let id = d.submit(&json!({
        "name": "deploy <!channel> & <@U024BE7LH>",
        "notify": {"on_start": "see <https://evil.example|your bank>"},
        "steps": [{"name": "s", "run": "true"}]
    }));
    d.wait_job(&id, &["done"], WAIT);
    let got = rx.wait_delivered(1, WAIT);
    assert!(!got.is_empty(), "no webhook arrived");
    let v = got[0].json();
    let text = v["text"].as_str().unwrap_or_default();
    assert_eq!(
        text,
        "deploy &lt;!channel&gt; &amp; &lt;@U024BE7LH&gt;: see &lt;https://evil.example|your bank&gt;"
    );
}

#[test]
fn shell_steps_are_refused_when_only_containers_are_allowed() {
    let env = TestEnv::new();
    env.write_config("[jobs]\nallow_shell = false\n[notify]\nbackend = \"none\"\n");
    let d = env.start_daemon(&[]);
    let (code, body) = d.post(
        "/v1/jobs",
        &json!({"name": "j", "steps": [{"name": "compile", "run": "touch /tmp/oj-should-not-exist"}]}),
    );
    assert_eq!(code, 400, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("\"compile\"") && msg.contains("jobs.allow_shell"),
        "{body}"
    );
    let (_, jobs) = d.get("/v1/jobs");
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
    // Over the CLI the same reason reaches the user.
    let out = env.run(&["exec", "--", "true"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("jobs.allow_shell"), "{out:?}");
    let _ = curl_unix(&env.socket(), "GET", "/v1/status", None);
}

// ------------------------------------------------------------ desktop

/// A notification service on a private bus: records bodies, advertises
/// the capabilities the test sets.
struct Notifications {
    bodies: Arc<Mutex<Vec<String>>>,
    caps: Arc<Mutex<Vec<String>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Notifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        _summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: std::collections::HashMap<String, zbus::OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut b = self.bodies.lock().unwrap();
        b.push(body);
        b.len() as u32
    }

    fn get_capabilities(&self) -> Vec<String> {
        self.caps.lock().unwrap().clone()
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        ("oj-e2e".into(), "oj".into(), "1".into(), "1.2".into())
    }

    fn close_notification(&self, _id: u32) {}
}

#[test]
fn desktop_bodies_are_escaped_when_the_server_reads_markup() {
    let Some(bus) = common::private_bus::start() else {
        eprintln!("skipped: dbus-daemon (package dbus) is not installed");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let caps = Arc::new(Mutex::new(vec![
        "body".to_string(),
        "body-markup".to_string(),
    ]));
    let _service = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            zbus::connection::Builder::address(bus.address.as_str())
                .name("org.freedesktop.Notifications")
                .serve_at(
                    "/org/freedesktop/Notifications",
                    Notifications {
                        bodies: bodies.clone(),
                        caps: caps.clone(),
                    },
                )
                .build(),
        )
        .await
        .expect("the test bus answers within 10 s")
        .expect("serve org.freedesktop.Notifications")
    });
    let name = "<a href=\"https://evil.example\">bold</a> & <img src=x>";
    for markup in [true, false] {
        *caps.lock().unwrap() = if markup {
            vec!["body".into(), "body-markup".into()]
        } else {
            vec!["body".into()]
        };
        bodies.lock().unwrap().clear();
        let mut env = TestEnv::new();
        env.set_var("DBUS_SESSION_BUS_ADDRESS", &bus.address);
        env.write_config("[notify]\nbackend = \"desktop\"\nevents = [\"start\"]\n");
        let d = env.start_daemon(&[]);
        let id = d.submit(&json!({"name": name, "steps": [{"name": "s", "run": "true"}]}));
        d.wait_job(&id, &["done"], WAIT);
        assert!(
            wait_until(WAIT, || !bodies.lock().unwrap().is_empty()),
            "no notification arrived (markup = {markup})\n{}",
            daemon_log(&env)
        );
        let body = bodies.lock().unwrap()[0].clone();
        if markup {
            assert_eq!(
                body,
                "Job &lt;a href=\"https://evil.example\"&gt;bold&lt;/a&gt; &amp; &lt;img src=x&gt; started"
            );
        } else {
            assert_eq!(
                body,
                format!("Job {name} started"),
                "a plain-text server shows it as it is"
            );
        }
    }
}

#[test]
fn a_trickled_request_body_does_not_hold_the_connection() {
    let env = TestEnv::new();
    let port = free_port();
    env.write_config(&format!(
        "[listen]\ntcp = \"127.0.0.1:{port}\"\nauth_token = \"{TOKEN}\"\nidle_timeout = \"2s\"\n[notify]\nbackend = \"none\"\n"
    ));
    let d = env.start_daemon_on_tcp(port);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(
        format!(
            "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{{\"name\""
        )
        .as_bytes(),
    )
    .unwrap();
    // ... and nothing more. The daemon answers or closes; it does not wait forever.
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 4096];
    let got = c.read(&mut buf);
    assert!(
        got.is_ok(),
        "the connection was still held after 15 s: {got:?}"
    );
    let (_, jobs) = d.get("/v1/jobs");
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
}
