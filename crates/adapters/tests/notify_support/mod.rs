//! Shared pieces of the notify tests: a real HTTP receiver (axum on
//! 127.0.0.1:0) that records every request and answers from a script, an
//! ack collector, a log capture, and config builders. Every wait is bounded.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use oj_adapters::notify::{Notification, NotifyContext};
use oj_config::{NotifyBackend, NotifyConfig, NotifyEvent, Secret, WebhookConfig, WebhookFormat};

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    StatusWithHeader(u16, &'static str, String),
    /// Accepts the request and never answers.
    Hang,
}

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

#[derive(Clone, Default)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    otherwise: Arc<Mutex<Option<Reply>>>,
}

/// A webhook receiver on 127.0.0.1. Answers from its script, then with the
/// `otherwise` reply (200 unless set).
pub struct Receiver {
    pub addr: SocketAddr,
    state: ReceiverState,
}

impl Receiver {
    pub async fn start(script: Vec<Reply>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Receiver::serve(listener, script).await
    }

    pub async fn serve(listener: tokio::net::TcpListener, script: Vec<Reply>) -> Receiver {
        let addr = listener.local_addr().expect("local addr");
        let state = ReceiverState::default();
        state.script.lock().unwrap().extend(script);
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/oj?token=url-secret-token", self.addr)
    }

    pub fn set_otherwise(&self, reply: Reply) {
        *self.state.otherwise.lock().unwrap() = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits (≤ `timeout`) until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn handle(State(state): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> Response {
    state.received.lock().unwrap().push(Received {
        headers,
        body,
        at: Instant::now(),
    });
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| state.otherwise.lock().unwrap().clone())
        .unwrap_or(Reply::Status(200));
    match reply {
        Reply::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Reply::StatusWithHeader(s, name, value) => {
            (StatusCode::from_u16(s).unwrap(), [(name, value)]).into_response()
        }
        Reply::Hang => std::future::pending().await,
    }
}

/// Collects `on_ack` calls.
#[derive(Clone, Default)]
pub struct Acks(pub Arc<Mutex<Vec<String>>>);

impl Acks {
    pub fn callback(&self) -> Box<dyn Fn(&str) + Send + Sync> {
        let acks = self.0.clone();
        Box::new(move |id: &str| acks.lock().unwrap().push(id.to_string()))
    }

    pub fn get(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.get();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn ctx() -> NotifyContext {
    NotifyContext {
        instance: "test-host".into(),
        profile: "kubernetes".into(),
        ui_url: None,
    }
}

pub fn webhook_cfg(url: &str) -> NotifyConfig {
    NotifyConfig {
        backend: NotifyBackend::Webhook,
        events: vec![NotifyEvent::Start, NotifyEvent::Done, NotifyEvent::Fail],
        webhook: WebhookConfig {
            url: Some(Secret::new(url)),
            secret: Some(Secret::new(SECRET)),
            secret_file: None,
            headers: BTreeMap::from([(
                "Authorization".to_string(),
                Secret::new("Bearer header-secret-value"),
            )]),
            format: WebhookFormat::Standard,
            timeout: Duration::from_secs(5),
            max_attempts: 8,
            // Short, real delays: the receiver is a real server, so the
            // tests run on the real clock.
            backoff: Duration::from_millis(20),
        },
    }
}

pub fn cfg_with(backend: NotifyBackend) -> NotifyConfig {
    let mut cfg = webhook_cfg("http://127.0.0.1:9/");
    cfg.backend = backend;
    cfg.webhook.url = None;
    cfg
}

pub fn notification(job: &str, event: NotifyEvent, error: Option<&str>) -> Notification {
    let ts = SystemTime::UNIX_EPOCH + Duration::from_millis(1_780_000_000_123);
    Notification::for_job(
        event,
        job,
        &format!("{job}-name"),
        None,
        error.map(String::from),
        ts,
    )
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Every log line of the test process (tracing, text, no ANSI).
pub fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = LogWriter(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("one global subscriber per test binary");
        buf
    })
}

pub fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
