//! The `webhook` backend: Standard Webhooks v1 over HTTPS (reqwest + rustls).
//! Retries are part of delivery, so the retry policy (which answers are
//! worth retrying, how long to wait, when a URL is gone for good) lives here
//! as small pure functions the tests can pin down without a clock.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use oj_config::{NotifyConfig, WebhookFormat};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use sha2::Sha256;

use super::queue::Outcome;
use super::{Counters, Notification, NotifyContext, NotifyError, event_type};

/// Retry delays (backoff doubling, or `Retry-After`) never exceed this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub(crate) struct WebhookBackend {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `host[:port]` of the URL: the only part of it that may be logged.
    host: String,
    key: Option<Vec<u8>>,
    headers: HeaderMap,
    format: WebhookFormat,
    timeout: Duration,
    max_attempts: u32,
    backoff: Duration,
    ctx: NotifyContext,
    /// The receiver answered 410 Gone: no more deliveries until restart.
    gone: bool,
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    Gone,
    /// A 4xx other than 429 and 410: retrying would get the same answer.
    Rejected(u16),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl WebhookBackend {
    pub(crate) fn build(
        cfg: &NotifyConfig,
        ctx: NotifyContext,
    ) -> Result<WebhookBackend, NotifyError> {
        let w = &cfg.webhook;
        let raw = w.url.as_ref().ok_or(NotifyError::WebhookUrlMissing)?;
        let url = reqwest::Url::parse(raw.expose().trim()).map_err(|e| {
            NotifyError::WebhookUrlInvalid {
                reason: e.to_string(),
            }
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NotifyError::WebhookUrlInvalid {
                reason: format!("scheme {:?} is not http or https", url.scheme()),
            });
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => {
                return Err(NotifyError::WebhookUrlInvalid {
                    reason: "it has no host".into(),
                });
            }
        };

        let key = match (&w.secret, &w.secret_file) {
            (Some(secret), _) => {
                Some(
                    signing_key(secret.expose()).map_err(|reason| NotifyError::SecretInvalid {
                        key: "notify.webhook.secret",
                        path: None,
                        reason,
                    })?,
                )
            }
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| NotifyError::SecretFile {
                        path: path.clone(),
                        source,
                    })?;
                Some(
                    signing_key(text.trim()).map_err(|reason| NotifyError::SecretInvalid {
                        key: "notify.webhook.secret_file",
                        path: Some(path.clone()),
                        reason,
                    })?,
                )
            }
            (None, None) => None,
        };

        let mut headers = HeaderMap::new();
        for (name, value) in &w.headers {
            let hn = HeaderName::from_bytes(name.as_bytes()).map_err(|_| NotifyError::Header {
                name: name.clone(),
                reason: "not a valid HTTP header name",
            })?;
            let mut hv = HeaderValue::from_str(value.expose()).map_err(|_| NotifyError::Header {
                name: name.clone(),
                reason: "the value is not a valid HTTP header value (control characters or non-ASCII)",
            })?;
            hv.set_sensitive(true);
            headers.insert(hn, hv);
        }

        // reqwest is built without a default crypto provider; oj uses ring.
        // Installing it here too keeps a library caller from hitting reqwest's
        // panic when the binary forgot to (a second install is a no-op error).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("oj/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::HttpClient {
                reason: e.without_url().to_string(),
            })?;

        Ok(WebhookBackend {
            client,
            url,
            host,
            key,
            headers,
            format: w.format,
            timeout: w.timeout,
            max_attempts: w.max_attempts.max(1),
            backoff: w.backoff,
            ctx,
            gone: false,
        })
    }

    pub(crate) async fn deliver(&mut self, n: &Notification, counters: &Counters) -> Outcome {
        if self.gone {
            tracing::debug!(webhook_webhook_host = %self.host, notification_id = %n.id, "webhook URL answered 410 Gone earlier: not delivered");
            return Outcome::Failed;
        }
        let body = match self.format {
            WebhookFormat::Standard => standard_body(n, &self.ctx),
            WebhookFormat::Slack => slack_body(n),
        };
        let mut attempt = 1;
        loop {
            counters.attempt();
            match self.attempt(n, &body).await {
                Attempt::Delivered => {
                    tracing::debug!(webhook_webhook_host = %self.host, notification_id = %n.id, attempt, "webhook delivered");
                    return Outcome::Delivered;
                }
                Attempt::Gone => {
                    self.gone = true;
                    tracing::warn!(
                        webhook_host = %self.host,
                        notification_id = %n.id,
                        "webhook receiver answered 410 Gone: no more notifications are sent to this URL until oj restarts \
                         (they are counted as failed); fix or remove notify.webhook.url"
                    );
                    return Outcome::Failed;
                }
                Attempt::Rejected(status) => {
                    tracing::warn!(
                        webhook_host = %self.host,
                        notification_id = %n.id,
                        http_status = status,
                        "{}",
                        rejected_message(status)
                    );
                    return Outcome::Failed;
                }
                Attempt::Retry {
                    reason,
                    retry_after,
                } => {
                    if attempt >= self.max_attempts {
                        tracing::warn!(
                            webhook_host = %self.host,
                            notification_id = %n.id,
                            attempts = attempt,
                            reason = %reason,
                            "webhook delivery failed; giving up after notify.webhook.max_attempts attempts"
                        );
                        return Outcome::Failed;
                    }
                    let delay = retry_delay(self.backoff, attempt, retry_after);
                    tracing::info!(
                        webhook_host = %self.host,
                        notification_id = %n.id,
                        attempt,
                        reason = %reason,
                        retry_in = %humantime::format_duration(delay),
                        "webhook delivery failed; will retry"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(&self, n: &Notification, body: &[u8]) -> Attempt {
        let ts = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", n.id.as_str())
            .header("webhook-timestamp", ts.to_string());
        if let Some(key) = &self.key {
            req = req.header("webhook-signature", sign(key, &n.id, ts, body));
        }
        let send = req.body(body.to_vec()).send();
        let resp = match tokio::time::timeout(self.timeout, send).await {
            Err(_) => {
                return Attempt::Retry {
                    reason: format!(
                        "no answer within notify.webhook.timeout ({})",
                        humantime::format_duration(self.timeout)
                    ),
                    retry_after: None,
                };
            }
            Ok(Err(e)) => {
                return Attempt::Retry {
                    reason: describe(e),
                    retry_after: None,
                };
            }
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status().as_u16();
        match status {
            200..=299 => Attempt::Delivered,
            410 => Attempt::Gone,
            429 | 500..=599 => {
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                Attempt::Retry {
                    reason: format!("HTTP {status}"),
                    retry_after,
                }
            }
            _ => Attempt::Rejected(status),
        }
    }
}

/// Why a receiver's answer is final, and what to check: a redirect is not
/// a credentials problem, a 401 is not a URL problem.
pub fn rejected_message(status: u16) -> String {
    let what = match status {
        300..=399 => {
            "webhook receiver answered a redirect; oj does not follow redirects (the body and its \
             signature are for one URL): set notify.webhook.url to the address it redirects to"
        }
        401 | 403 => {
            "webhook receiver refused the credentials; not retried (check notify.webhook.headers, \
             e.g. an Authorization header, and the signing key the receiver expects)"
        }
        404 | 405 => {
            "webhook receiver has no such endpoint; not retried (check the path of notify.webhook.url)"
        }
        _ => {
            "webhook receiver rejected the notification; not retried (check notify.webhook.format, \
             notify.webhook.headers and the receiver's configuration)"
        }
    };
    format!("{what} [HTTP {status}]")
}

/// A transport error without the URL (which is a secret): the error's own
/// text and its causes.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = if e.is_connect() {
        "connection failed".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The delay before attempt `attempt + 1`, after attempt `attempt` (1-based)
/// failed: `backoff × 2^(attempt-1)`, or the receiver's `Retry-After` when it
/// sent one; never more than [`MAX_BACKOFF`].
pub fn retry_delay(backoff: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(MAX_BACKOFF);
    }
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    backoff
        .checked_mul(factor)
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// `Retry-After` as delay-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The HMAC key of a Standard Webhooks secret: base64 after `whsec_` (the
/// prefix is optional, as in the reference libraries), at least 24 bytes.
/// The config crate applies the same rule to an inline secret.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    oj_config::webhook_signing_key(secret)
}

/// `webhook-signature`: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`.
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

#[derive(Serialize)]
struct StandardBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: StandardData<'a>,
}

#[derive(Serialize)]
struct StandardData<'a> {
    job_id: &'a str,
    job_name: &'a str,
    title: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    instance: &'a str,
    profile: &'a str,
    /// The job's page in the web UI (with `ui.url` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
}

/// The `format = "standard"` body.
pub fn standard_body(n: &Notification, ctx: &NotifyContext) -> Vec<u8> {
    let body = StandardBody {
        kind: event_type(n.event),
        timestamp: humantime::format_rfc3339_millis(n.timestamp).to_string(),
        data: StandardData {
            job_id: &n.job_id,
            job_name: &n.job_name,
            title: &n.title,
            message: &n.message,
            error: n.error.as_deref(),
            instance: &ctx.instance,
            profile: &ctx.profile,
            url: n.url.as_deref(),
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The `format = "slack"` body (a Slack incoming webhook message). Slack
/// reads `<…>` in `text` as mentions and links, so title and message are
/// escaped: a job called `<!channel>` pings nobody. With `ui.url` the
/// job's page follows as a Slack link (`config check` keeps `<`, `>` and
/// `|` out of `ui.url`).
pub fn slack_body(n: &Notification) -> Vec<u8> {
    let mut text = format!(
        "{}: {}",
        crate::escape::slack_text(&n.title),
        crate::escape::slack_text(&n.message)
    );
    if let Some(url) = &n.url {
        text.push_str(&format!(
            " <{}|job {}>",
            crate::escape::slack_text(url),
            crate::escape::slack_text(&n.job_id)
        ));
    }
    serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_is_not_blamed_on_the_headers() {
        let m = rejected_message(302);
        assert!(
            m.contains("redirect") && m.contains("notify.webhook.url"),
            "{m}"
        );
        assert!(!m.contains("headers"), "{m}");
        assert!(rejected_message(401).contains("notify.webhook.headers"));
        assert!(rejected_message(404).contains("path of notify.webhook.url"));
        assert!(rejected_message(422).contains("notify.webhook.format"));
    }

    #[test]
    fn backoff_doubles_from_the_first_delay_and_caps_at_five_minutes() {
        let b = Duration::from_secs(1);
        let delays: Vec<u64> = (1..=10)
            .map(|a| retry_delay(b, a, None).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(retry_delay(b, 100, None), MAX_BACKOFF);
        assert_eq!(
            retry_delay(Duration::from_millis(250), 3, None),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn retry_after_wins_over_backoff_but_is_capped() {
        let b = Duration::from_secs(1);
        assert_eq!(
            retry_delay(b, 5, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_delay(b, 1, Some(Duration::from_secs(3600))),
            MAX_BACKOFF
        );
    }

    #[test]
    fn retry_after_as_seconds_or_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn signing_keys() {
        let key = b"a-key-of-exactly-24-byte";
        let b64 = B64.encode(key);
        assert_eq!(signing_key(&format!("whsec_{b64}")).unwrap(), key);
        assert_eq!(signing_key(&b64).unwrap(), key);
        // Standard Webhooks asks for 24 to 64 bytes: a 5-byte key is refused.
        assert!(signing_key("whsec_aGVsbG8=").is_err());
        assert!(signing_key("whsec_").is_err());
        assert!(signing_key("whsec_not base64!").is_err());
    }

    #[test]
    fn signature_matches_the_standard_webhooks_reference_vector() {
        // From the standard-webhooks reference implementations' test suite.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
