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

struct Relist {
    before: HashSet<String>,
    seen: HashSet<String>,
}

#[derive(Default)]
struct Slots {
    pods: HashMap<String, watch::Sender<PodState>>,
    tombstones: VecDeque<(String, Arc<Pod>)>,
    /// While a re-list is under way: the pods known when it began, and
    /// those listed so far. Only the first can have vanished: a pod that
    /// appeared meanwhile may simply be newer than the list.
    relisting: Option<Relist>,
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

    /// The states of `pod`: what the watch knows, else `pod` itself (as
    /// just created or read), then every change. The receiver starts with
    /// that value marked as seen; the caller reads it with `borrow` (or
    /// `mark_changed`) before waiting.
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
        Event::Init => {
            slots.relisting = Some(Relist {
                before: slots.pods.keys().cloned().collect(),
                seen: HashSet::new(),
            })
        }
        Event::InitApply(pod) => {
            if let Some(relist) = slots.relisting.as_mut() {
                relist.seen.insert(key_of(&pod));
            }
            present(slots, pod);
        }
        Event::InitDone => {
            // Pods known before the re-list and missing from it were
            // deleted while the watch was down.
            if let Some(relist) = slots.relisting.take() {
                for key in relist.before.difference(&relist.seen) {
                    let last = match slots.pods.get(key) {
                        Some(tx) => match &*tx.borrow() {
                            PodState::Present(p) => p.clone(),
                            PodState::Gone(_) => continue,
                        },
                        None => continue,
                    };
                    gone(slots, (*last).clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn pod(uid: &str, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("pod-{uid}")),
                uid: Some(uid.into()),
                ..Default::default()
            },
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn state(slots: &Slots, uid: &str) -> Option<PodState> {
        slots.pods.get(uid).map(|tx| tx.borrow().clone())
    }

    #[test]
    fn a_relist_ends_pods_that_vanished_but_not_pods_newer_than_the_list() {
        let mut slots = Slots::default();
        present(&mut slots, pod("old", "Running"));
        let (tx, mut rx) = watch::channel(PodState::Present(Arc::new(pod("old", "Running"))));
        slots.pods.insert("old".into(), tx);
        apply(&mut slots, Event::Init);
        // Created (and subscribed to) after the list was taken.
        present(&mut slots, pod("new", "Pending"));
        apply(&mut slots, Event::InitDone);
        assert!(matches!(state(&slots, "new"), Some(PodState::Present(_))));
        // The follower still reads the last state after the slot closed.
        assert!(matches!(&*rx.borrow_and_update(), PodState::Gone(_)));
        assert!(slots.tombstones.iter().any(|(k, _)| k == "old"));
    }

    #[test]
    fn a_deleted_pod_is_remembered_by_uid_only() {
        let mut slots = Slots::default();
        apply(&mut slots, Event::Apply(pod("a", "Running")));
        apply(&mut slots, Event::Delete(pod("a", "Succeeded")));
        assert!(state(&slots, "a").is_none());
        // The next attempt's pod (same name, new uid) is unaffected.
        apply(&mut slots, Event::Apply(pod("b", "Pending")));
        assert!(matches!(state(&slots, "b"), Some(PodState::Present(_))));
    }
}
