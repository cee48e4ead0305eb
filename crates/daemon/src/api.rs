//! The HTTP API of SPEC §3.2 (`/v1/*`), the same router on the Unix socket
//! and on TCP (where `listen.rs` adds the bearer-token check). Bodies are
//! the types of the `oj-api` crate; errors are its `ErrorBody`, JSON
//! `{"code": "<word>", "error": "<what is wrong and what to do>"}`, made
//! from engine errors in one place ([`crate::api_failure`]).
//!
//! Every answer is bounded in memory: job lists are pages (at most
//! [`PAGE_MAX`] jobs and about a megabyte), logs are streamed from the file
//! in chunks, and `/v1/status` reads counts the engine publishes instead of
//! queueing behind other requests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use oj_api::ErrorCode;
use oj_core::{JobId, JobSpec, JobView};
use tokio::sync::{mpsc, watch};

use crate::api_events::JobWaker;
pub use crate::api_failure::ApiFailure;
use crate::drain::ShutdownTrigger;
use crate::engine::{EngineHandle, SubmitError};

/// Bytes read from a log file at a time.
const LOG_CHUNK: usize = 64 * 1024;

/// Facts about this daemon for `GET /v1/status`.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    pub version: String,
    pub profile: String,
    pub instance: String,
    pub started: Instant,
    /// API listeners as URLs (`unix:///…`, `http://…`, `https://…`).
    pub listeners: Vec<String>,
    pub admin: Option<String>,
    pub lock: String,
}

/// What every handler shares.
#[derive(Clone)]
pub struct Shared {
    pub engine: EngineHandle,
    pub info: Arc<DaemonInfo>,
    pub leader: watch::Receiver<bool>,
    pub draining: watch::Receiver<bool>,
    pub shutdown: ShutdownTrigger,
    pub logs_dir: PathBuf,
    /// `pods.*` as it applies now: container steps whose merged resources
    /// are invalid get 400.
    pub pods: Option<crate::live::Live<oj_config::PodsConfig>>,
    /// The running config (`GET /v1/config`, the `config` part of status).
    pub config: Option<crate::reload::ConfigStatus>,
    /// Container steps, when a Kubernetes API is configured: a rerun from a
    /// later step asks it whether the job's workspace still exists
    /// ([`crate::cluster::rerun_workspace_gone`]).
    pub pod_steps: Option<Arc<crate::k8s::PodStepRunner>>,
}

/// A JSON error response (`{"code", "error"}`).
pub fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    ApiFailure::new(status, code, message).into_response()
}

/// The `/v1/*` router.
pub fn router(shared: Shared) -> Router {
    let for_status = shared.clone();
    shared.engine.events().set_status_source(move || {
        serde_json::to_vec(&status_body(&for_status)).unwrap_or_default()
    });
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/events", get(crate::api_events::events))
        .route("/v1/jobs", post(submit).get(crate::api_where::list))
        .route("/v1/jobs/prune", post(crate::api_retention::prune))
        .route(
            "/v1/jobs/{id}",
            get(show).delete(crate::api_retention::remove),
        )
        .route("/v1/jobs/{id}/logs", get(logs))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/release", post(crate::api_queues::release))
        .route("/v1/queues", get(crate::api_queues::list))
        .route("/v1/queues/{name}/pause", post(crate::api_queues::pause))
        .route("/v1/queues/{name}/resume", post(crate::api_queues::resume))
        .route("/v1/jobs/{id}/rerun", post(crate::api_where::rerun))
        .route("/v1/shutdown", post(shutdown))
        .route("/v1/config", get(crate::config_api::get_config))
        .route("/v1/schedules", get(crate::api_schedules::list))
        .route("/v1/schedules/{name}/run", post(crate::api_schedules::run))
        .route(
            "/v1/schedules/{name}/pause",
            post(crate::api_schedules::pause),
        )
        .route(
            "/v1/schedules/{name}/resume",
            post(crate::api_schedules::resume),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), standby_gate))
        .with_state(shared)
}

/// serde's words for a bad spec, bounded, with integer ranges instead of
/// `u32`.
fn spec_error_words(e: &str) -> String {
    let words = oj_config::int_words::plain_int_words(e);
    oj_config::excerpt::excerpt(&words, 1000).into_owned()
}

async fn not_found(req: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!(
            "no route {} {}; see docs/api.md for the API",
            req.method(),
            req.uri().path()
        ),
    )
}

/// While not the leader only `GET /v1/status` answers; the rest is 503.
async fn standby_gate(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if !*s.leader.borrow() && req.uri().path() != "/v1/status" {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Standby,
            "this daemon is a standby (another instance holds the lock); retry against the leader",
        );
    }
    next.run(req).await
}

async fn status(State(s): State<Shared>) -> Response {
    axum::Json(status_body(&s)).into_response()
}

/// The body of `GET /v1/status` (also the data of `event: status`).
fn status_body(s: &Shared) -> oj_api::Status {
    let info = &s.info;
    let kill_leftovers = s
        .config
        .as_ref()
        .is_none_or(|c| c.running().config.jobs.kill_leftovers);
    oj_api::Status {
        admin: info.admin.clone(),
        config: s.config.as_ref().map(crate::config_api::summary),
        draining: Some(*s.draining.borrow()),
        instance: Some(info.instance.clone()),
        jobs: Some(s.engine.counts_now()),
        leader: Some(*s.leader.borrow()),
        leftovers: Some(leftovers(kill_leftovers)),
        listeners: Some(
            info.listeners
                .iter()
                .cloned()
                .map(oj_api::Listener::Url)
                .collect(),
        ),
        lock: Some(info.lock.clone()),
        pid: Some(i64::from(std::process::id())),
        profile: Some(info.profile.clone()),
        storage_error: s.engine.storage_error(),
        uptime_s: Some(info.started.elapsed().as_secs()),
        version: Some(info.version.clone()),
    }
}

/// How a step's leftover processes are ended (`off` when
/// `jobs.kill_leftovers` is off).
fn leftovers(kill_leftovers: bool) -> oj_api::Leftovers {
    let (mode, reason) = if kill_leftovers {
        crate::runner::cgroup::mode()
    } else {
        ("off", None)
    };
    oj_api::Leftovers {
        mode: Some(mode.to_string()),
        reason: reason.map(str::to_string),
    }
}

async fn submit(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if *s.draining.borrow() {
        return ApiFailure::from(SubmitError::Draining).into_response();
    }
    let key = match crate::api_where::idempotency_key(&headers) {
        Ok(key) => key,
        Err(bad) => return bad.into_response(),
    };
    let mut spec = match JobSpec::from_json(&body) {
        Ok(spec) => spec,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidSpec,
                format!("invalid job spec: {}", spec_error_words(&e)),
            );
        }
    };
    // `pods.*` applies live: check against the running config.
    let pods = s.pods.as_ref().map(crate::live::Live::get);
    if let Some(pods) = &pods
        && let Err(e) = crate::k8s::validate_spec(&spec, pods)
    {
        return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidSpec, e);
    }
    // `pods.default_image`, secrets and workspaces (SPEC §8.5).
    let prepared = match &pods {
        Some(pods) => crate::cluster::prepare_submission(&mut spec, pods),
        None => spec.check_cluster(&[]).map_err(|e| e.to_string()),
    };
    if let Err(e) = prepared {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidSpec,
            format!("invalid job spec: {e}"),
        );
    }
    let meta = crate::engine::SubmitMeta {
        rerun_of: None,
        idempotency_key: key,
    };
    crate::api_where::submitted(s.engine.submit_with(spec, meta).await)
}

pub(crate) fn bad_id(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("{id:?} is not a job id; `oj job list` shows the jobs"),
    )
}

pub(crate) fn unknown(id: &JobId) -> Response {
    ApiFailure::unknown_job(id).into_response()
}

async fn show(State(s): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return bad_id(&id);
    };
    match s.engine.get(id.clone()).await {
        Some(job) => axum::Json(JobView::of(&job)).into_response(),
        None => unknown(&id),
    }
}

async fn cancel(State(s): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return bad_id(&id);
    };
    match s.engine.cancel(id).await {
        Ok(job) => (StatusCode::ACCEPTED, axum::Json(JobView::of(&job))).into_response(),
        Err(e) => ApiFailure::from(e).into_response(),
    }
}

async fn shutdown(State(s): State<Shared>) -> Response {
    s.shutdown.request("POST /v1/shutdown");
    (
        StatusCode::ACCEPTED,
        axum::Json(oj_api::ShutdownAnswer { draining: true }),
    )
        .into_response()
}

/// The header line written before each step's output.
pub fn step_header(step: &str) -> String {
    format!("==> {step} <==\n")
}

fn log_path(logs_dir: &Path, id: &JobId, step: &str) -> PathBuf {
    logs_dir.join(id.as_str()).join(format!("{step}.log"))
}

async fn logs(
    State(s): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return bad_id(&id);
    };
    if s.engine.progress(id.clone()).await.is_none() {
        return unknown(&id);
    }
    let follow = matches!(
        q.get("follow").map(String::as_str),
        Some("true" | "1" | "yes")
    );
    // Two chunks in flight at most: memory does not grow with the log.
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(2);
    tokio::spawn(stream_logs(
        s.engine.clone(),
        s.logs_dir.clone(),
        id,
        follow,
        tx,
    ));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Sends the job's logs step after step, each behind its header line, in
/// chunks; with `follow` it waits for steps to start and files to grow
/// until the job ends. An I/O error is sent as the stream's error, which
/// cuts the response off (no clean end), so a client cannot take a partial
/// log for the whole.
async fn stream_logs(
    engine: EngineHandle,
    logs_dir: PathBuf,
    id: JobId,
    follow: bool,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) {
    // Subscribed before the first look: no change after it is missed.
    let mut waker = JobWaker::new(&engine, &logs_dir, &id);
    let mut step = 0usize;
    loop {
        let Some(job) = engine.progress(id.clone()).await else {
            if sent_whole(&engine, &id, step) {
                // Deleted after it ended and after its last step was sent
                // (retention right at the end): the log is whole.
                return;
            }
            // Deleted (`oj job rm`, retention) or the daemon stopped while
            // its log was read: what was sent is not the whole log.
            tracing::debug!(job_id = %id, "the job went away while its log was read; the response is cut off");
            let _ = tx
                .send(Err(std::io::Error::other(format!(
                    "job {id} was deleted (or the daemon stopped) while its log was read"
                ))))
                .await;
            return;
        };
        let Some(st) = job.steps.get(step) else {
            return;
        };
        if st.started_at.is_none() {
            if job.state.is_terminal() || !follow {
                step += 1; // never ran
                continue;
            }
            if waker.wait(&tx).await.is_err() {
                return;
            }
            continue;
        }
        waker.arm();
        if tx
            .send(Ok(Bytes::from(step_header(&st.name))))
            .await
            .is_err()
        {
            return;
        }
        let path = log_path(&logs_dir, &id, &st.name);
        let until_end = follow && !st.state.is_terminal();
        match send_file(&engine, &mut waker, &id, step, &path, until_end, &tx).await {
            Ok(()) => step += 1,
            Err(e) => {
                tracing::warn!(job_id = %id, path = %path.display(), error = %e, "cannot read a step log; the response is cut off");
                let e = std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display()));
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// Sends one step's log file in chunks. With `until_end`, at the end of
/// the file it waits for more until the step has ended (the step's state
/// is read before the last read, so that read held all of its output).
async fn send_file(
    engine: &EngineHandle,
    waker: &mut JobWaker,
    id: &JobId,
    step: usize,
    path: &Path,
    until_end: bool,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut file = loop {
        match tokio::fs::File::open(path).await {
            Ok(f) => break f,
            // Started but nothing written yet (or the file was removed).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !until_end || step_ended(engine, id, step).await {
                    return Ok(());
                }
                waker.wait(tx).await?;
            }
            Err(e) => return Err(e),
        }
    };
    let mut ended = !until_end;
    loop {
        let mut buf = bytes::BytesMut::with_capacity(LOG_CHUNK);
        let n = (&mut file)
            .take(LOG_CHUNK as u64)
            .read_buf(&mut buf)
            .await?;
        if n > 0 {
            if tx.send(Ok(buf.freeze())).await.is_err() {
                return Err(std::io::Error::other("the client went away"));
            }
            continue;
        }
        if ended {
            return Ok(());
        }
        ended = step_ended(engine, id, step).await;
        if !ended {
            waker.wait(tx).await?;
        }
    }
}

/// Whether a job that is gone had no step from `next` on that ever
/// started (its last state, as published when it was deleted, says so).
fn sent_whole(engine: &EngineHandle, id: &JobId, next: usize) -> bool {
    let Some(frame) = engine.events().removed_job(id) else {
        return false;
    };
    serde_json::from_slice::<oj_core::Job>(&frame.data).is_ok_and(|job| {
        job.state.is_terminal() && job.steps.iter().skip(next).all(|s| s.started_at.is_none())
    })
}

async fn step_ended(engine: &EngineHandle, id: &JobId, step: usize) -> bool {
    match engine.progress(id.clone()).await {
        Some(p) => p.steps.get(step).is_none_or(|s| s.state.is_terminal()),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, EngineConfig};
    use crate::metrics::Metrics;
    use crate::runner::shell::ShellRunner;
    use crate::runner::{NoContainerRunner, Runners};
    use crate::storage::Storage;
    use std::time::Duration;
    use tower::ServiceExt;

    fn shared(dir: &Path, leader: bool) -> (Shared, watch::Sender<bool>, watch::Sender<bool>) {
        let (storage, state, _) = Storage::open(dir).unwrap();
        let (leader_tx, leader_rx) = watch::channel(leader);
        let runners = Runners {
            shell: Arc::new(ShellRunner {
                shell: vec!["/bin/sh".into(), "-c".into()],
                base_env: Default::default(),
                kill_grace: Duration::from_secs(2),
                kill_leftovers: true,
            }),
            container: Arc::new(NoContainerRunner),
        };
        let cfg = EngineConfig {
            max_concurrent: 1,
            step_timeout: Duration::from_secs(60),
            logs_dir: dir.join("logs"),
            reload_on_lead: false,
            allow_shell: true,
            retention: crate::engine::Retention::default(),
            queues: Default::default(),
        };
        let (engine, handle) = Engine::new(
            state,
            storage,
            crate::live::Live::fixed(cfg),
            runners,
            Arc::new(Metrics::new("t", "t")),
            leader_rx.clone(),
        );
        tokio::spawn(engine.run());
        let (draining_tx, draining_rx) = watch::channel(false);
        let (trigger, _requests) = ShutdownTrigger::new();
        let info = DaemonInfo {
            version: "t".into(),
            profile: "desktop".into(),
            instance: "me".into(),
            started: Instant::now(),
            listeners: vec![],
            admin: None,
            lock: "lease".into(),
        };
        let s = Shared {
            engine: handle,
            info: Arc::new(info),
            leader: leader_rx,
            draining: draining_rx,
            shutdown: trigger,
            logs_dir: dir.join("logs"),
            pods: None,
            config: None,
            pod_steps: None,
        };
        (s, leader_tx, draining_tx)
    }

    async fn call(
        router: &Router,
        method: &str,
        path: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    const SPEC: &str = r#"{"name":"x","steps":[{"name":"a","run":"true"}]}"#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_standby_answers_status_only() {
        let dir = tempfile::tempdir().unwrap();
        let (s, leader, _d) = shared(dir.path(), false);
        let r = router(s);
        let (st, body) = call(&r, "GET", "/v1/status", "").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(body["leader"], false);
        for (m, p) in [
            ("GET", "/v1/jobs"),
            ("POST", "/v1/jobs"),
            ("GET", "/v1/jobs/abc"),
            ("POST", "/v1/shutdown"),
        ] {
            let (st, body) = call(&r, m, p, SPEC).await;
            assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{m} {p}");
            assert_eq!(body["code"], "standby");
        }
        leader.send(true).unwrap();
        let (st, _) = call(&r, "POST", "/v1/jobs", SPEC).await;
        assert_eq!(st, StatusCode::CREATED);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_status_body_is_the_wire_type_with_sorted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _l, _d) = shared(dir.path(), true);
        let r = router(s);
        for path in ["/v1/status", "/v1/queues", "/v1/schedules"] {
            let req = Request::get(path).body(Body::empty()).unwrap();
            let resp = r.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            // The bytes are those the old `json!` objects wrote: every
            // object's keys sorted (what a JSON value writes back).
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(String::from_utf8_lossy(&bytes), value.to_string(), "{path}");
        }
        let (_, body) = call(&r, "GET", "/v1/status", "").await;
        let status: oj_api::Status = serde_json::from_value(body).unwrap();
        assert_eq!(status.profile.as_deref(), Some("desktop"));
        assert_eq!(status.leader, Some(true));
        assert_eq!(status.jobs, Some(oj_core::JobCounts::default()));
        let (st, body) = call(&r, "POST", "/v1/jobs/nope/cancel", "").await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let e: oj_api::ErrorBody = serde_json::from_value(body).unwrap();
        assert_eq!(e.code, ErrorCode::NotFound);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn draining_refuses_submissions_with_503_draining() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _l, draining) = shared(dir.path(), true);
        let r = router(s);
        draining.send(true).unwrap();
        let (st, body) = call(&r, "POST", "/v1/jobs", SPEC).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["code"], "draining");
        let (st, body) = call(&r, "GET", "/v1/status", "").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(body["draining"], true);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_spec_is_a_400_naming_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _l, _d) = shared(dir.path(), true);
        let r = router(s);
        let (st, body) = call(
            &r,
            "POST",
            "/v1/jobs",
            r#"{"name":"x","steps":[{"name":"a b","run":"true"}]}"#,
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(
            body["error"].as_str().unwrap().contains("\"a b\""),
            "{body}"
        );
        let (st, _) = call(&r, "POST", "/v1/jobs", "not json").await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        let (st, body) = call(&r, "GET", "/v1/nope", "").await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert_eq!(body["code"], "not_found");
    }
}
