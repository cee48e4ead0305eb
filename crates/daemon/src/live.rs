//! One road for live config (SPEC §7.7). The running configuration is cut
//! into slices, one per subsystem ([`Slices`]); each slice has one channel.
//! A subsystem holds a [`Live`] receiver of its own slice and reads the
//! current value where it uses it, so a reload needs no call into the
//! subsystem: it publishes the new running configuration, and each slice
//! whose value changed is sent on (an unchanged slice wakes nobody).
//!
//! Which keys apply live is decided once, before publishing, by the table
//! of live keys (`oj_config::keys::LIVE`, see `reload::running_config`):
//! the running configuration keeps restart-only keys at their start
//! values, so a slice built from it changes only through live keys.
//!
//! Each slice is built from the configuration by one function, at start
//! and at every reload alike.

use std::sync::Arc;

use oj_config::{NotifyConfig, PodsConfig, RuntimeConfig, ShutdownConfig, TlsConfig};
use tokio::sync::watch;

use crate::engine::EngineConfig;
use crate::engine::schedules::ScheduleConfigs;

/// A subsystem's slice of the running configuration. [`Live::get`] is the
/// value in effect now: read it per use, do not keep it.
#[derive(Debug)]
pub struct Live<T> {
    rx: watch::Receiver<Arc<T>>,
    /// False once the publisher is gone (the value is then fixed).
    open: bool,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            rx: self.rx.clone(),
            open: self.open,
        }
    }
}

impl<T> Live<T> {
    /// A slice that never changes (a test, a subsystem built without a daemon).
    pub fn fixed(value: T) -> Live<T> {
        let (_, rx) = watch::channel(Arc::new(value));
        Live { rx, open: false }
    }

    /// The value in effect now.
    pub fn get(&self) -> Arc<T> {
        self.rx.borrow().clone()
    }

    /// A slice and the sender that publishes it (a test's own reloads).
    pub fn channel(value: T) -> (watch::Sender<Arc<T>>, Live<T>) {
        let (tx, rx) = watch::channel(Arc::new(value));
        (tx, Live { rx, open: true })
    }

    /// Waits until a reload publishes a new value of this slice, and
    /// returns it; waits for ever once the publisher is gone (so it can
    /// sit in a `select!` loop).
    pub async fn changed(&mut self) -> Arc<T> {
        match self.next().await {
            Some(value) => value,
            None => std::future::pending().await,
        }
    }

    /// The next published value; `None` once the publisher is gone.
    pub async fn next(&mut self) -> Option<Arc<T>> {
        if self.open && self.rx.changed().await.is_ok() {
            return Some(self.rx.borrow_and_update().clone());
        }
        self.open = false;
        None
    }
}

/// For a subsystem that holds something built from its slice (the log
/// filter, the TLS acceptor, the notifier): rebuilds it with `apply` on
/// every new value, until the publisher is gone.
pub fn follow<T: Send + Sync + 'static>(
    mut live: Live<T>,
    mut apply: impl FnMut(&T) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(value) = live.next().await {
            apply(&value);
        }
    })
}

/// One channel.
struct Slice<T> {
    tx: watch::Sender<Arc<T>>,
    /// Builds the slice from a configuration.
    of: fn(&RuntimeConfig) -> T,
}

impl<T: PartialEq> Slice<T> {
    fn new(cfg: &RuntimeConfig, of: fn(&RuntimeConfig) -> T) -> Slice<T> {
        Slice {
            tx: watch::channel(Arc::new(of(cfg))).0,
            of,
        }
    }

    fn subscribe(&self) -> Live<T> {
        Live {
            rx: self.tx.subscribe(),
            open: true,
        }
    }

    /// Sends the slice of `cfg` on if it differs from the one in effect.
    fn publish(&self, cfg: &RuntimeConfig) {
        let new = (self.of)(cfg);
        self.tx.send_if_modified(|now| {
            let changed = **now != new;
            if changed {
                *now = Arc::new(new);
            }
            changed
        });
    }
}

/// The publishing side: every live slice of the running configuration.
pub struct Slices {
    engine: Slice<EngineConfig>,
    log_level: Slice<String>,
    notify: Slice<NotifyConfig>,
    tls: Slice<TlsConfig>,
    pods: Slice<PodsConfig>,
    shutdown: Slice<ShutdownConfig>,
    schedules: Slice<ScheduleConfigs>,
}

impl Slices {
    /// The slices of the configuration the daemon starts with.
    pub fn new(cfg: &RuntimeConfig) -> Slices {
        Slices {
            engine: Slice::new(cfg, EngineConfig::of),
            log_level: Slice::new(cfg, |c| c.log.level.clone()),
            notify: Slice::new(cfg, |c| c.notify.clone()),
            tls: Slice::new(cfg, |c| c.tls.clone()),
            pods: Slice::new(cfg, |c| c.pods.clone()),
            shutdown: Slice::new(cfg, |c| c.shutdown.clone()),
            schedules: Slice::new(cfg, |c| c.schedules.clone()),
        }
    }

    /// Publishes the slices of a new running configuration (after a
    /// reload); only those that changed wake their subsystem.
    pub fn publish(&self, cfg: &RuntimeConfig) {
        self.engine.publish(cfg);
        self.log_level.publish(cfg);
        self.notify.publish(cfg);
        self.tls.publish(cfg);
        self.pods.publish(cfg);
        self.shutdown.publish(cfg);
        self.schedules.publish(cfg);
    }

    /// `jobs.*` and `queues.*` (the engine).
    pub fn engine(&self) -> Live<EngineConfig> {
        self.engine.subscribe()
    }

    /// `log.level` (the daemon's log).
    pub fn log_level(&self) -> Live<String> {
        self.log_level.subscribe()
    }

    /// `notify.*` (the notifier).
    pub fn notify(&self) -> Live<NotifyConfig> {
        self.notify.subscribe()
    }

    /// `tls.*` (the TCP listener).
    pub fn tls(&self) -> Live<TlsConfig> {
        self.tls.subscribe()
    }

    /// `pods.*` (container steps, and the API's checks of them).
    pub fn pods(&self) -> Live<PodsConfig> {
        self.pods.subscribe()
    }

    /// `shutdown.*` (the drain, and what it does to step pods).
    pub fn shutdown(&self) -> Live<ShutdownConfig> {
        self.shutdown.subscribe()
    }

    /// `schedules.*` (the engine's scheduler).
    pub fn schedules(&self) -> Live<ScheduleConfigs> {
        self.schedules.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sets: &[&str]) -> RuntimeConfig {
        let env = oj_config::Environment::new([("HOME", "/nonexistent-home")], "h");
        let opts = oj_config::LoadOptions {
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        oj_config::load(&opts, &env).expect("loads").config
    }

    #[tokio::test]
    async fn a_published_slice_is_what_its_subsystem_reads_next() {
        let slices = Slices::new(&config(&["jobs.max_concurrent=2"]));
        let mut engine = slices.engine();
        let pods = slices.pods();
        assert_eq!(engine.get().max_concurrent, 2);
        let before = pods.get();
        slices.publish(&config(&["jobs.max_concurrent=7"]));
        assert_eq!(engine.changed().await.max_concurrent, 7);
        assert_eq!(
            engine.get().max_concurrent,
            7,
            "the next use reads the new value"
        );
        assert!(
            Arc::ptr_eq(&before, &pods.get()),
            "an unchanged slice is not sent again"
        );
    }

    #[tokio::test]
    async fn a_fixed_slice_never_changes() {
        let mut fixed = Live::fixed(3);
        assert_eq!(*fixed.get(), 3);
        let wait = tokio::time::timeout(std::time::Duration::from_millis(20), fixed.changed());
        assert!(wait.await.is_err());
    }
}
