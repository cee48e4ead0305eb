//! `GET /v1/events` (SPEC §8.4): the engine's published commits as
//! server-sent events, and [`JobWaker`], which wakes a log follower when
//! its job changes or its log grows (nothing polls).
//!
//! ```text
//! id: 42
//! event: job
//! data: {"id":"…","state":"running",…}
//! ```
//!
//! `Last-Event-ID` (else `?after=SEQ`) resumes from the ring while the
//! events after it are kept; otherwise the stream opens with `event: reset`
//! (`id:` the newest event's, `data: {"id": N}`) and the reader lists
//! afresh. `?job=ID` (repeatable) keeps only those jobs and, without a
//! resume point, opens with each job as it is now (a job that retention
//! already deleted comes as its last state with `"removed": true` while the
//! ring holds it), so a waiter cannot miss an end that came before it
//! connected. `?job=ID&logs=1` adds `event: log`, data
//! `{"job","step","offset","text"}`: the job's output from the start, then
//! as it is written. A comment line every 15 s keeps idle streams open; a
//! reader that falls [`LAG_FRAMES`](crate::events::LAG_FRAMES) behind is
//! sent `reset` and closed; the stream ends when the engine stops.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oj_api::{ErrorCode, EventKind};
use oj_core::{Job, JobId};
use tokio::sync::{broadcast, mpsc};

use crate::api::{Shared, error};
use crate::engine::EngineHandle;
use crate::events::{Frame, Hub, Start, sse_frame};
use crate::log_watch::DirWatch;

/// How often an idle stream gets a comment line.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// At most this many `?job=` ids on one stream.
const MAX_JOBS: usize = 1000;
/// Bytes of log text per `event: log`.
const LOG_CHUNK: usize = 32 * 1024;
/// A reader's frames that are already waiting are sent together, up to
/// about this many bytes.
const BATCH_BYTES: usize = 256 * 1024;
/// Under load a reader is written at most once per this long: the frames
/// of the commits in between go out in one write. An idle reader is
/// written at once (nothing waits when the last write is older).
/// Hundreds of readers otherwise cost a wake-up and a write each per
/// commit, and the daemon's throughput with them (issue 28).
const COALESCE: Duration = Duration::from_millis(20);
/// Without inotify, how often a follower looks at its log files.
const NO_INOTIFY_TICK: Duration = Duration::from_secs(1);

struct Query {
    after: Option<u64>,
    jobs: Vec<JobId>,
    logs: bool,
}

fn bad_query(msg: String) -> Box<Response> {
    Box::new(error(StatusCode::BAD_REQUEST, ErrorCode::BadQuery, msg))
}

fn parse_query(raw: Option<&str>) -> Result<Query, Box<Response>> {
    let mut q = Query {
        after: None,
        jobs: Vec::new(),
        logs: false,
    };
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "after" => match v.parse::<u64>() {
                Ok(n) => q.after = Some(n),
                Err(_) => {
                    return Err(bad_query(format!(
                        "after={v:?} is not an event id; pass the `id:` of the last event you got"
                    )));
                }
            },
            "job" => {
                // Like GET /v1/jobs/{id}: a malformed id names no job (404).
                let id = v
                    .parse::<JobId>()
                    .map_err(|_| Box::new(crate::api::bad_id(v)))?;
                if q.jobs.len() == MAX_JOBS {
                    return Err(bad_query(format!(
                        "at most {MAX_JOBS} job= filters on one stream; open another stream for the rest"
                    )));
                }
                if !q.jobs.contains(&id) {
                    q.jobs.push(id);
                }
            }
            "logs" => q.logs = matches!(v, "1" | "true" | "yes"),
            _ => {}
        }
    }
    if q.logs && q.jobs.len() != 1 {
        return Err(bad_query(
            "logs=1 needs exactly one job= (the job whose output to stream)".into(),
        ));
    }
    Ok(q)
}

/// `GET /v1/events`.
pub async fn events(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut q = match parse_query(raw.as_deref()) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    if let Some(v) = headers.get("last-event-id") {
        // What we sent back is a number; anything else resumes nothing.
        q.after = Some(
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(u64::MAX),
        );
    }
    let hub = s.engine.events().clone();
    if hub.is_closed() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Draining,
            "the daemon is shutting down: no more events",
        );
    }
    let jobs = q.jobs.clone();
    let (rx, start) = hub.subscribe(q.after, |f| keep(&jobs, f));
    let mut first: Vec<Bytes> = Vec::new();
    let newest = match start {
        Start::Resume(frames) => {
            first.extend(frames.iter().map(|f| f.sse.clone()));
            None
        }
        Start::Reset(n) => {
            first.push(reset_frame(n));
            Some(n)
        }
        Start::Live(n) => Some(n),
    };
    let mut log_job = None;
    if let Some(n) = newest {
        // Each filtered job as it is now, so a waiter misses no end.
        for id in &q.jobs {
            match s.engine.get(id.clone()).await {
                Some(job) => {
                    let data = serde_json::to_vec(&job).unwrap_or_default();
                    first.push(sse_frame(Some(n), EventKind::Job.as_str(), &data));
                    if q.logs {
                        log_job = Some(job);
                    }
                }
                None => match hub.removed_job(id) {
                    Some(f) => first.push(sse_frame(Some(n), EventKind::Job.as_str(), &f.data)),
                    None if hub.is_closed() => {
                        return error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            ErrorCode::Draining,
                            "the daemon is shutting down",
                        );
                    }
                    None => return crate::api::unknown(id),
                },
            }
        }
    } else if q.logs {
        log_job = s.engine.get(q.jobs[0].clone()).await;
    }
    let logs = match (q.logs, log_job) {
        (true, Some(job)) => Some(LogTail::new(&s.logs_dir, job)),
        _ => None,
    };
    let (tx, out) = mpsc::channel::<Bytes>(4);
    tokio::spawn(pump(hub, rx, q.jobs, first, logs, tx));
    let stream = futures::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|b| (Ok::<_, std::io::Error>(b), out))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

fn keep(jobs: &[JobId], f: &Frame) -> bool {
    jobs.is_empty() || f.topic.job_id().is_some_and(|id| jobs.contains(id))
}

fn reset_frame(newest: u64) -> Bytes {
    let data = serde_json::to_vec(&oj_api::ResetData { id: newest }).unwrap_or_default();
    sse_frame(Some(newest), EventKind::Reset.as_str(), &data)
}

/// Feeds one reader: its first frames, then live ones, keep-alives and
/// (with `logs`) its job's output, until it goes away, lags, or the engine
/// stops.
async fn pump(
    hub: Arc<Hub>,
    mut rx: broadcast::Receiver<Arc<Frame>>,
    jobs: Vec<JobId>,
    first: Vec<Bytes>,
    mut logs: Option<LogTail>,
    tx: mpsc::Sender<Bytes>,
) {
    for b in first {
        if tx.send(b).await.is_err() {
            return;
        }
    }
    if let Some(tail) = &mut logs {
        tail.arm(&hub);
        if tail.send_new(&tx).await.is_err() {
            return;
        }
    }
    let mut keep_alive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    let mut last_write: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            biased;
            r = rx.recv() => match r {
                Ok(frame) => {
                    if !keep(&jobs, &frame) {
                        continue;
                    }
                    if let Some(tail) = &mut logs {
                        // Output written before this change goes first.
                        if tail.saw(&frame).send_new(&tx).await.is_err() {
                            return;
                        }
                    }
                    // Frames already waiting go out in the same write: a
                    // busy daemon costs each reader one wake-up per batch,
                    // not per frame.
                    let mut out = frame.sse.clone();
                    if logs.is_none() {
                        if let Some(at) = last_write
                            && at.elapsed() < COALESCE
                        {
                            tokio::time::sleep_until(at + COALESCE).await;
                        }
                        let mut batch: Option<Vec<u8>> = None;
                        while let Ok(more) = rx.try_recv() {
                            if keep(&jobs, &more) {
                                batch
                                    .get_or_insert_with(|| out.to_vec())
                                    .extend_from_slice(&more.sse);
                            }
                            if batch.as_ref().is_some_and(|b| b.len() > BATCH_BYTES) {
                                break;
                            }
                        }
                        if let Some(b) = batch {
                            out = Bytes::from(b);
                        }
                    }
                    if tx.send(out).await.is_err() {
                        return;
                    }
                    last_write = Some(tokio::time::Instant::now());
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = tx.send(reset_frame(hub.newest())).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = hub.closed() => return,
            () = changed(&mut logs), if logs.is_some() => {
                if let Some(tail) = &mut logs {
                    tail.arm(&hub);
                    if tail.send_new(&tx).await.is_err() {
                        return;
                    }
                }
            }
            _ = keep_alive.tick() => {
                if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}

async fn changed(logs: &mut Option<LogTail>) {
    match logs {
        Some(tail) => tail.wake.wait().await,
        None => std::future::pending().await,
    }
}

/// What wakes a follower of one job's log directory: the directory (or,
/// until it exists, the logs directory where it will appear) changing, or,
/// without inotify, a slow tick.
pub struct LogWake {
    logs_dir: PathBuf,
    dir: PathBuf,
    watch: Option<DirWatch>,
    /// Watching `logs_dir` for `dir` to appear.
    parent: bool,
    tick: Option<tokio::time::Interval>,
}

impl LogWake {
    pub fn new(logs_dir: &Path, id: &JobId) -> LogWake {
        LogWake {
            logs_dir: logs_dir.to_path_buf(),
            dir: logs_dir.join(id.as_str()),
            watch: None,
            parent: false,
            tick: None,
        }
    }

    /// Makes sure the job's directory is watched (call before reading, so
    /// no write between the read and the watch is missed).
    pub fn arm(&mut self, hub: &Hub) {
        if self.watch.is_some() && !self.parent {
            return;
        }
        let Some(lw) = hub.log_watch() else {
            if self.tick.is_none() {
                let mut t = tokio::time::interval(NO_INOTIFY_TICK);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                self.tick = Some(t);
            }
            return;
        };
        if let Some(w) = lw.watch(&self.dir) {
            self.watch = Some(w);
            self.parent = false;
        } else if self.watch.is_none() {
            self.watch = lw.watch(&self.logs_dir);
            self.parent = self.watch.is_some();
        }
    }

    /// Until something may have changed.
    pub async fn wait(&mut self) {
        match (&mut self.watch, &mut self.tick) {
            (Some(w), _) => w.changed().await,
            (None, Some(t)) => {
                t.tick().await;
            }
            (None, None) => std::future::pending().await,
        }
    }
}

/// Wakes a plain-text log follower (`GET /v1/jobs/{id}/logs?follow=true`)
/// when its job changes or its log directory does; never on a timer while
/// inotify works.
pub struct JobWaker {
    hub: Arc<Hub>,
    rx: broadcast::Receiver<Arc<Frame>>,
    id: JobId,
    wake: LogWake,
}

impl JobWaker {
    /// Subscribe before reading the state the follower starts from.
    pub fn new(engine: &EngineHandle, logs_dir: &Path, id: &JobId) -> JobWaker {
        let hub = engine.events().clone();
        let (rx, _) = hub.subscribe(None, |_| false);
        let mut wake = LogWake::new(logs_dir, id);
        wake.arm(&hub);
        JobWaker {
            hub,
            rx,
            id: id.clone(),
            wake,
        }
    }

    /// Re-arms the directory watch (once the step has started).
    pub fn arm(&mut self) {
        self.wake.arm(&self.hub);
    }

    /// Until the job changed, its logs changed, or the engine stopped;
    /// `Err` when the client went away.
    pub async fn wait(&mut self, tx: &mpsc::Sender<std::io::Result<Bytes>>) -> std::io::Result<()> {
        loop {
            tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(f) if f.topic.job_id() != Some(&self.id) => continue,
                    // Lagged: something changed; look again.
                    _ => return Ok(()),
                },
                () = self.wake.wait() => {
                    self.wake.arm(&self.hub);
                    return Ok(());
                }
                () = self.hub.closed() => return Ok(()),
                () = tx.closed() => return Err(std::io::Error::other("the client went away")),
            }
        }
    }
}

/// A job's output as `event: log` frames: every started step's file from
/// where the last read stopped.
struct LogTail {
    job: Job,
    logs_dir: PathBuf,
    offsets: Vec<u64>,
    wake: LogWake,
}

impl LogTail {
    fn new(logs_dir: &Path, job: Job) -> LogTail {
        LogTail {
            offsets: vec![0; job.steps.len()],
            wake: LogWake::new(logs_dir, &job.id),
            logs_dir: logs_dir.to_path_buf(),
            job,
        }
    }

    fn arm(&mut self, hub: &Hub) {
        self.wake.arm(hub);
    }

    /// Takes the job's new state from a frame about it.
    fn saw(&mut self, frame: &Frame) -> &mut LogTail {
        if let Ok(job) = serde_json::from_slice::<Job>(&frame.data)
            && job.steps.len() == self.offsets.len()
        {
            self.job = job;
        }
        self
    }

    /// Sends what the started steps' logs hold past what was sent.
    async fn send_new(&mut self, tx: &mpsc::Sender<Bytes>) -> Result<(), ()> {
        for (i, st) in self.job.steps.iter().enumerate() {
            if st.started_at.is_none() {
                continue;
            }
            let path = self
                .logs_dir
                .join(self.job.id.as_str())
                .join(format!("{}.log", st.name));
            let ended = st.state.is_terminal();
            loop {
                let Some((text, used)) = read_text(&path, self.offsets[i], ended).await else {
                    break;
                };
                let data = oj_api::LogData {
                    job: self.job.id.clone(),
                    offset: self.offsets[i],
                    step: st.name.clone(),
                    text,
                };
                self.offsets[i] += used;
                let data = serde_json::to_vec(&data).unwrap_or_default();
                let bytes = sse_frame(None, EventKind::Log.as_str(), &data);
                tx.send(bytes).await.map_err(|_| ())?;
            }
        }
        Ok(())
    }
}

/// Up to [`LOG_CHUNK`] bytes of `path` from `offset` as text, and how many
/// bytes that used: a character cut at the end waits for its other bytes
/// unless the step `ended`. `None` at the end (or when unreadable).
async fn read_text(path: &Path, offset: u64, ended: bool) -> Option<(String, u64)> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await.ok()?;
    f.seek(std::io::SeekFrom::Start(offset)).await.ok()?;
    let mut buf = Vec::with_capacity(LOG_CHUNK);
    (&mut f)
        .take(LOG_CHUNK as u64)
        .read_to_end(&mut buf)
        .await
        .ok()?;
    if buf.is_empty() {
        return None;
    }
    match std::str::from_utf8(&buf) {
        Ok(s) => Some((s.to_string(), buf.len() as u64)),
        Err(e) if e.error_len().is_none() && !ended && buf.len() < LOG_CHUNK => {
            let n = e.valid_up_to();
            if n == 0 {
                return None;
            }
            Some((String::from_utf8_lossy(&buf[..n]).into_owned(), n as u64))
        }
        Err(_) => Some((String::from_utf8_lossy(&buf).into_owned(), buf.len() as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_checked() {
        let q = parse_query(Some("after=7&job=abc&job=def&job=abc"))
            .ok()
            .unwrap();
        assert_eq!(q.after, Some(7));
        assert_eq!(q.jobs.len(), 2);
        assert!(parse_query(Some("after=x")).is_err());
        assert!(parse_query(Some("job=A!")).is_err());
        assert!(parse_query(Some("logs=1")).is_err());
        assert!(parse_query(Some("job=a&job=b&logs=1")).is_err());
        assert!(parse_query(Some("job=a&logs=1")).ok().unwrap().logs);
        assert!(parse_query(None).ok().unwrap().jobs.is_empty());
    }

    #[tokio::test]
    async fn a_cut_character_waits_for_its_other_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.log");
        std::fs::write(&p, b"h\xc3").unwrap();
        assert_eq!(read_text(&p, 0, false).await, Some(("h".into(), 1)));
        assert_eq!(read_text(&p, 1, false).await, None);
        assert_eq!(read_text(&p, 1, true).await, Some(("\u{fffd}".into(), 1)));
        std::fs::write(&p, "hé\n").unwrap();
        assert_eq!(read_text(&p, 1, false).await, Some(("é\n".into(), 3)));
        assert_eq!(read_text(&p, 4, false).await, None);
    }

    /// A reader with nothing to read gets a comment every `KEEP_ALIVE`, not
    /// before, so proxies keep the stream open. Paused tokio time: the
    /// intervals pass without waiting.
    #[tokio::test(start_paused = true)]
    async fn an_idle_reader_gets_a_keep_alive_every_interval() {
        let hub = Hub::new(0);
        let (rx, _) = hub.subscribe(None, |_| true);
        let (tx, mut out) = mpsc::channel(4);
        let t0 = tokio::time::Instant::now();
        let reader = tokio::spawn(pump(hub.clone(), rx, Vec::new(), Vec::new(), None, tx));
        for n in 1..=3 {
            let frame = out.recv().await.expect("a keep-alive");
            assert_eq!(&frame[..], b": keep-alive\n\n");
            let waited = t0.elapsed();
            assert!(
                waited >= KEEP_ALIVE * n && waited < KEEP_ALIVE * n + Duration::from_secs(1),
                "keep-alive {n} after {waited:?}"
            );
        }
        // The reader going away ends the pump.
        drop(out);
        reader.await.unwrap();
    }

    /// Under load a reader gets a burst in one write, no sooner than
    /// `COALESCE` after its last one; a quiet reader is written at once.
    #[tokio::test(start_paused = true)]
    async fn a_busy_reader_gets_a_burst_in_one_write_and_a_quiet_one_at_once() {
        let hub = Hub::new(0);
        let (rx, _) = hub.subscribe(None, |_| true);
        let (tx, mut out) = mpsc::channel(16);
        let reader = tokio::spawn(pump(hub.clone(), rx, Vec::new(), Vec::new(), None, tx));
        let frame = |seq| {
            Frame::new(
                seq,
                oj_core::Topic::Status,
                Bytes::from_static(b"{}"),
                false,
            )
        };
        let t0 = tokio::time::Instant::now();
        hub.push(frame(1));
        let first = out.recv().await.unwrap();
        assert_eq!(
            t0.elapsed(),
            Duration::ZERO,
            "a quiet reader waits for nothing"
        );
        assert!(first.starts_with(b"id: 1\n"));
        hub.push(frame(2));
        hub.push(frame(3));
        let burst = out.recv().await.unwrap();
        assert!(
            t0.elapsed() >= COALESCE,
            "written {:?} after the last",
            t0.elapsed()
        );
        let text = String::from_utf8_lossy(&burst);
        assert!(
            text.contains("id: 2\n") && text.contains("id: 3\n"),
            "{text}"
        );
        tokio::time::sleep(COALESCE * 2).await;
        let t1 = tokio::time::Instant::now();
        hub.push(frame(4));
        out.recv().await.unwrap();
        assert_eq!(t1.elapsed(), Duration::ZERO);
        drop(out);
        reader.await.unwrap();
    }
}
