//! The engine publishes what it commits (SPEC §8.4): after each durable
//! commit, the current JSON of every object the turn's events touched goes
//! out on a tokio broadcast channel as a ready-made SSE frame, and into a
//! ring of the last [`RING_EVENTS`] frames that resumed readers are served
//! from. `GET /v1/events` (`api_events.rs`), log followers, `--wait`,
//! `oj job wait` and `oj daemon stop` all read from here; nobody polls.
//!
//! Ids are durable: a frame's id is the WAL sequence number of the last
//! event of its turn that touched the object (the WAL and the snapshot keep
//! the high-water mark, so ids keep increasing across restarts). Status
//! changes (leader, draining, storage) are not in the WAL; their frames take
//! a sequence number the next commit or snapshot makes durable.
//!
//! Memory is bounded: the ring holds at least [`RING_EVENTS`] frames (fewer
//! only past [`RING_BYTES`]), the broadcast channel [`LAG_FRAMES`]; a reader
//! that falls that far behind gets `Lagged`, is sent `reset` and closed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use oj_core::{Event, Gate, JobId, Limits, State, Topic};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::log_watch::LogWatch;

/// Frames kept for resuming readers (SPEC: at least 10 000).
pub const RING_EVENTS: usize = 10_000;
/// The ring drops its oldest frames beyond this many bytes even when it
/// holds fewer than [`RING_EVENTS`] (jobs with huge specs).
pub const RING_BYTES: usize = 64 << 20;
/// Frames a live reader may fall behind before it is reset and closed.
pub const LAG_FRAMES: usize = 1024;

/// One published change, formatted once for every reader.
#[derive(Debug)]
pub struct Frame {
    pub seq: u64,
    pub topic: Topic,
    /// The object's JSON (the `data:` line).
    pub data: Bytes,
    /// `id: …\nevent: …\ndata: …\n\n`.
    pub sse: Bytes,
    /// The object was deleted (its last JSON, with `"removed": true`).
    pub removed: bool,
}

impl Frame {
    pub fn new(seq: u64, topic: Topic, data: Bytes, removed: bool) -> Frame {
        let sse = sse_frame(Some(seq), topic.kind(), &data);
        // One copy of the JSON: `data` is a view into the frame.
        let start = sse.len() - 2 - data.len();
        let data = sse.slice(start..start + data.len());
        Frame {
            seq,
            topic,
            data,
            sse,
            removed,
        }
    }
}

/// `id: N` (when given), `event: KIND`, `data: DATA`, blank line. `data`
/// must be one line (JSON is).
pub fn sse_frame(id: Option<u64>, kind: &str, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 40);
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

struct Ring {
    frames: VecDeque<Arc<Frame>>,
    bytes: usize,
    /// The newest sequence number published (or durable at start).
    newest: u64,
    /// Frames up to this sequence number are no longer kept.
    dropped_through: u64,
}

/// Where to start a subscription.
#[derive(Debug)]
pub enum Start {
    /// Frames after the resume point, oldest first (already filtered).
    Resume(Vec<Arc<Frame>>),
    /// The resume point is no longer kept (or unknown): send `reset` with
    /// this newest id; the reader lists afresh.
    Reset(u64),
    /// No resume point: live frames only, after this newest id.
    Live(u64),
}

/// The shared side: the ring, the channel, and whether the engine stopped.
pub struct Hub {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<Frame>>,
    closed: CancellationToken,
    status: OnceLock<Box<dyn Fn() -> Vec<u8> + Send + Sync>>,
    logs: OnceLock<Option<LogWatch>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub whose next frames come after `durable` (the WAL's high-water
    /// mark at start): nothing older can be resumed.
    pub fn new(durable: u64) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(LAG_FRAMES);
        Arc::new(Hub {
            ring: Mutex::new(Ring {
                frames: VecDeque::new(),
                bytes: 0,
                newest: durable,
                dropped_through: durable,
            }),
            tx,
            closed: CancellationToken::new(),
            status: OnceLock::new(),
            logs: OnceLock::new(),
        })
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes; `after` is the reader's last id (`Last-Event-ID`,
    /// `?after=`), `keep` filters the resumed frames.
    pub fn subscribe(
        &self,
        after: Option<u64>,
        keep: impl Fn(&Frame) -> bool,
    ) -> (broadcast::Receiver<Arc<Frame>>, Start) {
        let ring = self.ring();
        let rx = self.tx.subscribe();
        let start = match after {
            None => Start::Live(ring.newest),
            Some(a) if a < ring.dropped_through || a > ring.newest => Start::Reset(ring.newest),
            Some(a) => Start::Resume(
                ring.frames
                    .iter()
                    .filter(|f| f.seq > a && keep(f))
                    .cloned()
                    .collect(),
            ),
        };
        (rx, start)
    }

    /// The newest id published.
    pub fn newest(&self) -> u64 {
        self.ring().newest
    }

    /// The last frame kept for a removed job (its end state), if the ring
    /// still has it.
    pub fn removed_job(&self, id: &JobId) -> Option<Arc<Frame>> {
        self.ring()
            .frames
            .iter()
            .rev()
            .find(|f| f.topic.job_id() == Some(id))
            .filter(|f| f.removed)
            .cloned()
    }

    pub(crate) fn push(&self, frame: Frame) {
        let frame = Arc::new(frame);
        let mut ring = self.ring();
        ring.newest = ring.newest.max(frame.seq);
        ring.bytes += frame.sse.len();
        ring.frames.push_back(frame.clone());
        while ring.frames.len() > RING_EVENTS || (ring.bytes > RING_BYTES && ring.frames.len() > 1)
        {
            let Some(old) = ring.frames.pop_front() else {
                break;
            };
            ring.bytes -= old.sse.len();
            ring.dropped_through = old.seq;
        }
        // Under the lock: a subscriber sees each frame either in the ring
        // or on its receiver, never both, never neither.
        let _ = self.tx.send(frame);
    }

    /// Resolves once the engine has stopped: every stream then ends.
    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.closed.cancelled()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Sets how the status object (`GET /v1/status`) is rendered for
    /// `event: status` (the API sets it; the engine does not know it).
    pub fn set_status_source(&self, f: impl Fn() -> Vec<u8> + Send + Sync + 'static) {
        let _ = self.status.set(Box::new(f));
    }

    /// The daemon's one inotify instance for log followers (`None` where
    /// inotify is not available).
    pub fn log_watch(&self) -> Option<&LogWatch> {
        self.logs.get_or_init(LogWatch::start).as_ref()
    }
}

/// The engine's side: collects what a turn touched, publishes it once the
/// turn is durable, drops it when the turn is undone.
pub struct Publisher {
    hub: Arc<Hub>,
    /// (WAL seq, topic) of the turn's events, oldest first.
    staged: Vec<(u64, Topic)>,
    /// The last JSON of objects the turn deleted.
    removed: HashMap<Topic, Bytes>,
    status_dirty: bool,
}

impl Publisher {
    pub fn new(durable: u64) -> Publisher {
        Publisher {
            hub: Hub::new(durable),
            staged: Vec::new(),
            removed: HashMap::new(),
            status_dirty: false,
        }
    }

    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Before `event` is applied: keeps the object's last JSON when the
    /// event deletes it.
    pub fn before(&mut self, event: &Event, state: &State) {
        if event.removes_topic()
            && let Some(topic) = event.topic()
            // Only ended jobs are removed: their JSON has no `waiting`.
            && let Some(json) = object_json(&topic, state, &Limits::total(usize::MAX), Gate::Open)
        {
            self.removed.insert(topic, mark_removed(&json));
        }
    }

    /// After `event` was applied and buffered for the WAL as record `seq`.
    pub fn staged(&mut self, seq: u64, event: &Event) {
        if let Some(topic) = event.topic() {
            self.staged.push((seq, topic));
        }
    }

    /// Status (leader, draining, storage) changed: publish it after this turn.
    pub fn status_changed(&mut self) {
        self.status_dirty = true;
    }

    /// The turn was undone: nothing of it is published.
    pub fn discard(&mut self) {
        self.staged.clear();
        self.removed.clear();
    }

    /// The turn is durable: publishes every touched object as it is now,
    /// once, in commit order. `reserve` hands out a sequence number for a
    /// status frame.
    /// Publishes the turn's staged objects as `state` has them now; a
    /// queued job with its `waiting` (under `limits` and `gate`), as
    /// `GET /v1/jobs/{id}` shows it.
    pub fn commit(
        &mut self,
        state: &State,
        limits: &Limits,
        gate: Gate,
        reserve: impl FnOnce() -> u64,
    ) {
        if !self.staged.is_empty() {
            let mut last: HashMap<&Topic, u64> = HashMap::with_capacity(self.staged.len());
            for (seq, topic) in &self.staged {
                last.insert(topic, *seq);
            }
            let mut order: Vec<(u64, &Topic)> = last.into_iter().map(|(t, s)| (s, t)).collect();
            order.sort_unstable_by_key(|(s, _)| *s);
            for (seq, topic) in order {
                let (data, removed) = match object_json(topic, state, limits, gate) {
                    Some(json) => (Bytes::from(json), false),
                    None => match self.removed.get(topic) {
                        Some(json) => (json.clone(), true),
                        None => continue,
                    },
                };
                self.hub.push(Frame::new(seq, topic.clone(), data, removed));
            }
            self.staged.clear();
            self.removed.clear();
        }
        if self.status_dirty {
            self.status_dirty = false;
            if let Some(render) = self.hub.status.get() {
                let data = render();
                let seq = reserve();
                self.hub
                    .push(Frame::new(seq, Topic::Status, Bytes::from(data), false));
            }
        }
    }
}

impl Drop for Publisher {
    /// The engine stopped (or was dropped): end every stream.
    fn drop(&mut self) {
        self.hub.closed.cancel();
    }
}

/// The JSON of a topic's object as it is in `state`; `None` when it does
/// not exist (any more). One arm per kind of object.
fn object_json(topic: &Topic, state: &State, limits: &Limits, gate: Gate) -> Option<Vec<u8>> {
    match topic {
        Topic::Job(id) => {
            let job = state.job(id)?;
            if job.state == oj_core::JobState::Queued {
                let shown = state.shown(id, limits, gate)?;
                serde_json::to_vec(&oj_core::JobView::of(&shown)).ok()
            } else {
                serde_json::to_vec(&oj_core::JobView::of(job)).ok()
            }
        }
        // What the WAL knows of a queue (its pause); `GET /v1/queues` has
        // the limits and counts, which a reader lists afresh.
        Topic::Queue(name) => serde_json::to_vec(&serde_json::json!({
            "name": name,
            "paused": state.scheduler().is_paused(name),
        }))
        .ok(),
        // The schedule's durable record (settled fire times, pause).
        Topic::Schedule(name) => match state.schedule(name) {
            Some(record) => serde_json::to_vec(record).ok(),
            None => serde_json::to_vec(&serde_json::json!({ "name": name })).ok(),
        },
        Topic::Status => None,
    }
}

/// `{…}` → `{…,"removed":true}`.
fn mark_removed(json: &[u8]) -> Bytes {
    match json.strip_suffix(b"}") {
        Some(head) if head.len() > 1 => {
            let mut out = head.to_vec();
            out.extend_from_slice(b",\"removed\":true}");
            Bytes::from(out)
        }
        _ => Bytes::from(json.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oj_core::{Job, JobSpec, JobState, Timestamp};

    fn job(ms: u64) -> Job {
        let spec: JobSpec =
            JobSpec::from_json(br#"{"name":"x","steps":[{"name":"a","run":"true"}]}"#).unwrap();
        Job::new(
            JobId::from_parts(ms, 0),
            spec,
            Timestamp(std::time::UNIX_EPOCH),
        )
    }

    fn commit(p: &mut Publisher, state: &mut State, seq: &mut u64, events: &[Event]) {
        for e in events {
            p.before(e, state);
            state.apply(e).unwrap();
            *seq += 1;
            p.staged(*seq, e);
        }
        p.commit(state, &Limits::total(1), Gate::Open, || 0);
    }

    #[test]
    fn a_queued_job_is_published_with_why_it_waits() {
        let mut p = Publisher::new(0);
        let hub = p.hub();
        let (mut rx, _) = hub.subscribe(None, |_| true);
        let mut state = State::default();
        let mut held = job(1);
        held.hold = true;
        held.spec.hold = true;
        commit(
            &mut p,
            &mut state,
            &mut 0,
            &[Event::JobSubmitted {
                job: Box::new(held),
            }],
        );
        let frame = rx.try_recv().unwrap();
        let data: serde_json::Value = serde_json::from_slice(&frame.data).unwrap();
        assert_eq!(data["state"], "queued");
        assert_eq!(data["waiting"]["reason"], "held", "{data}");
    }

    #[test]
    fn a_turn_publishes_each_touched_object_once_with_its_last_seq() {
        let mut p = Publisher::new(10);
        let hub = p.hub();
        let (mut rx, start) = hub.subscribe(None, |_| true);
        assert!(matches!(start, Start::Live(10)));
        let mut state = State::default();
        let mut seq = 10;
        let (a, b) = (job(1), job(2));
        let at = Timestamp(std::time::UNIX_EPOCH);
        commit(
            &mut p,
            &mut state,
            &mut seq,
            &[
                Event::JobSubmitted {
                    job: Box::new(a.clone()),
                },
                Event::JobSubmitted {
                    job: Box::new(b.clone()),
                },
                Event::JobStarted {
                    id: a.id.clone(),
                    at,
                },
            ],
        );
        let first = rx.try_recv().unwrap();
        let second = rx.try_recv().unwrap();
        assert!(rx.try_recv().is_err());
        assert_eq!((first.seq, &first.topic), (12, &Topic::Job(b.id.clone())));
        assert_eq!((second.seq, &second.topic), (13, &Topic::Job(a.id.clone())));
        let v: serde_json::Value = serde_json::from_slice(&second.data).unwrap();
        assert_eq!(v["state"], "running");
        assert_eq!(
            &second.sse[..],
            format!(
                "id: 13\nevent: job\ndata: {}\n\n",
                String::from_utf8_lossy(&second.data)
            )
            .as_bytes()
        );
    }

    #[test]
    fn a_removed_job_is_published_with_its_last_state() {
        let mut p = Publisher::new(0);
        let hub = p.hub();
        let mut state = State::default();
        let mut seq = 0;
        let a = job(1);
        let at = Timestamp(std::time::UNIX_EPOCH);
        commit(
            &mut p,
            &mut state,
            &mut seq,
            &[
                Event::JobSubmitted {
                    job: Box::new(a.clone()),
                },
                Event::JobStarted {
                    id: a.id.clone(),
                    at,
                },
                Event::JobFinished {
                    id: a.id.clone(),
                    at,
                    state: JobState::Done,
                    error: None,
                },
                Event::JobRemoved { id: a.id.clone() },
            ],
        );
        let f = hub.removed_job(&a.id).expect("kept");
        assert!(f.removed);
        let v: serde_json::Value = serde_json::from_slice(&f.data).unwrap();
        assert_eq!(
            (v["state"].as_str(), v["removed"].as_bool()),
            (Some("done"), Some(true))
        );
    }

    #[test]
    fn an_undone_turn_publishes_nothing() {
        let mut p = Publisher::new(0);
        let hub = p.hub();
        let (mut rx, _) = hub.subscribe(None, |_| true);
        let a = job(1);
        let e = Event::JobSubmitted { job: Box::new(a) };
        let state = State::default();
        p.staged(1, &e);
        p.discard();
        p.commit(&state, &Limits::total(1), Gate::Open, || 0);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn resume_serves_what_is_kept_and_resets_otherwise() {
        let hub = Hub::new(5);
        for seq in 6..6 + RING_EVENTS as u64 + 10 {
            let id = JobId::from_parts(seq, 0);
            hub.push(Frame::new(
                seq,
                Topic::Job(id),
                Bytes::from_static(b"{}"),
                false,
            ));
        }
        let newest = 5 + RING_EVENTS as u64 + 10;
        assert_eq!(hub.newest(), newest);
        // The 10 oldest were dropped: resuming before them is a reset.
        assert!(matches!(hub.subscribe(Some(5), |_| true).1, Start::Reset(n) if n == newest));
        assert!(matches!(
            hub.subscribe(Some(14), |_| true).1,
            Start::Reset(_)
        ));
        match hub.subscribe(Some(15), |_| true).1 {
            Start::Resume(frames) => {
                assert_eq!(frames.len(), RING_EVENTS);
                assert_eq!(frames[0].seq, 16);
            }
            other => panic!("{other:?}"),
        }
        match hub.subscribe(Some(newest - 2), |f| f.seq % 2 == 0).1 {
            Start::Resume(frames) => assert_eq!(frames.len(), 1),
            other => panic!("{other:?}"),
        }
        // An id from the future (or lost in a crash) is a reset too.
        assert!(matches!(
            hub.subscribe(Some(newest + 1), |_| true).1,
            Start::Reset(_)
        ));
    }

    #[test]
    fn a_reader_that_falls_behind_lags() {
        let hub = Hub::new(0);
        let (mut rx, _) = hub.subscribe(None, |_| true);
        for seq in 1..=(LAG_FRAMES as u64 + 1) {
            hub.push(Frame::new(
                seq,
                Topic::Status,
                Bytes::from_static(b"{}"),
                false,
            ));
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn dropping_the_publisher_closes_the_hub() {
        let p = Publisher::new(0);
        let hub = p.hub();
        assert!(!hub.is_closed());
        drop(p);
        assert!(hub.is_closed());
    }
}
