//! The webhook backend against a real HTTP receiver on 127.0.0.1: Standard
//! Webhooks headers and signature (checked with an independent HMAC), the
//! payload, retries (500, 429 + Retry-After, timeouts, a receiver that is
//! down), no retry on 400, 410 stops the URL, slack format, and a receiver
//! that never answers cannot block `enqueue`.

mod notify_support;

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use notify_support::*;
use oj_adapters::notify::{Notification, Notifier, NotifyError, QUEUE_CAPACITY, check};
use oj_config::{NotifyEvent, Secret, WebhookFormat};
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(20);

/// Checks `webhook-signature` the way a receiver would, without oj's code:
/// HMAC-SHA256 keyed by the base64 after `whsec_`, over `id.timestamp.body`.
fn assert_signature_verifies(r: &Received) {
    let id = r.header("webhook-id").expect("webhook-id header");
    let ts = r
        .header("webhook-timestamp")
        .expect("webhook-timestamp header");
    let sig = r
        .header("webhook-signature")
        .expect("webhook-signature header");
    let key = B64.decode(SECRET.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    assert!(
        sig.split(' ').any(|s| s == expected),
        "signature {sig:?} does not verify (expected {expected:?})"
    );
}

fn count(n: &Notifier, result: &str) -> u64 {
    n.counts()
        .iter()
        .find(|(b, r, _)| *b == "webhook" && *r == result)
        .map(|c| c.2)
        .unwrap()
}

/// Attempts beyond the first of each finished notification (call once all
/// notifications are finished).
fn retried(n: &Notifier) -> u64 {
    n.attempts() - count(n, "delivered") - count(n, "failed")
}

fn ids(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect()
}

fn assert_no_secret_in_logs() {
    let logs = log_text();
    for secret in [
        "url-secret-token",
        "header-secret-value",
        SECRET.strip_prefix("whsec_").unwrap(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the log:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_signed_standard_webhooks_with_the_job_in_the_payload() {
    install_crypto();
    logs();
    let rx = Receiver::start(vec![]).await;
    let acks = Acks::default();
    let notifier = Notifier::start(webhook_cfg(&rx.url()), ctx(), vec![], acks.callback()).unwrap();
    let sent = [
        notification("job1", NotifyEvent::Start, None),
        notification("job1", NotifyEvent::Done, None),
        notification("job2", NotifyEvent::Fail, Some("step test exited 3")),
    ];
    for n in &sent {
        notifier.enqueue(n.clone()).unwrap();
    }
    let got = rx.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3);
    assert_eq!(
        acks.wait_for(3, WAIT).await,
        ["msg_job1_start", "msg_job1_done", "msg_job2_fail"]
    );

    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (r, n) in got.iter().zip(&sent) {
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("webhook-id"), Some(n.id.as_str()));
        let ts: u64 = r
            .header("webhook-timestamp")
            .unwrap()
            .parse()
            .expect("Unix seconds");
        assert!(
            ts.abs_diff(now) < 600,
            "webhook-timestamp {ts} is not now ({now})"
        );
        assert_eq!(
            r.header("authorization"),
            Some("Bearer header-secret-value"),
            "configured header"
        );
        assert_signature_verifies(r);

        let body = r.json();
        let data = &body["data"];
        assert_eq!(data["job_id"], n.job_id.as_str());
        assert_eq!(data["job_name"], n.job_name.as_str());
        assert_eq!(data["title"], n.title.as_str());
        assert_eq!(data["message"], n.message.as_str());
        assert_eq!(data["instance"], "test-host");
        assert_eq!(data["profile"], "kubernetes");
        let stamp = body["timestamp"].as_str().expect("timestamp string");
        assert_eq!(
            humantime::parse_rfc3339(stamp).unwrap(),
            n.timestamp,
            "RFC 3339 event time"
        );
    }
    assert_eq!(got[0].json()["type"], "job.started");
    assert_eq!(got[1].json()["type"], "job.done");
    assert_eq!(got[2].json()["type"], "job.failed");
    assert_eq!(got[0].json()["data"]["message"], "Job job1-name started");
    assert!(
        got[0].json()["data"].get("error").is_none(),
        "no error key when there is no error"
    );
    assert_eq!(got[2].json()["data"]["error"], "step test exited 3");
    assert_eq!(
        got[2].json()["data"]["message"],
        "Job job2-name failed: step test exited 3"
    );
    assert_eq!(count(&notifier, "delivered"), 3);
    assert_eq!(retried(&notifier), 0);
    assert_eq!(notifier.depth(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_signature_header_without_a_secret() {
    install_crypto();
    let rx = Receiver::start(vec![]).await;
    let mut cfg = webhook_cfg(&rx.url());
    cfg.webhook.secret = None;
    let notifier = Notifier::start(cfg, ctx(), vec![], Acks::default().callback()).unwrap();
    notifier
        .enqueue(notification("nosig", NotifyEvent::Done, None))
        .unwrap();
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].header("webhook-signature").is_none());
    assert_eq!(got[0].header("webhook-id"), Some("msg_nosig_done"));
    assert!(got[0].header("webhook-timestamp").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_500_with_the_same_webhook_id() {
    install_crypto();
    let rx = Receiver::start(vec![
        Reply::Status(500),
        Reply::Status(503),
        Reply::Status(200),
    ])
    .await;
    let acks = Acks::default();
    let notifier = Notifier::start(webhook_cfg(&rx.url()), ctx(), vec![], acks.callback()).unwrap();
    notifier
        .enqueue(notification("retry500", NotifyEvent::Fail, Some("boom")))
        .unwrap();
    assert_eq!(acks.wait_for(1, WAIT).await, ["msg_retry500_fail"]);
    let got = rx.received();
    assert_eq!(got.len(), 3, "two failures, then delivered");
    assert_eq!(
        ids(&got),
        ["msg_retry500_fail"; 3],
        "same webhook-id on every retry"
    );
    for r in &got {
        assert_signature_verifies(r);
        assert_eq!(r.body, got[0].body, "same payload on every retry");
    }
    assert_eq!(retried(&notifier), 2);
    assert_eq!(count(&notifier, "delivered"), 1);
    assert_eq!(count(&notifier, "failed"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honours_retry_after_on_429() {
    install_crypto();
    let rx = Receiver::start(vec![Reply::StatusWithHeader(
        429,
        "retry-after",
        "1".into(),
    )])
    .await;
    let acks = Acks::default();
    // The backoff alone would retry after 20 ms; Retry-After says 1 s.
    let notifier = Notifier::start(webhook_cfg(&rx.url()), ctx(), vec![], acks.callback()).unwrap();
    notifier
        .enqueue(notification("slow", NotifyEvent::Start, None))
        .unwrap();
    assert_eq!(acks.wait_for(1, WAIT).await.len(), 1);
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert_eq!(ids(&got), ["msg_slow_start"; 2]);
    let waited = got[1].at.duration_since(got[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, before Retry-After: 1"
    );
    assert_eq!(retried(&notifier), 1);
    assert_eq!(count(&notifier, "delivered"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn does_not_retry_400() {
    install_crypto();
    let rx = Receiver::start(vec![Reply::Status(400)]).await;
    let acks = Acks::default();
    let notifier = Notifier::start(webhook_cfg(&rx.url()), ctx(), vec![], acks.callback()).unwrap();
    notifier
        .enqueue(notification("bad", NotifyEvent::Start, None))
        .unwrap();
    notifier
        .enqueue(notification("good", NotifyEvent::Start, None))
        .unwrap();
    assert_eq!(
        acks.wait_for(2, WAIT).await,
        ["msg_bad_start", "msg_good_start"]
    );
    assert_eq!(
        ids(&rx.received()),
        ["msg_bad_start", "msg_good_start"],
        "400 is not retried"
    );
    assert_eq!(count(&notifier, "failed"), 1);
    assert_eq!(count(&notifier, "delivered"), 1);
    assert_eq!(retried(&notifier), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_delivering_to_a_url_that_answered_410() {
    install_crypto();
    logs();
    let rx = Receiver::start(vec![Reply::Status(410)]).await;
    let acks = Acks::default();
    let notifier = Notifier::start(webhook_cfg(&rx.url()), ctx(), vec![], acks.callback()).unwrap();
    for job in ["gone1", "gone2", "gone3"] {
        notifier
            .enqueue(notification(job, NotifyEvent::Done, None))
            .unwrap();
    }
    assert_eq!(
        acks.wait_for(3, WAIT).await.len(),
        3,
        "later notifications are finished, not stuck"
    );
    assert_eq!(rx.received().len(), 1, "nothing is sent after 410 Gone");
    assert_eq!(count(&notifier, "failed"), 3);
    assert_eq!(count(&notifier, "delivered"), 0);
    let logs = log_text();
    assert!(
        logs.contains("410 Gone"),
        "the 410 is explained in the log:\n{logs}"
    );
    assert!(
        logs.contains(&rx.addr.to_string()),
        "the log names the host:\n{logs}"
    );
    assert_no_secret_in_logs();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_after_max_attempts() {
    install_crypto();
    logs();
    let rx = Receiver::start(vec![]).await;
    rx.set_otherwise(Reply::Status(502));
    let mut cfg = webhook_cfg(&rx.url());
    cfg.webhook.max_attempts = 3;
    let acks = Acks::default();
    let notifier = Notifier::start(cfg, ctx(), vec![], acks.callback()).unwrap();
    notifier
        .enqueue(notification("never", NotifyEvent::Fail, None))
        .unwrap();
    assert_eq!(
        acks.wait_for(1, WAIT).await,
        ["msg_never_fail"],
        "given up on = acknowledged"
    );
    assert_eq!(rx.received().len(), 3);
    assert_eq!(count(&notifier, "failed"), 1);
    assert_eq!(retried(&notifier), 2);
    assert!(log_text().contains("giving up after notify.webhook.max_attempts"));
    assert_no_secret_in_logs();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_an_attempt_that_times_out() {
    install_crypto();
    let rx = Receiver::start(vec![Reply::Hang]).await;
    let mut cfg = webhook_cfg(&rx.url());
    cfg.webhook.timeout = Duration::from_millis(300);
    let acks = Acks::default();
    let notifier = Notifier::start(cfg, ctx(), vec![], acks.callback()).unwrap();
    notifier
        .enqueue(notification("hung", NotifyEvent::Start, None))
        .unwrap();
    assert_eq!(acks.wait_for(1, WAIT).await.len(), 1);
    assert_eq!(ids(&rx.received()), ["msg_hung_start"; 2]);
    assert_eq!(retried(&notifier), 1);
    assert_eq!(count(&notifier, "delivered"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_the_notification_once_it_is_up() {
    install_crypto();
    // Reserve a port, then close it: connections are refused until the receiver starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let mut cfg = webhook_cfg(&url);
    cfg.webhook.max_attempts = 1000;
    cfg.webhook.backoff = Duration::from_millis(10);
    let acks = Acks::default();
    let notifier = Notifier::start(cfg, ctx(), vec![], acks.callback()).unwrap();
    notifier
        .enqueue(notification("early", NotifyEvent::Start, None))
        .unwrap();
    notifier
        .enqueue(notification("early", NotifyEvent::Done, None))
        .unwrap();
    // Wait until at least one retry happened against the closed port.
    let deadline = std::time::Instant::now() + WAIT;
    while notifier.attempts() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        notifier.attempts() >= 2,
        "the first notification was tried again"
    );
    assert!(acks.get().is_empty());

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let rx = Receiver::serve(listener, vec![]).await;
    assert_eq!(
        acks.wait_for(2, WAIT).await,
        ["msg_early_start", "msg_early_done"]
    );
    assert_eq!(
        ids(&rx.received()),
        ["msg_early_start", "msg_early_done"],
        "in order"
    );
    assert_eq!(count(&notifier, "delivered"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_format() {
    install_crypto();
    let rx = Receiver::start(vec![]).await;
    let mut cfg = webhook_cfg(&rx.url());
    cfg.webhook.format = WebhookFormat::Slack;
    let notifier = Notifier::start(cfg, ctx(), vec![], Acks::default().callback()).unwrap();
    notifier
        .enqueue(notification("chat", NotifyEvent::Fail, Some("exit 1")))
        .unwrap();
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].json(),
        serde_json::json!({"text": "chat-name: Job chat-name failed: exit 1"})
    );
    assert_eq!(got[0].header("content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_not_in_notify_events_are_acknowledged_but_not_sent() {
    install_crypto();
    let rx = Receiver::start(vec![]).await;
    let mut cfg = webhook_cfg(&rx.url());
    cfg.events = vec![NotifyEvent::Fail];
    let acks = Acks::default();
    let notifier = Notifier::start(cfg, ctx(), vec![], acks.callback()).unwrap();
    assert!(!notifier.wants(NotifyEvent::Start));
    assert!(notifier.wants(NotifyEvent::Fail));
    notifier
        .enqueue(notification("filt", NotifyEvent::Start, None))
        .unwrap();
    notifier
        .enqueue(notification("filt", NotifyEvent::Done, None))
        .unwrap();
    notifier
        .enqueue(notification("filt", NotifyEvent::Fail, None))
        .unwrap();
    let mut got = acks.wait_for(3, WAIT).await;
    got.sort();
    assert_eq!(got, ["msg_filt_done", "msg_filt_fail", "msg_filt_start"]);
    assert_eq!(ids(&rx.received()), ["msg_filt_fail"]);
    assert_eq!(count(&notifier, "delivered"), 1);
}

/// A receiver that accepts connections and never answers: `enqueue` returns
/// at once every time, the queue fills, and the overflow is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_never_blocks_enqueue_and_a_full_queue_is_reported() {
    install_crypto();
    logs();
    let rx = Receiver::start(vec![]).await;
    rx.set_otherwise(Reply::Hang);
    let mut cfg = webhook_cfg(&rx.url());
    cfg.webhook.timeout = Duration::from_secs(3600);
    let acks = Acks::default();
    let notifier = Notifier::start(cfg, ctx(), vec![], acks.callback()).unwrap();

    // One notification in flight, stuck on the receiver.
    notifier
        .enqueue(notification("stuck", NotifyEvent::Start, None))
        .unwrap();
    assert_eq!(rx.wait_for(1, WAIT).await.len(), 1);

    // `enqueue` is synchronous: run it on a plain thread and bound the wait,
    // so a blocking enqueue fails the test instead of hanging it.
    let n2 = notifier.clone();
    let (tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let results: Vec<_> = (0..QUEUE_CAPACITY + 10)
            .map(|i| n2.enqueue(notification(&format!("flood{i}"), NotifyEvent::Done, None)))
            .collect();
        let _ = tx.send(results);
    });
    let results = done
        .recv_timeout(Duration::from_secs(60))
        .expect("enqueue never blocks");
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(accepted, QUEUE_CAPACITY);
    assert_eq!(refused.len(), 10);
    assert!(
        refused
            .iter()
            .all(|e| !e.stopped && e.capacity == QUEUE_CAPACITY)
    );
    assert_eq!(refused[0].id, format!("msg_flood{QUEUE_CAPACITY}_done"));
    assert!(refused[0].to_string().contains("queue is full"));
    assert_eq!(count(&notifier, "dropped"), 10);
    assert_eq!(notifier.depth(), QUEUE_CAPACITY + 1, "queued + in flight");
    assert!(
        acks.get().is_empty(),
        "nothing finished, nothing acknowledged (dropped ones neither)"
    );
    let warnings = log_text()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("notification queue is full"))
        .count();
    assert_eq!(
        warnings, 1,
        "one warning for the episode, not one per dropped notification"
    );
}

/// Shutdown gives delivery until the deadline; what is left is not
/// acknowledged, and a new notifier given it as `pending` delivers it first,
/// with the same ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_notifications_are_delivered_after_a_restart_with_the_same_id() {
    install_crypto();
    let dead = Receiver::start(vec![]).await;
    dead.set_otherwise(Reply::Hang);
    let acks = Acks::default();
    let mut cfg = webhook_cfg(&dead.url());
    cfg.webhook.timeout = Duration::from_secs(3600);
    let first = Notifier::start(cfg, ctx(), vec![], acks.callback()).unwrap();
    let a = notification("restart-a", NotifyEvent::Done, None);
    let b = notification("restart-b", NotifyEvent::Fail, Some("x"));
    first.enqueue(a.clone()).unwrap();
    first.enqueue(b.clone()).unwrap();
    assert_eq!(dead.wait_for(1, WAIT).await.len(), 1);
    let keep = first.clone();
    first
        .shutdown(tokio::time::Instant::now() + Duration::from_millis(200))
        .await;
    assert!(
        acks.get().is_empty(),
        "nothing was delivered, nothing acknowledged"
    );
    let err = keep
        .enqueue(notification("late", NotifyEvent::Done, None))
        .unwrap_err();
    assert!(err.stopped, "refused after shutdown");

    // "Restart": the daemon hands back what it persisted and never saw acked.
    let pending: Vec<Notification> = [a, b]
        .into_iter()
        .map(|n| serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap())
        .collect();
    let up = Receiver::start(vec![]).await;
    let acks2 = Acks::default();
    let second = Notifier::start(webhook_cfg(&up.url()), ctx(), pending, acks2.callback()).unwrap();
    second
        .enqueue(notification("restart-c", NotifyEvent::Start, None))
        .unwrap();
    assert_eq!(
        acks2.wait_for(3, WAIT).await,
        [
            "msg_restart-a_done",
            "msg_restart-b_fail",
            "msg_restart-c_start"
        ]
    );
    assert_eq!(
        ids(&up.received()),
        [
            "msg_restart-a_done",
            "msg_restart-b_fail",
            "msg_restart-c_start"
        ]
    );
    assert_eq!(
        ids(&dead.received())[0],
        "msg_restart-a_done",
        "same id as before the restart"
    );
    for r in up.received() {
        assert_signature_verifies(&r);
    }
    second
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_what_is_queued_before_the_deadline() {
    install_crypto();
    let rx = Receiver::start(vec![Reply::Status(500)]).await;
    let acks = Acks::default();
    let notifier = Notifier::start(webhook_cfg(&rx.url()), ctx(), vec![], acks.callback()).unwrap();
    for i in 0..5 {
        notifier
            .enqueue(notification(&format!("drain{i}"), NotifyEvent::Done, None))
            .unwrap();
    }
    notifier
        .clone()
        .shutdown(tokio::time::Instant::now() + WAIT)
        .await;
    assert_eq!(acks.get().len(), 5, "all delivered within the window");
    assert_eq!(rx.received().len(), 6, "one retry included");
    assert_eq!(notifier.depth(), 0);
}

#[test]
fn configuration_errors_name_the_key_and_never_the_secret() {
    install_crypto();
    let mut cfg = webhook_cfg("http://127.0.0.1:1/");
    cfg.webhook.url = None;
    let e = check(&cfg).unwrap_err();
    assert!(matches!(e, NotifyError::WebhookUrlMissing));
    assert!(e.to_string().contains("notify.webhook.url"));

    let mut cfg = webhook_cfg("not a url?token=url-secret-token");
    let e = check(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("notify.webhook.url") && !e.contains("url-secret-token"),
        "{e}"
    );
    cfg.webhook.url = Some(Secret::new("ftp://example.com/?token=url-secret-token"));
    let e = check(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("notify.webhook.url") && !e.contains("url-secret-token"),
        "{e}"
    );

    let mut cfg = webhook_cfg("https://example.com/hook");
    cfg.webhook.secret = Some(Secret::new("whsec_not*base64*secretvalue"));
    let e = check(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("notify.webhook.secret") && !e.contains("secretvalue"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-secret");
    cfg.webhook.secret = None;
    cfg.webhook.secret_file = Some(missing.clone());
    let e = check(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("notify.webhook.secret_file") && e.contains(&missing.display().to_string()),
        "{e}"
    );

    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    cfg.webhook.secret_file = Some(file);
    check(&cfg).expect("a whsec_ key in a file, trailing newline trimmed");

    cfg.webhook
        .headers
        .insert("Bad Header".into(), Secret::new("header-secret-value"));
    let e = check(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("notify.webhook.headers.Bad Header") && !e.contains("header-secret-value"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_file_is_read_at_start_and_signs() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let rx = Receiver::start(vec![]).await;
    let mut cfg = webhook_cfg(&rx.url());
    cfg.webhook.secret = None;
    cfg.webhook.secret_file = Some(file.clone());
    let notifier = Notifier::start(cfg, ctx(), vec![], Acks::default().callback()).unwrap();
    // Read at start: removing the file afterwards changes nothing.
    std::fs::remove_file(&file).unwrap();
    notifier
        .enqueue(notification("filekey", NotifyEvent::Done, None))
        .unwrap();
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_signature_verifies(&got[0]);
}
