//! The `desktop` backend: freedesktop notifications over the D-Bus session
//! bus (notify-rust). On a headless machine there is no bus or no
//! notification service; that must not be silent (one warning says so and
//! every failure is counted) and must not be noisy (not one warning per job).

use std::path::Path;
use std::time::Duration;

use oj_config::{Environment, NotifyEvent};

use super::Notification;
use super::queue::Outcome;

/// A notification service that accepts the connection but never answers
/// must not hold the queue forever.
const SHOW_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct DesktopBackend {
    /// A failure has been warned about and no delivery succeeded since.
    failing: bool,
    /// Whether the server reads markup in bodies (`body-markup`); asked
    /// once per connection, again after a failure.
    markup: Option<bool>,
}

impl DesktopBackend {
    pub(crate) fn new() -> DesktopBackend {
        DesktopBackend {
            failing: false,
            markup: None,
        }
    }

    /// The server's `body-markup` capability. Unknown (no answer) counts as
    /// markup: escaping a plain-text body only shows `&lt;` where a `<` was.
    async fn reads_markup(&mut self) -> bool {
        if let Some(m) = self.markup {
            return m;
        }
        // notify-rust's call blocks on a runtime of its own: give it a
        // plain thread, outside this runtime's context.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("oj-desktop-caps".into())
            .spawn(move || {
                let _ = tx.send(notify_rust::get_capabilities());
            });
        if spawned.is_err() {
            return true;
        }
        match tokio::time::timeout(SHOW_TIMEOUT, rx).await {
            Ok(Ok(Ok(caps))) => {
                let m = caps.iter().any(|c| c == "body-markup");
                self.markup = Some(m);
                m
            }
            // No bus or no service: the delivery fails too and asks again.
            Ok(_) => true,
            // A server that does not answer: assume markup, do not ask again
            // (each question would leave a thread waiting).
            Err(_) => {
                self.markup = Some(true);
                true
            }
        }
    }

    pub(crate) async fn deliver(&mut self, n: &Notification) -> Outcome {
        // With `ui.url`, the job's page is the body's last line.
        let text = match &n.url {
            Some(url) => format!("{}\n{url}", n.message),
            None => n.message.clone(),
        };
        let body = if self.reads_markup().await {
            crate::escape::desktop_markup(&text).into_owned()
        } else {
            text
        };
        let mut note = notify_rust::Notification::new();
        note.appname("oj").summary(&n.title).body(&body);
        if n.event == NotifyEvent::Fail {
            note.urgency(notify_rust::Urgency::Critical);
        }
        let result = match tokio::time::timeout(SHOW_TIMEOUT, note.show_async()).await {
            Ok(Ok(_handle)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", SHOW_TIMEOUT.as_secs())),
        };
        match result {
            Ok(()) => {
                if self.failing {
                    self.failing = false;
                    tracing::info!("desktop notifications are delivered again");
                }
                Outcome::Delivered
            }
            Err(reason) => {
                self.markup = None; // the server may be another one next time
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(
                        job_id = %n.job_id,
                        reason = %reason,
                        "desktop notifications cannot be shown: no notification service answers on the D-Bus \
                         session bus; jobs are unaffected, further failures are only counted in \
                         oj_notifications_total{{backend=\"desktop\",result=\"failed\"}}; on a headless machine \
                         set notify.backend = \"log\" or \"webhook\""
                    );
                } else {
                    tracing::debug!(job_id = %n.job_id, reason = %reason, "desktop notification failed");
                }
                Outcome::Failed
            }
        }
    }
}

/// See [`super::session_bus_available`].
pub(crate) fn session_bus_available(env: &Environment) -> bool {
    if let Some(addresses) = env.get("DBUS_SESSION_BUS_ADDRESS") {
        return addresses.split(';').any(address_reachable);
    }
    let runtime_dir = match env.get("XDG_RUNTIME_DIR") {
        Some(dir) => dir.to_string(),
        None => match current_uid() {
            Some(uid) => format!("/run/user/{uid}"),
            None => return false,
        },
    };
    connect_unix_path(&Path::new(&runtime_dir).join("bus"))
}

/// One D-Bus address (`transport:key=value,…`).
fn address_reachable(address: &str) -> bool {
    let Some((transport, params)) = address.trim().split_once(':') else {
        return false;
    };
    let get = |key: &str| {
        params.split(',').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| unescape(v))
        })
    };
    match transport {
        "unix" => {
            if let Some(path) = get("path") {
                connect_unix_path(Path::new(&path))
            } else if let Some(name) = get("abstract") {
                connect_abstract(&name)
            } else {
                false
            }
        }
        "tcp" => {
            let (Some(host), Some(port)) = (get("host"), get("port")) else {
                return false;
            };
            let Ok(port) = port.parse::<u16>() else {
                return false;
            };
            use std::net::ToSocketAddrs;
            let Ok(addrs) = (host.as_str(), port).to_socket_addrs() else {
                return false;
            };
            addrs.into_iter().any(|a| {
                std::net::TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok()
            })
        }
        _ => false,
    }
}

fn connect_unix_path(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::os::unix::net::UnixStream::connect(path).is_ok(),
        _ => false,
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn connect_abstract(name: &str) -> bool {
    use std::os::linux::net::SocketAddrExt;
    match std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()) {
        Ok(addr) => std::os::unix::net::UnixStream::connect_addr(&addr).is_ok(),
        Err(_) => false,
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn connect_abstract(_name: &str) -> bool {
    false
}

/// The effective uid, for the `/run/user/<uid>/bus` default. (Not the
/// owner of `/proc/self`: the daemon marks itself non-dumpable, and then
/// the kernel shows its `/proc` entries as root's.)
fn current_uid() -> Option<u32> {
    Some(nix::unistd::geteuid().as_raw())
}

/// D-Bus address values escape bytes as `%xx`.
fn unescape(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_dbus_values() {
        assert_eq!(unescape("/tmp/a%2db"), "/tmp/a-b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end%2"), "/end%2");
    }

    #[test]
    fn no_bus_anywhere_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::new([("XDG_RUNTIME_DIR", dir.path().to_str().unwrap())], "h");
        assert!(!session_bus_available(&env));
        let missing = format!("unix:path={}/nope", dir.path().display());
        let env = Environment::new([("DBUS_SESSION_BUS_ADDRESS", missing.as_str())], "h");
        assert!(!session_bus_available(&env));
        let env = Environment::new([("DBUS_SESSION_BUS_ADDRESS", "garbage")], "h");
        assert!(!session_bus_available(&env));
    }

    #[test]
    fn a_listening_socket_is_available() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let env = Environment::new([("XDG_RUNTIME_DIR", dir.path().to_str().unwrap())], "h");
        assert!(session_bus_available(&env));
        let addr = format!(
            "unix:path={}/nope;unix:path={}",
            dir.path().display(),
            path.display()
        );
        let env = Environment::new([("DBUS_SESSION_BUS_ADDRESS", addr.as_str())], "h");
        assert!(session_bus_available(&env));
    }

    #[test]
    fn a_stale_socket_file_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let env = Environment::new([("XDG_RUNTIME_DIR", dir.path().to_str().unwrap())], "h");
        assert!(!session_bus_available(&env));
    }
}
