//! End to end under load: 16 concurrent clients, each on its own keep-alive
//! TLS connection to the real `oj daemon` (certificates made here with
//! rcgen, token auth), submit and read 20 jobs each, cancelling every fourth
//! at once (202 then `cancelled`, or 409 `ended` when it already finished).
//! Every request must succeed and every accepted job must complete. Then the same clients keep
//! submitting while the daemon drains (SIGTERM): each submission must get
//! 201 or 503 `draining` (a connection error only once the daemon is going
//! away), and every job that got a 201 — including those still queued when
//! the drain ended — completes after a restart. None lost, none twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::pki::ServerPki;
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "e2e-load-token-3b8e1f";
const CLIENTS: usize = 16;
const JOBS_PER_CLIENT: usize = 20;
const WAIT: Duration = Duration::from_secs(90);

/// One client: its own connection pool, so its requests share one
/// keep-alive TLS connection.
fn client(ca: &Path) -> reqwest::Client {
    let tls = oj_adapters::tls::client_config(&oj_config::ClientConfig {
        url: None,
        ca: Some(ca.to_path_buf()),
        cert: None,
        key: None,
        token: None,
        token_file: None,
    })
    .expect("client TLS config");
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build()
        .expect("reqwest client")
}

/// Sends one request: Ok((status, body)) or Err(transport error).
async fn call(
    c: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut r = c
        .request(method, format!("{base}{path}"))
        .bearer_auth(TOKEN);
    if let Some(b) = body {
        r = r.json(b);
    }
    let resp = r.send().await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("{e:?}"))?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(json!({ "text": text })),
    ))
}

fn spec(client: usize, n: usize, run: &str) -> Value {
    json!({ "name": format!("load-{client}-{n}"), "steps": [
        { "name": "main", "run": run }
    ]})
}

/// Every job of the daemon, by id (over the Unix socket).
fn all_jobs(d: &Daemon) -> BTreeMap<String, Value> {
    let (s, list) = d.get("/v1/jobs?limit=1000");
    assert_eq!(s, 200, "{list}");
    list["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| (j["id"].as_str().unwrap().to_string(), j.clone()))
        .collect()
}

/// Waits until every job of `ids` is `done`, except those of `cancelled`,
/// which must be `cancelled`.
fn wait_all_done(
    d: &Daemon,
    ids: &BTreeSet<String>,
    cancelled: &BTreeSet<String>,
) -> BTreeMap<String, Value> {
    let want = |id: &String| {
        if cancelled.contains(id) {
            "cancelled"
        } else {
            "done"
        }
    };
    let mut jobs = BTreeMap::new();
    let ok = wait_until(WAIT, || {
        jobs = all_jobs(d);
        ids.iter()
            .all(|id| jobs.get(id).is_some_and(|j| j["state"] == want(id)))
    });
    let missing: Vec<_> = ids.iter().filter(|id| !jobs.contains_key(*id)).collect();
    assert!(missing.is_empty(), "accepted jobs lost: {missing:?}");
    let not_done: Vec<_> = ids
        .iter()
        .filter(|id| jobs[*id]["state"] != want(id))
        .map(|id| &jobs[id])
        .collect();
    assert!(ok, "jobs never finished: {not_done:?}\n{}", d.stderr());
    jobs
}

#[test]
fn concurrent_tls_clients_then_a_drain_lose_nothing() {
    let env = TestEnv::new();
    let ServerPki { ca, cert, key } = ServerPki::write(env.path());
    let port = free_port();
    let runs = env.path().join("runs.log");
    env.write_config(&format!(
        r#"
[listen]
tcp = "127.0.0.1:{port}"
auth_token = "{TOKEN}"

[tls]
enabled = true
cert = "{}"
key = "{}"

[jobs]
max_concurrent = 8

[notify]
backend = "none"

[shutdown]
drain_timeout = "20s"
"#,
        cert.display(),
        key.display()
    ));
    let base = format!("https://localhost:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let mark = format!("echo \"$OJ_JOB_ID\" >> '{}'", runs.display());

    // --- phase 1: submit and read under load ----------------------------------
    let mut d = env.start_daemon_on_tcp(port);
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let http = client(&ca);
            let base = base.clone();
            let run = format!("{mark}; echo out-{c}; sleep 0.02");
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                let mut errors = Vec::new();
                let mut cancelled = Vec::new();
                for n in 0..JOBS_PER_CLIENT {
                    match call(
                        &http,
                        &base,
                        reqwest::Method::POST,
                        "/v1/jobs",
                        Some(&spec(c, n, &run)),
                    )
                    .await
                    {
                        Ok((201, job)) => {
                            let id = job["id"].as_str().unwrap_or("").to_string();
                            match call(
                                &http,
                                &base,
                                reqwest::Method::GET,
                                &format!("/v1/jobs/{id}"),
                                None,
                            )
                            .await
                            {
                                Ok((200, got)) if got["id"] == id.as_str() => {}
                                other => errors.push(format!("read {id}: {other:?}")),
                            }
                            // Every fourth job is cancelled at once, whether
                            // it is still queued, running or already done.
                            if n % 4 == 3 {
                                match call(
                                    &http,
                                    &base,
                                    reqwest::Method::POST,
                                    &format!("/v1/jobs/{id}/cancel"),
                                    None,
                                )
                                .await
                                {
                                    Ok((202, _)) => cancelled.push(id.clone()),
                                    Ok((409, body)) if body["code"] == "ended" => {}
                                    other => errors.push(format!("cancel {id}: {other:?}")),
                                }
                            }
                            ids.push(id);
                        }
                        other => errors.push(format!("submit {c}/{n}: {other:?}")),
                    }
                    if n % 5 == 4 {
                        for path in [
                            "/v1/jobs?limit=10",
                            "/v1/status",
                            "/v1/jobs?status=done&limit=3",
                        ] {
                            match call(&http, &base, reqwest::Method::GET, path, None).await {
                                Ok((200, _)) => {}
                                other => errors.push(format!("GET {path}: {other:?}")),
                            }
                        }
                    }
                }
                (ids, errors, cancelled)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("client task"));
        }
        out
    });
    let errors: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
    assert!(
        errors.is_empty(),
        "errors under load: {errors:#?}\n{}",
        d.stderr()
    );
    let ids: BTreeSet<String> = results.iter().flat_map(|r| r.0.clone()).collect();
    assert_eq!(
        ids.len(),
        CLIENTS * JOBS_PER_CLIENT,
        "every submission got its own id"
    );
    let cancelled: BTreeSet<String> = results.iter().flat_map(|r| r.2.clone()).collect();
    let jobs = wait_all_done(&d, &ids, &cancelled);
    // Each job ran its own command, with its own output.
    let sample = ids.iter().find(|id| !cancelled.contains(*id)).unwrap();
    let (_, logs) = rt.block_on(async {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(
                oj_adapters::tls::client_config(&oj_config::ClientConfig {
                    url: None,
                    ca: Some(ca.clone()),
                    cert: None,
                    key: None,
                    token: None,
                    token_file: None,
                })
                .unwrap(),
            )
            .build()
            .unwrap();
        let r = http
            .get(format!("{base}/v1/jobs/{sample}/logs"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    let client_no: usize = jobs[sample]["name"]
        .as_str()
        .unwrap()
        .split('-')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(logs.contains(&format!("out-{client_no}")), "{logs}");

    // --- phase 2: keep submitting through a drain -------------------------------
    let sent_term = Arc::new(AtomicBool::new(false));
    let quick = env.path().join("quick");
    let drain_results = {
        let sent_term = sent_term.clone();
        let pid = d.pid();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for c in 0..CLIENTS {
                let http = client(&ca);
                let base = base.clone();
                let sent_term = sent_term.clone();
                // Slow while the drain runs (so it has steps to wait for),
                // quick after the restart.
                let run = format!("{mark}; [ -e '{}' ] || sleep 0.2", quick.display());
                tasks.push(tokio::spawn(async move {
                    let mut accepted = Vec::new();
                    let mut refused = 0usize;
                    let mut bad = Vec::new();
                    for n in 0..10_000 {
                        let answer = call(
                            &http,
                            &base,
                            reqwest::Method::POST,
                            "/v1/jobs",
                            Some(&spec(c, 1000 + n, &run)),
                        )
                        .await;
                        // Was SIGTERM sent by the time the answer came?
                        let termed = sent_term.load(Ordering::SeqCst);
                        match answer {
                            Ok((201, job)) => {
                                accepted.push(job["id"].as_str().unwrap_or("").to_string())
                            }
                            Ok((503, body)) => {
                                if body["code"] != "draining" || !termed {
                                    bad.push(format!("503 before SIGTERM or not draining: {body}"));
                                }
                                refused += 1;
                                if refused >= 3 {
                                    break;
                                }
                            }
                            Ok((status, body)) => bad.push(format!("{status} {body}")),
                            Err(e) => {
                                if !termed {
                                    bad.push(format!("transport error before SIGTERM: {e}"));
                                }
                                break; // the daemon is going away
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(15)).await;
                    }
                    (accepted, refused, bad)
                }));
            }
            // Let the submissions flow, then SIGTERM while they do.
            tokio::time::sleep(Duration::from_millis(400)).await;
            sent_term.store(true, Ordering::SeqCst);
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("client task"));
            }
            out
        })
    };
    let status = d.wait_exit(WAIT).expect("the daemon exits after the drain");
    assert!(status.success(), "drain exit: {status:?}\n{}", d.stderr());
    let bad: Vec<&String> = drain_results.iter().flat_map(|r| &r.2).collect();
    assert!(
        bad.is_empty(),
        "errors other than 503 while draining: {bad:#?}"
    );
    let refused: usize = drain_results.iter().map(|r| r.1).sum();
    assert!(refused > 0, "no submission saw the drain's 503");
    let accepted: BTreeSet<String> = drain_results.iter().flat_map(|r| r.0.clone()).collect();
    assert!(
        !accepted.is_empty(),
        "no submission went through before the drain"
    );

    // Everything accepted during phase 2 is there after a restart and
    // completes (the ones still queued at the drain start now).
    std::fs::write(&quick, "").unwrap();
    let d2 = env.start_daemon_on_tcp(port);
    let jobs = wait_all_done(&d2, &accepted, &BTreeSet::new());
    assert!(jobs.len() >= ids.len() + accepted.len());

    // Each accepted job ran exactly once.
    let text = std::fs::read_to_string(&runs).unwrap();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for l in text.lines() {
        *count.entry(l).or_default() += 1;
    }
    for id in &cancelled {
        assert!(
            count.get(id.as_str()).copied().unwrap_or(0) <= 1,
            "cancelled job {id} ran twice"
        );
    }
    for id in ids
        .iter()
        .filter(|id| !cancelled.contains(*id))
        .chain(&accepted)
    {
        assert_eq!(
            count.get(id.as_str()),
            Some(&1),
            "job {id} ran {:?} times",
            count.get(id.as_str())
        );
    }
    eprintln!(
        "phase 1: {} jobs, {} cancelled; drain: {} accepted, {refused} refused with 503",
        ids.len(),
        cancelled.len(),
        accepted.len()
    );
}
