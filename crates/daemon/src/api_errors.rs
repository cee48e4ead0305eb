//! Every error the API sends is JSON, whoever produced it.
//!
//! Why it exists: the handlers answer `{"error", "code"}`, but some errors
//! are made before a handler runs or while axum reads the body — a body
//! that does not arrive within `listen.idle_timeout`, a chunked body over
//! `listen.max_request_bytes`, a method the route does not have — and
//! those come as plain text (or nothing). A client that parses every error
//! as JSON (ours does) then reports a parse error instead of the problem.
//! This layer rewrites such a response into the same JSON shape, keeping
//! the status; it leaves JSON, HTML and every success alone.
//!
//! It also holds the refusal of a request without a valid token: the body
//! a client is still sending is read (a bounded amount, for a bounded
//! time) before the 401, so an HTTP/2 client gets the 401 rather than a
//! stream reset that races it.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use oj_api::ErrorCode;

use crate::api::error;

/// Longest plain-text error body that is carried into the JSON message.
const MAX_TEXT: usize = 4 * 1024;

/// Most of an unauthenticated request's body that is read (and dropped)
/// before the 401, and for how long at most.
const DRAIN_BYTES: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// The middleware: a non-JSON error response becomes `{"error", "code"}`.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if !needs_rewrite(&resp) {
        return resp;
    }
    let status = resp.status();
    let text = axum::body::to_bytes(resp.into_body(), MAX_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    error(status, code_of(status), message_of(status, &text))
}

/// An error status whose body is not JSON and not a page (plain text or
/// nothing at all).
fn needs_rewrite(resp: &Response) -> bool {
    if !(resp.status().is_client_error() || resp.status().is_server_error()) {
        return false;
    }
    match resp.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(ct) => ct
            .to_str()
            .map(|ct| ct.starts_with("text/plain"))
            .unwrap_or(false),
    }
}

/// The machine-readable `code` of a status (the API's words where it has them).
fn code_of(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        400 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthorized,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::Timeout,
        413 => ErrorCode::TooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::Invalid,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::Error,
    }
}

/// What the user reads: axum's text, made specific where it is vague.
fn message_of(status: StatusCode, text: &str) -> String {
    if text.contains("listen.idle_timeout") {
        return "the request body did not arrive within listen.idle_timeout; send the whole body \
                at once (or raise listen.idle_timeout)"
            .into();
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return "the request body is larger than listen.max_request_bytes".into();
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return "this route does not take that method; see docs/api.md for the API".into();
    }
    if text.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string();
    }
    text.to_string()
}

/// The 401 for a request without a valid token, after reading (a bounded
/// part of) its body: HTTP/2 clients that are still sending would
/// otherwise see the stream reset that follows an early answer, and report
/// that instead of the 401.
pub async fn unauthorized(req: Request) -> Response {
    let body: Body = req.into_body();
    let _ = tokio::time::timeout(DRAIN_TIME, axum::body::to_bytes(body, DRAIN_BYTES)).await;
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "unauthorized",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::post;
    use tower::ServiceExt;

    async fn call(app: Router, req: Request) -> (StatusCode, serde_json::Value) {
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(ct.as_deref(), Some("application/json"), "{body:?}");
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/b",
                post(|b: axum::body::Bytes| async move { b.len().to_string() }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(8))
            .layer(axum::middleware::from_fn(json_errors))
    }

    #[tokio::test]
    async fn a_body_over_the_limit_and_a_wrong_method_are_json() {
        let req = Request::post("/b")
            .body(Body::from("0123456789abcdef"))
            .unwrap();
        let (status, body) = call(app(), req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["code"], "too_large");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("listen.max_request_bytes")
        );

        let req = Request::get("/b").body(Body::empty()).unwrap();
        let (status, body) = call(app(), req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["code"], "method_not_allowed");
    }

    #[tokio::test]
    async fn success_and_json_errors_are_left_alone() {
        let req = Request::post("/b").body(Body::from("abc")).unwrap();
        let resp = app().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), 100).await.unwrap();
        assert_eq!(&body[..], b"3");

        let app = Router::new()
            .route(
                "/e",
                post(|| async {
                    error(
                        StatusCode::CONFLICT,
                        ErrorCode::Other("busy".into()),
                        "it is busy",
                    )
                }),
            )
            .layer(axum::middleware::from_fn(json_errors));
        let req = Request::post("/e").body(Body::empty()).unwrap();
        let (status, body) = call(app, req).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["code"], "busy");
        assert_eq!(body["error"], "it is busy");
    }

    #[test]
    fn a_slow_body_is_explained() {
        let m = message_of(
            StatusCode::BAD_REQUEST,
            "Failed to buffer the request body: the request body did not arrive within listen.idle_timeout",
        );
        assert!(
            m.starts_with("the request body did not arrive within listen.idle_timeout"),
            "{m}"
        );
    }
}
