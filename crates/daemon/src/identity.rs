//! Who this daemon is, to the processes it starts (issue 30).
//!
//! - The **id node**: [`NODE_WIDTH`](oj_core::job::NODE_WIDTH) random base36
//!   characters drawn at each start and appended to every job id, so two
//!   daemons of one user (different state directories) never hand out the
//!   same id, even in the same millisecond.
//! - The **mark**: 128 random bits kept in `state_dir/daemon.mark` (0600,
//!   created once, read again after every restart). Every shell step gets it
//!   as `OJ_DAEMON_MARK`; the leftover sweeps only touch processes carrying
//!   this daemon's mark (besides its own cgroups, see
//!   [`crate::runner::cgroup`]), never one carrying only a job id, which
//!   another daemon may have handed out too and anybody can copy.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;

/// The step variable that carries the mark.
pub const MARK_VARIABLE: &str = "OJ_DAEMON_MARK";
/// The file in the state directory that keeps the mark.
pub const MARK_FILE: &str = "daemon.mark";

static NODE: OnceLock<String> = OnceLock::new();
static MARK: OnceLock<String> = OnceLock::new();

/// 64 random bits from the kernel; from the clock and pid if
/// `/dev/urandom` cannot be read (then still different per start).
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
    {
        return u64::from_le_bytes(buf);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u64).rotate_left(17)
        ^ u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The daemon part of the job ids this process hands out.
pub fn id_node() -> &'static str {
    NODE.get_or_init(|| oj_core::job::node_from(random_u64()))
}

/// This daemon's mark, once [`load_mark`] ran.
pub fn mark() -> Option<&'static str> {
    MARK.get().map(String::as_str)
}

/// Reads the mark of `state_dir`, creating it on first use. Called once,
/// with the lock held (nobody else writes the state directory).
pub fn load_mark(state_dir: &Path) -> std::io::Result<&'static str> {
    let path = state_dir.join(MARK_FILE);
    let valid = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut text = String::new();
    let read = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .and_then(|mut f| f.read_to_string(&mut text));
    let mark = match read {
        Ok(_) if valid(text.trim()) => text.trim().to_string(),
        _ => {
            let fresh = format!("{:016x}{:016x}", random_u64(), random_u64());
            let tmp = state_dir.join(format!("{MARK_FILE}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(crate::harden::FILE_MODE)
                .open(&tmp)?;
            f.write_all(fresh.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            fresh
        }
    };
    Ok(MARK.get_or_init(|| mark).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_kept_across_restarts_and_random_per_state_dir() {
        let a = tempfile::tempdir().unwrap();
        let first = load_mark(a.path()).unwrap().to_string();
        let text = std::fs::read_to_string(a.path().join(MARK_FILE)).unwrap();
        assert_eq!(text.len(), 32);
        assert_eq!(mark(), Some(first.as_str()));
        assert_ne!(random_u64(), random_u64());
        assert_eq!(id_node().len(), oj_core::job::NODE_WIDTH);
    }
}
