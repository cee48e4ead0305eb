//! Connection slots of one listener, with eviction (issue 30): at the cap,
//! a new connection does not wait behind silent ones. The connection that
//! gives way is, first, one that has not yet made an authenticated request
//! (silent, or only 401s) — the oldest, whose header deadline comes first —
//! then the one idle longest; a connection with a request in flight (a
//! followed log, say) is never evicted. Only when every connection is busy
//! do new clients wait in the kernel's backlog.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::listen::Activity;

/// What eviction looks at, per connection (a pure input, for the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub accepted: Instant,
    pub authenticated: bool,
    pub in_flight: bool,
    /// When its last response ended (`accepted` before any).
    pub idle_since: Instant,
}

/// The connection to close to make room, if any (see the module doc).
pub fn pick_victim(conns: impl IntoIterator<Item = (u64, View)>) -> Option<u64> {
    conns
        .into_iter()
        .filter(|(_, v)| !v.in_flight)
        .min_by_key(|(_, v)| {
            if v.authenticated {
                (1, v.idle_since)
            } else {
                (0, v.accepted)
            }
        })
        .map(|(id, _)| id)
}

/// The open connections of one listener.
pub struct Slots {
    cap: usize,
    conns: Mutex<HashMap<u64, Arc<Activity>>>,
    next: AtomicU64,
    /// A connection closed: a waiting accept loop may go on.
    pub freed: Notify,
}

/// Held by a connection's task; frees its slot when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().remove(&self.id);
        self.slots.freed.notify_one();
    }
}

impl Slots {
    pub fn new(cap: usize) -> Arc<Slots> {
        Arc::new(Slots {
            cap: cap.max(1),
            conns: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Registers an accepted connection.
    pub fn register(self: &Arc<Self>, activity: Arc<Activity>) -> Slot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, activity);
        Slot {
            slots: self.clone(),
            id,
        }
    }

    /// Whether there is room for one more: at the cap (or always, with
    /// `force`: the process ran out of file descriptors), the connection
    /// [`pick_victim`] names is told to close (and room is made).
    pub fn make_room(&self, force: bool) -> bool {
        let conns = self.lock();
        let open = conns.values().filter(|a| !a.is_evicted()).count();
        if open < self.cap && !force {
            return true;
        }
        let now = Instant::now();
        let victim = pick_victim(
            conns
                .iter()
                .filter(|(_, a)| !a.is_evicted())
                .map(|(id, a)| (*id, a.view(now))),
        );
        match victim.and_then(|id| conns.get(&id)) {
            Some(a) => {
                a.evict();
                true
            }
            None => false,
        }
    }
}

/// How long an accept loop waits for a slot before it looks again (a
/// connection may have become idle, hence evictable, in the meantime).
pub const RECHECK: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_ones_go_first_oldest_first_then_the_longest_idle_never_a_busy_one() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let view = |accepted, authenticated, in_flight, idle_since| View {
            accepted: at(accepted),
            authenticated,
            in_flight,
            idle_since: at(idle_since),
        };
        let conns = [
            (1, view(0, true, false, 5)),  // idle since 5
            (2, view(1, true, false, 3)),  // idle since 3: the longest idle
            (3, view(2, false, false, 2)), // silent, accepted at 2
            (4, view(3, false, false, 3)), // silent, newer
            (5, view(0, true, true, 0)),   // busy
        ];
        assert_eq!(pick_victim(conns), Some(3));
        assert_eq!(
            pick_victim(conns.into_iter().filter(|(id, _)| *id != 3 && *id != 4)),
            Some(2)
        );
        assert_eq!(
            pick_victim([(5, view(0, false, true, 0))]),
            None,
            "busy, even unauthenticated"
        );
    }
}
