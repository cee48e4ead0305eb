//! The client side of `GET /v1/events` (SPEC §8.4): a reader of
//! server-sent events, and the process-exit wait of `oj daemon stop`. With
//! them `--wait`, `oj job wait`, `oj job logs -f` and `oj daemon stop` are
//! told when something happens instead of asking again and again.

use std::time::Duration;

use oj_api::EventKind;
use serde::de::DeserializeOwned;

use crate::api_client::{ApiClient, ApiError};

/// A stream that sends more than this without an event boundary is not
/// an oj daemon speaking SSE.
const MAX_EVENT_BYTES: usize = 64 << 20;

/// Why a daemon's answer to `GET /v1/events` is not an event stream.
pub const NO_STREAM: &str =
    "the daemon does not stream events (GET /v1/events); it is older than this client, upgrade it";

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<u64>,
    /// The `event:` field (`message` when absent).
    pub kind: String,
    pub data: String,
}

impl SseEvent {
    /// What the event is about (`status`, `job`, …).
    pub fn event_kind(&self) -> EventKind {
        EventKind::from_word(&self.kind)
    }

    /// The data as an `oj-api` type (`None` when it is not one).
    pub fn data_as<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(&self.data).ok()
    }
}

/// Why `GET /v1/events` gave no stream.
#[derive(Debug)]
pub enum OpenError {
    /// The daemon answered, but not with an event stream: it is older
    /// than this client (callers may fall back to what it has).
    NotAStream,
    /// The daemon refused, or could not be reached.
    Api(ApiError),
}

impl OpenError {
    pub fn into_failure(self, client: &ApiClient) -> crate::exit::Failure {
        match self {
            OpenError::NotAStream => crate::exit::Failure::runtime(format!(
                "the daemon at {}: {NO_STREAM}",
                client.endpoint().display()
            )),
            OpenError::Api(e) => e.into_failure(client),
        }
    }
}

/// Why a stream stopped giving events.
#[derive(Debug)]
pub enum StreamEnd {
    /// The daemon ended the stream (its engine stopped).
    Closed,
    /// The connection broke or the stream was not SSE.
    Broken,
}

/// An open `GET /v1/events` response, read event by event.
pub struct EventStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl EventStream {
    /// Opens `path` (`/v1/events?...`).
    pub async fn open(client: &ApiClient, path: &str) -> Result<EventStream, OpenError> {
        let resp = client.get_stream(path).await.map_err(OpenError::Api)?;
        let sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !sse {
            // An older daemon (or something else) answered.
            return Err(OpenError::NotAStream);
        }
        Ok(EventStream {
            resp,
            buf: Vec::new(),
        })
    }

    /// The next event (comments are skipped).
    pub async fn next(&mut self) -> Result<SseEvent, StreamEnd> {
        loop {
            if let Some((block, used)) = split_block(&self.buf) {
                let ev = parse_block(block);
                self.buf.drain(..used);
                match ev {
                    Some(ev) => return Ok(ev),
                    None => continue,
                }
            }
            if self.buf.len() > MAX_EVENT_BYTES {
                return Err(StreamEnd::Broken);
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => return Err(StreamEnd::Closed),
                Err(_) => return Err(StreamEnd::Broken),
            }
        }
    }
}

/// The first event block in `buf` (up to a blank line) and the bytes it
/// used, blank line included.
fn split_block(buf: &[u8]) -> Option<(&[u8], usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((&buf[..i], i + 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((&buf[..i], i + 3));
            }
        }
        i += 1;
    }
    None
}

/// Parses one block of `field: value` lines; `None` for a comment-only or
/// data-less block (as EventSource does).
fn parse_block(block: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(block);
    let mut ev = SseEvent {
        id: None,
        kind: "message".into(),
        data: String::new(),
    };
    let mut has_data = false;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => ev.id = value.parse().ok(),
            "event" => ev.kind = value.to_string(),
            "data" => {
                if has_data {
                    ev.data.push('\n');
                }
                ev.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    has_data.then_some(ev)
}

/// Waits until process `pid` has exited (a pidfd turns readable); `false`
/// when that cannot be watched (no pidfd: the caller falls back) or when
/// `limit` passed first.
pub async fn process_exit(pid: i32, limit: Duration) -> Option<bool> {
    let fd = pidfd::open(pid)?;
    let ready = tokio::time::timeout(limit, fd.readable()).await;
    Some(matches!(ready, Ok(Ok(_))))
}

mod pidfd {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    use tokio::io::unix::AsyncFd;

    pub struct PidFd(OwnedFd);

    impl AsRawFd for PidFd {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_raw_fd()
        }
    }

    /// `pidfd_open(2)`; `None` where the kernel has none (before 5.3) or
    /// the process is already gone.
    pub fn open(pid: i32) -> Option<AsyncFd<PidFd>> {
        // SAFETY: a plain system call with integer arguments; its result is
        // a new fd we own, or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        // SAFETY: PidFd owns the fd and returns that same fd while registered.
        unsafe { AsyncFd::register(PidFd(owned)) }.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_as_eventsource_does() {
        let buf = b"id: 7\nevent: job\ndata: {\"a\":1}\n\n: keep-alive\n\nevent: log\ndata: x\ndata: y\n\nid: 9";
        let (b, used) = split_block(buf).unwrap();
        let ev = parse_block(b).unwrap();
        assert_eq!(ev.id, Some(7));
        assert_eq!(ev.kind, "job");
        let data: serde_json::Value = ev.data_as().unwrap();
        assert_eq!(data["a"], 1);
        let rest = &buf[used..];
        let (b, used2) = split_block(rest).unwrap();
        assert_eq!(parse_block(b), None);
        let rest = &rest[used2..];
        let (b, used3) = split_block(rest).unwrap();
        let ev = parse_block(b).unwrap();
        assert_eq!(
            (ev.id, ev.kind.as_str(), ev.data.as_str()),
            (None, "log", "x\ny")
        );
        assert!(split_block(&rest[used3..]).is_none());
    }

    #[tokio::test]
    async fn the_exit_of_a_process_is_seen_without_polling() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let seen = process_exit(pid, Duration::from_secs(20)).await;
        assert_eq!(seen, Some(true));
        child.wait().unwrap();
    }
}
