//! End to end (SPEC §8.1): jobs run where the user is. `oj exec` and
//! `oj run` send the client's working directory over the Unix socket;
//! `--dir` and a runbook's `dir` (relative to the directory holding `.oj/`)
//! set it; a job without one runs in a private scratch directory that goes
//! with its logs; a directory deleted before its step starts fails that
//! step, naming it, and nothing else. `-e` passes variables, `-l` labels
//! jobs (every allowed character class), `oj job list` and `GET /v1/jobs`
//! filter by label, queue, name and age page by page, `oj job rerun` runs a
//! job again, and `Idempotency-Key` makes a submission safe to repeat, also
//! across a `kill -9`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Runs `oj ARGS` in `dir` (the client's working directory).
fn oj_in(env: &TestEnv, dir: &Path, args: &[&str]) -> Output {
    let out = env
        .oj()
        .current_dir(dir)
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

/// The job id `oj exec`/`run`/`rerun` printed (exit 0 asserted).
fn id_of(out: &Output) -> String {
    assert_eq!(
        out.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    out.stdout.trim().to_string()
}

fn log(env: &TestEnv, id: &str) -> String {
    let out = env.run(&["job", "logs", id]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    out.stdout
}

/// A POST over the Unix socket with extra headers: (status, JSON body).
fn post_with(socket: &Path, path: &str, body: &Value, headers: &[&str]) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-m",
        "10",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
    ])
    .arg("--unix-socket")
    .arg(socket)
    .arg(format!("http://localhost{path}"))
    .args(["-H", "Content-Type: application/json"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.args(["--data-binary", &body.to_string()]);
    let out = cmd.output().expect("curl");
    parse_curl(&String::from_utf8_lossy(&out.stdout))
}

fn ids(page: &Value) -> Vec<String> {
    page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn project(env: &TestEnv) -> PathBuf {
    let p = env.path().join("project");
    std::fs::create_dir_all(p.join("sub")).expect("mkdir");
    std::fs::canonicalize(p).expect("canonical")
}

// ------------------------------------------------------------ dir and env

/// `oj exec` runs in the client's directory (sent over the socket), `--dir`
/// in another one (relative to the client's), `-e` passes variables; job
/// JSON and `oj job show` name the directory.
#[test]
fn exec_runs_where_the_client_is_with_the_env_it_passes() {
    let mut env = TestEnv::new();
    env.set_var("FROM_SHELL", "copied value");
    let d = env.start_daemon(&[]);
    let p = project(&env);

    let id = id_of(&oj_in(
        &env,
        &p,
        &[
            "exec",
            "-e",
            "GREETING=hello there",
            "-e",
            "FROM_SHELL",
            "--",
            "sh",
            "-c",
            "pwd; echo \"$GREETING/$FROM_SHELL\"",
        ],
    ));
    let job = d.wait_job(&id, &["done"], WAIT);
    assert_eq!(job["dir"], p.to_str().unwrap(), "{job}");
    let out = log(&env, &id);
    assert!(out.contains(&format!("{}\n", p.display())), "{out}");
    assert!(out.contains("hello there/copied value"), "{out}");
    let show = env.run(&["job", "show", &id]);
    assert!(
        show.stdout.contains(&format!("dir       {}", p.display())),
        "{}",
        show.stdout
    );

    let id = id_of(&oj_in(&env, &p, &["exec", "--dir", "sub", "--", "pwd"]));
    d.wait_job(&id, &["done"], WAIT);
    assert!(log(&env, &id).contains(&format!("{}/sub\n", p.display())));

    // -e K with K unset, and --dir naming nothing: usage errors naming them.
    let out = oj_in(&env, &p, &["exec", "-e", "NOT_SET_ANYWHERE", "--", "true"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("NOT_SET_ANYWHERE"), "{}", out.stderr);
    let out = oj_in(&env, &p, &["exec", "--dir", "nowhere", "--", "true"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("nowhere"), "{}", out.stderr);
}

/// A runbook's relative `dir` is relative to the directory holding `.oj/`,
/// from wherever `oj run` starts; its labels come along.
#[test]
fn a_runbook_dir_is_relative_to_the_project() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);
    let p = project(&env);
    std::fs::create_dir_all(p.join(".oj/runbooks")).unwrap();
    std::fs::write(
        p.join(".oj/runbooks/jobs.toml"),
        "[job.where]\ndir = \"sub\"\nlabels = { team = \"web\" }\n[[job.where.step]]\nname = \"pwd\"\nrun = \"pwd\"\n",
    )
    .unwrap();
    let id = id_of(&oj_in(&env, &p.join("sub"), &["run", "where"]));
    let job = d.wait_job(&id, &["done"], WAIT);
    assert_eq!(job["dir"], p.join("sub").to_str().unwrap());
    assert_eq!(job["labels"]["team"], "web");
    assert!(log(&env, &id).contains(&format!("{}/sub\n", p.display())));
}

/// Without `dir` (an API client), the shell steps run in a fresh private
/// `work/<id>/` under the state dir, deleted with the job's logs; a
/// relative `dir` is a 400 naming it.
#[test]
fn a_job_without_dir_gets_a_private_scratch_dir_removed_with_it() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);
    let id = d.submit(&json!({
        "name": "scratch",
        "steps": [{"name": "a", "run": "pwd; echo kept > file"}, {"name": "b", "run": "cat file"}]
    }));
    let job = d.wait_job(&id, &["done"], WAIT);
    assert!(job.get("dir").is_none(), "{job}");
    let work = env.state_dir().join("work").join(&id);
    let out = log(&env, &id);
    assert!(out.contains(&format!("{}\n", work.display())), "{out}");
    assert!(out.contains("kept"), "{out}");
    let mode = std::fs::metadata(&work)
        .expect("scratch dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    let rm = env.run(&["job", "rm", &id]);
    assert_eq!(rm.code, Some(0), "{}", rm.stderr);
    assert!(
        wait_until(WAIT, || !work.exists()),
        "{} outlived its job",
        work.display()
    );

    let (status, body) = d.post(
        "/v1/jobs",
        &json!({"name": "rel", "dir": "src", "steps": [{"name": "a", "run": "true"}]}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("\"src\""),
        "{body}"
    );
}

/// The client's directory is deleted while its job waits: the step fails
/// with an error naming the directory, and the daemon goes on.
#[test]
fn a_directory_deleted_before_the_step_starts_fails_that_step_only() {
    let env = TestEnv::new();
    env.write_config("[jobs]\nmax_concurrent = 1\n");
    let d = env.start_daemon(&[]);
    let p = project(&env);
    let go = env.path().join("go");
    let blocker = id_of(&oj_in(
        &env,
        &p,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            &format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()),
        ],
    ));
    d.wait_job(&blocker, &["running"], WAIT);
    let gone = p.join("sub");
    let waiting = id_of(&oj_in(&env, &gone, &["exec", "--", "echo", "ran"]));
    std::fs::remove_dir_all(&gone).unwrap();
    std::fs::write(&go, "").unwrap();
    let job = d.wait_job(&waiting, &["failed"], WAIT);
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(gone.to_str().unwrap()) && error.contains("does not exist"),
        "{job}"
    );
    assert!(!log(&env, &waiting).contains("ran"));
    let show = env.run(&["job", "show", &waiting]);
    assert!(
        show.stdout.contains(gone.to_str().unwrap()),
        "{}",
        show.stdout
    );
    // Nothing else is affected.
    d.wait_job(&blocker, &["done"], WAIT);
    let next = id_of(&oj_in(&env, &p, &["exec", "--", "true"]));
    d.wait_job(&next, &["done"], WAIT);
}

// ------------------------------------------------------------ labels and filters

/// Labels with every allowed character class are kept and found again;
/// `oj job list` filters by label (all must match), name glob, queue and
/// age; `GET /v1/jobs` does the same page by page.
#[test]
fn labels_filter_job_lists_page_by_page() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);
    let p = project(&env);
    // Prefix: lowercase, digits, '-', '.'; name and value: upper, lower,
    // digits, '-', '_', '.'; an empty value.
    let rich = "team-9.example.com/Svc_Name-1.x=Val.ue_9-Z";
    let mut tagged = Vec::new();
    for i in 0..5 {
        let name = format!("build-{i}");
        let mut args = vec!["exec", "--name", &name, "-l", rich, "-l", "empty="];
        if i % 2 == 0 {
            args.extend(["-l", "even=yes"]);
        }
        args.extend(["--", "true"]);
        tagged.push(id_of(&oj_in(&env, &p, &args)));
    }
    let plain = id_of(&oj_in(
        &env,
        &p,
        &["exec", "--name", "deploy", "--", "true"],
    ));
    for id in tagged.iter().chain([&plain]) {
        d.wait_job(id, &["done"], WAIT);
    }
    let (_, job) = d.get(&format!("/v1/jobs/{}", tagged[0]));
    assert_eq!(
        job["labels"]["team-9.example.com/Svc_Name-1.x"],
        "Val.ue_9-Z"
    );
    assert_eq!(job["labels"]["empty"], "");
    assert_eq!(job["queue"], "default");

    let listed = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["job", "list", "--json"];
        all.extend(args);
        let out = env.run(&all);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
        ids(&v)
    };
    let newest_first: Vec<String> = tagged.iter().rev().cloned().collect();
    assert_eq!(listed(&["--label", rich]), newest_first);
    assert_eq!(
        listed(&["-l", rich, "-l", "even=yes"]),
        vec![tagged[4].clone(), tagged[2].clone(), tagged[0].clone()]
    );
    assert_eq!(listed(&["--name", "build-[0-9]"]), Vec::<String>::new());
    assert_eq!(listed(&["--name", "build-?"]), newest_first);
    assert_eq!(
        listed(&["--name", "dep*", "--queue", "default", "--since", "1h"]),
        vec![plain.clone()]
    );
    assert!(listed(&["--queue", "other"]).is_empty());
    assert_eq!(listed(&["-l", rich, "-n", "2"]), newest_first[..2].to_vec());
    // The table shows the labels.
    let table = env.run(&["job", "list", "--label", "even=yes"]);
    assert!(
        table.stdout.contains("LABELS") && table.stdout.contains("even=yes"),
        "{}",
        table.stdout
    );
    let none = env.run(&["job", "list", "--label", "even=no"]);
    assert_eq!(none.code, Some(0));
    assert!(
        none.stderr.contains("no jobs match --label even=no"),
        "{}",
        none.stderr
    );

    // The API: label= repeatable, combined with paging.
    let q = "label=team-9.example.com%2FSvc_Name-1.x%3DVal.ue_9-Z&label=empty%3D";
    let (s, page1) = d.get(&format!("/v1/jobs?{q}&limit=2"));
    assert_eq!(s, 200, "{page1}");
    assert_eq!(ids(&page1), newest_first[..2].to_vec());
    let next = page1["next"].as_str().expect("a next page").to_string();
    let (_, page2) = d.get(&format!("/v1/jobs?{q}&limit=2&after={next}"));
    assert_eq!(ids(&page2), newest_first[2..4].to_vec());
    let next = page2["next"].as_str().expect("a last page").to_string();
    let (_, page3) = d.get(&format!("/v1/jobs?{q}&limit=2&after={next}"));
    assert_eq!(ids(&page3), newest_first[4..].to_vec());
    assert!(page3["next"].is_null(), "{page3}");
    let (_, named) = d.get("/v1/jobs?name=deploy&queue=default&since=2000-01-01T00:00:00Z");
    assert_eq!(ids(&named), vec![plain.clone()]);
    let (s, body) = d.get("/v1/jobs?since=yesterday");
    assert_eq!(
        (s, body["code"].as_str()),
        (400, Some("bad_query")),
        "{body}"
    );
}

/// Bad labels: `-l` without `=` is a usage error (exit 2); a bad key or
/// value is refused naming it, by the client and by the API (400).
#[test]
fn bad_labels_are_refused_naming_them() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);
    let out = env.run(&["exec", "-l", "team", "--", "true"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("team"), "{}", out.stderr);
    let out = env.run(&["exec", "-l", "-bad=x", "--", "true"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let out = env.run(&["job", "list", "--label", "x"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    for (key, value, named) in [
        ("Bad.Prefix/x", "v", "Bad.Prefix/x"),
        ("ok", "has space", "has space"),
        ("ok", &"v".repeat(64) as &str, "64 characters"),
    ] {
        let (status, body) = d.post(
            "/v1/jobs",
            &json!({"name": "l", "labels": {key: value}, "steps": [{"name": "a", "run": "true"}]}),
        );
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains(named), "{body}");
    }
}

// ------------------------------------------------------------ rerun

/// `oj job rerun` submits the same job (dir, env, labels) with `rerun_of`;
/// `--from-step` starts at that step; unknown steps and jobs are refused.
#[test]
fn rerun_runs_the_same_job_again_from_a_step() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);
    let p = project(&env);
    std::fs::create_dir_all(p.join(".oj/runbooks")).unwrap();
    std::fs::write(
        p.join(".oj/runbooks/jobs.toml"),
        "[job.two]\n[[job.two.step]]\nname = \"one\"\nrun = \"echo one-$V\"\n[[job.two.step]]\nname = \"two\"\nrun = \"pwd; test -e ok\"\n",
    )
    .unwrap();
    let first = id_of(&oj_in(&env, &p, &["run", "two", "-e", "V=x", "-l", "k=v"]));
    d.wait_job(&first, &["failed"], WAIT);

    std::fs::write(p.join("ok"), "").unwrap();
    let out = oj_in(
        &env,
        Path::new("/"),
        &["job", "rerun", &first, "--from-step", "two", "-w"],
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let again = out.stdout.lines().next().unwrap().trim().to_string();
    let (_, job) = d.get(&format!("/v1/jobs/{again}"));
    assert_eq!(job["state"], "done");
    assert_eq!(job["rerun_of"], first.as_str());
    assert_eq!(
        job["dir"],
        p.to_str().unwrap(),
        "the rerun keeps the first job's dir"
    );
    assert_eq!(job["labels"]["k"], "v");
    assert_eq!(job["steps"].as_array().unwrap().len(), 1);
    let show = env.run(&["job", "show", &again]);
    assert!(
        show.stdout.contains(&format!("rerun of  {first}")),
        "{}",
        show.stdout
    );

    let whole = id_of(&env.run(&["job", "rerun", &first]));
    let job = d.wait_job(&whole, &["done"], WAIT);
    assert_eq!(job["steps"].as_array().unwrap().len(), 2);
    assert!(log(&env, &whole).contains("one-x"));

    let (s, body) = d.post(
        &format!("/v1/jobs/{first}/rerun"),
        &json!({"from_step": "three"}),
    );
    assert_eq!(s, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("\"three\""),
        "{body}"
    );
    let out = env.run(&["job", "rerun", &first, "--from-step", "three"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let (s, _) = d.post("/v1/jobs/zzzzzzzzzzzz/rerun", &json!({}));
    assert_eq!(s, 404);
    let out = env.run(&["job", "rerun", "zzzzzzzzzzzz"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
}

// ------------------------------------------------------------ idempotency

/// The same key and spec get the first job (200), nothing runs again, also
/// after a `kill -9`; another spec with the key is a 422; bad keys are 400.
#[test]
fn an_idempotency_key_submits_once_even_across_kill_9() {
    let env = TestEnv::new();
    let mut d = env.start_daemon(&[]);
    let marker = env.path().join("runs");
    let spec = json!({
        "name": "once", "dir": env.path().to_str().unwrap(),
        "steps": [{"name": "a", "run": "echo ran >> runs"}]
    });
    let (s, first) = post_with(
        &d.socket,
        "/v1/jobs",
        &spec,
        &["Idempotency-Key: \"deploy-42\""],
    );
    assert_eq!(s, 201, "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    d.wait_job(&id, &["done"], WAIT);
    // The bare form is the same key.
    let (s, again) = post_with(
        &d.socket,
        "/v1/jobs",
        &spec,
        &["Idempotency-Key: deploy-42"],
    );
    assert_eq!(
        (s, again["id"].as_str()),
        (200, Some(id.as_str())),
        "{again}"
    );

    d.kill9();
    let d = env.start_daemon(&[]);
    let (s, again) = post_with(
        &d.socket,
        "/v1/jobs",
        &spec,
        &["Idempotency-Key: \"deploy-42\""],
    );
    assert_eq!(
        (s, again["id"].as_str()),
        (200, Some(id.as_str())),
        "{again}"
    );
    let (s, conflict) = post_with(
        &d.socket,
        "/v1/jobs",
        &json!({"name": "other", "steps": [{"name": "a", "run": "true"}]}),
        &["Idempotency-Key: deploy-42"],
    );
    assert_eq!(
        (s, conflict["code"].as_str()),
        (422, Some("idempotency_conflict")),
        "{conflict}"
    );
    let (_, all) = d.get("/v1/jobs");
    assert_eq!(ids(&all), vec![id.clone()]);
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "ran\n",
        "the job ran once"
    );

    let long = format!("Idempotency-Key: {}", "k".repeat(256));
    // A control character does not even pass the HTTP parser: 400 either way.
    let (s, _) = post_with(
        &d.socket,
        "/v1/jobs",
        &spec,
        &["Idempotency-Key: \"a\u{1}b\""],
    );
    assert_eq!(s, 400);
    for bad in [
        long.as_str(),
        "Idempotency-Key: \"caf\u{e9}\"",
        "Idempotency-Key: \"open",
    ] {
        let (s, body) = post_with(&d.socket, "/v1/jobs", &spec, &[bad]);
        assert_eq!(
            (s, body["code"].as_str()),
            (400, Some("bad_idempotency_key")),
            "{bad}: {body}"
        );
    }
    let ok255 = format!("Idempotency-Key: {}", "k".repeat(255));
    let (s, body) = post_with(&d.socket, "/v1/jobs", &spec, &[ok255.as_str()]);
    assert_eq!(s, 201, "{body}");

    // Keys live as long as their job: removed, the key is free again.
    let rm = env.run(&["job", "rm", &id]);
    assert_eq!(rm.code, Some(0), "{}", rm.stderr);
    let (s, fresh) = post_with(
        &d.socket,
        "/v1/jobs",
        &spec,
        &["Idempotency-Key: deploy-42"],
    );
    assert_eq!(s, 201, "{fresh}");
    assert_ne!(fresh["id"].as_str(), Some(id.as_str()));
}

/// `--idempotency-key` on the CLI: a retried `oj exec` prints the same id.
#[test]
fn the_cli_key_makes_a_retry_safe() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);
    let p = project(&env);
    let args = [
        "exec",
        "--idempotency-key",
        "nightly 2026-05-01",
        "--",
        "true",
    ];
    let a = id_of(&oj_in(&env, &p, &args));
    let b = id_of(&oj_in(&env, &p, &args));
    assert_eq!(a, b);
    d.wait_job(&a, &["done"], WAIT);
    let out = oj_in(
        &env,
        &p,
        &[
            "exec",
            "--idempotency-key",
            "nightly 2026-05-01",
            "--",
            "false",
        ],
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("422") || out.stderr.contains("different job spec"),
        "{}",
        out.stderr
    );
    let out = oj_in(
        &env,
        &p,
        &["exec", "--idempotency-key", "tab\there", "--", "true"],
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
}

/// Racing repeats of one key: exactly one job is created; every other
/// answer is that job (200) or "still being committed" (409), never a
/// second job.
#[test]
fn concurrent_repeats_of_a_key_create_one_job() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);
    let spec = json!({"name": "race", "steps": [{"name": "a", "run": "true"}]});
    let racers: Vec<std::thread::JoinHandle<(u16, Value)>> = (0..8)
        .map(|_| {
            let socket = d.socket.clone();
            let spec = spec.clone();
            std::thread::spawn(move || {
                post_with(&socket, "/v1/jobs", &spec, &["Idempotency-Key: race-1"])
            })
        })
        .collect();
    let answers: Vec<(u16, Value)> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    let id = created[0]["id"].as_str().unwrap();
    for (s, body) in &answers {
        match s {
            201 => {}
            200 => assert_eq!(body["id"], id, "{body}"),
            409 => assert_eq!(body["code"], "idempotency_in_progress", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let (_, all) = d.get("/v1/jobs");
    assert_eq!(ids(&all), vec![id.to_string()]);
}

/// Over TCP the client's directory means nothing to the daemon and is not
/// sent: the job runs in its scratch directory unless `--dir` says where.
#[test]
fn over_tcp_only_dir_sets_the_directory() {
    let mut env = TestEnv::new();
    let port = free_port();
    env.write_config(&format!(
        "[listen]\ntcp = \"127.0.0.1:{port}\"\nauth_token = \"t0ken-for-tests\"\n[notify]\nbackend = \"none\"\n"
    ));
    let d = env.start_daemon_on_tcp(port);
    env.set_var("OJ_DAEMON_URL", &format!("http://127.0.0.1:{port}"));
    env.set_var("OJ_AUTH_TOKEN", "t0ken-for-tests");
    let p = project(&env);
    let id = id_of(&oj_in(&env, &p, &["exec", "--", "pwd"]));
    let job = d.wait_job(&id, &["done"], WAIT);
    assert!(job.get("dir").is_none(), "{job}");
    let work = env.state_dir().join("work").join(&id);
    assert!(log(&env, &id).contains(&format!("{}\n", work.display())));
    let id = id_of(&oj_in(&env, &p, &["exec", "--dir", "sub", "--", "pwd"]));
    let job = d.wait_job(&id, &["done"], WAIT);
    assert_eq!(job["dir"], p.join("sub").to_str().unwrap());
}

/// A client whose own directory was deleted under it is told so (exit 1)
/// instead of submitting a job that cannot run; an absolute `--dir` works.
#[test]
fn a_client_in_a_deleted_directory_is_told_so() {
    let env = TestEnv::new();
    let d = env.start_daemon(&[]);
    let p = project(&env);
    let gone = p.join("sub");
    let sh = |args: &str| {
        std::fs::create_dir_all(&gone).unwrap();
        let mut cmd = Command::new("sh");
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(&gone)
            .arg("-c")
            .arg(format!(
                "rmdir {} && exec {} {args}",
                gone.display(),
                oj_bin()
            ));
        for (k, v) in [
            ("HOME", env.path().join("home")),
            ("XDG_CONFIG_HOME", env.path().join("config")),
            ("XDG_STATE_HOME", env.path().join("state")),
            ("XDG_RUNTIME_DIR", env.path().join("runtime")),
        ] {
            cmd.env(k, v);
        }
        let o = cmd.output().expect("sh");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, _, err) = sh("exec -- true");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("current directory"), "{err}");
    let (code, id, err) = sh(&format!("exec --dir {} -- pwd", p.display()));
    assert_eq!(code, Some(0), "{err}");
    let job = d.wait_job(&id, &["done"], WAIT);
    assert_eq!(job["dir"], p.to_str().unwrap());
}
