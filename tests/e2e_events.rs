//! `GET /v1/events` end to end (SPEC §8.4), against the real `oj daemon`:
//! committed changes with durable increasing ids, resume with
//! `Last-Event-ID` / `?after=`, `reset` when the resume point is gone,
//! `?job=` filters, pushed log output, a slow reader reset and closed, the
//! bearer token on TCP, ids that keep increasing across a restart, and the
//! clients built on it: a log read cut short by a DELETE is an error, and a
//! waiter learns the end state of a job retention already removed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::{Daemon, TestEnv, free_port};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Ev {
    id: Option<u64>,
    kind: String,
    data: Value,
}

/// A reader of the event stream, read event by event in a thread. It asks
/// with HTTP/1.0, so the body is the stream itself (no chunks) and ends
/// when the daemon closes it. It is made once the response head has come:
/// the daemon subscribes a reader before it answers, so everything
/// committed after that is on the stream. (A reader not yet subscribed
/// when a short job ran would miss the job's events; on a busy machine
/// that was a flake.)
struct Reader {
    conn: Conn,
    rx: mpsc::Receiver<Ev>,
    /// The daemon ended the stream.
    ended: Arc<AtomicBool>,
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Reader {
    /// On the Unix socket; `headers` are whole lines (`Name: value`).
    fn unix(socket: &Path, query: &str, headers: &[&str]) -> Reader {
        let s = UnixStream::connect(socket).expect("connect to the daemon's socket");
        let read = s.try_clone().expect("clone the socket");
        Reader::open(Conn::Unix(s), Box::new(read), query, headers)
    }

    /// On the TCP listener at 127.0.0.1:`port`.
    fn tcp(port: u16, query: &str, headers: &[&str]) -> Reader {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the daemon's port");
        let read = s.try_clone().expect("clone the socket");
        Reader::open(Conn::Tcp(s), Box::new(read), query, headers)
    }

    fn open(mut conn: Conn, read: Box<dyn Read + Send>, query: &str, headers: &[&str]) -> Reader {
        let mut request = format!("GET /v1/events{query} HTTP/1.0\r\nHost: localhost\r\n");
        for h in headers {
            request.push_str(&format!("{h}\r\n"));
        }
        request.push_str("\r\n");
        let sent = match &mut conn {
            Conn::Unix(s) => s.write_all(request.as_bytes()),
            Conn::Tcp(s) => s.write_all(request.as_bytes()),
        };
        sent.expect("send the request");
        let (tx, rx) = mpsc::channel();
        let (open_tx, open) = mpsc::channel();
        let ended = Arc::new(AtomicBool::new(false));
        let end = ended.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(read).lines();
            // The response head ends with a blank line.
            for line in lines.by_ref() {
                if line.map_or(true, |l| l.is_empty()) {
                    break;
                }
            }
            let _ = open_tx.send(());
            let mut ev = Ev {
                id: None,
                kind: String::new(),
                data: Value::Null,
            };
            for line in lines {
                let Ok(line) = line else { break };
                if line.is_empty() {
                    if !ev.kind.is_empty() && tx.send(ev.clone()).is_err() {
                        break;
                    }
                    ev = Ev {
                        id: None,
                        kind: String::new(),
                        data: Value::Null,
                    };
                } else if let Some(v) = line.strip_prefix("id: ") {
                    ev.id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    ev.kind = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    ev.data = serde_json::from_str(v).unwrap_or(Value::Null);
                }
            }
            end.store(true, Ordering::SeqCst);
        });
        // Without a head by then, `until` reports the stream as ended or silent.
        let _ = open.recv_timeout(LONG);
        Reader { conn, rx, ended }
    }

    fn next(&self) -> Option<Ev> {
        self.rx.recv_timeout(LONG).ok()
    }

    /// Events until one satisfies `stop` (included); panics after LONG.
    fn until(&self, what: &str, stop: impl Fn(&Ev) -> bool) -> Vec<Ev> {
        let deadline = Instant::now() + LONG;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(ev) => {
                    let done = stop(&ev);
                    seen.push(ev);
                    if done {
                        return seen;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the stream ended before {what}; saw {seen:?}");
                }
            }
        }
        panic!("never saw {what}; saw {seen:?}");
    }

    /// Whether the daemon ends the stream within `t`.
    fn ends_within(&mut self, t: Duration) -> bool {
        common::wait_until(t, || self.ended.load(Ordering::SeqCst))
    }
}

impl Drop for Reader {
    /// Closes the connection, which ends the reading thread.
    fn drop(&mut self) {
        let _ = match &self.conn {
            Conn::Unix(s) => s.shutdown(Shutdown::Both),
            Conn::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

fn job_done(id: &str) -> impl Fn(&Ev) -> bool + '_ {
    move |e| e.kind == "job" && e.data["id"] == id && e.data["state"] == "done"
}

fn spec(run: &str) -> Value {
    json!({"name": "t", "steps": [{"name": "s", "run": run}]})
}

fn start(env: &TestEnv) -> Daemon {
    env.write_config("[notify]\nbackend = \"none\"\n");
    env.start_daemon(&[])
}

#[test]
fn committed_jobs_stream_with_increasing_ids_and_resume_from_the_last_one() {
    let env = TestEnv::new();
    let d = start(&env);
    let all = Reader::unix(&d.socket, "", &[]);
    let id = d.submit(&spec("echo hi"));
    let seen = all.until("the job done", job_done(&id));
    let ids: Vec<u64> = seen
        .iter()
        .map(|e| e.id.expect("every job event has an id"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids must increase: {ids:?}"
    );
    let last = seen.last().unwrap();
    assert_eq!(
        last.data["steps"][0]["state"], "done",
        "the job's API JSON: {}",
        last.data
    );
    let first = ids[0];

    // Resume after the first event: the rest comes again, nothing older.
    for (query, headers) in [
        (String::new(), vec![format!("Last-Event-ID: {first}")]),
        (format!("?after={first}"), vec![]),
    ] {
        let h: Vec<&str> = headers.iter().map(String::as_str).collect();
        let r = Reader::unix(&d.socket, &query, &h);
        let again = r.until("the resumed end", job_done(&id));
        assert!(again.iter().all(|e| e.id.unwrap() > first), "{again:?}");
        assert_eq!(again.last().unwrap().id, last.id);
    }
    // Last-Event-ID wins over ?after=.
    let r = Reader::unix(
        &d.socket,
        "?after=0",
        &[&format!("Last-Event-ID: {}", ids[ids.len() - 2])],
    );
    let ev = r.next().expect("an event");
    assert_eq!(ev.id, last.id, "{ev:?}");
}

#[test]
fn a_job_filter_opens_with_the_job_as_it_is_and_shows_only_it_with_its_output() {
    let env = TestEnv::new();
    let d = start(&env);
    let done = d.submit(&spec("true"));
    d.wait_job(&done, &["done"], LONG);
    // A job that ended before the reader came: its end is the first event.
    let r = Reader::unix(&d.socket, &format!("?job={done}"), &[]);
    let ev = r.next().expect("the job as it is");
    assert_eq!(
        (ev.kind.as_str(), ev.data["state"].as_str()),
        ("job", Some("done"))
    );

    let slow = d.submit(&spec("echo first; sleep 1; echo second"));
    let r = Reader::unix(&d.socket, &format!("?job={slow}&logs=1"), &[]);
    let other = d.submit(&spec("true"));
    d.wait_job(&other, &["done"], LONG);
    let seen = r.until("the job done", job_done(&slow));
    assert!(
        seen.iter()
            .all(|e| e.kind == "log" || e.data["id"] == slow.as_str()),
        "only the filtered job: {seen:?}"
    );
    let text: String = seen
        .iter()
        .filter(|e| e.kind == "log")
        .map(|e| e.data["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(text, "first\nsecond\n", "{seen:?}");
    // The output came while the job ran, before its end.
    let first_log = seen.iter().position(|e| e.kind == "log").unwrap();
    let running_after = seen[first_log..]
        .iter()
        .any(|e| e.kind == "log" && e.data["text"] == "second\n");
    assert!(running_after, "{seen:?}");

    let (code, body) = d.get("/v1/events?job=nosuchjob");
    assert_eq!(code, 404, "{body}");
    let (code, body) = d.get("/v1/events?logs=1");
    assert_eq!(
        (code, body["code"].as_str()),
        (400, Some("bad_query")),
        "{body}"
    );
}

#[test]
fn ids_keep_increasing_across_a_restart_and_an_old_resume_point_is_a_reset() {
    let env = TestEnv::new();
    let d = start(&env);
    let all = Reader::unix(&d.socket, "", &[]);
    let a = d.submit(&spec("true"));
    let before = all.until("the first job done", job_done(&a));
    let (oldest, newest) = (before[0].id.unwrap(), before.last().unwrap().id.unwrap());
    drop(all);
    let out = env.run(&["daemon", "stop"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    drop(d);

    let d = env.start_daemon(&[]);
    let all = Reader::unix(&d.socket, "", &[]);
    let b = d.submit(&spec("true"));
    let after = all.until("the second job done", job_done(&b));
    assert!(
        after.iter().all(|e| e.id.unwrap() > newest),
        "ids after the restart must pass {newest}: {after:?}"
    );
    // What came before the restart is not kept: reset, with the newest id.
    let r = Reader::unix(&d.socket, "", &[&format!("Last-Event-ID: {oldest}")]);
    let ev = r.next().expect("reset");
    assert_eq!(ev.kind, "reset", "{ev:?}");
    assert_eq!(ev.id, after.last().unwrap().id);
    assert_eq!(ev.data["id"].as_u64(), ev.id);
}

/// A reader that stops reading is not buffered for: once it falls behind
/// it gets `reset` and the stream ends.
#[test]
fn a_reader_that_falls_behind_is_reset_and_closed() {
    let env = TestEnv::new();
    let d = start(&env);
    let mut slow = UnixStream::connect(&d.socket).expect("connect");
    slow.write_all(b"GET /v1/events HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("request");
    // Jobs of many steps make many events (each step's start and end), and
    // a padded env makes each big: the socket buffers fill sooner.
    let pad = "x".repeat(8 * 1024);
    let steps: Vec<Value> = (0..30)
        .map(|i| json!({"name": format!("s{i}"), "run": "true"}))
        .collect();
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(d.submit(&json!({"name": "t", "env": {"PAD": pad}, "steps": steps})));
    }
    for id in &ids {
        d.wait_job(id, &["done"], Duration::from_secs(120));
    }
    slow.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut all = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let ended = loop {
        if Instant::now() > deadline {
            break false;
        }
        match slow.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading the slow stream: {e}"),
        }
    };
    let text = String::from_utf8_lossy(&all);
    let tail = &text[text.len().saturating_sub(300)..];
    assert!(
        ended,
        "a lagging reader's stream must end, not stay open: …{tail}"
    );
    assert!(
        tail.contains("event: reset\n"),
        "a lagging reader ends with reset: …{tail}"
    );
    // The daemon still serves everyone else.
    assert_eq!(d.get("/v1/status").0, 200);
}

#[test]
fn on_tcp_the_stream_needs_the_token() {
    let env = TestEnv::new();
    let port = free_port();
    env.write_config(&format!(
        "[listen]\ntcp = \"127.0.0.1:{port}\"\nauth_token = \"t0ken-for-events\"\n[notify]\nbackend = \"none\"\n"
    ));
    let d = env.start_daemon_on_tcp(port);
    let url = format!("http://127.0.0.1:{port}/v1/events");
    let code = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2"])
            .args(args)
            .arg(&url)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(code(&[]), "401");
    assert_eq!(code(&["-H", "Authorization: Bearer wrong"]), "401");
    let r = Reader::tcp(port, "", &["Authorization: Bearer t0ken-for-events"]);
    let id = d.submit(&spec("true"));
    r.until("the job over TCP", job_done(&id));
}

#[test]
fn the_stream_ends_when_the_daemon_stops() {
    let env = TestEnv::new();
    let mut d = start(&env);
    let mut r = Reader::unix(&d.socket, "", &[]);
    d.sigterm();
    assert!(r.ends_within(LONG), "the stream must end with the daemon");
    assert!(d.wait_exit(LONG).is_some());
    // The drain was published as the daemon's status before the end.
    let seen: Vec<Ev> =
        std::iter::from_fn(|| r.rx.recv_timeout(Duration::from_secs(2)).ok()).collect();
    let status = seen.iter().find(|e| e.kind == "status");
    assert!(
        status.is_some_and(|e| e.data["draining"] == true && e.id.is_some()),
        "a status event with draining: {seen:?}"
    );
}

/// Event streams are connections like any other: on TCP they count
/// against `listen.max_connections`, and a closed one frees its slot.
#[test]
fn event_streams_count_against_max_connections() {
    let env = TestEnv::new();
    let port = free_port();
    env.write_config(&format!(
        "[listen]\ntcp = \"127.0.0.1:{port}\"\nauth_token = \"t0ken-for-events\"\nmax_connections = 2\n[notify]\nbackend = \"none\"\n"
    ));
    let d = env.start_daemon_on_tcp(port);
    let stream = || Reader::tcp(port, "", &["Authorization: Bearer t0ken-for-events"]);
    let first = stream();
    let second = stream();
    let status = |limit: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", limit])
            .args(["-H", "Authorization: Bearer t0ken-for-events"])
            .arg(format!("http://127.0.0.1:{port}/v1/status"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_ne!(
        status("1"),
        "200",
        "a third connection must wait while two streams are open"
    );
    drop(first);
    assert_eq!(status("20"), "200", "a closed stream frees its slot");
    let id = d.submit(&spec("true"));
    second.until("the job on the stream still open", job_done(&id));
}

/// Issue 30 item 8: `oj job logs` of a job deleted while its log is read
/// must not exit 0 with a partial log.
#[test]
fn a_log_read_cut_by_a_delete_is_an_error() {
    let env = TestEnv::new();
    let d = start(&env);
    // Two steps with big logs: the reader is in the first when the job goes.
    let big = "head -c 3000000 /dev/zero | tr '\\0' x";
    let id = d.submit(&json!({"name": "big", "steps": [
        {"name": "one", "run": big}, {"name": "two", "run": big}]}));
    d.wait_job(&id, &["done"], LONG);
    let mut child = env
        .oj()
        .args(["job", "logs", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("oj job logs");
    // Nobody reads its stdout yet: it blocks with the stream half sent.
    std::thread::sleep(Duration::from_millis(500));
    let (code, body) = d.request("DELETE", &format!("/v1/jobs/{id}"), None);
    assert_eq!(code, 204, "{body}");
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(out.len() < 6_000_000, "the log was whole after all?");
    assert_ne!(
        status.code(),
        Some(0),
        "a cut log must not look complete; stderr: {err}"
    );
    assert!(err.contains("incomplete") || err.contains("cut"), "{err}");
}

/// Issue 30 item 9: with `jobs.max_finished = 1`, jobs waited on end
/// `done` and are deleted at once; every waiter still learns `done`.
#[test]
fn waiters_learn_the_end_of_jobs_retention_removed() {
    let env = TestEnv::new();
    env.write_config(
        "[notify]\nbackend = \"none\"\n[jobs]\nmax_finished = 1\nmax_concurrent = 8\n",
    );
    let d = env.start_daemon(&[]);
    let waiters: Vec<Child> = (0..4)
        .map(|i| {
            env.oj()
                .args(["exec", "--wait", "--", "sh", "-c", &format!("sleep 0.{i}")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("oj exec --wait")
        })
        .collect();
    let ids: Vec<String> = (0..4).map(|_| d.submit(&spec("sleep 0.5"))).collect();
    let mut args = vec!["job", "wait"];
    args.extend(ids.iter().map(String::as_str));
    let out = env.run(&args);
    assert_eq!(out.code, Some(0), "job wait: {}", out.stderr);
    assert_eq!(
        out.stderr.matches(" done after ").count(),
        4,
        "{}",
        out.stderr
    );
    for w in waiters {
        let out = w.wait_with_output().expect("waiter");
        assert_eq!(
            out.status.code(),
            Some(0),
            "--wait: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (_, page) = d.get("/v1/jobs");
    assert!(page["jobs"].as_array().unwrap().len() <= 1, "{page}");
}

#[test]
fn waiting_clients_follow_the_stream_not_a_timer() {
    let env = TestEnv::new();
    let d = start(&env);
    let id = oj_id(&env.run(&[
        "exec",
        "--",
        "sh",
        "-c",
        "echo one; sleep 0.5; echo two; exit 3",
    ]));
    let out = env.run(&["job", "logs", "-f", &id]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_eq!(out.stdout, "==> sh <==\none\ntwo\n");
    assert!(out.stderr.contains("exited with code 3"), "{}", out.stderr);
    let t = Instant::now();
    let out = env.run(&["exec", "--wait", "--", "true"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = env.run(&["job", "wait", &id]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(t.elapsed() < LONG);
    // `daemon stop` returns once the daemon is gone.
    let out = env.run(&["daemon", "stop"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(d.get("/v1/status").0, 0, "nothing answers any more");
}

fn oj_id(out: &common::Output) -> String {
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    out.stdout.trim().to_string()
}
