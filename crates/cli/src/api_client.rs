//! The client side of the daemon's API (SPEC §3.2).
//!
//! Client commands find the daemon from the same configuration the daemon
//! reads: `client.url` (or `OJ_DAEMON_URL`), else the daemon's own Unix
//! socket under `daemon.state_dir`. One reqwest client serves every
//! transport (Unix socket, plain HTTP, HTTPS with optional mTLS), and every
//! transport failure is turned here into one line a user can act on.
//!
//! Answers are read as the `oj-api` types the daemon writes; a refusal
//! keeps the daemon's [`ErrorBody`], and what the client says about it is
//! decided on its [`ErrorCode`], never on the words of its message.

use std::error::Error as StdError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oj_api::{ErrorBody, ErrorCode};
use oj_config::{Layer, Loaded, Secret};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::exit::{self, Failure};

mod transport;
#[allow(unused_imports)]
use transport::*;

/// How long a TCP connect (and TLS handshake) may take before the daemon
/// counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of a plain request/response exchange; streams have no bound.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the daemon is, parsed from `client.url` or the socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The daemon's Unix socket; no token is sent.
    Unix(PathBuf),
    /// `http://host:port[/prefix]`; a bearer token is sent.
    Http(String),
    /// `https://host:port[/prefix]`; TLS, then a bearer token.
    Https(String),
}

impl Endpoint {
    /// Parses a `client.url` value. `layer` names where it was set, for errors.
    pub fn parse_url(url: &str, layer: &Layer) -> Result<Endpoint, Failure> {
        let bad = |why: &str| {
            Failure::config(format!(
                "client.url ({layer}) = {url:?} {why}; use unix:///path/to/daemon.sock, \
                 http://host:port or https://host:port"
            ))
        };
        let url = url.trim();
        if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad("needs an absolute socket path after unix://"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let (scheme_https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("has an unknown scheme"));
        };
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        if reqwest::Url::parse(url).is_err() {
            return Err(bad("is not a valid URL"));
        }
        let base = url.trim_end_matches('/').to_string();
        Ok(if scheme_https {
            Endpoint::Https(base)
        } else {
            Endpoint::Http(base)
        })
    }

    /// The address as a user would type it back (`client.url` form).
    pub fn display(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("unix://{}", p.display()),
            Endpoint::Http(u) | Endpoint::Https(u) => u.clone(),
        }
    }

    fn is_tcp(&self) -> bool {
        !matches!(self, Endpoint::Unix(_))
    }

    /// The URL of an API path (`/v1/...`) on this endpoint.
    fn url(&self, path: &str) -> String {
        match self {
            // The host part is ignored on a Unix socket; reqwest needs one.
            Endpoint::Unix(_) => format!("http://localhost{path}"),
            Endpoint::Http(base) | Endpoint::Https(base) => format!("{base}{path}"),
        }
    }
}

/// Where the daemon is for this configuration: `client.url`, else the
/// daemon's Unix socket.
pub fn endpoint(loaded: &Loaded) -> Result<Endpoint, Failure> {
    let cfg = &loaded.config;
    if let Some(url) = &cfg.client.url {
        return Endpoint::parse_url(url, loaded.source("client.url"));
    }
    match cfg.unix_socket_path() {
        Some(path) => Ok(Endpoint::Unix(path)),
        None => Err(Failure::config(format!(
            "no daemon address: client.url is unset and listen.unix_socket is off ({}); \
             set client.url or OJ_DAEMON_URL (e.g. https://host:7777)",
            loaded.source("listen.unix_socket")
        ))),
    }
}

/// Which setting a token came from, so a 401 can say which one to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOrigin {
    /// The config key (`client.token`, `listen.auth_token_file`, …).
    pub key: &'static str,
    /// The layer that set it (prints as `env OJ_AUTH_TOKEN`, `file /x.toml`, …).
    pub layer: Layer,
}

impl std::fmt::Display for TokenOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.key, self.layer)
    }
}

/// The bearer token for TCP: `client.token`, else `client.token_file`, else
/// `listen.auth_token`, else `listen.auth_token_file` (file contents
/// trimmed). `read` reads a token file (injected so tests need no files).
pub fn resolve_token(
    loaded: &Loaded,
    read: impl Fn(&Path) -> io::Result<String>,
) -> Result<Option<(Secret, TokenOrigin)>, Failure> {
    let cfg = &loaded.config;
    let origin = |key: &'static str| TokenOrigin {
        key,
        layer: loaded.source(key).clone(),
    };
    let from_file = |key: &'static str, path: &Path| -> Result<(Secret, TokenOrigin), Failure> {
        let o = origin(key);
        let text = read(path).map_err(|e| {
            let written = loaded
                .written(key)
                .map(|w| format!(", written {w:?}"))
                .unwrap_or_default();
            Failure::config(format!(
                "cannot read the token file {} set by {o}{written}: {e}; fix the path, or set \
                 client.token / OJ_AUTH_TOKEN",
                path.display()
            ))
        })?;
        let token = Secret::from_file_contents(&text);
        if token.is_empty() {
            return Err(Failure::config(format!(
                "the token file {} set by {o} is empty; write the daemon's token into it",
                path.display()
            )));
        }
        Ok((token, o))
    };
    if let Some(t) = &cfg.client.token {
        return Ok(Some((t.trimmed(), origin("client.token"))));
    }
    if let Some(p) = &cfg.client.token_file {
        return from_file("client.token_file", p).map(Some);
    }
    if let Some(t) = &cfg.listen.auth_token {
        return Ok(Some((t.trimmed(), origin("listen.auth_token"))));
    }
    if let Some(p) = &cfg.listen.auth_token_file {
        return from_file("listen.auth_token_file", p).map(Some);
    }
    Ok(None)
}

/// The rustls config for `https://` URLs, built by the adapters crate so
/// client and daemon read PEM files the same way: `client.ca` (only those
/// roots) or the platform verifier, plus `client.cert`/`client.key` for mTLS.
fn tls_config(cfg: &oj_config::ClientConfig) -> Result<rustls::ClientConfig, Failure> {
    oj_adapters::tls::client_config(cfg).map_err(|e| Failure::config(e.to_string()))
}

/// The TLS setup of a client that never speaks TLS (Unix socket, `http://`):
/// no trust roots at all. Without it reqwest would build the platform
/// verifier and load every system root certificate on each `oj` call — most
/// of the cost of `oj status` — for a connection that never uses them.
fn no_tls() -> Result<rustls::ClientConfig, Failure> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
        .map_err(|e| Failure::runtime(format!("cannot set up the API client: {e}")))
}

/// What the advice for a failed connection depends on: which TLS files the
/// client uses, and whether Kubernetes words make sense to this user.
#[derive(Debug, Clone, Default)]
pub struct TransportHints {
    /// `client.ca`, when set.
    pub ca: Option<PathBuf>,
    /// `client.cert`, when set (mTLS).
    pub client_cert: Option<PathBuf>,
    /// The profile is `kubernetes` (or extends it): hints may name Secrets and pods.
    pub kubernetes: bool,
    /// The TLS setup of an `https://` endpoint, to probe a handshake that
    /// ended without a reason.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl TransportHints {
    fn from_loaded(loaded: &Loaded) -> Self {
        TransportHints {
            ca: loaded.config.client.ca.clone(),
            client_cert: loaded.config.client.cert.clone(),
            kubernetes: loaded.base == oj_config::BuiltinProfile::Kubernetes,
            tls: None,
        }
    }
}

/// A connection to the daemon's API.
pub struct ApiClient {
    http: reqwest::Client,
    endpoint: Endpoint,
    /// What a transport failure's advice depends on.
    hints: TransportHints,
    token: Option<(Secret, TokenOrigin)>,
}

/// A failed API call, before it becomes a [`Failure`].
#[derive(Debug)]
pub enum ApiError {
    /// The daemon answered with a non-success status; its body says why
    /// (`code` for the client, `error` for the user).
    Status { status: StatusCode, body: ErrorBody },
    /// Anything that is already a user-facing failure (unreachable, TLS, …).
    Failure(Failure),
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        ApiError::Failure(f)
    }
}

impl ApiClient {
    /// Connects (lazily) to the daemon named by the configuration.
    pub fn from_loaded(loaded: &Loaded) -> Result<ApiClient, Failure> {
        Self::build(loaded, false)
    }

    /// Like [`from_loaded`](Self::from_loaded), but every request opens a
    /// new connection: a kept-alive one can outlive the listener it came
    /// from, which would hide that a stopping daemon has gone.
    pub fn fresh_connections(loaded: &Loaded) -> Result<ApiClient, Failure> {
        Self::build(loaded, true)
    }

    fn build(loaded: &Loaded, fresh: bool) -> Result<ApiClient, Failure> {
        let endpoint = endpoint(loaded)?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("oj/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT);
        if fresh {
            builder = builder.pool_max_idle_per_host(0);
        }
        let mut token = None;
        let mut hints = TransportHints::from_loaded(loaded);
        match &endpoint {
            Endpoint::Unix(path) => {
                builder = builder
                    .unix_socket(path.clone())
                    .tls_backend_preconfigured(no_tls()?);
            }
            Endpoint::Http(_) => {
                token = resolve_token(loaded, read_token_file)?;
                builder = builder.tls_backend_preconfigured(no_tls()?);
            }
            Endpoint::Https(_) => {
                token = resolve_token(loaded, read_token_file)?;
                let tls = tls_config(&loaded.config.client)?;
                hints.tls = Some(Arc::new(tls.clone()));
                builder = builder.tls_backend_preconfigured(tls);
            }
        }
        let http = builder.build().map_err(|e| {
            Failure::runtime(format!("cannot set up the API client: {}", chain(&e)))
        })?;
        Ok(ApiClient {
            http,
            hints,
            endpoint,
            token,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends one request; a non-2xx answer becomes [`ApiError::Status`].
    /// `timeout = false` for streams that last as long as a job.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: bool,
    ) -> Result<reqwest::Response, ApiError> {
        self.send_keyed(method, path, body, timeout, None).await
    }

    /// [`send`](Self::send) with an `Idempotency-Key` header value.
    async fn send_keyed<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: bool,
        idempotency_key: Option<&str>,
    ) -> Result<reqwest::Response, ApiError> {
        let mut req = self.http.request(method, self.endpoint.url(path));
        if let Some(key) = idempotency_key {
            req = req.header(oj_api::IDEMPOTENCY_KEY, key);
        }
        if timeout {
            req = req.timeout(REQUEST_TIMEOUT);
        }
        if self.endpoint.is_tcp()
            && let Some((token, _)) = &self.token
        {
            req = req.bearer_auth(token.expose());
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(ApiError::Status {
            status,
            body: ErrorBody::from_text(&text),
        })
    }

    /// A request for `path` (and query) on the daemon, with the token where
    /// one is needed and no timeout: `oj ui` streams it both ways itself.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, self.endpoint.url(path));
        if self.endpoint.is_tcp()
            && let Some((token, _)) = &self.token
        {
            req = req.bearer_auth(token.expose());
        }
        req
    }

    /// GET a JSON answer as `T`: an `oj-api` type, or a
    /// [`serde_json::Value`] to print it as it came.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let resp = self.send(Method::GET, path, None, true).await?;
        self.json(resp).await
    }

    /// POST a JSON body and read the JSON answer as `T` (an empty answer
    /// is `null`).
    pub async fn post_json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        self.post_json_keyed(path, body, None).await
    }

    /// POST a JSON body with an `Idempotency-Key` header (already quoted).
    pub async fn post_json_keyed<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
        idempotency_key: Option<&str>,
    ) -> Result<T, ApiError> {
        let resp = self
            .send_keyed(Method::POST, path, Some(body), true, idempotency_key)
            .await?;
        self.json(resp).await
    }

    /// DELETE a resource (the answer's body, if any, is ignored).
    pub async fn delete(&self, path: &str) -> Result<(), ApiError> {
        self.send(Method::DELETE, path, None, true).await.map(drop)
    }

    /// GET a body to be streamed chunk by chunk (logs).
    pub async fn get_stream(&self, path: &str) -> Result<reqwest::Response, ApiError> {
        self.send(Method::GET, path, None, false).await
    }

    async fn json<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T, ApiError> {
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ApiError::Failure(self.transport_error(&e).into_failure(self)))?;
        let value = if bytes.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::Failure(Failure::runtime(format!(
                    "the daemon at {} sent an answer that is not JSON ({e}); is this an oj daemon?",
                    self.endpoint.display()
                )))
            })?
        };
        T::deserialize(value).map_err(|e| ApiError::Failure(self.shape_failure(&e)))
    }

    /// An answer already read as JSON (kept to print it as it came), as
    /// the `oj-api` type `T` (to decide on it or render it).
    pub fn read_as<T: DeserializeOwned>(&self, value: &serde_json::Value) -> Result<T, Failure> {
        T::deserialize(value).map_err(|e| self.shape_failure(&e))
    }

    fn shape_failure(&self, e: &serde_json::Error) -> Failure {
        Failure::runtime(format!(
            "the daemon at {} sent an answer of an unexpected shape ({e}); is it an oj daemon \
             of a compatible version?",
            self.endpoint.display()
        ))
    }

    /// A transport failure (no answer at all) as a user-facing failure.
    pub fn transport_error(&self, e: &reqwest::Error) -> ApiError {
        ApiError::Failure(classify_transport(&self.endpoint, e, &self.hints))
    }

    /// The line for a status the caller did not handle itself.
    pub fn status_failure(&self, status: StatusCode, body: &ErrorBody) -> Failure {
        let addr = self.endpoint.display();
        let message = body.error.as_str();
        match status {
            StatusCode::UNAUTHORIZED => Failure::runtime(match &self.token {
                Some((_, origin)) => format!(
                    "the daemon at {addr} rejected the token from {origin} (401 Unauthorized); \
                     set client.token or OJ_AUTH_TOKEN to the daemon's listen.auth_token"
                ),
                None => format!(
                    "the daemon at {addr} requires a token (401 Unauthorized) and none is set; \
                     set OJ_AUTH_TOKEN, client.token or client.token_file"
                ),
            }),
            StatusCode::SERVICE_UNAVAILABLE => {
                let what = match body.code {
                    ErrorCode::Standby => {
                        "is on standby (another instance holds the lock); retry, or reach the leader"
                    }
                    ErrorCode::Draining => {
                        "is draining and accepts no new work; retry once it has restarted"
                    }
                    _ => "is not accepting work right now",
                };
                Failure::runtime(format!(
                    "the daemon at {addr} {what} (503{})",
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(": {message}")
                    }
                ))
            }
            StatusCode::PAYLOAD_TOO_LARGE => Failure::runtime(format!(
                "the daemon at {addr} refused the request as too large (413); \
                 its limit is listen.max_request_bytes"
            )),
            _ => Failure::runtime(format!(
                "the daemon at {addr} answered {}{}",
                status_text(status),
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            )),
        }
    }
}

impl ApiError {
    /// The daemon's body when it refused with one of `codes`; any other
    /// error comes back as it was. Commands react to a refusal by its code
    /// (a newer daemon may reword the message, or answer a refusal with
    /// another status), never by the words of its message.
    pub fn refusal(self, codes: &[ErrorCode]) -> Result<ErrorBody, ApiError> {
        match self {
            ApiError::Status { body, .. } if codes.contains(&body.code) => Ok(body),
            other => Err(other),
        }
    }

    /// The code of the daemon's refusal; `None` when it did not answer.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            ApiError::Status { body, .. } => Some(&body.code),
            ApiError::Failure(_) => None,
        }
    }

    /// The failure to report, for errors the caller does not handle itself.
    pub fn into_failure(self, client: &ApiClient) -> Failure {
        match self {
            ApiError::Status { status, body } => client.status_failure(status, &body),
            ApiError::Failure(f) => f,
        }
    }
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(r) => format!("{} {r}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

fn read_token_file(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(setup: impl FnOnce(&mut oj_config::RuntimeConfig)) -> Loaded {
        let env = oj_config::Environment::new([("HOME", "/nonexistent-home")], "h");
        let mut loaded =
            oj_config::load(&oj_config::LoadOptions::default(), &env).expect("defaults load");
        setup(&mut loaded.config);
        loaded
    }

    fn reader(path: &Path) -> io::Result<String> {
        match path.to_str() {
            Some("/client.tok") => Ok("from-client-file\n".into()),
            Some("/listen.tok") => Ok("  from-listen-file\n".into()),
            Some("/empty.tok") => Ok("\n".into()),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "No such file")),
        }
    }

    fn token(l: &Loaded) -> Option<(String, &'static str)> {
        resolve_token(l, reader)
            .expect("resolves")
            .map(|(s, o)| (s.expose().to_string(), o.key))
    }

    #[test]
    fn token_order_client_token_first() {
        let l = loaded(|c| {
            c.client.token = Some(Secret::new("ct"));
            c.client.token_file = Some("/client.tok".into());
            c.listen.auth_token = Some(Secret::new("lt"));
            c.listen.auth_token_file = Some("/listen.tok".into());
        });
        assert_eq!(token(&l), Some(("ct".into(), "client.token")));
    }

    #[test]
    fn token_order_client_file_before_listen() {
        let l = loaded(|c| {
            c.client.token_file = Some("/client.tok".into());
            c.listen.auth_token = Some(Secret::new("lt"));
            c.listen.auth_token_file = Some("/listen.tok".into());
        });
        assert_eq!(
            token(&l),
            Some(("from-client-file".into(), "client.token_file"))
        );
    }

    #[test]
    fn token_order_listen_token_before_listen_file() {
        let l = loaded(|c| {
            c.listen.auth_token = Some(Secret::new("lt"));
            c.listen.auth_token_file = Some("/listen.tok".into());
        });
        assert_eq!(token(&l), Some(("lt".into(), "listen.auth_token")));
        let l = loaded(|c| c.listen.auth_token_file = Some("/listen.tok".into()));
        assert_eq!(
            token(&l),
            Some(("from-listen-file".into(), "listen.auth_token_file"))
        );
    }

    #[test]
    fn no_token_anywhere() {
        let l = loaded(|c| {
            c.client.token = None;
            c.listen.auth_token_file = None;
        });
        assert_eq!(token(&l), None);
    }

    #[test]
    fn unreadable_or_empty_token_file_names_key_and_path() {
        let l = loaded(|c| c.client.token_file = Some("/missing.tok".into()));
        let err = resolve_token(&l, reader).expect_err("missing file");
        assert_eq!(err.code, exit::CONFIG);
        assert!(err.message.contains("/missing.tok"), "{}", err.message);
        assert!(err.message.contains("client.token_file"), "{}", err.message);
        let l = loaded(|c| c.listen.auth_token_file = Some("/empty.tok".into()));
        let err = resolve_token(&l, reader).expect_err("empty file");
        assert!(err.message.contains("empty"), "{}", err.message);
    }

    #[test]
    fn urls_parse_into_endpoints() {
        assert_eq!(
            Endpoint::parse_url("unix:///run/oj.sock", &Layer::Flag(oj_config::Flag::Set)).unwrap(),
            Endpoint::Unix("/run/oj.sock".into())
        );
        assert_eq!(
            Endpoint::parse_url("http://127.0.0.1:7777/", &Layer::Default).unwrap(),
            Endpoint::Http("http://127.0.0.1:7777".into())
        );
        assert_eq!(
            Endpoint::parse_url("https://oj.example:7777", &Layer::Default).unwrap(),
            Endpoint::Https("https://oj.example:7777".into())
        );
        for bad in [
            "ftp://x",
            "unix://relative.sock",
            "http://",
            "127.0.0.1:7777",
        ] {
            let e = Endpoint::parse_url(bad, &Layer::Env("OJ_DAEMON_URL".into())).expect_err(bad);
            assert_eq!(e.code, exit::CONFIG);
            assert!(e.message.contains("env OJ_DAEMON_URL"), "{}", e.message);
        }
    }

    #[test]
    fn endpoint_defaults_to_the_socket_in_state_dir() {
        let l = loaded(|c| {
            c.client.url = None;
            c.daemon.state_dir = "/s".into();
            c.listen.unix_socket = Some("daemon.sock".into());
        });
        assert_eq!(
            endpoint(&l).unwrap(),
            Endpoint::Unix("/s/daemon.sock".into())
        );
        let l = loaded(|c| c.client.url = Some("http://127.0.0.1:1".into()));
        assert_eq!(
            endpoint(&l).unwrap(),
            Endpoint::Http("http://127.0.0.1:1".into())
        );
    }

    #[test]
    fn certificate_names_are_shown_bare() {
        assert_eq!(bare_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(bare_name("IpAddress(10.0.0.1)"), "IpAddress(10.0.0.1)");
        assert_eq!(bare_name("oj.example"), "oj.example");
    }

    #[test]
    fn alerts_are_read_back_from_their_text() {
        assert_eq!(
            alert_in_text("error sending request: received fatal alert: CertificateRequired"),
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
            ))
        );
        assert_eq!(alert_in_text("connection closed"), None);
    }

    /// A daemon on loopback that answers every request with `status` and
    /// the body `{"code": code, "error": message}`.
    async fn fake_daemon(status: u16, code: &str, message: &str) -> String {
        let body = serde_json::json!({ "error": message, "code": code }).to_string();
        let status = axum::http::StatusCode::from_u16(status).unwrap();
        let app = axum::Router::new().fallback(move || {
            let body = body.clone();
            async move {
                (
                    status,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// What `oj` says when the fake daemon refuses a request.
    async fn refusal(status: u16, code: &str, message: &str) -> Failure {
        let url = fake_daemon(status, code, message).await;
        let l = loaded(|c| {
            c.client.url = Some(url);
            c.client.token = None;
            c.client.token_file = None;
            c.listen.auth_token = None;
            c.listen.auth_token_file = None;
        });
        let client = ApiClient::from_loaded(&l).unwrap();
        let e = client
            .get_json::<serde_json::Value>("/v1/jobs")
            .await
            .expect_err("refused");
        e.into_failure(&client)
    }

    #[tokio::test]
    async fn standby_and_draining_are_told_by_the_code_not_the_words() {
        let f = refusal(503, "standby", "x").await;
        assert!(
            f.message
                .contains("is on standby (another instance holds the lock)"),
            "{}",
            f.message
        );
        assert!(f.message.ends_with("(503: x)"), "{}", f.message);
        let f = refusal(503, "draining", "x").await;
        assert!(
            f.message.contains("is draining and accepts no new work"),
            "{}",
            f.message
        );
        // Words alone decide nothing: a message that names standby with
        // another code is not taken for one.
        let f = refusal(503, "quota", "the standby leader is draining").await;
        assert!(
            f.message.contains("is not accepting work right now"),
            "{}",
            f.message
        );
    }

    #[test]
    fn error_bodies_become_one_line() {
        let message = |text: &str| ErrorBody::from_text(text).error;
        assert_eq!(message(r#"{"error":"no job abc"}"#), "no job abc");
        assert_eq!(message("plain\nsecond"), "plain");
        assert_eq!(message(""), "");
    }
}
