//! The desktop backend against a real D-Bus session bus (`dbus-daemon`
//! started by the test) and a small `org.freedesktop.Notifications` service
//! written here with zbus: it receives the title and body; when the service
//! goes away, failures are counted with exactly one warning, and delivery
//! resumes when it comes back.
//!
//! notify-rust connects through `DBUS_SESSION_BUS_ADDRESS` of the process,
//! so this file is its own test binary with a single test that sets it
//! before any runtime thread exists.

mod notify_support;
#[path = "../../../tests/common/private_bus.rs"]
mod private_bus;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify_support::*;
use oj_adapters::notify::{Notifier, session_bus_available};
use oj_config::{Environment, NotifyBackend, NotifyEvent};

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq)]
struct Shown {
    app_name: String,
    summary: String,
    body: String,
    urgency: Option<u8>,
}

struct NotificationService {
    shown: Arc<Mutex<Vec<Shown>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl NotificationService {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        hints: HashMap<String, zbus::OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        let urgency = hints.get("urgency").and_then(|v| u8::try_from(v).ok());
        let mut shown = self.shown.lock().unwrap();
        shown.push(Shown {
            app_name,
            summary,
            body,
            urgency,
        });
        shown.len() as u32
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        ("oj-test".into(), "oj".into(), "1".into(), "1.2".into())
    }

    fn close_notification(&self, _id: u32) {}
}

async fn serve(address: &str, shown: Arc<Mutex<Vec<Shown>>>) -> zbus::Connection {
    zbus::connection::Builder::address(address)
        .name("org.freedesktop.Notifications")
        .serve_at(
            "/org/freedesktop/Notifications",
            NotificationService { shown },
        )
        .build()
        .await
        .expect("serve org.freedesktop.Notifications on the test bus")
}

fn count(n: &Notifier, result: &str) -> u64 {
    n.counts()
        .iter()
        .find(|(b, r, _)| *b == "desktop" && *r == result)
        .map(|c| c.2)
        .unwrap()
}

#[test]
fn desktop_notifications_reach_the_session_bus_and_survive_the_service_going_away() {
    let Some(bus) = private_bus::start() else {
        eprintln!("skipped: dbus-daemon (package dbus) is not installed");
        return;
    };
    assert!(
        bus.address.starts_with("unix:"),
        "dbus-daemon printed {:?}",
        bus.address
    );
    // SAFETY: set before the runtime starts; this binary has only this test,
    // so no other thread reads the environment concurrently.
    unsafe { std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &bus.address) };
    logs();

    let env = Environment::new([("DBUS_SESSION_BUS_ADDRESS", bus.address.as_str())], "h");
    assert!(session_bus_available(&env), "oj config check sees the bus");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let shown = Arc::new(Mutex::new(Vec::new()));
        let service = serve(&bus.address, shown.clone()).await;

        let acks = Acks::default();
        let notifier = Notifier::start(
            cfg_with(NotifyBackend::Desktop),
            ctx(),
            vec![],
            acks.callback(),
        )
        .unwrap();
        assert_eq!(notifier.backend(), "desktop");
        notifier
            .enqueue(notification("desk", NotifyEvent::Start, None))
            .unwrap();
        notifier
            .enqueue(notification("desk", NotifyEvent::Fail, Some("exit 2")))
            .unwrap();
        assert_eq!(
            acks.wait_for(2, WAIT).await,
            ["msg_desk_start", "msg_desk_fail"]
        );
        let got = shown.lock().unwrap().clone();
        assert_eq!(
            got,
            [
                Shown {
                    app_name: "oj".into(),
                    summary: "desk-name".into(),
                    body: "Job desk-name started".into(),
                    urgency: None
                },
                Shown {
                    app_name: "oj".into(),
                    summary: "desk-name".into(),
                    body: "Job desk-name failed: exit 2".into(),
                    urgency: Some(2),
                },
            ]
        );
        assert_eq!(count(&notifier, "delivered"), 2);

        // The service goes away: every notification fails, one warning.
        drop(service);
        let deadline = Instant::now() + WAIT;
        while session_has_service(&bus.address).await && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for i in 0..4 {
            notifier
                .enqueue(notification(&format!("gone{i}"), NotifyEvent::Done, None))
                .unwrap();
        }
        assert_eq!(
            acks.wait_for(6, WAIT).await.len(),
            6,
            "failures are finished, not stuck"
        );
        assert_eq!(count(&notifier, "failed"), 4);
        let warnings = warning_lines();
        assert_eq!(
            warnings.len(),
            1,
            "exactly one warning, got:\n{}",
            warnings.join("\n")
        );
        assert!(warnings[0].contains("D-Bus"), "{}", warnings[0]);

        // It comes back: delivered again.
        let _service = serve(&bus.address, shown.clone()).await;
        notifier
            .enqueue(notification("back", NotifyEvent::Done, None))
            .unwrap();
        assert_eq!(acks.wait_for(7, WAIT).await.len(), 7);
        assert_eq!(count(&notifier, "delivered"), 3);
        assert_eq!(
            shown.lock().unwrap().last().unwrap().body,
            "Job back-name done"
        );
        notifier.shutdown(tokio::time::Instant::now() + WAIT).await;
    });
}

fn warning_lines() -> Vec<String> {
    log_text()
        .lines()
        .filter(|l| l.contains(" WARN "))
        .map(String::from)
        .collect()
}

async fn session_has_service(address: &str) -> bool {
    let Ok(conn) = zbus::connection::Builder::address(address).build().await else {
        return false;
    };
    let Ok(proxy) = zbus::fdo::DBusProxy::new(&conn).await else {
        return false;
    };
    proxy
        .name_has_owner("org.freedesktop.Notifications".try_into().unwrap())
        .await
        .unwrap_or(false)
}
