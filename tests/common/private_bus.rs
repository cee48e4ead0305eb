//! A private D-Bus session bus for tests: `dbus-daemon` with its own
//! config. It has no service directories, so no notification daemon
//! installed on the machine can be auto-activated and change what a test
//! sees. Killed on drop. Shared by the e2e tests (through `common`) and the
//! adapters' desktop test (by path).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct PrivateBus {
    child: Child,
    /// The bus address (`unix:path=…`), for `DBUS_SESSION_BUS_ADDRESS`.
    pub address: String,
    _dir: tempfile::TempDir,
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the bus; `None` when `dbus-daemon` (package dbus) cannot run
/// here, so the caller can say so and skip.
pub fn start() -> Option<PrivateBus> {
    let dir = tempfile::tempdir().ok()?;
    let config = dir.path().join("session.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
            dir.path().join("bus").display()
        ),
    )
    .ok()?;
    let mut child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--print-address"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    Some(PrivateBus {
        child,
        address: line.trim().to_string(),
        _dir: dir,
    })
}
