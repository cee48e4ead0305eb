//! A webhook receiver for the end-to-end tests: a real HTTP server on
//! 127.0.0.1 (axum on a runtime of its own, so the blocking tests can use
//! it) that records every request and answers as its [`Mode`] says. The
//! daemon's notifier is the client under test; the receiver only plays the
//! other side.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// 204 to everything.
    Ok,
    /// This status to everything (a 5xx makes the notifier retry).
    Status(u16),
    /// Never answers: the notifier's timeout is what ends the request.
    Hang,
    /// 503 to every n-th request (counted over all requests), 204 to the
    /// rest, so retries are part of every run.
    RefuseEvery(u64),
}

impl Mode {
    /// 503 to everything.
    pub const UNAVAILABLE: Mode = Mode::Status(503);
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    /// A header's value, "" when absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `webhook-id` header (Standard Webhooks).
    pub fn id(&self) -> String {
        self.header("webhook-id").to_string()
    }

    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// The body as JSON, `Null` when it is not.
    pub fn json_or_null(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The event's `type` (`job.done`, ...), "" when the body has none.
    pub fn event_type(&self) -> String {
        self.json_or_null()["type"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The `data.job_id` of the event, "" when the body has none.
    pub fn job_id(&self) -> String {
        self.json_or_null()["data"]["job_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

#[derive(Clone)]
struct Shared {
    mode: Arc<Mutex<Mode>>,
    /// Every request, including the ones answered with an error.
    attempts: Arc<Mutex<Vec<Received>>>,
    /// Requests answered 2xx, in order.
    delivered: Arc<Mutex<Vec<Received>>>,
    /// Requests so far, for [`Mode::RefuseEvery`].
    count: Arc<AtomicU64>,
}

/// A webhook receiver on 127.0.0.1; it stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Shared,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    /// A receiver on a free port that answers 204 to everything.
    pub fn start() -> Receiver {
        Receiver::start_on(0, Mode::Ok)
    }

    /// A receiver on a free port that answers as `mode` says.
    pub fn with_mode(mode: Mode) -> Receiver {
        Receiver::start_on(0, mode)
    }

    /// A receiver on `port` (0: a free one), e.g. one that was reserved
    /// while the receiver was down.
    pub fn start_on(port: u16, mode: Mode) -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let shared = Shared {
            mode: Arc::new(Mutex::new(mode)),
            attempts: Default::default(),
            delivered: Default::default(),
            count: Default::default(),
        };
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .expect("bind the receiver port");
        let addr = listener.local_addr().expect("receiver address");
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            shared,
            _rt: rt,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to configure as `notify.webhook.url` (any path reaches it).
    pub fn url(&self) -> String {
        format!("http://{}/hooks/oj", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().expect("lock") = mode;
    }

    /// Every request so far, whatever the answer.
    pub fn attempts(&self) -> Vec<Received> {
        self.shared.attempts.lock().expect("lock").clone()
    }

    /// The requests answered 2xx so far, in order.
    pub fn delivered(&self) -> Vec<Received> {
        self.shared.delivered.lock().expect("lock").clone()
    }

    /// Waits up to `timeout` for `n` deliveries; returns what arrived.
    pub fn wait_delivered(&self, n: usize, timeout: Duration) -> Vec<Received> {
        super::wait_until(timeout, || self.delivered().len() >= n);
        self.delivered()
    }
}

async fn handle(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let r = Received { headers, body };
    let nth = s.count.fetch_add(1, Ordering::SeqCst) + 1;
    s.attempts.lock().expect("lock").push(r.clone());
    let mode = *s.mode.lock().expect("lock");
    let status = match mode {
        Mode::Ok => StatusCode::NO_CONTENT,
        Mode::Status(code) => StatusCode::from_u16(code).expect("a valid status"),
        Mode::Hang => std::future::pending().await,
        Mode::RefuseEvery(n) if nth % n == 0 => StatusCode::SERVICE_UNAVAILABLE,
        Mode::RefuseEvery(_) => StatusCode::NO_CONTENT,
    };
    if status.is_success() {
        s.delivered.lock().expect("lock").push(r);
    }
    status.into_response()
}
