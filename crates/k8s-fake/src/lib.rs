//! An in-process fake Kubernetes API server for `oj`'s tests.
//!
//! `oj` talks to Kubernetes for two things: step pods (create, get, list by
//! label, watch, log, delete) and the leader Lease (get, create, replace).
//! Mocking kube-rs calls one by one would test our assumptions about the API
//! rather than the API, so this crate serves the real REST paths over plain
//! HTTP with the semantics that matter: one global, monotonically increasing
//! `resourceVersion`; `409 AlreadyExists` on a duplicate create; `409
//! Conflict` with a `Status` body on a stale `resourceVersion`; watches that
//! replay from a `resourceVersion` and then stream JSON lines; pod logs that
//! refuse a pod still waiting to start and follow a running one until it ends.
//!
//! Nothing runs by itself: the test decides when a pod starts, what it
//! prints and how it ends ([`FakeKube::set_pod_phase`],
//! [`FakeKube::append_pod_log`], [`FakeKube::finish_pod`]), can make requests
//! fail ([`FakeKube::inject_fault`]) and reads every request that came in
//! ([`FakeKube::requests`]), and counts the watches and log streams open at
//! any moment ([`FakeKube::open_pod_watches`], [`FakeKube::peak_pod_watches`]).
//!
//! For `oj config check` in a cluster it also answers
//! `SelfSubjectAccessReview`s from a configurable set of RBAC rules
//! ([`FakeKube::set_rbac`]; everything is allowed until one is set) and
//! serves `LimitRange`s and `ResourceQuota`s, which pod creation enforces
//! like the admission plug-ins do. Pods can be put in the states that stop
//! them from running: image pull errors ([`FakeKube::set_pod_waiting`]),
//! unschedulable ([`FakeKube::set_pod_unschedulable`]) and a container
//! killed with a reason such as `OOMKilled` ([`FakeKube::finish_pod_with`]).
//! Pod logs keep a timestamp per line (`timestamps=true`, `sinceTime`), and
//! [`FakeKube::cut_log_streams`] ends open log streams while the container
//! still runs, as kubelet log rotation does.
//!
//! The server runs on its own thread and runtime, so one fake serves async
//! tests (`fake.client()`) and blocking end-to-end tests that point the real
//! `oj` binary at it with `KUBECONFIG` ([`FakeKube::write_kubeconfig`]).

mod admission;
mod disruption;
mod pod_control;
mod selector;
mod server;
mod volumes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, LimitRange, Pod, PodCondition, PodStatus, ResourceQuota,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::{broadcast, watch};

pub use disruption::FAKE_NODE;
/// The API types the fake serves, for tests that read what it stores.
pub use k8s_openapi;
pub use selector::{FieldSelector, LabelSelector, SelectorError};

/// A request the fake received, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The status the fake answered with.
    pub status: u16,
}

impl RecordedRequest {
    /// Whether the query string has `name=value` (raw, not decoded).
    pub fn has_query(&self, pair: &str) -> bool {
        self.query
            .as_deref()
            .is_some_and(|q| q.split('&').any(|p| p == pair))
    }
}

/// A failure the fake injects instead of answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Only requests with this method (`"PUT"`); `None` = any.
    pub method: Option<String>,
    /// Only requests whose path contains this.
    pub path_contains: String,
    /// Only requests whose raw query string contains this (`"watch=true"`).
    pub query_contains: Option<String>,
    /// How many requests fail; `None` = until [`FakeKube::clear_faults`].
    pub times: Option<u32>,
    /// The HTTP status answered (with a `Status` body).
    pub status: u16,
    /// Held this long before answering (simulates a slow API server).
    pub delay: Duration,
    /// Answer normally (after `delay`) instead of with `status`: the request
    /// is served at once and only its response is held back, so a client
    /// acts on what it read `delay` ago.
    pub respond_normally: bool,
}

impl Fault {
    /// A fault for the next request with `method` whose path contains `path_contains`.
    pub fn new(method: &str, path_contains: &str, status: u16) -> Self {
        Fault {
            method: Some(method.to_string()),
            path_contains: path_contains.to_string(),
            query_contains: None,
            times: Some(1),
            status,
            delay: Duration::ZERO,
            respond_normally: false,
        }
    }

    /// Serves the next matching request normally but holds its response
    /// back for `delay` (e.g. to make a read stale before the client writes).
    pub fn slow_response(method: &str, path_contains: &str, delay: Duration) -> Self {
        Fault {
            respond_normally: true,
            delay,
            ..Fault::new(method, path_contains, 200)
        }
    }

    /// Only requests whose query string contains `part` (e.g. `"watch=true"`).
    pub fn query(mut self, part: &str) -> Self {
        self.query_contains = Some(part.to_string());
        self
    }

    /// Fails the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Fails every matching request until the faults are cleared.
    pub fn forever(mut self) -> Self {
        self.times = None;
        self
    }

    /// Waits before answering.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

/// Which collection an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Pods,
    Leases,
}

/// One change, as a watch delivers it.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub rv: u64,
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub event_type: &'static str,
    pub object: serde_json::Value,
}

/// One line of a container's log, with the time the kubelet stamped on it.
#[derive(Debug, Clone)]
pub(crate) struct LogLine {
    pub at: Timestamp,
    /// The text, with its `\n` unless it is the unfinished last line.
    pub text: String,
}

pub(crate) struct PodEntry {
    pub pod: Pod,
    pub log: Vec<LogLine>,
    /// Bumped by [`FakeKube::cut_log_streams`]: open streams of an older
    /// epoch end.
    pub log_epoch: u64,
}

impl PodEntry {
    pub fn new(pod: Pod) -> Self {
        PodEntry {
            pod,
            log: Vec::new(),
            log_epoch: 0,
        }
    }

    /// Adds `text` line by line; an unfinished last line is continued.
    pub fn append_log(&mut self, text: &str) {
        let mut at = Timestamp::now();
        // Like the kubelet's clock, never backwards within one log.
        if let Some(last) = self.log.last()
            && last.at > at
        {
            at = last.at;
        }
        for piece in text.split_inclusive('\n') {
            match self.log.last_mut() {
                Some(last) if !last.text.ends_with('\n') => last.text.push_str(piece),
                _ => self.log.push(LogLine {
                    at,
                    text: piece.to_string(),
                }),
            }
        }
    }
}

/// One RBAC rule the fake's `SelfSubjectAccessReview` grants:
/// `verbs` on `resource` (`"pods"`, `"pods/log"`, `"leases"`…) of `group`
/// (`""` = core) in `namespace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbacRule {
    pub namespace: String,
    pub group: String,
    pub resource: String,
    pub verbs: Vec<String>,
}

impl RbacRule {
    pub fn new(namespace: &str, group: &str, resource: &str, verbs: &[&str]) -> Self {
        RbacRule {
            namespace: namespace.to_string(),
            group: group.to_string(),
            resource: resource.to_string(),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
        }
    }

    pub(crate) fn allows(&self, namespace: &str, group: &str, resource: &str, verb: &str) -> bool {
        self.namespace == namespace
            && self.group == group
            && self.resource == resource
            && self.verbs.iter().any(|v| v == verb || v == "*")
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub rv: u64,
    pub uid: u64,
    pub pods: BTreeMap<(String, String), PodEntry>,
    pub leases: BTreeMap<(String, String), Lease>,
    pub limit_ranges: BTreeMap<(String, String), LimitRange>,
    pub resource_quotas: BTreeMap<(String, String), ResourceQuota>,
    pub pvcs: BTreeMap<(String, String), k8s_openapi::api::core::v1::PersistentVolumeClaim>,
    /// `None` = every access review is allowed.
    pub rbac: Option<Vec<RbacRule>>,
    pub history: Vec<Event>,
    pub faults: Vec<Fault>,
    pub requests: Vec<RecordedRequest>,
}

impl State {
    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn next_uid(&mut self) -> String {
        self.uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uid)
    }
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub events: broadcast::Sender<Event>,
    /// Bumped on every change (including log appends) so followers wake up.
    pub generation: watch::Sender<u64>,
    pub watches: WatchCounters,
}

/// Long-lived connections open right now, and the most seen at once.
#[derive(Default)]
pub(crate) struct WatchCounters {
    pub pod_watches: AtomicUsize,
    pub pod_watches_peak: AtomicUsize,
    pub log_streams: AtomicUsize,
}

/// Counts one open connection in `open` (and `peak`) while it lives.
pub(crate) struct OpenGuard<'a> {
    open: &'a AtomicUsize,
}

impl<'a> OpenGuard<'a> {
    pub fn new(open: &'a AtomicUsize, peak: Option<&'a AtomicUsize>) -> Self {
        let now = open.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(peak) = peak {
            peak.fetch_max(now, Ordering::SeqCst);
        }
        OpenGuard { open }
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide the real failure.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Records an event (call with the state locked, so watch replay and
    /// subscription see a consistent order).
    pub fn emit(&self, state: &mut State, event: Event) {
        state.history.push(event.clone());
        let _ = self.events.send(event);
    }

    /// Stores `pod` with a new resourceVersion and emits `event_type`.
    pub fn store_pod(&self, state: &mut State, mut pod: Pod, event_type: &'static str) -> Pod {
        let rv = state.next_rv();
        pod.metadata.resource_version = Some(rv.to_string());
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let event = Event {
            rv,
            kind: Kind::Pods,
            namespace: namespace.clone(),
            name: name.clone(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            event_type,
            object: serde_json::to_value(&pod).unwrap_or_default(),
        };
        match state.pods.get_mut(&(namespace.clone(), name.clone())) {
            Some(entry) => entry.pod = pod.clone(),
            None => {
                state
                    .pods
                    .insert((namespace, name), PodEntry::new(pod.clone()));
            }
        }
        self.emit(state, event);
        pod
    }

    /// Stores `lease` with a new resourceVersion and emits `event_type`.
    pub fn store_lease(
        &self,
        state: &mut State,
        mut lease: Lease,
        event_type: &'static str,
    ) -> Lease {
        let rv = state.next_rv();
        lease.metadata.resource_version = Some(rv.to_string());
        let namespace = lease.metadata.namespace.clone().unwrap_or_default();
        let name = lease.metadata.name.clone().unwrap_or_default();
        let event = Event {
            rv,
            kind: Kind::Leases,
            namespace: namespace.clone(),
            name: name.clone(),
            labels: lease.metadata.labels.clone().unwrap_or_default(),
            event_type,
            object: serde_json::to_value(&lease).unwrap_or_default(),
        };
        state.leases.insert((namespace, name), lease.clone());
        self.emit(state, event);
        lease
    }
}

/// A running fake API server. Dropping it stops the server.
pub struct FakeKube {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeKube {
    /// Starts a fake on `127.0.0.1:<free port>`, served by its own thread.
    /// Works from sync and async code alike.
    pub fn start() -> FakeKube {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0 for the fake API server");
        listener
            .set_nonblocking(true)
            .expect("set the fake's listener non-blocking");
        let addr = listener
            .local_addr()
            .expect("local address of the fake's listener");
        let (events, _) = broadcast::channel(4096);
        let (generation, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            events,
            generation,
            watches: WatchCounters::default(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_shared = shared.clone();
        std::thread::Builder::new()
            .name("k8s-fake".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime of the fake API server");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("fake listener");
                    let app = server::router(server_shared);
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = rx => {}
                    }
                });
                // Dropping the runtime here ends open watches and log streams.
                rt.shutdown_background();
            })
            .expect("spawn the fake API server thread");
        FakeKube {
            shared,
            addr,
            shutdown: Some(tx),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig whose current context points at this fake (namespace `default`).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n",
            url = self.url()
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path` (for `KUBECONFIG=path`).
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// A kube client for this fake, default namespace `default`. Needs a
    /// Tokio runtime (call it inside an async test).
    pub fn client(&self) -> kube::Client {
        let uri = self.url().parse().expect("the fake's URL is a valid URI");
        let config = kube::Config::new(uri);
        kube::Client::try_from(config).expect("kube client for the fake")
    }

    /// The last resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    // ----- pods -------------------------------------------------------------

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        let state = self.shared.lock();
        state
            .pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|e| e.pod.clone())
    }

    /// All pods of `namespace`, by name.
    pub fn pods(&self, namespace: &str) -> Vec<Pod> {
        let state = self.shared.lock();
        state
            .pods
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, e)| e.pod.clone())
            .collect()
    }

    /// Creates a pod directly, as if someone else had (e.g. an earlier daemon).
    pub fn insert_pod(&self, namespace: &str, mut pod: Pod) -> Pod {
        let mut state = self.shared.lock();
        pod.metadata.namespace = Some(namespace.to_string());
        if pod.metadata.uid.is_none() {
            pod.metadata.uid = Some(state.next_uid());
        }
        if pod.status.is_none() {
            pod.status = Some(PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            });
        }
        let pod = self.shared.store_pod(&mut state, pod, "ADDED");
        drop(state);
        self.shared.bump();
        pod
    }

    /// Answers `SelfSubjectAccessReview`s from `rules` (`None` = allow all,
    /// the default).
    pub fn set_rbac(&self, rules: Option<Vec<RbacRule>>) {
        self.shared.lock().rbac = rules;
    }

    /// Creates or replaces a LimitRange; pod creation in `namespace` enforces it.
    pub fn put_limit_range(&self, namespace: &str, mut lr: LimitRange) {
        let mut state = self.shared.lock();
        lr.metadata.namespace = Some(namespace.to_string());
        lr.metadata.resource_version = Some(state.next_rv().to_string());
        let name = lr.metadata.name.clone().unwrap_or_default();
        state.limit_ranges.insert((namespace.to_string(), name), lr);
    }

    /// Creates or replaces a ResourceQuota; pod creation in `namespace` enforces it.
    pub fn put_resource_quota(&self, namespace: &str, mut q: ResourceQuota) {
        let mut state = self.shared.lock();
        q.metadata.namespace = Some(namespace.to_string());
        q.metadata.resource_version = Some(state.next_rv().to_string());
        let name = q.metadata.name.clone().unwrap_or_default();
        state
            .resource_quotas
            .insert((namespace.to_string(), name), q);
    }

    /// Stores a `Pod`, `LimitRange` or `ResourceQuota` given as JSON (by
    /// its `kind`), for tests that do not depend on k8s-openapi.
    pub fn put_json(&self, namespace: &str, object: serde_json::Value) -> Result<(), String> {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let bad = |e: serde_json::Error| format!("not a valid {kind}: {e}");
        match kind.as_str() {
            "Pod" => {
                self.insert_pod(namespace, serde_json::from_value(object).map_err(bad)?);
            }
            "LimitRange" => {
                self.put_limit_range(namespace, serde_json::from_value(object).map_err(bad)?)
            }
            "ResourceQuota" => {
                self.put_resource_quota(namespace, serde_json::from_value(object).map_err(bad)?)
            }
            other => return Err(format!("put_json does not store kind {other:?}")),
        }
        Ok(())
    }

    // ----- connections ----------------------------------------------------------

    /// Pod watches open right now.
    pub fn open_pod_watches(&self) -> usize {
        self.shared.watches.pod_watches.load(Ordering::SeqCst)
    }

    /// The most pod watches that were open at the same time.
    pub fn peak_pod_watches(&self) -> usize {
        self.shared.watches.pod_watches_peak.load(Ordering::SeqCst)
    }

    /// Pod log streams (`follow=true`) open right now.
    pub fn open_log_streams(&self) -> usize {
        self.shared.watches.log_streams.load(Ordering::SeqCst)
    }

    /// How many recorded requests satisfy `f`.
    pub fn count_requests(&self, f: impl Fn(&RecordedRequest) -> bool) -> usize {
        self.shared.lock().requests.iter().filter(|r| f(r)).count()
    }

    // ----- leases -----------------------------------------------------------

    pub fn lease(&self, namespace: &str, name: &str) -> Option<Lease> {
        let state = self.shared.lock();
        state
            .leases
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Creates or replaces a lease directly (another holder, a stale record…),
    /// with a new resourceVersion.
    pub fn put_lease(&self, namespace: &str, mut lease: Lease) -> Lease {
        let mut state = self.shared.lock();
        lease.metadata.namespace = Some(namespace.to_string());
        let key = (
            namespace.to_string(),
            lease.metadata.name.clone().unwrap_or_default(),
        );
        let event = if let Some(old) = state.leases.get(&key) {
            lease.metadata.uid = old.metadata.uid.clone();
            lease.metadata.creation_timestamp = old.metadata.creation_timestamp.clone();
            "MODIFIED"
        } else {
            lease.metadata.uid = Some(state.next_uid());
            lease.metadata.creation_timestamp = Some(Time(Timestamp::now()));
            "ADDED"
        };
        let lease = self.shared.store_lease(&mut state, lease, event);
        drop(state);
        self.shared.bump();
        lease
    }

    /// The API path of a lease, for [`Fault`]s and request counting.
    pub fn lease_path(namespace: &str, name: &str) -> String {
        format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
    }

    /// The API path of a namespace's pod collection.
    pub fn pods_path(namespace: &str) -> String {
        format!("/api/v1/namespaces/{namespace}/pods")
    }

    // ----- faults and requests ----------------------------------------------

    pub fn inject_fault(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Faults that can still fire.
    pub fn pending_faults(&self) -> usize {
        self.shared
            .lock()
            .faults
            .iter()
            .filter(|f| f.times != Some(0))
            .count()
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Every lease update (PUT) of `namespace/name` answers `status` until cleared.
    pub fn fail_lease_updates(&self, namespace: &str, name: &str, status: u16) {
        self.inject_fault(Fault::new("PUT", &Self::lease_path(namespace, name), status).forever());
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests with `method` had exactly `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    /// How many pod creates (POST, whatever the answer) reached `namespace`.
    pub fn pod_creates(&self, namespace: &str) -> usize {
        self.count("POST", &Self::pods_path(namespace))
    }

    /// Polls `f` until it holds or `timeout` passes; true if it held.
    pub async fn wait_for(&self, timeout: Duration, mut f: impl FnMut(&FakeKube) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if f(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Self::wait_for`] for blocking tests.
    pub fn wait_for_blocking(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&FakeKube) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if f(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
