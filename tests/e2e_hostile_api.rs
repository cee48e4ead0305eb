//! End to end: a corpus of malformed and hostile API requests sent byte for
//! byte to the real `oj daemon` over its Unix socket. Each one must get a 4xx
//! (the documented status where there is one: 400 invalid spec naming the
//! step, 404, 405, 413), the daemon must answer `GET /v1/status` 200 after
//! each, and no request may create a file outside `state_dir/logs/<job-id>/`
//! (step names become log file names, so path traversal is the attack).

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::json;

/// One HTTP exchange written by hand, so the test controls every byte
/// (bad framing, huge bodies, raw NULs). Returns (status, body); status 0
/// means the connection gave no parseable answer.
fn raw(socket: &Path, request: Vec<u8>) -> (u16, String) {
    match UnixStream::connect(socket) {
        Ok(s) => exchange(s, request),
        Err(_) => (0, String::new()),
    }
}

/// The same over TCP.
fn raw_tcp(port: u16, request: Vec<u8>) -> (u16, String) {
    match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => exchange(s, request),
        Err(_) => (0, String::new()),
    }
}

trait Stream: Read + Write + Send + Sized + 'static {
    fn dup(&self) -> Self;
    fn timeouts(&self);
}

impl Stream for UnixStream {
    fn dup(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn timeouts(&self) {
        self.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        self.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }
}

impl Stream for TcpStream {
    fn dup(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn timeouts(&self) {
        self.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        self.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }
}

fn exchange<S: Stream>(mut s: S, request: Vec<u8>) -> (u16, String) {
    s.timeouts();
    // Write from another thread: the daemon may answer (413) and close
    // before it has read a huge body, and the answer is what matters.
    let mut w = s.dup();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&request);
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    drop(s);
    let _ = writer.join();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A request with `Connection: close` and, when `body` is set, a
/// Content-Length.
fn req(method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        r.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn post_json(path: &str, body: &[u8]) -> Vec<u8> {
    req("POST", path, Some("application/json"), body)
}

fn spec_with_step(step: serde_json::Value) -> Vec<u8> {
    json!({ "name": "hostile", "steps": [step] })
        .to_string()
        .into_bytes()
}

fn step_named(name: &str) -> Vec<u8> {
    spec_with_step(json!({ "name": name, "run": "echo pwned > pwned" }))
}

/// What a case expects.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Exactly this status.
    Is(u16),
    /// 400 whose message contains this text (the step's name).
    Names(&'static str),
    /// Any 4xx.
    Any4xx,
}

struct Case {
    what: String,
    request: Vec<u8>,
    want: Want,
}

fn case(what: &str, request: Vec<u8>, want: Want) -> Case {
    Case {
        what: what.to_string(),
        request,
        want,
    }
}

/// Every regular file under `dir`, relative to it.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}

fn corpus(known_id: &str) -> Vec<Case> {
    use Want::*;
    let huge = vec![b' '; 1_048_576 + 10];
    let mut huge_json = b"{\"name\":\"".to_vec();
    huge_json.extend(std::iter::repeat_n(b'a', 2 * 1_048_576));
    huge_json.extend_from_slice(b"\",\"steps\":[{\"name\":\"s\",\"run\":\"true\"}]}");
    let mut chunked = b"POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
        chunked.extend(std::iter::repeat_n(b'x', 65536));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let nested = "[".repeat(100_000);
    let long_name = "a".repeat(64);
    let very_long_name = "b".repeat(100_000);

    let mut c = vec![
        // --- bad JSON --------------------------------------------------------
        case("truncated JSON", post_json("/v1/jobs", b"{"), Is(400)),
        case("empty body", post_json("/v1/jobs", b""), Is(400)),
        case("null", post_json("/v1/jobs", b"null"), Is(400)),
        case("array", post_json("/v1/jobs", b"[]"), Is(400)),
        case("string", post_json("/v1/jobs", b"\"job\""), Is(400)),
        case(
            "trailing garbage",
            post_json(
                "/v1/jobs",
                br#"{"name":"x","steps":[{"name":"s","run":"true"}]}}}"#,
            ),
            Is(400),
        ),
        case(
            "invalid UTF-8",
            post_json(
                "/v1/jobs",
                b"{\"name\":\"\xff\xfe\",\"steps\":[{\"name\":\"s\",\"run\":\"true\"}]}",
            ),
            Is(400),
        ),
        case(
            "100 000 nested arrays",
            post_json("/v1/jobs", nested.as_bytes()),
            Is(400),
        ),
        case(
            "duplicate key",
            post_json(
                "/v1/jobs",
                br#"{"name":"a","name":"b","steps":[{"name":"s","run":"true"}]}"#,
            ),
            Is(400),
        ),
        case(
            "name is a number",
            post_json(
                "/v1/jobs",
                br#"{"name":5,"steps":[{"name":"s","run":"true"}]}"#,
            ),
            Is(400),
        ),
        case(
            "steps is an object",
            post_json("/v1/jobs", br#"{"name":"a","steps":{"name":"s"}}"#),
            Is(400),
        ),
        case(
            "unknown field",
            post_json(
                "/v1/jobs",
                br#"{"nmae":"a","steps":[{"name":"s","run":"true"}]}"#,
            ),
            Is(400),
        ),
        case(
            "raw NUL inside a JSON string",
            post_json(
                "/v1/jobs",
                b"{\"name\":\"a\0b\",\"steps\":[{\"name\":\"s\",\"run\":\"true\"}]}",
            ),
            Is(400),
        ),
        // --- wrong content type ------------------------------------------------
        case(
            "form-encoded body",
            req(
                "POST",
                "/v1/jobs",
                Some("application/x-www-form-urlencoded"),
                b"name=x&steps=y",
            ),
            Any4xx,
        ),
        case(
            "XML body",
            req(
                "POST",
                "/v1/jobs",
                Some("text/xml"),
                b"<job name=\"x\"><step name=\"s\">true</step></job>",
            ),
            Any4xx,
        ),
        case(
            "multipart body",
            req(
                "POST",
                "/v1/jobs",
                Some("multipart/form-data; boundary=XX"),
                b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--XX--\r\n",
            ),
            Any4xx,
        ),
        // --- huge bodies (listen.max_request_bytes = 1 MiB) ---------------------
        case(
            "1 MiB + 10 bytes of spaces",
            post_json("/v1/jobs", &huge),
            Is(413),
        ),
        case(
            "2 MiB job name",
            post_json("/v1/jobs", &huge_json),
            Is(413),
        ),
        case("2.5 MiB chunked body", chunked, Is(413)),
        case(
            "Content-Length above the limit, no body sent",
            b"POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n".to_vec(),
            Is(413),
        ),
        // --- wrong methods ------------------------------------------------------
        case("DELETE /v1/jobs", req("DELETE", "/v1/jobs", None, b""), Is(405)),
        case("PATCH /v1/jobs", req("PATCH", "/v1/jobs", None, b""), Is(405)),
        case("PUT /v1/status", req("PUT", "/v1/status", None, b"{}"), Is(405)),
        case("GET /v1/shutdown", req("GET", "/v1/shutdown", None, b""), Is(405)),
        case(
            "DELETE /v1/shutdown",
            req("DELETE", "/v1/shutdown", None, b""),
            Is(405),
        ),
        case(
            "GET …/cancel",
            req("GET", &format!("/v1/jobs/{known_id}/cancel"), None, b""),
            Is(405),
        ),
        case(
            "POST /v1/jobs/{id}",
            post_json(&format!("/v1/jobs/{known_id}"), b"{}"),
            Is(405),
        ),
        // DELETE /v1/jobs/{id} is a route (removes a finished job): e2e_jobs.
        case(
            "PUT /v1/jobs/{id}",
            req("PUT", &format!("/v1/jobs/{known_id}"), None, b""),
            Is(405),
        ),
        // --- unknown paths ------------------------------------------------------
        // `GET /` redirects to the web UI (SPEC §8.4, `ui.enabled`).
        case("GET /", req("GET", "/", None, b""), Is(303)),
        case("GET /ui/unknown", req("GET", "/ui/unknown", None, b""), Is(404)),
        case("GET /v2/status", req("GET", "/v2/status", None, b""), Is(404)),
        case("GET /v1/job", req("GET", "/v1/job", None, b""), Is(404)),
        case(
            "GET /v1/jobs/{id}/logs/extra",
            req("GET", &format!("/v1/jobs/{known_id}/logs/extra"), None, b""),
            Is(404),
        ),
        case(
            "GET /v1/jobs/../logs (encoded traversal as an id)",
            req("GET", "/v1/jobs/%2e%2e%2f%2e%2e/logs", None, b""),
            Is(404),
        ),
        case(
            "GET /v1/jobs/../../etc/passwd (raw traversal)",
            req("GET", "/v1/jobs/../../etc/passwd", None, b""),
            Any4xx,
        ),
        // --- invalid job specs ----------------------------------------------------
        case(
            "missing steps",
            post_json("/v1/jobs", br#"{"name":"a"}"#),
            Is(400),
        ),
        case(
            "empty steps",
            post_json("/v1/jobs", br#"{"name":"a","steps":[]}"#),
            Is(400),
        ),
        case(
            "missing name",
            post_json("/v1/jobs", br#"{"steps":[{"name":"s","run":"true"}]}"#),
            Is(400),
        ),
        case(
            "empty name",
            post_json(
                "/v1/jobs",
                br#"{"name":"","steps":[{"name":"s","run":"true"}]}"#,
            ),
            Is(400),
        ),
        case(
            "blank name",
            post_json(
                "/v1/jobs",
                br#"{"name":"   ","steps":[{"name":"s","run":"true"}]}"#,
            ),
            Is(400),
        ),
        case(
            "duplicate step names",
            post_json(
                "/v1/jobs",
                br#"{"name":"a","steps":[{"name":"twice","run":"true"},{"name":"twice","run":"true"}]}"#,
            ),
            Names("twice"),
        ),
        case("step ../x", post_json("/v1/jobs", &step_named("../x")), Names("../x")),
        case(
            "step ../../../../tmp/oj-pwned",
            post_json("/v1/jobs", &step_named("../../../../tmp/oj-pwned")),
            Names("oj-pwned"),
        ),
        case("step a/b", post_json("/v1/jobs", &step_named("a/b")), Names("a/b")),
        case("step ..", post_json("/v1/jobs", &step_named("..")), Names("\"..\"")),
        case("step .", post_json("/v1/jobs", &step_named(".")), Names("\".\"")),
        case(
            "step /etc/passwd",
            post_json("/v1/jobs", &step_named("/etc/passwd")),
            Names("/etc/passwd"),
        ),
        case(
            "step with a NUL",
            post_json("/v1/jobs", &step_named("a\0b")),
            Names("step"),
        ),
        case(
            "step with a newline",
            post_json("/v1/jobs", &step_named("a\nb")),
            Names("step"),
        ),
        case(
            "step with a backslash",
            post_json("/v1/jobs", &step_named("..\\x")),
            Names("step"),
        ),
        case(
            "step with a space",
            post_json("/v1/jobs", &step_named("a b")),
            Names("a b"),
        ),
        case(
            "step in Unicode",
            post_json("/v1/jobs", &step_named("schritt-ü")),
            Names("schritt"),
        ),
        case(
            "step name of 64 characters",
            post_json("/v1/jobs", &step_named(&long_name)),
            Names("aaaaaaaa"),
        ),
        case(
            "step name of 100 000 characters",
            post_json("/v1/jobs", &step_named(&very_long_name)),
            Names("bbbbbbbb"),
        ),
        case("empty step name", post_json("/v1/jobs", &step_named("")), Is(400)),
        case(
            "step without run",
            post_json("/v1/jobs", &spec_with_step(json!({ "name": "norun" }))),
            Is(400),
        ),
        case(
            "step with an empty run",
            post_json(
                "/v1/jobs",
                &spec_with_step(json!({ "name": "blank", "run": "  " })),
            ),
            Names("blank"),
        ),
        case(
            "zero timeout",
            post_json(
                "/v1/jobs",
                &spec_with_step(json!({ "name": "zero", "run": "true", "timeout": "0s" })),
            ),
            Names("zero"),
        ),
        case(
            "timeout that is not a duration",
            post_json(
                "/v1/jobs",
                &spec_with_step(json!({ "name": "soon", "run": "true", "timeout": "soon" })),
            ),
            Names("soon"),
        ),
        case(
            "negative timeout",
            post_json(
                "/v1/jobs",
                &spec_with_step(json!({ "name": "neg", "run": "true", "timeout": -5 })),
            ),
            Names("neg"),
        ),
        case(
            "memory quantity 4GB",
            post_json(
                "/v1/jobs",
                &spec_with_step(json!({ "name": "memstep", "run": "true",
                    "container": { "image": "alpine", "resources": { "limits": { "memory": "4GB" } } } })),
            ),
            Names("memstep"),
        ),
        case(
            "cpu quantity 1.2.3",
            post_json(
                "/v1/jobs",
                &spec_with_step(json!({ "name": "cpustep", "run": "true",
                    "container": { "image": "alpine", "resources": { "requests": { "cpu": "1.2.3" } } } })),
            ),
            Names("cpustep"),
        ),
        case(
            "requests above limits",
            post_json(
                "/v1/jobs",
                &spec_with_step(json!({ "name": "greedy", "run": "true",
                    "container": { "image": "alpine", "resources": {
                        "requests": { "memory": "8Gi" }, "limits": { "memory": "1Gi" } } } })),
            ),
            Names("greedy"),
        ),
        case(
            "empty image",
            post_json(
                "/v1/jobs",
                &spec_with_step(json!({ "name": "noimage", "run": "true", "container": "" })),
            ),
            Names("noimage"),
        ),
        case(
            "unknown container field",
            post_json(
                "/v1/jobs",
                &spec_with_step(json!({ "name": "typo", "run": "true",
                    "container": { "image": "alpine", "resource": {} } })),
            ),
            Is(400),
        ),
        case(
            "job container with a bad quantity",
            post_json(
                "/v1/jobs",
                br#"{"name":"a","container":{"image":"alpine","resources":{"limits":{"cpu":"lots"}}},"steps":[{"name":"s","run":"true"}]}"#,
            ),
            Is(400),
        ),
        case(
            "env name with =",
            post_json(
                "/v1/jobs",
                br#"{"name":"a","env":{"A=B":"1"},"steps":[{"name":"s","run":"true"}]}"#,
            ),
            Is(400),
        ),
        case(
            "empty env name",
            post_json(
                "/v1/jobs",
                br#"{"name":"a","env":{"":"1"},"steps":[{"name":"s","run":"true"}]}"#,
            ),
            Is(400),
        ),
        case(
            "env value is an object",
            post_json(
                "/v1/jobs",
                br#"{"name":"a","env":{"A":{"b":1}},"steps":[{"name":"s","run":"true"}]}"#,
            ),
            Is(400),
        ),
        // --- unknown job ids --------------------------------------------------------
        case(
            "GET an unknown id",
            req("GET", "/v1/jobs/000000000000", None, b""),
            Is(404),
        ),
        case(
            "GET something that is not an id",
            req("GET", "/v1/jobs/not-an-id", None, b""),
            Is(404),
        ),
        case(
            "logs of an unknown id",
            req("GET", "/v1/jobs/zzzzzzzzzzzz/logs", None, b""),
            Is(404),
        ),
        case(
            "follow the logs of an unknown id",
            req("GET", "/v1/jobs/zzzzzzzzzzzz/logs?follow=true", None, b""),
            Is(404),
        ),
        case(
            "cancel an unknown id",
            post_json("/v1/jobs/000000000000/cancel", b""),
            Is(404),
        ),
        case(
            "id of 5000 characters",
            req("GET", &format!("/v1/jobs/{}", "9".repeat(5000)), None, b""),
            Any4xx,
        ),
        // --- bad query parameters ---------------------------------------------------
        case("limit=-1", req("GET", "/v1/jobs?limit=-1", None, b""), Is(400)),
        case("limit=abc", req("GET", "/v1/jobs?limit=abc", None, b""), Is(400)),
        case(
            "limit above u64",
            req("GET", "/v1/jobs?limit=99999999999999999999999", None, b""),
            Is(400),
        ),
        case("status=bogus", req("GET", "/v1/jobs?status=bogus", None, b""), Is(400)),
        case(
            "status=%ff (not UTF-8)",
            req("GET", "/v1/jobs?status=%ff", None, b""),
            Is(400),
        ),
        // --- broken HTTP ------------------------------------------------------------
        case("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), Any4xx),
        case(
            "600 KiB header (above hyper's 400 KiB buffer)",
            format!(
                "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
                "h".repeat(600 * 1024)
            )
            .into_bytes(),
            Any4xx,
        ),
        case(
            "Content-Length that is not a number",
            b"POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: lots\r\n\r\n{}".to_vec(),
            Any4xx,
        ),
        case(
            "two different Content-Lengths",
            b"POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(),
            Any4xx,
        ),
    ];
    // The same path-traversal names as a second step of an otherwise valid job.
    for name in ["../wal.jsonl", "../../daemon.sock"] {
        c.push(case(
            &format!("second step {name}"),
            post_json(
                "/v1/jobs",
                json!({ "name": "two", "steps": [
                    { "name": "ok", "run": "true" },
                    { "name": name, "run": "echo pwned" }
                ]})
                .to_string()
                .as_bytes(),
            ),
            Names(name),
        ));
    }
    c
}

#[test]
fn malformed_requests_get_4xx_and_the_daemon_stays_healthy() {
    let env = TestEnv::new();
    env.write_config("[notify]\nbackend = \"none\"\n");
    let d = env.start_daemon(&[]);
    let socket = env.socket();

    // One real job, so id-based routes have something to point at.
    let known = d.submit(&json!({ "name": "known", "steps": [{ "name": "s", "run": "echo hi" }] }));
    d.wait_job(&known, &["done"], Duration::from_secs(30));
    let before = files(env.path());

    let cases = corpus(&known);
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let (status, body) = raw(&socket, c.request.clone());
        let ok = match c.want {
            Want::Is(s) => status == s,
            Want::Names(name) => {
                status == 400 && {
                    let msg = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["error"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    msg.contains(name) || msg.contains(&format!("{name:?}").replace('"', ""))
                }
            }
            Want::Any4xx => (400..500).contains(&status),
        };
        if !ok {
            let shown: String = body.chars().take(300).collect();
            failures.push(format!(
                "{}: want {:?}, got {status} {shown}",
                c.what, c.want
            ));
        }
        let (s, st) = d.get("/v1/status");
        assert_eq!(
            s,
            200,
            "daemon unhealthy after {:?}: {st}\nstderr:\n{}",
            c.what,
            d.stderr()
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases answered wrongly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Nothing was created anywhere but under logs/<job-id>/ (and the
    // daemon's own WAL, snapshot and log files).
    let own = ["wal.jsonl", "snapshot.json", "daemon.lock"];
    let after = files(env.path());
    let stray: Vec<&PathBuf> = after
        .difference(&before)
        .filter(|p| {
            let rel = p.strip_prefix("state/oj").ok();
            let allowed = rel.is_some_and(|r| {
                let parts: Vec<_> = r.components().collect();
                (parts.len() == 3 && parts[0].as_os_str() == "logs")
                    || (parts.len() == 1
                        && (own.iter().any(|o| r == Path::new(o))
                            || r.to_string_lossy().starts_with("daemon")))
            });
            !allowed && !p.to_string_lossy().starts_with("daemon-")
        })
        .collect();
    assert!(
        stray.is_empty(),
        "files created outside logs/<job-id>/: {stray:?}"
    );
    assert!(!Path::new("/tmp/oj-pwned.log").exists());
    assert!(!env.path().join("pwned").exists());

    // Still fully working: a job submitted now runs to the end.
    let id = d.submit(&json!({ "name": "after", "steps": [{ "name": "s", "run": "echo ok" }] }));
    d.wait_job(&id, &["done"], Duration::from_secs(30));
    let (_, list) = d.get("/v1/jobs");
    let n = list["jobs"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(n, 2, "only the two valid jobs exist: {list}");
}

/// Values a shell cannot take (NUL bytes in the command or the environment)
/// pass JSON and validation; the step fails with a reason, the daemon lives.
#[test]
fn commands_and_env_the_os_refuses_fail_the_job_not_the_daemon() {
    let env = TestEnv::new();
    env.write_config("[notify]\nbackend = \"none\"\n");
    let d = env.start_daemon(&[]);
    let specs = [
        json!({ "name": "nul-run", "steps": [{ "name": "s", "run": "echo a\u{0}b" }] }),
        json!({ "name": "nul-env", "env": { "A": "x\u{0}y" }, "steps": [{ "name": "s", "run": "true" }] }),
        json!({ "name": "nul-env-key", "env": { "A\u{0}B": "x" }, "steps": [{ "name": "s", "run": "true" }] }),
    ];
    for spec in &specs {
        let (status, body) = d.post("/v1/jobs", spec);
        if status == 201 {
            let id = body["id"].as_str().unwrap().to_string();
            let job = d.wait_job(&id, &["done", "failed"], Duration::from_secs(30));
            assert_eq!(job["state"], "failed", "{spec} → {job}");
            assert!(
                job["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{job}"
            );
        } else {
            assert_eq!(status, 400, "{spec} → {status} {body}");
        }
        assert_eq!(d.get("/v1/status").0, 200, "after {spec}");
    }
}

const TOKEN: &str = "hostile-token-5d1c0a77";

/// A request on TCP with an Authorization header (or none).
fn tcp_req(method: &str, path: &str, auth: Option<&[u8]>, body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
        .into_bytes();
    if let Some(a) = auth {
        r.extend_from_slice(b"Authorization: ");
        r.extend_from_slice(a);
        r.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || method == "POST" {
        r.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

/// On TCP every `/v1/*` request without exactly the right bearer token gets
/// 401 `unauthorized` and nothing else — before the body limit, the router
/// or the spec are looked at — and the daemon keeps serving.
#[test]
fn tcp_requests_without_the_right_token_get_401_whatever_else_is_wrong() {
    let env = TestEnv::new();
    let port = free_port();
    env.write_config(&format!(
        "[listen]\ntcp = \"127.0.0.1:{port}\"\nauth_token = \"{TOKEN}\"\n[notify]\nbackend = \"none\"\n"
    ));
    let d = env.start_daemon(&[]);
    assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(
        ("127.0.0.1", port)
    )
    .is_ok()));
    let good = format!("Bearer {TOKEN}");
    let prefix = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let longer = format!("Bearer {TOKEN}x");
    let lower = format!("Bearer {}", TOKEN.to_uppercase());
    let basic = format!("Basic {TOKEN}");
    let huge_token = format!("Bearer {}", "t".repeat(20_000));
    let mut nul = b"Bearer ".to_vec();
    nul.extend_from_slice(TOKEN.as_bytes());
    nul.extend_from_slice(b"\x01");
    let big_body = vec![b'x'; 2 * 1_048_576];
    let spec = br#"{"name":"a","steps":[{"name":"s","run":"true"}]}"#;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no header", tcp_req("GET", "/v1/status", None, b"")),
        (
            "empty Bearer",
            tcp_req("GET", "/v1/status", Some(b"Bearer "), b""),
        ),
        (
            "Bearer only",
            tcp_req("GET", "/v1/status", Some(b"Bearer"), b""),
        ),
        (
            "wrong token",
            tcp_req("GET", "/v1/jobs", Some(b"Bearer nope"), b""),
        ),
        (
            "token minus its last character",
            tcp_req("GET", "/v1/jobs", Some(prefix.as_bytes()), b""),
        ),
        (
            "token plus one character",
            tcp_req("GET", "/v1/jobs", Some(longer.as_bytes()), b""),
        ),
        (
            "token in other case",
            tcp_req("GET", "/v1/jobs", Some(lower.as_bytes()), b""),
        ),
        (
            "Basic scheme",
            tcp_req("GET", "/v1/jobs", Some(basic.as_bytes()), b""),
        ),
        (
            "token alone, no scheme",
            tcp_req("GET", "/v1/jobs", Some(TOKEN.as_bytes()), b""),
        ),
        (
            "20 000 character token",
            tcp_req("GET", "/v1/jobs", Some(huge_token.as_bytes()), b""),
        ),
        (
            "control byte after the token",
            tcp_req("GET", "/v1/jobs", Some(&nul), b""),
        ),
        (
            "non-UTF-8 header",
            tcp_req("GET", "/v1/jobs", Some(b"Bearer \xff\xfe"), b""),
        ),
        (
            "submit without token",
            tcp_req("POST", "/v1/jobs", None, spec),
        ),
        (
            "shutdown without token",
            tcp_req("POST", "/v1/shutdown", None, b""),
        ),
        (
            "cancel without token",
            tcp_req("POST", "/v1/jobs/000000000000/cancel", None, b""),
        ),
        (
            "2 MiB body without token",
            tcp_req("POST", "/v1/jobs", None, &big_body),
        ),
        (
            "bad JSON without token",
            tcp_req("POST", "/v1/jobs", None, b"{"),
        ),
        (
            "unknown /v1 path without token",
            tcp_req("GET", "/v1/nothing", None, b""),
        ),
        (
            "wrong method without token",
            tcp_req("DELETE", "/v1/jobs", None, b""),
        ),
        (
            "logs without token",
            tcp_req("GET", "/v1/jobs/000000000000/logs?follow=true", None, b""),
        ),
    ];
    for (what, request) in cases {
        let (status, body) = raw_tcp(port, request);
        if what == "control byte after the token" {
            // Not a valid header value at all: refused by the HTTP layer.
            assert!(matches!(status, 400 | 401), "{what}: {status} {body}");
        } else {
            assert_eq!(status, 401, "{what}: {status} {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            assert_eq!(v["code"], "unauthorized", "{what}: {body}");
        }
        assert!(!body.contains(TOKEN), "{what}: the token leaked: {body}");
        assert_eq!(
            raw_tcp(
                port,
                tcp_req("GET", "/v1/status", Some(good.as_bytes()), b"")
            )
            .0,
            200,
            "after {what}\n{}",
            d.stderr()
        );
    }
    // With the token the same mistakes get their own answers.
    let a = Some(good.as_bytes());
    assert_eq!(
        raw_tcp(port, tcp_req("POST", "/v1/jobs", a, &big_body)).0,
        413
    );
    assert_eq!(raw_tcp(port, tcp_req("POST", "/v1/jobs", a, b"{")).0, 400);
    assert_eq!(raw_tcp(port, tcp_req("GET", "/v1/nothing", a, b"")).0, 404);
    assert_eq!(raw_tcp(port, tcp_req("DELETE", "/v1/jobs", a, b"")).0, 405);
    assert_eq!(raw_tcp(port, tcp_req("POST", "/v1/jobs", a, spec)).0, 201);
    // Nothing without a token was acted on: one job, not draining.
    let (_, st) = d.get("/v1/status");
    assert_eq!(st["draining"], false, "{st}");
    let (_, list) = d.get("/v1/jobs");
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(1), "{list}");
}
