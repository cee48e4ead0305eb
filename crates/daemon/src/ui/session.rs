//! UI sessions on a TCP listener (SPEC §8.4): `POST /v1/session` trades the
//! bearer token for a cookie, which then stands in for the token on
//! `/v1/*`; a cookie request that changes anything must come from the
//! listener's own origin (or `ui.origin`). Sessions live in memory, one
//! store per listener, bounded in number.
//!
//! The pure parts (cookie names and parsing, the Origin rule, the store)
//! are plain functions with unit tests; [`gate`] is the middleware that
//! replaces the plain token check when the UI is on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::error;
use crate::listen::Auth;

/// Sessions kept at most per listener; the oldest give way.
pub const MAX_SESSIONS: usize = 4096;

/// How a request got in; the UI pages read it (no extension = the Unix
/// socket, which needs no credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A valid bearer token.
    Token,
    /// A valid session cookie.
    Session,
    /// Nothing valid: only the UI's own pages and assets (the login page).
    Anonymous,
}

/// The name of the session cookie of a listener: `__Host-oj_session`
/// under TLS (the prefix makes the browser insist on Secure, Path=/ and
/// no Domain), `oj_session_<port>` on plain HTTP (browsers share cookies
/// between the ports of one host, so the port keeps listeners apart).
pub fn cookie_name(tls: bool, port: u16) -> String {
    if tls {
        "__Host-oj_session".to_string()
    } else {
        format!("oj_session_{port}")
    }
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(name: &str, value: &str, tls: bool, ttl: Duration) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        ttl.as_secs()
    )
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie(name: &str, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// 128 random bits (or more) as lower-case hex.
pub fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// `host:port` of an origin or a `Host` value, lower-cased, with the
/// scheme's default port filled in; `None` when it is not one.
pub fn authority(scheme_https: bool, hostport: &str) -> Option<String> {
    let hostport = hostport.trim().to_ascii_lowercase();
    if hostport.is_empty() || hostport.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let default = if scheme_https { 443 } else { 80 };
    // `[::1]:80`, `[::1]`, `host:80`, `host`
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') && (!h.contains(':') || h.ends_with(']')) => {
            (h.to_string(), p.parse::<u16>().ok()?)
        }
        _ => (hostport.clone(), default),
    };
    if host.is_empty() {
        return None;
    }
    Some(format!("{host}:{port}"))
}

/// An origin (`scheme://host[:port]`) as `(https, host:port)`.
pub fn parse_origin(origin: &str) -> Option<(bool, String)> {
    let origin = origin.trim().trim_end_matches('/');
    let (https, rest) = if let Some(r) = origin.strip_prefix("https://") {
        (true, r)
    } else {
        (false, origin.strip_prefix("http://")?)
    };
    Some((https, authority(https, rest)?))
}

/// The Origin rule: a cookie request that changes anything carries an
/// `Origin` naming the same host:port as its `Host` (and the listener's
/// scheme), or equal to `ui.origin`.
pub fn origin_allowed(
    origin: Option<&str>,
    host: Option<&str>,
    tls: bool,
    configured: Option<&str>,
) -> bool {
    let Some(given) = origin.and_then(parse_origin) else {
        return false; // none, "null", or garbage
    };
    if let Some(conf) = configured.and_then(parse_origin)
        && conf == given
    {
        return true;
    }
    match host.and_then(|h| authority(tls, h)) {
        Some(host) => given.0 == tls && given.1 == host,
        None => false,
    }
}

/// Whether a method changes nothing (RFC 9110 safe methods).
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// The sessions of one listener. Keys are SHA-256 digests of the cookie
/// values, so a lookup's timing says nothing about a valid value.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<[u8; 32], Instant>>>,
}

impl Sessions {
    /// Starts a session good until `now + ttl`; returns the cookie value.
    pub fn start(&self, now: Instant, ttl: Duration) -> std::io::Result<String> {
        let value = random_hex(32)?;
        let mut map = self.lock();
        map.retain(|_, until| *until > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, until)| **until).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(digest(&value), now + ttl);
        Ok(value)
    }

    /// Whether `value` is a live session.
    pub fn valid(&self, value: &str, now: Instant) -> bool {
        let key = digest(value);
        let mut map = self.lock();
        match map.get(&key) {
            Some(until) if *until > now => true,
            Some(_) => {
                map.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Ends a session (no-op if unknown).
    pub fn end(&self, value: &str) {
        self.lock().remove(&digest(value));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the TCP gate knows about its listener.
#[derive(Clone)]
pub struct Gate {
    pub auth: Auth,
    pub sessions: Sessions,
    pub tls: bool,
    pub cookie: Arc<str>,
    pub ttl: Duration,
    /// `ui.origin`, if set.
    pub origin: Option<Arc<str>>,
}

impl Gate {
    pub fn new(auth: Auth, tls: bool, port: u16, ui: &oj_config::UiConfig) -> Gate {
        Gate {
            auth,
            sessions: Sessions::default(),
            tls,
            cookie: Arc::from(cookie_name(tls, port)),
            ttl: ui.session_ttl,
            origin: ui.origin.as_deref().map(Arc::from),
        }
    }
}

/// Paths anyone may load: the UI's pages (which show the login form to a
/// stranger and nothing else) and its assets.
fn public(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// The 401, after reading (a bounded part of) the body, as the plain token
/// check does: an HTTP/2 client still sending would otherwise see a stream
/// reset instead of the answer.
async fn unauthorized(req: Request) -> Response {
    crate::api_errors::unauthorized(req).await
}

async fn forbidden_origin(req: Request) -> Response {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        axum::body::to_bytes(req.into_body(), 64 * 1024),
    )
    .await;
    error(
        StatusCode::FORBIDDEN,
        oj_api::ErrorCode::Origin,
        "a request with the session cookie that changes anything must come from this daemon's own pages (Origin must match Host, or ui.origin behind a proxy)",
    )
}

/// The TCP listener's door when the UI is on: the bearer token as before,
/// or the session cookie (with the Origin rule for changes); the UI's own
/// pages and assets open to anyone (they show a stranger only the login
/// form). Also answers `POST`/`DELETE /v1/session`.
pub async fn gate(State(g): State<Gate>, mut req: Request, next: Next) -> Response {
    let now = Instant::now();
    let path = req.uri().path().to_string();
    let bearer = g.auth.allows(&req);
    if path == "/v1/session" {
        return session_endpoint(&g, req, bearer, now).await;
    }
    let access = if bearer {
        Access::Token
    } else {
        match cookie_value(req.headers(), &g.cookie) {
            Some(v) if g.sessions.valid(v, now) => Access::Session,
            _ => Access::Anonymous,
        }
    };
    match access {
        Access::Anonymous if !public(&path) => return unauthorized(req).await,
        Access::Session if !is_safe(req.method()) && !origin_ok(&g, &req) => {
            return forbidden_origin(req).await;
        }
        _ => {}
    }
    req.extensions_mut().insert(access);
    next.run(req).await
}

fn origin_ok(g: &Gate, req: &Request) -> bool {
    let header_str = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host = header_str(header::HOST).or_else(|| req.uri().authority().map(|a| a.as_str()));
    origin_allowed(header_str(header::ORIGIN), host, g.tls, g.origin.as_deref())
}

async fn session_endpoint(g: &Gate, req: Request, bearer: bool, now: Instant) -> Response {
    match *req.method() {
        Method::POST => {
            if !bearer {
                return unauthorized(req).await;
            }
            let value = match g.sessions.start(now, g.ttl) {
                Ok(v) => v,
                Err(e) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        oj_api::ErrorCode::Internal,
                        format!("cannot draw a random session id: {e}"),
                    );
                }
            };
            let cookie = set_cookie(&g.cookie, &value, g.tls, g.ttl);
            let mut r = (
                StatusCode::CREATED,
                axum::Json(json!({ "cookie": &*g.cookie, "ttl_s": g.ttl.as_secs() })),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Method::DELETE => {
            let value = cookie_value(req.headers(), &g.cookie).map(str::to_string);
            let session = value.as_deref().is_some_and(|v| g.sessions.valid(v, now));
            if !bearer && !session {
                return unauthorized(req).await;
            }
            if session && !bearer && !origin_ok(g, &req) {
                return forbidden_origin(req).await;
            }
            if let Some(v) = value {
                g.sessions.end(&v);
            }
            let mut r = StatusCode::NO_CONTENT.into_response();
            if let Ok(v) = HeaderValue::from_str(&clear_cookie(&g.cookie, g.tls)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        _ => {
            if !bearer {
                return unauthorized(req).await;
            }
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                oj_api::ErrorCode::Method,
                "/v1/session takes POST (start a session, with the bearer token) or DELETE (end it)",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_names_follow_the_listener() {
        assert_eq!(cookie_name(true, 7777), "__Host-oj_session");
        assert_eq!(cookie_name(false, 7777), "oj_session_7777");
        let c = set_cookie("__Host-oj_session", "ab", true, Duration::from_secs(60));
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Secure",
            "Max-Age=60",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!set_cookie("x", "ab", false, Duration::from_secs(1)).contains("Secure"));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; oj_session_80=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie_value(&h, "oj_session_80"), Some("xyz"));
        assert_eq!(cookie_value(&h, "b"), Some("2"));
        assert_eq!(cookie_value(&h, "oj_session_81"), None);
        assert_eq!(cookie_value(&h, "oj_session"), None);
    }

    #[test]
    fn origin_must_match_host_or_the_configured_origin() {
        let ok = |o, h, tls, conf| origin_allowed(Some(o), Some(h), tls, conf);
        assert!(ok("http://127.0.0.1:7777", "127.0.0.1:7777", false, None));
        assert!(ok(
            "https://oj.example.com",
            "oj.example.com:443",
            true,
            None
        ));
        assert!(ok(
            "https://OJ.example.com:443",
            "oj.example.com",
            true,
            None
        ));
        assert!(ok("http://[::1]:8080", "[::1]:8080", false, None));
        assert!(!ok("http://127.0.0.1:7778", "127.0.0.1:7777", false, None));
        assert!(!ok("http://evil.example", "127.0.0.1:7777", false, None));
        assert!(!ok("https://127.0.0.1:7777", "127.0.0.1:7777", false, None));
        assert!(!ok("null", "127.0.0.1:7777", false, None));
        assert!(!origin_allowed(None, Some("127.0.0.1:7777"), false, None));
        let conf = Some("https://oj.example.com");
        assert!(ok("https://oj.example.com", "10.0.0.5:7777", false, conf));
        assert!(!ok("https://oj.example.org", "10.0.0.5:7777", false, conf));
    }

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let v = s.start(t0, Duration::from_secs(10)).unwrap();
        assert_eq!(v.len(), 64);
        assert!(s.valid(&v, t0 + Duration::from_secs(9)));
        assert!(!s.valid(&v, t0 + Duration::from_secs(10)));
        let w = s.start(t0, Duration::from_secs(10)).unwrap();
        assert_ne!(v, w);
        s.end(&w);
        assert!(!s.valid(&w, t0));
        assert!(!s.valid("nonsense", t0));
    }

    #[test]
    fn the_store_is_bounded() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let first = s.start(t0, Duration::from_secs(1)).unwrap();
        for i in 0..MAX_SESSIONS + 10 {
            s.start(t0, Duration::from_secs(100 + i as u64)).unwrap();
        }
        assert!(s.len() <= MAX_SESSIONS);
        assert!(!s.valid(&first, t0), "the oldest gave way");
    }
}
