//! The API listeners: the Unix socket (mode 0600, no token) and TCP
//! (bearer token, optional TLS), plus the plain-HTTP admin listener. Each
//! accepted stream — Unix, TCP or TLS-over-TCP — is served by hyper-util's
//! auto (HTTP/1 + HTTP/2) connection builder, so TLS is only a wrapper
//! around the accepted stream, and the token check is one middleware for
//! HTTP/1.1 and HTTP/2 alike.
//!
//! TCP is where strangers are, so TCP connections are bounded
//! ([`TcpLimits`]): a cap on open connections (a semaphore taken before
//! `accept`, so a flood waits in the kernel's backlog instead of eating the
//! file descriptors the Unix socket and the WAL need), a deadline for the
//! first request head, and an idle timeout between requests. Failed accepts
//! are logged once a minute with a count, not once each.
//!
//! Every listener — TCP, admin and the Unix socket — has a cap and the same
//! deadlines, and at its cap a new connection takes the place of a silent
//! or idle one ([`crate::conn_slots`]) instead of waiting behind it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use oj_adapters::tls::ServerTls;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Notify, watch};

use crate::conn_slots::{Slots, View};

use crate::api::error;

/// Open connections at once on the admin port (probes and scrapers need a
/// handful; it is not counted against `listen.max_connections`).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Open connections at once on the Unix socket (local clients: `oj`
/// commands, followers of logs; not counted against
/// `listen.max_connections`).
pub const UNIX_MAX_CONNECTIONS: usize = 256;

/// How often a failing `accept` is logged at most.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(60);

/// Bearer-token check for the TCP listener.
#[derive(Clone)]
pub struct Auth {
    token: Option<Arc<[u8]>>,
}

impl Auth {
    /// `None` = no token needed (`listen.insecure_no_auth` with no token set).
    /// A token that is empty (or only whitespace) matches nothing: the
    /// config refuses it, and this is the second lock on that door.
    pub fn new(token: Option<&str>) -> Auth {
        Auth {
            token: token.map(|t| Arc::from(t.trim().as_bytes())),
        }
    }

    /// One reading of `Authorization` for HTTP/1.1 and HTTP/2 (HTTP/1.1
    /// parsing drops trailing spaces from a header value, HTTP/2 keeps
    /// them, so neither may decide what an empty token means).
    pub fn allows(&self, req: &Request) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        if expected.is_empty() {
            return false;
        }
        let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false; // none, or several: ambiguous
        };
        let Some(given) = bearer_token(value.as_bytes()) else {
            return false;
        };
        // Constant time in the token's content; only the length can differ early.
        bool::from(given.ct_eq(expected))
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 9110 §11.4;
/// surrounding whitespace is not part of it); `None` if there is none.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let split = value.iter().position(|b| *b == b' ' || *b == b'\t')?;
    let (scheme, rest) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"Bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

async fn require_token(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    let allowed = auth.allows(&req);
    if allowed && let Some(conn) = req.extensions().get::<Arc<Activity>>() {
        // A token holder's connection is no longer the first to give way.
        conn.authenticated.store(true, Ordering::SeqCst);
    }
    if !allowed {
        return crate::api_errors::unauthorized(req).await;
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
            oj_api::ErrorCode::TooLarge,
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
        .layer(middleware::from_fn(crate::api_errors::json_errors))
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

/// Limits of a TCP listener (`listen.header_timeout`, `listen.idle_timeout`,
/// `listen.max_connections` after [`effective_max_connections`]).
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl TcpLimits {
    pub fn from_config(l: &oj_config::ListenConfig, max_connections: usize) -> TcpLimits {
        TcpLimits {
            header_timeout: l.header_timeout,
            idle_timeout: l.idle_timeout,
            max_connections,
        }
    }
}

/// File descriptors kept free for everything that is not a TCP client: the
/// Unix socket's clients, the WAL and snapshot, step logs, pipes, the admin
/// port, the Kubernetes client.
pub const RESERVED_FDS: u64 = 128;

/// `listen.max_connections`, lowered so that the TCP clients alone can
/// never use up the open-file limit (`nofile`, after the soft limit was
/// raised to the hard one). Returns the cap and whether it was lowered.
pub fn effective_max_connections(configured: u32, nofile: Option<u64>) -> (usize, bool) {
    let configured = configured.max(1) as u64;
    let Some(limit) = nofile else {
        return (configured as usize, false);
    };
    let room = limit.saturating_sub(RESERVED_FDS).max(16);
    if configured > room {
        (room as usize, true)
    } else {
        (configured as usize, false)
    }
}

/// What a connection is doing, shared by its watchdog, its requests and
/// its listener's slots.
pub struct Activity {
    accepted: Instant,
    requests: AtomicU64,
    in_flight: AtomicUsize,
    /// Milliseconds after `accepted` when the last response body ended.
    last_done_ms: AtomicU64,
    /// Requests need a token here (TCP): until one passed, the connection
    /// counts as unauthenticated.
    needs_auth: std::sync::atomic::AtomicBool,
    authenticated: std::sync::atomic::AtomicBool,
    /// Told to close to make room for a new connection.
    evicted: std::sync::atomic::AtomicBool,
    evict_now: Notify,
}

/// Held by a request from its head until its response body is gone.
struct InFlight(Arc<Activity>);

impl Activity {
    fn new(accepted: Instant) -> Arc<Activity> {
        Arc::new(Activity {
            accepted,
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            needs_auth: false.into(),
            authenticated: false.into(),
            evicted: false.into(),
            evict_now: Notify::new(),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        if !self.needs_auth.load(Ordering::SeqCst) {
            self.authenticated.store(true, Ordering::SeqCst);
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::SeqCst)
    }

    /// Tells the connection to close (its watchdog drops it).
    pub fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        self.evict_now.notify_one();
    }

    /// What eviction looks at.
    pub fn view(&self, _now: Instant) -> View {
        View {
            accepted: self.accepted,
            authenticated: self.authenticated.load(Ordering::SeqCst),
            in_flight: self.in_flight.load(Ordering::SeqCst) > 0,
            idle_since: self.accepted
                + Duration::from_millis(self.last_done_ms.load(Ordering::SeqCst)),
        }
    }

    /// When the watchdog must look again, or `Err` with why the connection
    /// is to be closed now.
    fn next_check(&self, limits: &TcpLimits, now: Instant) -> Result<Instant, Closing> {
        if self.requests.load(Ordering::SeqCst) == 0 {
            let deadline = self.accepted + limits.header_timeout;
            return if now >= deadline {
                Err(Closing::NoRequestHead)
            } else {
                Ok(deadline)
            };
        }
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Ok(now + limits.idle_timeout);
        }
        let idle_since =
            self.accepted + Duration::from_millis(self.last_done_ms.load(Ordering::SeqCst));
        let deadline = idle_since + limits.idle_timeout;
        if now >= deadline {
            Err(Closing::Idle)
        } else {
            Ok(deadline)
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_done_ms.store(ms, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    NoRequestHead,
    Idle,
}

/// A response body that keeps its request counted as in flight until it is
/// sent or dropped (a followed log can stream for hours without being idle).
struct TrackedBody {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that must arrive whole within a deadline (the idle
/// timeout from the request head): a client trickling a body byte by byte
/// cannot hold a connection either.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within listen.idle_timeout")]
struct BodyTooSlow;

impl HttpBody for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTooSlow)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves one accepted stream until it closes or `stop` turns true; with
/// `limits`, also until it misses its header deadline or idles too long.
async fn serve_stream<S>(
    io: S,
    router: Router,
    mut stop: watch::Receiver<bool>,
    limits: Option<(TcpLimits, Arc<Activity>)>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    let Some((limits, activity)) = limits else {
        let service = TowerToHyperService::new(router);
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            res = conn.as_mut() => log_connection_end(res),
            () = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_millis(200), conn).await;
            }
        }
        return;
    };
    // The watchdog below bounds the first request head (header_timeout)
    // and the idle time between requests. On HTTP/1.1, hyper's head timer
    // starts as soon as the connection waits for the next request, so it is
    // set to the idle timeout: the next head must be complete by then.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout);
    builder.http2().timer(TokioTimer::new());
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let in_flight = tracked.begin();
        req.extensions_mut().insert(tracked.clone());
        let router = router.clone();
        let body_deadline = Box::pin(tokio::time::sleep(limits.idle_timeout));
        async move {
            use tower::ServiceExt;
            let req = req.map(|inner| {
                axum::body::Body::new(DeadlineBody {
                    inner,
                    deadline: body_deadline,
                })
            });
            let resp = router.oneshot(req).await?;
            Ok::<_, std::convert::Infallible>(resp.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    loop {
        let check = activity.next_check(&limits, Instant::now());
        let wake = match check {
            Ok(at) => tokio::time::Instant::from_std(at),
            Err(why) => {
                tracing::debug!(reason = ?why, "closing a TCP connection");
                if why == Closing::Idle {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_millis(200), conn).await;
                }
                return; // NoRequestHead: dropped, nothing to finish
            }
        };
        tokio::select! {
            res = conn.as_mut() => return log_connection_end(res),
            () = tokio::time::sleep_until(wake) => continue,
            () = activity.evict_now.notified() => {
                tracing::debug!("closing a silent or idle connection to make room for a new one");
                return;
            }
            () = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_millis(200), conn).await;
                return;
            }
        }
    }
}

fn log_connection_end<E: std::fmt::Display>(res: Result<(), E>) {
    if let Err(e) = res {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Logs failed accepts (`EMFILE` under a flood, above all) at most once per
/// [`ACCEPT_WARN_EVERY`], with how many were not logged in between.
struct AcceptWarnings {
    listener: &'static str,
    last: Option<Instant>,
    suppressed: u64,
}

impl AcceptWarnings {
    fn new(listener: &'static str) -> AcceptWarnings {
        AcceptWarnings {
            listener,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether this failure is logged (and resets the count if so).
    fn should_log(&mut self, now: Instant) -> bool {
        match self.last {
            Some(at) if now.duration_since(at) < ACCEPT_WARN_EVERY => {
                self.suppressed += 1;
                false
            }
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    async fn failed(&mut self, e: &std::io::Error) {
        if self.should_log(Instant::now()) {
            let not_logged = std::mem::take(&mut self.suppressed);
            tracing::warn!(
                listener = self.listener,
                error = %e,
                not_logged,
                "accept failed (too many open files? see `ulimit -n` and listen.max_connections); further failures in the next minute are only counted"
            );
        }
        // The error (EMFILE) persists until a descriptor is freed: back off.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `slots` has room (making it, at the cap, by evicting a
/// silent or idle connection); `false` when `stop` came first.
async fn room(
    slots: &Slots,
    name: &'static str,
    cap_warnings: &mut AcceptWarnings,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    while !slots.make_room(false) {
        // Every connection is busy: new clients wait in the backlog.
        if cap_warnings.should_log(Instant::now()) {
            tracing::warn!(
                listener = name,
                max_connections = slots.cap(),
                "connection cap reached and every connection is busy: new clients wait until one closes (logged at most once a minute)"
            );
        }
        tokio::select! {
            () = slots.freed.notified() => {}
            () = tokio::time::sleep(crate::conn_slots::RECHECK) => {}
            () = stopped(stop) => return false,
        }
    }
    true
}

/// Out of file descriptors (`EMFILE`, `ENFILE`): the accept fails until
/// one is freed, so a silent or idle connection gives way.
fn out_of_fds(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE) | Some(nix::libc::ENFILE)
    )
}

/// Accepts on the Unix socket until `stop`, at most `limits.max_connections`
/// at once, with the same deadlines as TCP. The socket file is removed by
/// the caller (only if it is still this daemon's).
pub async fn serve_unix(
    listener: UnixListener,
    router: Router,
    limits: TcpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let conn_stop = stop.clone();
    let slots = Slots::new(limits.max_connections);
    let mut warnings = AcceptWarnings::new("unix");
    let mut cap_warnings = AcceptWarnings::new("unix");
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stopped(&mut stop) => break,
        };
        match accepted {
            Ok((stream, _)) => {
                // Room only for a client that came: making it ahead of time
                // would evict a connection that has not sent its first
                // request yet.
                if !room(&slots, "unix", &mut cap_warnings, &mut stop).await {
                    break;
                }
                let activity = Activity::new(Instant::now());
                let slot = slots.register(activity.clone());
                let router = router.clone();
                let stop = conn_stop.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    serve_stream(stream, router, stop, Some((limits, activity))).await;
                });
            }
            Err(e) => {
                if out_of_fds(&e) {
                    slots.make_room(true);
                }
                warnings.failed(&e).await;
            }
        }
    }
}

/// Accepts on a TCP listener (TLS when `tls` is set) until `stop`, at most
/// `limits.max_connections` connections at once.
pub async fn serve_tcp(
    listener: TcpListener,
    tls: Option<ServerTls>,
    router: Router,
    limits: TcpLimits,
    name: &'static str,
    mut stop: watch::Receiver<bool>,
) {
    let conn_stop = stop.clone();
    let slots = Slots::new(limits.max_connections);
    let mut warnings = AcceptWarnings::new(name);
    let mut cap_warnings = AcceptWarnings::new(name);
    // The API's TCP listener is the one whose requests need a token: there
    // a connection counts as unauthenticated until one passed.
    let needs_auth = name == "tcp";
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if out_of_fds(&e) {
                    slots.make_room(true);
                }
                warnings.failed(&e).await;
                continue;
            }
        };
        // Room for the client that came: at the cap a silent or idle
        // connection gives way; when all are busy, this one waits (unserved)
        // and the next ones wait in the backlog. Making room before a client
        // came would evict one that has not sent its first request yet.
        if !room(&slots, name, &mut cap_warnings, &mut stop).await {
            break;
        }
        let activity = Activity::new(Instant::now());
        activity.needs_auth.store(needs_auth, Ordering::SeqCst);
        let slot = slots.register(activity.clone());
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = conn_stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_stream(stream, router, stop, Some((limits, activity))).await,
                Some(tls) => {
                    let handshake = tokio::time::timeout(limits.header_timeout, tls.accept(stream));
                    let evicted = activity.evict_now.notified();
                    let done = tokio::select! {
                        r = handshake => r,
                        () = evicted => return,
                    };
                    match done {
                        Ok(Ok(s)) => serve_stream(s, router, stop, Some((limits, activity))).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
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

    #[test]
    fn the_header_is_read_the_same_whatever_the_protocol_kept() {
        let auth = Auth::new(Some("s3cret-token"));
        // HTTP/2 keeps what HTTP/1.1 parsing trims; both must mean the same.
        assert!(auth.allows(&req(Some("Bearer s3cret-token  "))));
        assert!(auth.allows(&req(Some("bearer  s3cret-token"))));
        assert!(!auth.allows(&req(Some("Bearer "))));
        assert!(!auth.allows(&req(Some("Bearer"))));
        assert!(!auth.allows(&req(Some("Bearers3cret-token"))));
    }

    #[test]
    fn an_empty_or_blank_token_matches_nothing() {
        for blank in ["", "   "] {
            let auth = Auth::new(Some(blank));
            for given in [None, Some("Bearer "), Some("Bearer"), Some("Bearer    ")] {
                assert!(!auth.allows(&req(given)), "{blank:?} let {given:?} in");
            }
        }
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let auth = Auth::new(Some("s3cret-token"));
        let r = Request::builder()
            .uri("/v1/status")
            .header(header::AUTHORIZATION, "Bearer s3cret-token")
            .header(header::AUTHORIZATION, "Bearer other")
            .body(axum::body::Body::empty())
            .unwrap();
        assert!(!auth.allows(&r));
    }

    #[test]
    fn the_cap_leaves_room_under_the_open_file_limit() {
        assert_eq!(effective_max_connections(1024, None), (1024, false));
        assert_eq!(
            effective_max_connections(1024, Some(1 << 20)),
            (1024, false)
        );
        assert_eq!(effective_max_connections(1024, Some(1024)), (896, true));
        assert_eq!(effective_max_connections(10, Some(1024)), (10, false));
        assert_eq!(effective_max_connections(1024, Some(20)), (16, true));
    }

    fn limits() -> TcpLimits {
        TcpLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 8,
        }
    }

    #[test]
    fn a_connection_without_a_request_head_closes_at_the_header_deadline() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        assert_eq!(
            a.next_check(&limits(), t0),
            Ok(t0 + Duration::from_secs(10))
        );
        assert_eq!(
            a.next_check(&limits(), t0 + Duration::from_secs(10)),
            Err(Closing::NoRequestHead)
        );
    }

    #[test]
    fn a_busy_connection_is_not_idle_and_an_idle_one_closes() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        let req = a.begin();
        let later = t0 + Duration::from_secs(3600);
        assert!(
            a.next_check(&limits(), later).is_ok(),
            "a streaming response is not idle"
        );
        drop(req);
        let done = t0 + Duration::from_millis(a.last_done_ms.load(Ordering::SeqCst));
        assert!(
            a.next_check(&limits(), done + Duration::from_secs(59))
                .is_ok()
        );
        assert_eq!(
            a.next_check(&limits(), done + Duration::from_secs(60)),
            Err(Closing::Idle)
        );
    }

    #[test]
    fn accept_failures_are_logged_once_a_minute() {
        let mut w = AcceptWarnings::new("tcp");
        let t0 = Instant::now();
        assert!(w.should_log(t0));
        for i in 1..1000 {
            assert!(!w.should_log(t0 + Duration::from_millis(i)));
        }
        assert_eq!(w.suppressed, 999);
        assert!(w.should_log(t0 + ACCEPT_WARN_EVERY));
    }
}
