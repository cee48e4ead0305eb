//! The `log` backend writes one INFO line per notification with the job's
//! fields; `none` accepts and acknowledges without doing anything.

mod notify_support;

use std::time::Duration;

use notify_support::*;
use oj_adapters::notify::Notifier;
use oj_config::{NotifyBackend, NotifyEvent};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_backend_writes_one_info_line_per_notification() {
    logs();
    let acks = Acks::default();
    let notifier =
        Notifier::start(cfg_with(NotifyBackend::Log), ctx(), vec![], acks.callback()).unwrap();
    assert_eq!(notifier.backend(), "log");
    notifier
        .enqueue(notification("logjob", NotifyEvent::Start, None))
        .unwrap();
    notifier
        .enqueue(notification(
            "logjob",
            NotifyEvent::Fail,
            Some("step build exited 2"),
        ))
        .unwrap();
    assert_eq!(
        acks.wait_for(2, WAIT).await,
        ["msg_logjob_start", "msg_logjob_fail"]
    );

    let logs = log_text();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("job_id=logjob"))
        .collect();
    assert_eq!(lines.len(), 2, "one line per notification:\n{logs}");
    assert!(
        lines[0].contains(" INFO ") && lines[0].contains("event=\"start\""),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("Job logjob-name started"), "{}", lines[0]);
    assert!(lines[0].contains("title=logjob-name"), "{}", lines[0]);
    assert!(
        lines[1].contains("Job logjob-name failed: step build exited 2"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains(" INFO ") && lines[1].contains("event=\"fail\""),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("error=step build exited 2"),
        "{}",
        lines[1]
    );
    assert!(notifier.counts().contains(&("log", "delivered", 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_backend_acknowledges_without_delivering() {
    let acks = Acks::default();
    let notifier = Notifier::start(
        cfg_with(NotifyBackend::None),
        ctx(),
        vec![],
        acks.callback(),
    )
    .unwrap();
    for i in 0..3 {
        notifier
            .enqueue(notification(&format!("quiet{i}"), NotifyEvent::Done, None))
            .unwrap();
    }
    assert_eq!(acks.wait_for(3, WAIT).await.len(), 3);
    assert!(
        notifier
            .counts()
            .iter()
            .all(|(b, _, n)| *b == "none" && *n == 0),
        "{:?}",
        notifier.counts()
    );
    assert_eq!(notifier.depth(), 0);
}

#[test]
fn start_outside_a_runtime_is_an_error_not_a_panic() {
    let err = Notifier::start(
        cfg_with(NotifyBackend::Log),
        ctx(),
        vec![],
        Box::new(|_| {}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("Tokio runtime"), "{err}");
}
