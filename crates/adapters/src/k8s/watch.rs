//! One shared watch over the pods this daemon manages, feeding every
//! running container step. A watch per step costs one long-lived API
//! connection per step (500 steps, 500 watches); Kubernetes controllers
//! share one (client-go informers), and so does oj: a kube-rs
//! [`watcher`](kube::runtime::watcher) on the label selector of this
//! instance's pods, with its re-list after an expired resourceVersion and
//! its back-off after errors, publishes each pod's latest state on a
//! `tokio::sync::watch` channel that the step following it reads.
//!
//! Slots are keyed by the pod's UID, not its name: a retried step reuses
//! its pod name, and the old pod's deletion must not end the new one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

/// How many deleted pods are remembered, for a step that subscribes just
/// after its pod went away.
const TOMBSTONES: usize = 4096;

/// What the shared watch knows about one pod.
#[derive(Debug, Clone)]
pub enum PodState {
    /// The pod exists; its latest version.
    Present(Arc<Pod>),
    /// The pod was deleted; its last version.
    Gone(Arc<Pod>),
}

impl PodState {
    pub fn pod(&self) -> &Pod {
        match self {
            PodState::Present(p) | PodState::Gone(p) => p,
        }
    }
}

/// The shared watch; clones share it. Dropping the last clone stops it.
#[derive(Clone)]
pub struct PodWatch {
    inner: Arc<Inner>,
}

struct Inner {
    slots: Arc<Mutex<Slots>>,
    /// True while the watch fails (steps then re-read their pods themselves).
    failing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Slots {
    pods: HashMap<String, watch::Sender<PodState>>,
    tombstones: VecDeque<(String, Arc<Pod>)>,
    /// UIDs listed since the last `Init`, while a re-list is under way.
    relisting: Option<HashSet<String>>,
}

/// The key of a pod in the slots: its UID, else its name.
fn key_of(pod: &Pod) -> String {
    pod.metadata
        .uid
        .clone()
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
}

impl PodWatch {
    /// Starts watching the pods of `api` that match `selector` (needs a Tokio runtime).
    pub fn start(api: Api<Pod>, selector: &str) -> PodWatch {
        let slots: Arc<Mutex<Slots>> = Arc::default();
        let failing = Arc::new(AtomicBool::new(false));
        let config = watcher::Config::default().labels(selector);
        let selector = selector.to_string();
        let task_slots = Arc::downgrade(&slots);
        let task_failing = failing.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                let Some(slots) = task_slots.upgrade() else {
                    return;
                };
                let was_failing = task_failing.load(Ordering::Relaxed);
                match event {
                    Ok(event) => {
                        if was_failing {
                            tracing::info!(selector = %selector, "the shared pod watch works again");
                            task_failing.store(false, Ordering::Relaxed);
                        }
                        apply(&mut lock(&slots), event);
                    }
                    Err(e) if !was_failing => {
                        task_failing.store(true, Ordering::Relaxed);
                        tracing::warn!(selector = %selector, error = %e, "the shared pod watch failed; retrying with back-off (running steps re-read their pods meanwhile)");
                    }
                    Err(e) => tracing::debug!(error = %e, "the shared pod watch still fails"),
                }
            }
        });
        PodWatch {
            inner: Arc::new(Inner {
                slots,
                failing,
                task,
            }),
        }
    }

    /// The states of `pod` from now on, starting with what the watch knows,
    /// else `pod` itself (as just created or read).
    pub fn subscribe(&self, pod: &Pod) -> watch::Receiver<PodState> {
        let key = key_of(pod);
        let mut slots = lock(&self.inner.slots);
        if let Some(tx) = slots.pods.get(&key) {
            return tx.subscribe();
        }
        let state = match slots.tombstones.iter().find(|(k, _)| *k == key) {
            Some((_, last)) => PodState::Gone(last.clone()),
            None => PodState::Present(Arc::new(pod.clone())),
        };
        let (tx, rx) = watch::channel(state);
        slots.pods.insert(key, tx);
        rx
    }

    /// Publishes a version of a pod read directly (while the watch fails).
    pub fn offer(&self, pod: Pod) {
        present(&mut lock(&self.inner.slots), pod);
    }

    /// Whether the watch is failing right now.
    pub fn is_failing(&self) -> bool {
        self.inner.failing.load(Ordering::Relaxed)
    }

    /// Pods the watch currently knows.
    pub fn known(&self) -> usize {
        lock(&self.inner.slots).pods.len()
    }
}

fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    slots.lock().unwrap_or_else(|p| p.into_inner())
}

/// Applies one watcher event to the slots.
fn apply(slots: &mut Slots, event: Event<Pod>) {
    match event {
        Event::Init => slots.relisting = Some(HashSet::new()),
        Event::InitApply(pod) => {
            if let Some(seen) = slots.relisting.as_mut() {
                seen.insert(key_of(&pod));
            }
            present(slots, pod);
        }
        Event::InitDone => {
            // Pods that existed before the re-list and are not in it were
            // deleted while the watch was down.
            if let Some(seen) = slots.relisting.take() {
                let vanished: Vec<String> = slots
                    .pods
                    .iter()
                    .filter(|(k, tx)| {
                        !seen.contains(*k) && matches!(*tx.borrow(), PodState::Present(_))
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in vanished {
                    let last = slots.pods[&key].borrow().pod().clone();
                    gone(slots, last);
                }
            }
        }
        Event::Apply(pod) => present(slots, pod),
        Event::Delete(pod) => gone(slots, pod),
    }
}

fn present(slots: &mut Slots, pod: Pod) {
    let key = key_of(&pod);
    let state = PodState::Present(Arc::new(pod));
    match slots.pods.get(&key) {
        Some(tx) => {
            tx.send_replace(state);
        }
        None => {
            let (tx, _) = watch::channel(state);
            slots.pods.insert(key, tx);
        }
    }
}

fn gone(slots: &mut Slots, pod: Pod) {
    let key = key_of(&pod);
    let last = Arc::new(pod);
    if let Some(tx) = slots.pods.remove(&key) {
        tx.send_replace(PodState::Gone(last.clone()));
    }
    slots.tombstones.push_back((key, last));
    while slots.tombstones.len() > TOMBSTONES {
        slots.tombstones.pop_front();
    }
}

/// How often a step re-reads its own pod while the shared watch fails.
pub const FALLBACK_POLL: Duration = Duration::from_secs(5);
