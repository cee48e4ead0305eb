//! The web UI of SPEC §8.4: server-rendered pages at `/ui/` on the API
//! listeners, one stylesheet and one small script, all in the binary.
//!
//! Pages are drawn from the same JSON the API serves: each handler calls
//! the `/v1/*` router in-process (no socket, no second code path) and reads
//! the answer as the `oj-api` type `oj` reads, so a page shows exactly what
//! `oj` and `curl` see, a filter the API learns is
//! a filter the page has, and a data source this build lacks (404) is
//! shown as "not available" instead of failing the page. Templates are
//! maud's, which escape every value: names, labels and log bytes are text,
//! never markup. The script (`assets/app.js`) only subscribes to
//! `/v1/events`, follows logs and sends the actions; it writes the DOM with
//! `textContent` alone.

mod pages;
pub mod session;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use oj_api::ErrorBody;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

pub use session::{Access, Gate};

/// Every UI response's policy: nothing from another origin, no inline
/// script or style, never inside a frame.
pub const CSP: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Largest API answer a page reads (a page of jobs is about 1 MB at most).
const MAX_API_BODY: usize = 8 << 20;

const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

#[derive(Clone)]
struct Ui {
    api: Router,
}

/// The API router plus, with `ui.enabled`, the UI routes and `GET /`.
pub fn app(api: Router, enabled: bool) -> Router {
    if !enabled {
        return api;
    }
    let ui = Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(jobs_page))
        .route("/ui/jobs/{id}", get(job_page))
        .route("/ui/queues", get(queues_page))
        .route("/ui/schedules", get(schedules_page))
        .route("/ui/config", get(config_page))
        .route(
            "/ui/assets/app.js",
            get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/ui/assets/style.css",
            get(|| asset(STYLE_CSS, "text/css; charset=utf-8")),
        )
        .route("/ui/{*rest}", get(missing_page))
        .layer(middleware::map_response(security_headers))
        .with_state(Ui { api: api.clone() });
    ui.merge(api)
}

/// A TCP listener's router behind the session-aware door ([`session::gate`])
/// instead of the plain token check.
pub fn wrap_tcp(router: Router, gate: Gate) -> Router {
    router.layer(middleware::from_fn_with_state(gate, session::gate))
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// An API answer as the page sees it.
enum Fetched<T> {
    Ok(T),
    /// The route does not exist in this build (or the thing is unknown).
    Missing(String),
    Failed(StatusCode, String),
}

/// GETs `uri` from the API router in-process, read as `T`.
async fn fetch<T: DeserializeOwned>(api: &Router, uri: &str) -> Fetched<T> {
    let Ok(req) = Request::builder().uri(uri).body(Body::empty()) else {
        return Fetched::Failed(StatusCode::BAD_REQUEST, format!("bad request URI {uri:?}"));
    };
    let resp = match api.clone().oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = resp.status();
    let bytes = match axum::body::to_bytes(resp.into_body(), MAX_API_BODY).await {
        Ok(b) => b,
        Err(e) => return Fetched::Failed(StatusCode::BAD_GATEWAY, format!("reading {uri}: {e}")),
    };
    if status.is_success() {
        return match serde_json::from_slice(&bytes) {
            Ok(answer) => Fetched::Ok(answer),
            // The router is this build's own: a shape the page cannot
            // read is a bug, shown on the page rather than hidden.
            Err(e) => Fetched::Failed(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{uri} answered in an unexpected shape: {e}"),
            ),
        };
    }
    let message = serde_json::from_slice::<ErrorBody>(&bytes)
        .ok()
        .map(|body| body.error)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("{uri} answered {status}"));
    if status == StatusCode::NOT_FOUND {
        Fetched::Missing(message)
    } else {
        Fetched::Failed(status, message)
    }
}

/// What every page's header shows, and who is looking.
async fn chrome(ui: &Ui, access: Option<&Access>) -> pages::Chrome {
    let status = match fetch(&ui.api, "/v1/status").await {
        Fetched::Ok(v) => Some(v),
        _ => None,
    };
    pages::Chrome {
        status,
        session: access == Some(&Access::Session),
    }
}

/// `None` = go on; `Some(login page)` for a stranger on TCP.
fn login_needed(access: Option<&Access>) -> Option<Response> {
    (access == Some(&Access::Anonymous)).then(|| html(StatusCode::UNAUTHORIZED, pages::login()))
}

fn html(status: StatusCode, markup: maud::Markup) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        markup.into_string(),
    )
        .into_response()
}

/// Query keys the jobs page passes on to `GET /v1/jobs`.
const JOB_FILTERS: &[&str] = &[
    "status", "queue", "label", "name", "since", "after", "limit",
];

/// The jobs page's query, kept to the filters, empty values dropped.
fn job_query(raw: Option<&str>) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.unwrap_or("")).unwrap_or_default();
    pairs
        .into_iter()
        .filter(|(k, v)| JOB_FILTERS.contains(&k.as_str()) && !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim().to_string()))
        .collect()
}

async fn jobs_page(
    State(ui): State<Ui>,
    access: Option<axum::Extension<Access>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let access = access.map(|a| a.0);
    if let Some(r) = login_needed(access.as_ref()) {
        return r;
    }
    let query = job_query(raw.as_deref());
    let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
    let uri = if encoded.is_empty() {
        "/v1/jobs".to_string()
    } else {
        format!("/v1/jobs?{encoded}")
    };
    let jobs = fetch(&ui.api, &uri).await;
    let chrome = chrome(&ui, access.as_ref()).await;
    html(StatusCode::OK, pages::jobs(&chrome, &query, &jobs))
}

async fn job_page(
    State(ui): State<Ui>,
    access: Option<axum::Extension<Access>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let access = access.map(|a| a.0);
    if let Some(r) = login_needed(access.as_ref()) {
        return r;
    }
    let path = format!(
        "/v1/jobs/{}",
        serde_urlencoded::to_string([("", &id)])
            .unwrap_or_default()
            .trim_start_matches('=')
    );
    let job = fetch(&ui.api, &path).await;
    let chrome = chrome(&ui, access.as_ref()).await;
    let status = match &job {
        Fetched::Missing(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    };
    html(status, pages::job(&chrome, &id, &job))
}

async fn queues_page(State(ui): State<Ui>, access: Option<axum::Extension<Access>>) -> Response {
    let access = access.map(|a| a.0);
    if let Some(r) = login_needed(access.as_ref()) {
        return r;
    }
    let queues = fetch(&ui.api, "/v1/queues").await;
    let chrome = chrome(&ui, access.as_ref()).await;
    html(StatusCode::OK, pages::queues(&chrome, &queues))
}

async fn schedules_page(State(ui): State<Ui>, access: Option<axum::Extension<Access>>) -> Response {
    let access = access.map(|a| a.0);
    if let Some(r) = login_needed(access.as_ref()) {
        return r;
    }
    let schedules = fetch(&ui.api, "/v1/schedules").await;
    let chrome = chrome(&ui, access.as_ref()).await;
    html(StatusCode::OK, pages::schedules(&chrome, &schedules))
}

async fn config_page(State(ui): State<Ui>, access: Option<axum::Extension<Access>>) -> Response {
    let access = access.map(|a| a.0);
    if let Some(r) = login_needed(access.as_ref()) {
        return r;
    }
    let config = fetch(&ui.api, "/v1/config").await;
    let chrome = chrome(&ui, access.as_ref()).await;
    html(StatusCode::OK, pages::config(&chrome, &config))
}

async fn missing_page(State(ui): State<Ui>, access: Option<axum::Extension<Access>>) -> Response {
    let access = access.map(|a| a.0);
    if let Some(r) = login_needed(access.as_ref()) {
        return r;
    }
    let chrome = chrome(&ui, access.as_ref()).await;
    html(StatusCode::NOT_FOUND, pages::not_found(&chrome))
}
