//! `oj ui [--no-open]` (SPEC §8.4): the web UI for a daemon a browser cannot
//! reach by itself (one on its Unix socket, or a remote one whose token the
//! user should not paste into a page). A listener on 127.0.0.1 (a free
//! port) forwards every request to the daemon the client reaches, with the
//! client's credentials. It answers only a browser that redeemed the
//! one-time code (128 random bits, single use, 60 s) and so holds the
//! session cookie; the cookie rules of the daemon's own listeners apply
//! (HttpOnly, SameSite=Strict, Origin must be this listener for changes).
//! The code reaches the browser through a 0600 file in `$XDG_RUNTIME_DIR`,
//! never through a command line another user could read in `ps`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use oj_api::ErrorCode;
use oj_config::{Environment, LoadOptions};
use oj_daemon::ui::session::{self, Sessions};

use crate::api_client::ApiClient;
use crate::cli::UiArgs;
use crate::config_cmds;
use crate::exit::{self, Failure};

/// How long the one-time code is good.
const CODE_TTL: Duration = Duration::from_secs(60);
/// Largest request body forwarded (the daemon's own default limit).
const MAX_BODY: usize = 1 << 20;
/// Request headers passed on to the daemon.
const FORWARD_REQUEST: &[header::HeaderName] =
    &[header::CONTENT_TYPE, header::ACCEPT, header::IF_NONE_MATCH];
/// Response headers passed back to the browser.
const FORWARD_RESPONSE: &[header::HeaderName] = &[
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::CONTENT_SECURITY_POLICY,
    header::X_CONTENT_TYPE_OPTIONS,
    header::X_FRAME_OPTIONS,
    header::REFERRER_POLICY,
    header::LOCATION,
    header::ALLOW,
];

struct Proxy {
    client: ApiClient,
    sessions: Sessions,
    cookie: String,
    ttl: Duration,
    code: OneTimeCode,
    /// The redirect file, removed once the code is used or stale.
    redirect: Mutex<Option<PathBuf>>,
    origin: String,
}

impl Proxy {
    fn forget_redirect(&self) {
        if let Some(path) = self
            .redirect
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The unredeemed code and when it was drawn; `None` once used.
struct OneTimeCode(Mutex<Option<(String, Instant)>>);

impl OneTimeCode {
    /// Takes the code if `given` is it and it is fresh (single use).
    fn redeem(&self, given: &str, now: Instant) -> bool {
        let mut code = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let ok = match &*code {
            Some((c, at)) => {
                now.duration_since(*at) < CODE_TTL && same(c.as_bytes(), given.as_bytes())
            }
            None => false,
        };
        if ok {
            *code = None;
        }
        ok
    }
}

/// Constant-time equality (the length may differ early).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn run(args: UiArgs, opts: &LoadOptions, env: &Environment) -> Result<i32, Failure> {
    let loaded = config_cmds::load_for_client(opts, env)?;
    let client = ApiClient::from_loaded(&loaded)?;
    let ttl = loaded.config.ui.session_ttl;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))?;
    let runtime_dir = env
        .get("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    rt.block_on(serve(client, ttl, args.no_open, runtime_dir))
}

async fn serve(
    client: ApiClient,
    ttl: Duration,
    no_open: bool,
    runtime_dir: Option<PathBuf>,
) -> Result<i32, Failure> {
    // The daemon must answer before a browser is sent anywhere.
    client
        .get_json::<oj_api::Status>("/v1/status")
        .await
        .map_err(|e| e.into_failure(&client))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Failure::runtime(format!("cannot listen on 127.0.0.1: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::runtime(format!("cannot read the listener's port: {e}")))?
        .port();
    let code = session::random_hex(16)
        .map_err(|e| Failure::runtime(format!("cannot draw a random code: {e}")))?;
    let url = format!("http://127.0.0.1:{port}/ui/redeem?code={code}");
    let daemon = client.endpoint().display();
    let proxy = Arc::new(Proxy {
        client,
        sessions: Sessions::default(),
        cookie: session::cookie_name(false, port),
        ttl,
        code: OneTimeCode(Mutex::new(Some((code, Instant::now())))),
        redirect: Mutex::new(None),
        origin: format!("127.0.0.1:{port}"),
    });
    if no_open {
        println!("{url}");
        eprintln!(
            "oj ui: the web UI of {daemon} is at http://127.0.0.1:{port}/ui/; open the URL above within 60 s (it works once). Ctrl-C ends oj ui."
        );
    } else {
        let file = write_redirect(runtime_dir.as_deref(), &url)?;
        *proxy.redirect.lock().unwrap_or_else(|p| p.into_inner()) = Some(file.clone());
        match open_browser(&file) {
            Ok(()) => eprintln!(
                "oj ui: the web UI of {daemon} is at http://127.0.0.1:{port}/ui/ (opening your browser). Ctrl-C ends oj ui."
            ),
            Err(e) => {
                proxy.forget_redirect();
                println!("{url}");
                eprintln!(
                    "oj ui: cannot open a browser ({e}); open the URL above within 60 s (it works once). Ctrl-C ends oj ui."
                );
            }
        }
        let p = proxy.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CODE_TTL).await;
            p.forget_redirect();
        });
    }
    let app = Router::new().fallback(handle).with_state(proxy.clone());
    let result = tokio::select! {
        r = axum::serve(listener, app) => r.map_err(|e| Failure::runtime(format!("the UI listener failed: {e}"))),
        _ = shutdown_signal() => Ok(()),
    };
    proxy.forget_redirect();
    result.map(|()| exit::OK)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// The 0600 file that sends the browser to the one-time URL.
fn write_redirect(runtime_dir: Option<&Path>, url: &str) -> Result<PathBuf, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = runtime_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let name = session::random_hex(8)
        .map_err(|e| Failure::runtime(format!("cannot draw a random name: {e}")))?;
    let path = dir.join(format!("oj-ui-{name}.html"));
    let html = format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"refresh\" content=\"0;url={url}\">\n<title>oj ui</title>\n<p><a href=\"{url}\">Open the oj web UI</a></p>\n"
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| {
            Failure::runtime(format!(
                "cannot write the browser's redirect file {}: {e}; use `oj ui --no-open` and open the printed URL yourself",
                path.display()
            ))
        })?;
    f.write_all(html.as_bytes())
        .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

fn open_browser(file: &Path) -> std::io::Result<()> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let status = std::process::Command::new(opener)
        .arg(file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| std::io::Error::new(e.kind(), format!("{opener}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{opener} exited with {status}"
        )))
    }
}

fn page(status: StatusCode, title: &str, body: &str, refresh: Option<&str>) -> Response {
    let refresh = refresh
        .map(|to| format!("<meta http-equiv=\"refresh\" content=\"0;url={to}\">\n"))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n{refresh}<title>{title}</title>\n<p>{body}</p>\n"
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security(h);
    r
}

fn security(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(oj_daemon::ui::CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn handle(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let now = Instant::now();
    let path = req.uri().path().to_string();
    if path == "/ui/redeem" {
        return redeem(&p, &req, now);
    }
    let cookie = session::cookie_value(req.headers(), &p.cookie).map(str::to_string);
    let Some(cookie) = cookie.filter(|c| p.sessions.valid(c, now)) else {
        return page(
            StatusCode::UNAUTHORIZED,
            "oj ui",
            "This listener answers only the browser that opened the link `oj ui` gave. Run <code>oj ui</code> again.",
            None,
        );
    };
    if !session::is_safe(req.method()) {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if !session::origin_allowed(origin, Some(&p.origin), false, None) {
            return oj_daemon::api::error(
                StatusCode::FORBIDDEN,
                ErrorCode::Origin,
                "a request that changes anything must come from the oj ui pages themselves",
            );
        }
    }
    if path == "/v1/session" {
        return match *req.method() {
            Method::DELETE => {
                p.sessions.end(&cookie);
                let mut r = StatusCode::NO_CONTENT.into_response();
                if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(&p.cookie, false)) {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                r
            }
            _ => oj_daemon::api::error(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::Method,
                "this browser is signed in through oj ui already; DELETE /v1/session ends it",
            ),
        };
    }
    forward(&p, req).await
}

fn redeem(p: &Proxy, req: &Request, now: Instant) -> Response {
    let pairs: Vec<(String, String)> =
        serde_urlencoded_pairs(req.uri().query().unwrap_or_default());
    let given = pairs
        .iter()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if !p.code.redeem(given, now) {
        return page(
            StatusCode::UNAUTHORIZED,
            "oj ui",
            "This link was used already or is older than 60 seconds. Run <code>oj ui</code> again.",
            None,
        );
    }
    p.forget_redirect();
    let value = match p.sessions.start(now, p.ttl) {
        Ok(v) => v,
        Err(e) => {
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "oj ui",
                &format!("cannot start a session: {e}"),
                None,
            );
        }
    };
    // A page of our own, not a redirect: the next navigation starts here,
    // so the SameSite=Strict cookie goes with it.
    let mut r = page(
        StatusCode::OK,
        "oj ui",
        "Signed in. <a href=\"/ui/\">Open the jobs</a>.",
        Some("/ui/"),
    );
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&p.cookie, &value, false, p.ttl)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `a=b&c=d` as pairs (percent-decoded).
fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn forward(p: &Proxy, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return oj_daemon::api::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                format!("the request body is larger than {MAX_BODY} bytes"),
            );
        }
    };
    let mut out = p.client.request(parts.method.clone(), &path);
    for name in FORWARD_REQUEST {
        if let Some(v) = parts.headers.get(name) {
            out = out.header(name, v);
        }
    }
    if let Some(v) = parts.headers.get("last-event-id") {
        out = out.header("last-event-id", v);
    }
    if !body.is_empty() {
        out = out.body(body);
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            return oj_daemon::api::error(
                StatusCode::BAD_GATEWAY,
                ErrorCode::Unreachable,
                format!(
                    "the daemon at {} did not answer: {e}",
                    p.client.endpoint().display()
                ),
            );
        }
    };
    let mut r = Response::builder().status(resp.status());
    for name in FORWARD_RESPONSE {
        if let Some(v) = resp.headers().get(name) {
            r = r.header(name, v);
        }
    }
    let stream = resp
        .bytes_stream()
        .map(|c| c.map_err(std::io::Error::other));
    r.body(Body::from_stream(stream)).unwrap_or_else(|e| {
        oj_daemon::api::error(StatusCode::BAD_GATEWAY, ErrorCode::Internal, e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_works_once_and_only_while_fresh() {
        let t0 = Instant::now();
        let code = OneTimeCode(Mutex::new(Some(("abc".to_string(), t0))));
        assert!(!code.redeem("abd", t0));
        assert!(!code.redeem("", t0));
        assert!(!code.redeem("abc", t0 + CODE_TTL));
        assert!(code.redeem("abc", t0 + Duration::from_secs(59)));
        assert!(!code.redeem("abc", t0), "single use");
    }

    #[test]
    fn the_redirect_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = write_redirect(Some(dir.path()), "http://127.0.0.1:1/ui/redeem?code=x").unwrap();
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let body = std::fs::read_to_string(&f).unwrap();
        assert!(body.contains("url=http://127.0.0.1:1/ui/redeem?code=x"));
    }
}
