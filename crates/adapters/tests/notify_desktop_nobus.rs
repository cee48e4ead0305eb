//! The desktop backend where there is no D-Bus session bus at all (a
//! container, a CI runner): notifications fail without touching the caller,
//! every failure is counted, and exactly one warning is logged.
//!
//! notify-rust reads `DBUS_SESSION_BUS_ADDRESS` from the process, so this is
//! its own test binary with a single test that points it at nothing.

mod notify_support;

use std::time::Duration;

use notify_support::*;
use oj_adapters::notify::{Notifier, session_bus_available};
use oj_config::{Environment, NotifyBackend, NotifyEvent};

#[test]
fn without_a_session_bus_notifications_fail_quietly_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("unix:path={}", dir.path().join("no-bus").display());
    // SAFETY: set before the runtime starts; this binary has only this test.
    unsafe {
        std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &nowhere);
        std::env::set_var("XDG_RUNTIME_DIR", dir.path());
    }
    logs();

    let env = Environment::new(
        [
            ("DBUS_SESSION_BUS_ADDRESS", nowhere.as_str()),
            ("XDG_RUNTIME_DIR", dir.path().to_str().unwrap()),
        ],
        "h",
    );
    assert!(!session_bus_available(&env), "oj config check would warn");
    let env = Environment::new([("XDG_RUNTIME_DIR", dir.path().to_str().unwrap())], "h");
    assert!(!session_bus_available(&env));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let acks = Acks::default();
        let notifier = Notifier::start(
            cfg_with(NotifyBackend::Desktop),
            ctx(),
            vec![],
            acks.callback(),
        )
        .expect("starting never needs the bus");
        for i in 0..5 {
            notifier
                .enqueue(notification(
                    &format!("headless{i}"),
                    NotifyEvent::Done,
                    None,
                ))
                .expect("the caller is never affected");
        }
        assert_eq!(
            acks.wait_for(5, Duration::from_secs(20)).await.len(),
            5,
            "failures are finished, not retried forever"
        );
        let counts = notifier.counts();
        assert!(counts.contains(&("desktop", "failed", 5)), "{counts:?}");
        assert!(counts.contains(&("desktop", "delivered", 0)), "{counts:?}");
        assert_eq!(notifier.depth(), 0);

        let logs = log_text();
        let warnings: Vec<&str> = logs.lines().filter(|l| l.contains(" WARN ")).collect();
        assert_eq!(
            warnings.len(),
            1,
            "exactly one warning, not one per event:\n{logs}"
        );
        assert!(
            warnings[0].contains("desktop notifications cannot be shown"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[0].contains("notify.backend"),
            "the warning says what to do: {}",
            warnings[0]
        );
        notifier
            .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
    });
}
