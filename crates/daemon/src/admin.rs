//! Admin endpoints on `admin.addr` (plain HTTP, no auth, for probes and
//! scrapers): `/healthz` (the process serves), `/readyz` (leader and not
//! draining), `/metrics` (Prometheus text 0.0.4, or OpenMetrics when `Accept` asks
//! for it; see `metrics.rs`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oj_adapters::notify::Notifier;
use oj_adapters::tls::ServerTls;
use tokio::sync::watch;

use crate::engine::EngineHandle;
use crate::metrics::{Format, Metrics, Observed};

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub engine: EngineHandle,
    pub leader: watch::Receiver<bool>,
    pub draining: watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
    /// The notifier in use (it changes when a reload changes `notify.*`).
    pub notifier: crate::notify::LiveNotifier,
    /// The TCP listener's certificate, for `oj_tls_cert_expiry_timestamp_seconds`.
    pub tls: Option<ServerTls>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Ready = may take work: leader and not draining.
pub fn ready(leader: bool, draining: bool) -> Result<(), &'static str> {
    match (leader, draining) {
        (_, true) => Err("draining\n"),
        (false, _) => Err("standby: not the leader\n"),
        (true, false) => Ok(()),
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    if let Some(e) = s.engine.storage_error() {
        let why = format!("storage failing: {e}\n");
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    }
    match ready(*s.leader.borrow(), *s.draining.borrow()) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

async fn metrics(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let notifier = s.notifier.current();
    let observed = Observed {
        counts: s.engine.counts().await,
        leader: *s.leader.borrow(),
        draining: *s.draining.borrow(),
        notify_depth: notifier.as_ref().map(Notifier::depth).unwrap_or(0),
        tls_not_after: s.tls.as_ref().map(|t| t.current_cert().not_after),
    };
    (
        [(header::CONTENT_TYPE, format.content_type())],
        s.metrics.render(&observed, format),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_as_a_leader_that_is_not_draining() {
        assert!(ready(true, false).is_ok());
        assert!(ready(false, false).is_err());
        assert!(ready(true, true).is_err());
    }
}
