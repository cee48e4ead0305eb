//! The API listeners: the Unix socket (mode 0600, no token) and TCP
//! (bearer token, optional TLS), plus the plain-HTTP admin listener. Each
//! accepted stream — Unix, TCP or TLS-over-TCP — is served by hyper-util's
//! auto (HTTP/1 + HTTP/2) connection builder, so TLS is only a wrapper
//! around the accepted stream.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use oj_adapters::tls::ServerTls;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::api::error;

/// Time a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bearer-token check for the TCP listener.
#[derive(Clone)]
pub struct Auth {
    token: Option<Arc<[u8]>>,
}

impl Auth {
    /// `None` = no token needed (`listen.insecure_no_auth` with no token set).
    pub fn new(token: Option<&str>) -> Auth {
        Auth {
            token: token.map(|t| Arc::from(t.as_bytes())),
        }
    }

    fn allows(&self, req: &Request) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            return false;
        };
        let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") else {
            return false;
        };
        // Constant time in the token's content; only the length can differ early.
        bool::from(given.ct_eq(expected))
    }
}

async fn require_token(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    if !auth.allows(&req) {
        let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    next.run(req).await
}

async fn limit_body(State(max): State<u64>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than listen.max_request_bytes ({max} bytes)"),
        );
    }
    next.run(req).await
}

/// Adds the request-size limit (all listeners) and, for TCP, the token check
/// (outermost, so an unauthenticated client learns nothing, not even 413).
pub fn wrap(router: Router, max_request_bytes: u64, auth: Option<Auth>) -> Router {
    let limit = usize::try_from(max_request_bytes).unwrap_or(usize::MAX);
    let router = router
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            max_request_bytes,
            limit_body,
        ));
    match auth {
        Some(auth) => router.layer(middleware::from_fn_with_state(auth, require_token)),
        None => router,
    }
}

/// Binds the Unix socket: removes a stale socket file first (the caller
/// holds the lock, so no live daemon owns it), then sets mode 0600.
pub fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            } else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way; remove it or set listen.unix_socket elsewhere",
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Binds a TCP address given as `host:port`.
pub async fn bind_tcp(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Resolves once `stop` is true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves one accepted stream until it closes or `stop` turns true.
async fn serve_stream<S>(io: S, router: Router, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let builder = Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_millis(200), conn).await;
        }
    }
}

/// Accepts on the Unix socket until `stop`.
pub async fn serve_unix(
    listener: UnixListener,
    path: PathBuf,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let conn_stop = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_stream(stream, router.clone(), conn_stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept on the Unix socket failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
}

/// Accepts on a TCP listener (TLS when `tls` is set) until `stop`.
pub async fn serve_tcp(
    listener: TcpListener,
    tls: Option<ServerTls>,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let conn_stop = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let router = router.clone();
                    let stop = conn_stop.clone();
                    match tls.clone() {
                        None => {
                            tokio::spawn(serve_stream(stream, router, stop));
                        }
                        Some(tls) => {
                            tokio::spawn(async move {
                                match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                                    Ok(Ok(s)) => serve_stream(s, router, stop).await,
                                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                                }
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept on the TCP listener failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut stop) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> Request {
        let mut b = Request::builder().uri("/v1/status");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn bearer_token_must_match_exactly() {
        let auth = Auth::new(Some("s3cret-token"));
        assert!(auth.allows(&req(Some("Bearer s3cret-token"))));
        assert!(!auth.allows(&req(None)));
        assert!(!auth.allows(&req(Some("Bearer s3cret-tokem"))));
        assert!(!auth.allows(&req(Some("Bearer s3cret-token2"))));
        assert!(!auth.allows(&req(Some("Basic s3cret-token"))));
        assert!(Auth::new(None).allows(&req(None)));
    }
}
