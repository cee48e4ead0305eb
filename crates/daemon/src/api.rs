//! The HTTP API of SPEC §3.2 (`/v1/*`), the same router on the Unix socket
//! and on TCP (where `listen.rs` adds the bearer-token check). Errors are
//! JSON `{"error": "<what is wrong and what to do>", "code": "<word>"}`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use oj_core::{JobId, JobSpec, JobState};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::drain::ShutdownTrigger;
use crate::engine::{CancelError, EngineHandle, SubmitError};

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
    /// `pods.*`: container steps whose merged resources are invalid get 400.
    pub pods: Option<Arc<oj_config::PodsConfig>>,
    /// The running config (`GET /v1/config`, the `config` part of status).
    pub config: Option<crate::reload::ConfigStatus>,
}

/// A JSON error response.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({ "error": message.into(), "code": code })),
    )
        .into_response()
}

/// The `/v1/*` router.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(show))
        .route("/v1/jobs/{id}/logs", get(logs))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/shutdown", post(shutdown))
        .route("/v1/config", get(crate::config_api::get_config))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), standby_gate))
        .with_state(shared)
}

async fn not_found(req: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
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
            "standby",
            "this daemon is a standby (another instance holds the lock); retry against the leader",
        );
    }
    next.run(req).await
}

async fn status(State(s): State<Shared>) -> Response {
    let counts = s.engine.counts().await;
    let info = &s.info;
    axum::Json(json!({
        "version": info.version,
        "profile": info.profile,
        "instance": info.instance,
        "pid": std::process::id(),
        "uptime_s": info.started.elapsed().as_secs(),
        "leader": *s.leader.borrow(),
        "draining": *s.draining.borrow(),
        "listeners": info.listeners,
        "admin": info.admin,
        "lock": info.lock,
        "jobs": counts,
        "config": s.config.as_ref().map(crate::reload::ConfigStatus::status_json),
    }))
    .into_response()
}

async fn submit(State(s): State<Shared>, body: Bytes) -> Response {
    if *s.draining.borrow() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            SubmitError::Draining.to_string(),
        );
    }
    let spec = match JobSpec::from_json(&body) {
        Ok(spec) => spec,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_spec",
                format!("invalid job spec: {e}"),
            );
        }
    };
    // `pods.*` applies live: check against the running config.
    let pods = s.config.as_ref().map_or(s.pods.clone(), |c| {
        Some(Arc::new(c.running().config.pods.clone()))
    });
    if let Some(pods) = &pods
        && let Err(e) = crate::k8s::validate_spec(&spec, pods)
    {
        return error(StatusCode::BAD_REQUEST, "invalid_spec", e);
    }
    match s.engine.submit(spec).await {
        Ok(job) => (StatusCode::CREATED, axum::Json(job)).into_response(),
        Err(e @ SubmitError::Invalid(_)) => {
            error(StatusCode::BAD_REQUEST, "invalid_spec", e.to_string())
        }
        Err(e @ SubmitError::Draining) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "draining", e.to_string())
        }
        Err(e @ SubmitError::NotLeader) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "standby", e.to_string())
        }
        Err(e @ SubmitError::Gone) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "draining", e.to_string())
        }
        Err(e @ SubmitError::Storage(_)) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
        }
    }
}

async fn list(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let status = match q.get("status").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match v.parse::<JobState>() {
            Ok(st) => Some(st),
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_query", e.to_string()),
        },
    };
    let limit = match q.get("limit").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match v.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    format!("limit={v:?} is not a number; use e.g. ?limit=20"),
                );
            }
        },
    };
    let jobs = s.engine.list(status, limit).await;
    axum::Json(json!({ "jobs": jobs })).into_response()
}

fn bad_id(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{id:?} is not a job id; `oj job list` shows the jobs"),
    )
}

fn unknown(id: &JobId) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no job with id {id}; `oj job list` shows the jobs"),
    )
}

async fn show(State(s): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return bad_id(&id);
    };
    match s.engine.get(id.clone()).await {
        Some(job) => axum::Json(job).into_response(),
        None => unknown(&id),
    }
}

async fn cancel(State(s): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return bad_id(&id);
    };
    match s.engine.cancel(id.clone()).await {
        Ok(job) => (StatusCode::ACCEPTED, axum::Json(job)).into_response(),
        Err(CancelError::NotFound(_)) => unknown(&id),
        Err(e @ CancelError::Ended { .. }) => error(StatusCode::CONFLICT, "ended", e.to_string()),
        Err(e @ CancelError::NotLeader) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "standby", e.to_string())
        }
        Err(e @ CancelError::Gone) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "draining", e.to_string())
        }
        Err(e @ CancelError::Storage(_)) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
        }
    }
}

async fn shutdown(State(s): State<Shared>) -> Response {
    s.shutdown.request("POST /v1/shutdown");
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "draining": true })),
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
    let Some(job) = s.engine.get(id.clone()).await else {
        return unknown(&id);
    };
    let follow = matches!(
        q.get("follow").map(String::as_str),
        Some("true" | "1" | "yes")
    );
    let text_plain = HeaderValue::from_static("text/plain; charset=utf-8");
    if !follow || job.state.is_terminal() {
        let mut out = Vec::new();
        for st in &job.steps {
            let path = log_path(&s.logs_dir, &id, &st.name);
            let content = tokio::fs::read(&path).await;
            if st.started_at.is_none() && content.is_err() {
                continue; // never started
            }
            out.extend_from_slice(step_header(&st.name).as_bytes());
            if let Ok(bytes) = content {
                out.extend_from_slice(&bytes);
            }
        }
        return ([(header::CONTENT_TYPE, text_plain)], out).into_response();
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(follow_logs(s.engine.clone(), s.logs_dir.clone(), id, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    (
        [(header::CONTENT_TYPE, text_plain)],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Streams each step's log as it grows, step after step, until the job ends.
async fn follow_logs(engine: EngineHandle, logs_dir: PathBuf, id: JobId, tx: mpsc::Sender<Bytes>) {
    let poll = Duration::from_millis(100);
    let mut step = 0usize;
    let mut offset = 0u64;
    let mut header_sent = false;
    loop {
        let Some(job) = engine.get(id.clone()).await else {
            return;
        };
        while step < job.steps.len() {
            let st = &job.steps[step];
            if st.started_at.is_none() {
                if job.state.is_terminal() {
                    step += 1; // will never run
                    continue;
                }
                break; // not started yet
            }
            if !header_sent {
                if tx.send(Bytes::from(step_header(&st.name))).await.is_err() {
                    return;
                }
                header_sent = true;
            }
            let path = log_path(&logs_dir, &id, &st.name);
            match read_from(&path, offset).await {
                Ok(bytes) if !bytes.is_empty() => {
                    offset += bytes.len() as u64;
                    if tx.send(Bytes::from(bytes)).await.is_err() {
                        return;
                    }
                }
                _ => {}
            }
            // The state was read before the file: once it says ended, the
            // file above held all of the step's output.
            if st.state.is_terminal() {
                step += 1;
                offset = 0;
                header_sent = false;
                continue;
            }
            break;
        }
        if step >= job.steps.len() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = tx.closed() => return,
        }
    }
}

async fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await?;
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, EngineConfig};
    use crate::metrics::Metrics;
    use crate::runner::shell::ShellRunner;
    use crate::runner::{NoContainerRunner, Runners};
    use crate::storage::Storage;
    use tower::ServiceExt;

    fn shared(dir: &Path, leader: bool) -> (Shared, watch::Sender<bool>, watch::Sender<bool>) {
        let (storage, state, _) = Storage::open(dir).unwrap();
        let (leader_tx, leader_rx) = watch::channel(leader);
        let runners = Runners {
            shell: Arc::new(ShellRunner {
                shell: vec!["/bin/sh".into(), "-c".into()],
                base_env: Default::default(),
                kill_grace: Duration::from_secs(2),
            }),
            container: Arc::new(NoContainerRunner),
        };
        let cfg = EngineConfig {
            max_concurrent: 1,
            step_timeout: Duration::from_secs(60),
            logs_dir: dir.join("logs"),
            reload_on_lead: false,
        };
        let (engine, handle) = Engine::new(
            state,
            storage,
            cfg,
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
