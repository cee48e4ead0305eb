//! End-to-end tests of the client commands (`oj run`, `exec`, `job …`,
//! `status`, `daemon stop`) driving the real binary against a real daemon,
//! over the Unix socket and over TCP with a token.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Output, TestEnv, free_port, wait_until};
use serde_json::Value;

/// Every client command must end well within this.
const BOUND: Duration = Duration::from_secs(60);

/// Runs a command to completion, killing it if it outlives `BOUND`.
fn run_bounded(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oj");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        code: status.and_then(|s| s.code()),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "oj did not finish within {BOUND:?}: {out:?}"
    );
    out
}

fn oj(env: &TestEnv, args: &[&str]) -> Output {
    let mut cmd = env.oj();
    cmd.args(args);
    run_bounded(cmd)
}

fn oj_in(env: &TestEnv, cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = env.oj();
    cmd.current_dir(cwd).args(args);
    run_bounded(cmd)
}

fn oj_with(env: &TestEnv, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = env.oj();
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.args(args);
    run_bounded(cmd)
}

/// The job id `oj run` / `oj exec` print as their first stdout line.
fn job_id(out: &Output) -> String {
    let id = out.stdout.lines().next().unwrap_or("").trim().to_string();
    assert!(!id.is_empty(), "no job id on stdout: {out:?}");
    id
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out:?}"))
}

#[test]
fn exec_wait_exit_code_follows_the_job() {
    let env = TestEnv::new();
    let daemon = env.start_daemon(&[]);

    let ok = oj(&env, &["exec", "--wait", "--", "true"]);
    assert_eq!(ok.code, Some(0), "{ok:?}");
    let id = job_id(&ok);
    let (status, job) = daemon.get(&format!("/v1/jobs/{id}"));
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "done");
    assert_eq!(job["name"], "true", "the job is named after the command");

    let bad = oj(&env, &["exec", "--wait", "--", "false"]);
    assert_eq!(bad.code, Some(1), "{bad:?}");
    let id = job_id(&bad);
    assert!(
        bad.stderr.contains(&id) && bad.stderr.contains("failed"),
        "{bad:?}"
    );
    assert_eq!(bad.stderr.lines().count(), 1, "one clear line: {bad:?}");
}

#[test]
fn exec_quotes_arguments_and_streams_output_while_waiting() {
    let env = TestEnv::new();
    let _daemon = env.start_daemon(&[]);
    let out = oj(
        &env,
        &[
            "exec", "--name", "quoting", "--wait", "--", "printf", "%s|", "a b", "it's", "$HOME",
            "*",
        ],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("a b|it's|$HOME|*|"),
        "arguments reach the command unchanged: {out:?}"
    );
    let id = job_id(&out);
    let logs = oj(&env, &["job", "logs", &id]);
    assert_eq!(logs.code, Some(0), "{logs:?}");
    assert!(logs.stdout.contains("a b|it's|$HOME|*|"), "{logs:?}");
}

const GREET: &str = r#"
[job.greet]
vars = ["who"]
env = { GREETING = "hello" }

[[job.greet.step]]
name = "say"
run = "echo \"$GREETING ${var.who} from ${name}\""

[[job.greet.step]]
name = "again"
run = "echo second step for ${var.who}"
"#;

#[test]
fn run_finds_runbooks_by_walking_up_and_substitutes_vars() {
    let env = TestEnv::new();
    let daemon = env.start_daemon(&[]);
    env.write("proj/.oj/runbooks/greet.toml", GREET);
    env.write(
        "proj/.oj/runbooks/other.toml",
        "[job.other]\n[[job.other.step]]\nname = \"x\"\nrun = \"true\"\n",
    );
    let sub = env.path().join("proj/src/deep");
    std::fs::create_dir_all(&sub).expect("mkdir");

    let out = oj_in(&env, &sub, &["run", "greet", "--var", "who=world"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "just the id: {out:?}");
    let id = job_id(&out);
    let job = daemon.wait_job(&id, &["done", "failed"], Duration::from_secs(30));
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["name"], "greet");

    let logs = oj(&env, &["job", "logs", &id]);
    assert_eq!(logs.code, Some(0), "{logs:?}");
    assert!(logs.stdout.contains("hello world from greet"), "{logs:?}");
    assert!(logs.stdout.contains("second step for world"), "{logs:?}");

    // --wait streams the same output and exits 0.
    let waited = oj_in(
        &env,
        &sub,
        &["run", "greet", "--var", "who=there", "--wait"],
    );
    assert_eq!(waited.code, Some(0), "{waited:?}");
    assert!(
        waited.stdout.contains("hello there from greet"),
        "{waited:?}"
    );

    // Unknown job: exit 2 naming the jobs that exist.
    let unknown = oj_in(&env, &sub, &["run", "nope"]);
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
    assert!(
        unknown.stderr.contains("greet") && unknown.stderr.contains("other"),
        "{unknown:?}"
    );
}

#[test]
fn run_with_file_and_a_job_defined_twice() {
    let env = TestEnv::new();
    let _daemon = env.start_daemon(&[]);
    let file = env.write("elsewhere/book.toml", GREET);
    let out = oj(
        &env,
        &[
            "run",
            "greet",
            "--file",
            file.to_str().unwrap(),
            "--var",
            "who=file",
            "--wait",
        ],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("hello file from greet"), "{out:?}");

    env.write("dup/.oj/runbooks/a.toml", GREET);
    env.write("dup/.oj/runbooks/b.toml", GREET);
    let dup = oj_in(
        &env,
        &env.path().join("dup"),
        &["run", "greet", "--var", "who=x"],
    );
    assert_eq!(dup.code, Some(2), "{dup:?}");
    assert!(
        dup.stderr.contains("a.toml") && dup.stderr.contains("b.toml"),
        "{dup:?}"
    );
}

#[test]
fn missing_vars_are_refused_before_submission() {
    let env = TestEnv::new();
    env.write(
        "proj/.oj/runbooks/build.toml",
        "[job.build]\nvars = [\"target\", \"mode\"]\n[[job.build.step]]\nname = \"c\"\nrun = \"echo ${var.target} ${var.mode}\"\n",
    );
    let proj = env.path().join("proj");
    // No daemon runs: contacting one would exit 69, so 2 proves the refusal came first.
    let out = oj_in(&env, &proj, &["run", "build"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("target") && out.stderr.contains("mode"),
        "every missing var listed: {out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    let partial = oj_in(&env, &proj, &["run", "build", "--var", "target=x"]);
    assert_eq!(partial.code, Some(2), "{partial:?}");
    assert!(
        partial.stderr.contains("mode") && !partial.stderr.contains("target,"),
        "{partial:?}"
    );

    // And with a daemon running, nothing reaches it.
    let daemon = env.start_daemon(&[]);
    let again = oj_in(&env, &proj, &["run", "build"]);
    assert_eq!(again.code, Some(2), "{again:?}");
    let (_, list) = daemon.get("/v1/jobs?limit=1000");
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(0), "{list}");
}

#[test]
fn job_list_and_show_shapes() {
    let env = TestEnv::new();
    let daemon = env.start_daemon(&[]);
    let first = job_id(&oj(&env, &["exec", "--name", "first", "--", "true"]));
    daemon.wait_job(&first, &["done"], Duration::from_secs(30));
    let second = job_id(&oj(
        &env,
        &["exec", "--name", "second", "--", "sh", "-c", "exit 3"],
    ));
    daemon.wait_job(&second, &["failed"], Duration::from_secs(30));

    let list = oj(&env, &["job", "list", "--json"]);
    assert_eq!(list.code, Some(0), "{list:?}");
    let v = json(&list);
    let jobs = v["jobs"].as_array().expect("jobs array");
    assert_eq!(jobs.len(), 2, "{v}");
    assert_eq!(jobs[0]["id"], second.as_str(), "newest first: {v}");
    assert_eq!(jobs[1]["id"], first.as_str(), "{v}");
    for job in jobs {
        for key in ["id", "name", "state", "created_at", "steps"] {
            assert!(job.get(key).is_some(), "job lacks {key}: {job}");
        }
    }

    let failed = json(&oj(&env, &["job", "list", "--json", "--status", "failed"]));
    let ids: Vec<&str> = failed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, vec![second.as_str()]);

    let table = oj(&env, &["job", "list"]);
    assert_eq!(table.code, Some(0), "{table:?}");
    let header = table.stdout.lines().next().unwrap_or("");
    for col in ["ID", "NAME", "STATE", "CREATED", "DURATION"] {
        assert!(header.contains(col), "{table:?}");
    }
    assert!(
        table.stdout.contains(&first) && table.stdout.contains("second"),
        "{table:?}"
    );

    let bad = oj(&env, &["job", "list", "--status", "finished"]);
    assert_eq!(bad.code, Some(2), "{bad:?}");
    for s in [
        "queued",
        "running",
        "done",
        "failed",
        "cancelled",
        "interrupted",
    ] {
        assert!(bad.stderr.contains(s), "valid states listed: {bad:?}");
    }

    let show = oj(&env, &["job", "show", &second, "--json"]);
    assert_eq!(show.code, Some(0), "{show:?}");
    let job = json(&show);
    assert_eq!(job["id"], second.as_str());
    assert_eq!(job["state"], "failed");
    assert_eq!(job["steps"][0]["state"], "failed", "{job}");
    assert_eq!(job["steps"][0]["exit_code"], 3, "{job}");
    assert!(job["steps"][0]["name"].is_string(), "{job}");

    let text = oj(&env, &["job", "show", &second]);
    assert_eq!(text.code, Some(0), "{text:?}");
    assert!(
        text.stdout.contains("failed") && text.stdout.contains('3'),
        "{text:?}"
    );

    let missing = oj(&env, &["job", "show", "no-such-job"]);
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(missing.stderr.contains("no job no-such-job"), "{missing:?}");
}

#[test]
fn logs_follow_prints_until_the_job_ends() {
    let env = TestEnv::new();
    let daemon = env.start_daemon(&[]);
    let id = job_id(&oj(
        &env,
        &[
            "exec",
            "--name",
            "slow",
            "--",
            "sh",
            "-c",
            "echo first; sleep 1; echo second",
        ],
    ));
    let out = oj(&env, &["job", "logs", &id, "--follow"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("first") && out.stdout.contains("second"),
        "{out:?}"
    );
    // --follow only returns once the job has ended.
    let (_, job) = daemon.get(&format!("/v1/jobs/{id}"));
    assert_eq!(job["state"], "done", "{job}");

    let missing = oj(&env, &["job", "logs", "no-such-job"]);
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(missing.stderr.contains("no job"), "{missing:?}");
}

#[test]
fn cancel_stops_a_running_job() {
    let env = TestEnv::new();
    let daemon = env.start_daemon(&[]);
    let id = job_id(&oj(&env, &["exec", "--", "sleep", "60"]));
    daemon.wait_job(&id, &["running"], Duration::from_secs(30));
    let out = oj(&env, &["job", "cancel", &id]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let job = daemon.wait_job(&id, &["cancelled"], Duration::from_secs(30));
    assert_eq!(job["state"], "cancelled");

    // --wait on a job that gets cancelled exits 1 naming the state.
    let mut waiter = env.oj();
    waiter.args(["exec", "--wait", "--", "sleep", "60"]);
    let handle = std::thread::spawn(move || run_bounded(waiter));
    let mut waited_id = None;
    assert!(wait_until(Duration::from_secs(30), || {
        let (_, list) = daemon.get("/v1/jobs?status=running");
        waited_id = list["jobs"]
            .as_array()
            .and_then(|j| j.first())
            .and_then(|j| j["id"].as_str())
            .map(str::to_string);
        waited_id.is_some()
    }));
    let waited_id = waited_id.unwrap();
    assert_eq!(oj(&env, &["job", "cancel", &waited_id]).code, Some(0));
    let out = handle.join().expect("waiter");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("cancelled"), "{out:?}");

    let missing = oj(&env, &["job", "cancel", "no-such-job"]);
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(missing.stderr.contains("no job"), "{missing:?}");
}

#[test]
fn status_json_is_the_api_body() {
    let env = TestEnv::new();
    let daemon = env.start_daemon(&[]);
    let out = oj(&env, &["status", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let v = json(&out);
    for key in [
        "version",
        "profile",
        "instance",
        "uptime_s",
        "leader",
        "draining",
        "listeners",
        "jobs",
    ] {
        assert!(v.get(key).is_some(), "status lacks {key}: {v}");
    }
    assert_eq!(v["profile"], "desktop");
    assert_eq!(v["leader"], true);
    assert_eq!(v["draining"], false);
    assert!(v["jobs"].is_object(), "{v}");
    let (_, api) = daemon.get("/v1/status");
    assert_eq!(api["instance"], v["instance"]);

    let text = oj(&env, &["status"]);
    assert_eq!(text.code, Some(0), "{text:?}");
    assert!(
        text.stdout.contains("desktop") && text.stdout.contains("leader"),
        "{text:?}"
    );
}

#[test]
fn no_daemon_exits_69_naming_the_address() {
    let env = TestEnv::new();
    for args in [
        &["status"][..],
        &["job", "list"],
        &["exec", "--", "true"],
        &["daemon", "stop"],
    ] {
        let out = oj(&env, args);
        assert_eq!(out.code, Some(69), "{args:?}: {out:?}");
        let line = out.stderr.trim();
        assert_eq!(line.lines().count(), 1, "one line: {out:?}");
        assert!(
            line.contains(env.socket().to_str().unwrap()),
            "address named: {out:?}"
        );
        assert!(
            line.contains("oj daemon") && line.contains("OJ_DAEMON_URL"),
            "what to do: {out:?}"
        );
    }
    // Over TCP too.
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = oj_with(
        &env,
        &[("OJ_DAEMON_URL", &url), ("OJ_AUTH_TOKEN", "t")],
        &["status"],
    );
    assert_eq!(out.code, Some(69), "{out:?}");
    assert!(out.stderr.contains(&url), "{out:?}");
}

#[test]
fn daemon_stop_waits_for_a_clean_exit() {
    let env = TestEnv::new();
    let mut daemon = env.start_daemon(&[]);
    let out = oj(&env, &["daemon", "stop"]);
    assert_eq!(
        out.code,
        Some(0),
        "{out:?}\ndaemon stderr:\n{}",
        daemon.stderr()
    );
    assert!(out.stderr.contains("stopped"), "{out:?}");
    // `stop` returns only once the process has exited, not just its socket.
    let status = daemon
        .exited()
        .expect("the daemon has exited when stop returns");
    assert_eq!(
        status.code(),
        Some(0),
        "daemon stderr:\n{}",
        daemon.stderr()
    );
    // The daemon is gone: the next client call cannot reach it.
    assert_eq!(oj(&env, &["status"]).code, Some(69));
}

#[test]
fn tcp_with_a_token_and_a_wrong_token() {
    let env = TestEnv::new();
    let port = free_port();
    let listen = format!("listen.tcp=127.0.0.1:{port}");
    let _daemon = env.start_daemon(&["--set", &listen, "--set", "listen.auth_token=s3cret-token"]);
    let url = format!("http://127.0.0.1:{port}");

    let good = [
        ("OJ_DAEMON_URL", url.as_str()),
        ("OJ_AUTH_TOKEN", "s3cret-token"),
    ];
    let out = oj_with(&env, &good, &["exec", "--wait", "--", "echo", "over-tcp"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("over-tcp"), "{out:?}");
    let status = oj_with(&env, &good, &["status", "--json"]);
    assert_eq!(status.code, Some(0), "{status:?}");
    assert_eq!(json(&status)["leader"], true);
    // client.token wins over OJ_AUTH_TOKEN (listen.auth_token).
    let pref = oj_with(
        &env,
        &[
            ("OJ_DAEMON_URL", &url),
            ("OJ_AUTH_TOKEN", "wrong"),
            ("OJ_CLIENT__TOKEN", "s3cret-token"),
        ],
        &["job", "list"],
    );
    assert_eq!(pref.code, Some(0), "{pref:?}");

    let wrong = oj_with(
        &env,
        &[("OJ_DAEMON_URL", &url), ("OJ_AUTH_TOKEN", "nope")],
        &["status"],
    );
    assert_eq!(wrong.code, Some(1), "{wrong:?}");
    assert!(
        wrong.stderr.contains("401") && wrong.stderr.contains("token"),
        "{wrong:?}"
    );
    assert!(
        !wrong.stderr.contains("nope"),
        "the token is never printed: {wrong:?}"
    );

    let none = oj_with(&env, &[("OJ_DAEMON_URL", &url)], &["status"]);
    assert_eq!(none.code, Some(1), "{none:?}");
    assert!(
        none.stderr.contains("401") && none.stderr.contains("OJ_AUTH_TOKEN"),
        "{none:?}"
    );
}

#[test]
fn daemon_and_client_read_the_same_token_from_a_file() {
    // A Secret mount written on Windows ends in CRLF, a hand-edited one may
    // carry spaces: daemon and client must agree on the value.
    let env = TestEnv::new();
    let file = env.write("secret/token", " s3cret-token \r\n");
    let port = free_port();
    let listen = format!("listen.tcp=127.0.0.1:{port}");
    let token_file = format!("listen.auth_token_file={}", file.display());
    let _daemon = env.start_daemon(&["--set", &listen, "--set", &token_file]);
    let url = format!("http://127.0.0.1:{port}");
    let file_var = file.display().to_string();

    let out = oj_with(
        &env,
        &[
            ("OJ_DAEMON_URL", &url),
            ("OJ_CLIENT__TOKEN_FILE", &file_var),
        ],
        &["status", "--json"],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = oj_with(
        &env,
        &[
            ("OJ_DAEMON_URL", &url),
            ("OJ_CLIENT__TOKEN", " s3cret-token "),
        ],
        &["status"],
    );
    assert_eq!(
        out.code,
        Some(0),
        "the inline token is the file's value: {out:?}"
    );
    let out = oj_with(
        &env,
        &[("OJ_DAEMON_URL", &url), ("OJ_CLIENT__TOKEN", "s3cret")],
        &["status"],
    );
    assert_eq!(out.code, Some(1), "a different token is refused: {out:?}");
}

// ------------------------------------------------------------------ TLS
//
// The client's TLS messages, against a minimal TLS server in the test (the
// daemon's own TLS listener is covered by e2e_tls): it answers every
// request with a fixed status body and records the Authorization header.

mod tls_server {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use crate::common::pki::{Ca, Leaf};

    /// One CA, a server certificate for localhost and a client certificate.
    pub struct Pki {
        pub ca: Ca,
        pub server: Leaf,
        pub client: Leaf,
    }

    pub fn pki() -> Pki {
        let ca = Ca::new("oj e2e CA");
        Pki {
            server: ca.server().issue(),
            client: ca.client().issue(),
            ca,
        }
    }

    pub struct Server {
        pub port: u16,
        /// Authorization headers seen, one per request.
        pub auth: Arc<Mutex<Vec<String>>>,
    }

    /// Serves TLS on 127.0.0.1 in a background thread until the test ends.
    pub fn start(pki: &Pki, require_client_cert: bool) -> Server {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(pki.ca.pem.as_bytes()).unwrap())
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = Arc::new(
            builder
                .with_single_cert(
                    vec![CertificateDer::from_pem_slice(pki.server.cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(pki.server.key.as_bytes()).unwrap(),
                )
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let auth = Arc::new(Mutex::new(Vec::new()));
        let seen = auth.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let config = config.clone();
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut reader = BufReader::new(&mut tls);
                    let mut authz = String::new();
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("authorization")
                        {
                            authz = v.trim().to_string();
                        }
                    }
                    seen.lock().unwrap().push(authz);
                    let body = r#"{"version":"test","profile":"kubernetes","instance":"tls-fake","uptime_s":1,"leader":true,"draining":false,"listeners":[],"jobs":{}}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(resp.as_bytes());
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        Server { port, auth }
    }
}

fn tls_files(env: &TestEnv, pki: &tls_server::Pki) -> [String; 3] {
    [
        env.write("pki/ca.pem", &pki.ca.pem),
        env.write("pki/client.pem", &pki.client.cert),
        env.write("pki/client.key", &pki.client.key),
    ]
    .map(|p| p.to_string_lossy().into_owned())
}

#[test]
fn https_with_a_trusted_ca_sends_the_token() {
    let env = TestEnv::new();
    let pki = tls_server::pki();
    let [ca, _, _] = tls_files(&env, &pki);
    let server = tls_server::start(&pki, false);
    let url = format!("https://localhost:{}", server.port);
    let out = oj_with(
        &env,
        &[
            ("OJ_DAEMON_URL", &url),
            ("OJ_CLIENT__CA", &ca),
            ("OJ_AUTH_TOKEN", "tls-token"),
        ],
        &["status", "--json"],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(json(&out)["instance"], "tls-fake");
    assert_eq!(server.auth.lock().unwrap().as_slice(), ["Bearer tls-token"]);
}

#[test]
fn https_with_an_untrusted_certificate_says_to_set_client_ca() {
    let env = TestEnv::new();
    let pki = tls_server::pki();
    let other = tls_server::pki();
    // A CA that did not sign the server's certificate.
    let wrong_ca = env.write("pki/other-ca.pem", &other.ca.pem);
    let server = tls_server::start(&pki, false);
    let url = format!("https://localhost:{}", server.port);
    let out = oj_with(
        &env,
        &[
            ("OJ_DAEMON_URL", &url),
            ("OJ_CLIENT__CA", wrong_ca.to_str().unwrap()),
            ("OJ_AUTH_TOKEN", "t"),
        ],
        &["status"],
    );
    assert_eq!(out.code, Some(69), "{out:?}");
    assert!(
        out.stderr.contains("does not trust") && out.stderr.contains("client.ca"),
        "{out:?}"
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    assert!(
        server.auth.lock().unwrap().is_empty(),
        "no request (and no token) before trust"
    );
}

#[test]
fn mtls_without_a_client_certificate_says_which_keys_to_set() {
    let env = TestEnv::new();
    let pki = tls_server::pki();
    let [ca, cert, key] = tls_files(&env, &pki);
    let server = tls_server::start(&pki, true);
    let url = format!("https://localhost:{}", server.port);
    let base = [
        ("OJ_DAEMON_URL", url.as_str()),
        ("OJ_CLIENT__CA", ca.as_str()),
        ("OJ_AUTH_TOKEN", "t"),
    ];

    let out = oj_with(&env, &base, &["status"]);
    assert_eq!(out.code, Some(69), "{out:?}");
    assert!(
        out.stderr.contains("client.cert") && out.stderr.contains("client.key"),
        "{out:?}"
    );

    let mut with_cert = base.to_vec();
    with_cert.push(("OJ_CLIENT__CERT", &cert));
    with_cert.push(("OJ_CLIENT__KEY", &key));
    let ok = oj_with(&env, &with_cert, &["status", "--json"]);
    assert_eq!(ok.code, Some(0), "{ok:?}");
}

#[test]
fn plain_http_to_a_tls_port_suggests_https() {
    let env = TestEnv::new();
    let pki = tls_server::pki();
    let server = tls_server::start(&pki, false);
    let url = format!("http://127.0.0.1:{}", server.port);
    let out = oj_with(
        &env,
        &[("OJ_DAEMON_URL", &url), ("OJ_AUTH_TOKEN", "t")],
        &["status"],
    );
    assert_eq!(out.code, Some(69), "{out:?}");
    assert!(out.stderr.contains("https://"), "{out:?}");
}

#[test]
fn daemon_stop_drains_running_jobs_first() {
    let env = TestEnv::new();
    let drain = ["--set", "shutdown.drain_timeout=4s"];
    let mut daemon = env.start_daemon(&drain);
    let short = job_id(&oj(
        &env,
        &["exec", "--", "sh", "-c", "sleep 0.2; echo finished"],
    ));
    let long = job_id(&oj(&env, &["exec", "--", "sleep", "60"]));
    daemon.wait_job(&long, &["running"], Duration::from_secs(30));
    let mut args = drain.to_vec();
    args.extend(["daemon", "stop"]);
    let out = oj(&env, &args);
    assert_eq!(
        out.code,
        Some(0),
        "{out:?}\ndaemon stderr:\n{}",
        daemon.stderr()
    );
    assert!(
        out.stderr.contains("draining"),
        "running jobs announced: {out:?}"
    );
    let status = daemon
        .exited()
        .expect("the daemon has exited when stop returns");
    assert_eq!(
        status.code(),
        Some(0),
        "daemon stderr:\n{}",
        daemon.stderr()
    );

    // After a restart: the job that could finish is done, the other interrupted.
    let daemon = env.start_daemon(&[]);
    let (_, a) = daemon.get(&format!("/v1/jobs/{short}"));
    let (_, b) = daemon.get(&format!("/v1/jobs/{long}"));
    assert_eq!(a["state"], "done", "{a}");
    assert_eq!(b["state"], "interrupted", "{b}");
}
