//! End to end: the `oj` client against daemons that are not the one in this
//! tree — a fake first-release daemon (one page, no `next`), a fake paged
//! daemon (`?limit=&after=`, `next`), one that cuts a log stream midway
//! (no terminating chunk), one that refuses with codes this client does
//! and does not know, one newer than this client (unknown fields and
//! states) — and the real daemon refusing client certificates (mTLS) for
//! every reason, each with its own advice.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pki::{Ca, Leaf};
use common::{Output, TestEnv, free_port};

/// What a fake daemon answers: the raw HTTP response for a request target.
type Route = dyn Fn(&str) -> Vec<u8> + Send + Sync;

/// A fake daemon on 127.0.0.1 that records every request target.
struct Fake {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn start(route: Arc<Route>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let route = route.clone();
                let log = log.clone();
                std::thread::spawn(move || serve(conn, &*route, &log));
            }
        });
        Fake { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
}

/// One connection: requests until the client closes it (keep-alive).
fn serve(conn: TcpStream, route: &Route, log: &Mutex<Vec<String>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = conn.try_clone().expect("clone");
    let mut reader = BufReader::new(conn);
    loop {
        let mut first = String::new();
        if reader.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        let target = first.split_whitespace().nth(1).unwrap_or("").to_string();
        log.lock().expect("lock").push(target.clone());
        let resp = route(&target);
        if writer.write_all(&resp).is_err() {
            return;
        }
        let _ = writer.flush();
        // A response that closes its connection ends the exchange here.
        if resp.windows(17).any(|w| w == b"Connection: close") {
            let _ = writer.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

fn json_response(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn query<'a>(target: &'a str, key: &str) -> Option<&'a str> {
    let (_, q) = target.split_once('?')?;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Jobs `j9` (newest) … `j0`, created a minute apart.
fn jobs(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .rev()
        .map(|i| {
            serde_json::json!({
                "id": format!("j{i}"), "name": format!("job-{i}"), "state": "done",
                "created_at": format!("2026-12-01T08:{:02}:00.000Z", i),
                "steps": [],
            })
        })
        .collect()
}

fn oj(env: &TestEnv, url: &str, args: &[&str]) -> Output {
    let mut cmd = env.oj();
    cmd.env("OJ_DAEMON_URL", url)
        .env("OJ_AUTH_TOKEN", "t0ken-for-tests");
    let out = cmd
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run oj");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn listed_ids(out: &Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    v["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn job_list_walks_every_page_of_a_paged_daemon() {
    let all = jobs(10);
    let route = move |target: &str| {
        let limit: usize = query(target, "limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(100)
            .min(3); // a daemon with small pages, to make the client walk
        let start = match query(target, "after") {
            Some(after) => all
                .iter()
                .position(|j| j["id"] == after)
                .map_or(0, |p| p + 1),
            None => 0,
        };
        let page: Vec<_> = all.iter().skip(start).take(limit).cloned().collect();
        let next = (start + page.len() < all.len())
            .then(|| page.last().map(|j| j["id"].clone()))
            .flatten();
        json_response(&serde_json::json!({"jobs": page, "next": next}).to_string())
    };
    let fake = Fake::start(Arc::new(route));
    let env = TestEnv::new();

    let out = oj(&env, &fake.url(), &["job", "list", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let ids = listed_ids(&out);
    let expected: Vec<String> = (0..10).rev().map(|i| format!("j{i}")).collect();
    assert_eq!(ids, expected, "every page, newest first");
    assert!(
        fake.seen().iter().any(|t| t.contains("after=j7")),
        "followed next: {:?}",
        fake.seen()
    );

    let out = oj(&env, &fake.url(), &["job", "list", "-n", "4"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let rows: Vec<&str> = out.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{out:?}");
    assert!(
        rows[0].starts_with("j9") && rows[3].starts_with("j6"),
        "{out:?}"
    );
    assert!(
        fake.seen().iter().all(|t| !t.starts_with("/v1/jobs?")
            || query(t, "limit").is_some_and(|l| l.parse::<u32>().is_ok_and(|l| l <= 1000))),
        "never asks for more than a page: {:?}",
        fake.seen()
    );
}

#[test]
fn job_list_takes_the_one_page_of_a_first_release_daemon() {
    let all = jobs(5);
    // The first release: no `next`, and in whatever order it likes.
    let route = move |_target: &str| {
        let mut shuffled = all.clone();
        shuffled.reverse();
        json_response(&serde_json::json!({ "jobs": shuffled }).to_string())
    };
    let fake = Fake::start(Arc::new(route));
    let env = TestEnv::new();
    let out = oj(&env, &fake.url(), &["job", "list", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(listed_ids(&out), ["j4", "j3", "j2", "j1", "j0"]);
    assert_eq!(
        fake.seen()
            .iter()
            .filter(|t| t.starts_with("/v1/jobs"))
            .count(),
        1,
        "one request: {:?}",
        fake.seen()
    );
    let out = oj(&env, &fake.url(), &["job", "list", "--json", "-n", "2"]);
    assert_eq!(listed_ids(&out), ["j4", "j3"], "the newest two");
}

/// A job log answered chunked, cut after its first chunk (no `0\r\n\r\n`).
fn cut_log_daemon() -> Fake {
    let route = |target: &str| {
        if target.contains("/logs") {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n10\r\nfirst half line\n\r\n".to_vec()
        } else {
            json_response(
                r#"{"id":"j1","name":"big","state":"done","created_at":"2026-12-01T08:00:00Z","steps":[]}"#,
            )
        }
    };
    Fake::start(Arc::new(route))
}

#[test]
fn a_log_stream_cut_midway_is_an_error_not_a_short_log() {
    let fake = cut_log_daemon();
    let env = TestEnv::new();
    for args in [&["job", "logs", "j1"][..], &["job", "logs", "-f", "j1"][..]] {
        let out = oj(&env, &fake.url(), args);
        assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
        assert!(
            out.stdout.contains("first half"),
            "what came is shown: {out:?}"
        );
        assert!(
            out.stderr.contains("cut off") && out.stderr.contains("incomplete"),
            "{args:?}: {out:?}"
        );
        assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {out:?}");
    }
}

// ------------------------------------------------------ codes and shapes

fn refusal(status: &str, code: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({"code": code, "error": message}).to_string();
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A daemon that refuses the same requests with known and unknown codes.
fn refusing_daemon() -> Fake {
    let route = |target: &str| match target {
        "/v1/jobs/known/cancel" => refusal("409 Conflict", "ended", "job known has already ended"),
        "/v1/jobs/novel/cancel" => {
            refusal("409 Conflict", "frozen", "job novel is frozen by policy")
        }
        "/v1/jobs/gone" => refusal("404 Not Found", "not_found", "no job gone"),
        "/v1/jobs/moved" => refusal("404 Not Found", "moved_away", "that route moved"),
        "/v1/jobs/known/rerun" => refusal(
            "400 Bad Request",
            "unknown_step",
            "job known has no step \"zz\"",
        ),
        "/v1/jobs/novel/rerun" => refusal(
            "400 Bad Request",
            "strange",
            "a refusal this client cannot know",
        ),
        _ => refusal("500 Internal Server Error", "internal", "unexpected"),
    };
    Fake::start(Arc::new(route))
}

#[test]
fn refusals_are_told_apart_by_their_code_not_their_status() {
    let fake = refusing_daemon();
    let env = TestEnv::new();
    // Pairs of the same status: a code the client knows gets its own
    // sentence (and exit code); an unknown one is the status and the
    // daemon's message as they came, not a guess.
    // (args, exit code, said, not said)
    let cases: &[(&[&str], i32, &str, &str)] = &[
        (
            &["job", "cancel", "known"],
            1,
            "job known cannot be cancelled: job known has already ended",
            "409 Conflict",
        ),
        (
            &["job", "cancel", "novel"],
            1,
            "409 Conflict: job novel is frozen by policy",
            "cannot be cancelled",
        ),
        (
            &["job", "show", "gone"],
            1,
            "no job gone on the daemon",
            "404 Not Found",
        ),
        (
            &["job", "show", "moved"],
            1,
            "404 Not Found: that route moved",
            "no job moved",
        ),
        // A rerun the user must fix is a usage error (2); an unknown 400 is not.
        (
            &["job", "rerun", "known", "--from-step", "zz"],
            2,
            "cannot rerun job known: job known has no step",
            "400 Bad Request",
        ),
        (
            &["job", "rerun", "novel"],
            1,
            "400 Bad Request: a refusal this client cannot know",
            "cannot rerun",
        ),
    ];
    for (args, code, said, not_said) in cases {
        let out = oj(&env, &fake.url(), args);
        assert_eq!(out.code, Some(*code), "{args:?}: {out:?}");
        assert!(out.stderr.contains(said), "{args:?}: {out:?}");
        assert!(!out.stderr.contains(not_said), "{args:?}: {out:?}");
    }
}

#[test]
fn a_newer_daemons_jobs_still_show_and_list() {
    let job = serde_json::json!({
        "id": "j1", "name": "deploy", "state": "parked",
        "created_at": "2026-12-01T08:00:00.000Z",
        "quota": {"cpu": 2}, "labels": {"team": "web"},
        "steps": [{"name": "push", "state": "parked", "sandbox": "gvisor"}],
    });
    let page = serde_json::json!({"jobs": [job.clone()], "next": null}).to_string();
    let one = job.to_string();
    let route = move |target: &str| {
        if target.starts_with("/v1/jobs?") {
            json_response(&page)
        } else {
            json_response(&one)
        }
    };
    let fake = Fake::start(Arc::new(route));
    let env = TestEnv::new();
    let out = oj(&env, &fake.url(), &["job", "show", "j1"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("parked"), "the state as sent: {out:?}");
    assert!(
        out.stdout.contains("team=web") && out.stdout.contains("push"),
        "{out:?}"
    );
    let out = oj(&env, &fake.url(), &["job", "list"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("j1") && out.stdout.contains("parked"),
        "{out:?}"
    );
    // `--json` passes on what the daemon sent, fields this client does not know included.
    let out = oj(&env, &fake.url(), &["job", "show", "j1", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(shown, job, "{out:?}");
}

// ------------------------------------------------------------------ mTLS

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn every_refused_client_certificate_names_the_cause_and_the_fix() {
    let env = TestEnv::new();
    let server_ca = Ca::new("oj e2e CA");
    let client_ca = Ca::new("oj e2e client CA");
    let rogue_ca = Ca::new("rogue CA");
    let server = server_ca.server().names(&["localhost"]).issue();
    let put = |name: &str, text: &str| s(&env.write(&format!("pki/{name}"), text));
    let ca = put("ca.crt", &server_ca.pem);
    let clients = put("clients.crt", &client_ca.pem);
    let (cert, key) = (put("tls.crt", &server.cert), put("tls.key", &server.key));
    let good = client_ca.client().issue();
    let expired = client_ca.client().expired().issue();
    let foreign = rogue_ca.client().issue();
    let port = free_port();
    env.write_config(&format!(
        "[listen]\ntcp = \"127.0.0.1:{port}\"\nauth_token = \"t0ken-for-tests\"\n\
         [tls]\nenabled = true\ncert = \"{cert}\"\nkey = \"{key}\"\nclient_ca = \"{clients}\"\n\
         [notify]\nbackend = \"none\"\n"
    ));
    let _d = env.start_daemon_on_tcp(port);
    // The client side: the daemon's URL and CA, plus an optional cert/key pair.
    let client = |host: &str, pair: Option<(&Leaf, &str)>| -> Output {
        let mut cmd = env.oj();
        cmd.env("OJ_DAEMON_URL", format!("https://{host}:{port}"))
            .env("OJ_AUTH_TOKEN", "t0ken-for-tests")
            .env("OJ_CLIENT__CA", &ca);
        if let Some((leaf, name)) = pair {
            cmd.env("OJ_CLIENT__CERT", put(&format!("{name}.crt"), &leaf.cert))
                .env("OJ_CLIENT__KEY", put(&format!("{name}.key"), &leaf.key));
        }
        let out = cmd.arg("status").output().expect("oj");
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };

    let ok = client("localhost", Some((&good, "good")));
    assert_eq!(ok.code, Some(0), "a good pair works: {ok:?}");

    // (host in the URL, client pair, what the one stderr line must say)
    type Case<'a> = (&'a str, Option<(&'a Leaf, &'a str)>, &'a [&'a str]);
    let cases: [Case; 4] = [
        (
            "localhost",
            None,
            &["requires a client certificate", "client.cert", "client.key"],
        ),
        (
            "localhost",
            Some((&expired, "expired")),
            &["expired", "expired.crt"],
        ),
        (
            "localhost",
            Some((&foreign, "foreign")),
            &["tls.client_ca", "foreign.crt"],
        ),
        (
            "127.0.0.1",
            Some((&good, "good")),
            &["not valid for that host name", "localhost"],
        ),
    ];
    for (host, pair, needles) in cases {
        let out = client(host, pair);
        eprint!("{host}: {}", out.stderr);
        assert_eq!(out.code, Some(69), "{needles:?}: {out:?}");
        for needle in needles {
            assert!(out.stderr.contains(needle), "{needle:?} in: {out:?}");
        }
        assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {out:?}");
        assert!(
            !out.stderr.contains("Secret") && !out.stderr.contains("kubectl"),
            "no cluster words on a laptop: {out:?}"
        );
    }
}
