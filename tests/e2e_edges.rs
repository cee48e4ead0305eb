//! Edges found from outside (issue 30), each reproduced against the real
//! binary: a SIGHUP in the first milliseconds, two daemons of one user, a
//! config file that cannot be read whole at a reload, accepted shell work
//! after `jobs.allow_shell = false`, a deleted snapshot, leftovers that
//! escape with `setsid`, a planted log symlink, `--var` values that look
//! like templates.

mod common;

use std::time::Duration;

use common::{Daemon, TestEnv, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn wait_ready(d: &mut Daemon) -> bool {
    wait_until(Duration::from_secs(15), || {
        d.exited().is_some() || d.get("/v1/status").0 == 200
    }) && d.exited().is_none()
}

/// The blocked and caught signal masks of `pid` (`SigBlk`, `SigCgt`).
fn signal_masks(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
    };
    Some((mask("SigBlk:")?, mask("SigCgt:")?))
}

// Item 7: SIGHUP's default action ends a process; the daemon must not be
// killed by one that arrives before its reload handler is installed. The
// earliest the program can act is its `main` (the dynamic loader runs
// before it, tens of milliseconds for a debug binary under load): SIGHUP is
// blocked from there, and signals sent 0–5 ms later, while the daemon loads
// its config and starts its runtime, become reloads.
#[test]
fn a_sighup_in_the_first_milliseconds_does_not_kill_the_daemon() {
    for round in 0..10u64 {
        let env = TestEnv::new();
        let mut cmd = env.oj();
        cmd.arg("daemon");
        let mut d = Daemon::spawn_raw(cmd, env.path(), env.socket());
        let pid = d.pid();
        // A tight poll for main's first instruction (SIGHUP blocked); the
        // handler must not be there yet, or this round tests nothing.
        let t0 = std::time::Instant::now();
        let mut masks = None;
        while t0.elapsed() < Duration::from_secs(10) {
            masks = signal_masks(pid);
            if masks.is_none_or(|(blocked, caught)| (blocked | caught) & 1 == 1) {
                break;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        assert!(
            masks.is_some_and(|(blocked, caught)| blocked & 1 == 1 && caught & 1 == 0),
            "round {round}: SIGHUP is not blocked from main's start (masks {masks:x?}, exit {:?})",
            d.exited()
        );
        std::thread::sleep(Duration::from_micros(round * 500));
        for _ in 0..3 {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGHUP);
            std::thread::sleep(Duration::from_micros(300));
        }
        assert!(
            wait_ready(&mut d),
            "round {round}: the daemon did not survive an early SIGHUP: {:?}\nstderr:\n{}",
            d.exited(),
            d.stderr()
        );
        d.sigterm();
        let status = d.wait_exit(WAIT);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "round {round}: {status:?}"
        );
    }
}
