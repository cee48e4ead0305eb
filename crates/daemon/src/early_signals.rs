//! SIGHUP from the first instruction: a SIGHUP's default action ends the
//! process, and the daemon installs its reload handler only once it has
//! loaded its configuration and started its runtime. A SIGHUP sent in those
//! first milliseconds (a supervisor reloading everything, a terminal
//! closing) must not kill it. So `main` blocks SIGHUP before anything else
//! runs (threads started later inherit the mask); the daemon unblocks it on
//! its main thread once the reload handler is installed, and a SIGHUP that
//! arrived meanwhile is delivered then, as a reload. Client commands unblock
//! it at once (a hang-up ends them as before). Children never inherit the
//! mask: the standard library empties it before `exec`.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

fn hangup() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGHUP);
    set
}

/// Blocks SIGHUP for the calling thread and every thread it starts later.
/// Call first in `main`.
pub fn block_hangup() {
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&hangup()), None);
}

/// Unblocks SIGHUP for the calling thread; a pending one is delivered now.
pub fn unblock_hangup() {
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&hangup()), None);
}

/// Whether SIGHUP is blocked for the calling thread.
pub fn hangup_blocked() -> bool {
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut old))
        .map(|()| old.contains(Signal::SIGHUP))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_and_unblocking_is_per_thread_and_inherited() {
        std::thread::spawn(|| {
            block_hangup();
            assert!(hangup_blocked());
            let inherited = std::thread::spawn(hangup_blocked).join().unwrap();
            assert!(inherited, "a thread started later inherits the mask");
            unblock_hangup();
            assert!(!hangup_blocked());
        })
        .join()
        .unwrap();
    }
}
