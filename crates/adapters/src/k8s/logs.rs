//! A step pod's log, copied into the step log so that it outlives the pod.
//!
//! The log is streamed with `timestamps=true`: every line comes with the
//! kubelet's RFC 3339 timestamp, which is stripped before the line is
//! written. When the stream ends while the container still runs (kubelet
//! log rotation, an API server restart), it is opened again with
//! `sinceTime` at the last timestamp written, and lines already written are
//! skipped by timestamp (and, for lines sharing the last timestamp, by
//! count), so nothing is lost or doubled. Once the pod has ended a last,
//! non-following read from the same point picks up whatever the stream
//! missed; only then does the runner delete the pod.
//!
//! The cursor is also kept next to the step log (`.<step>.log.cursor`:
//! timestamp, count, and the log's length at that point), so a daemon that
//! re-attaches after a restart cuts the file back to the last saved point
//! and continues from there, instead of reading a log the kubelet may have
//! rotated away since.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::AsyncBufReadExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, LogParams};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;

use super::pods::CONTAINER_NAME;
use super::status::is_terminal;

/// How often a long stream saves its cursor (a daemon killed meanwhile
/// re-reads at most this much of the log after its restart).
const CURSOR_EVERY: Duration = Duration::from_secs(1);

/// How long a stream that ended may wait for the pod's end to be seen
/// before the stream is taken to have been cut and is opened again.
const END_CONFIRM: Duration = Duration::from_secs(1);

/// Where the step log has got to: the last timestamp written and how many
/// lines with exactly that timestamp were written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCursor {
    last: Option<Timestamp>,
    at_last: usize,
    /// The step log's length once every line up to here is written.
    bytes: u64,
}

impl LogCursor {
    /// As saved next to the step log: `<timestamp> <count> <bytes>`.
    pub fn encode(&self) -> Option<String> {
        Some(format!("{} {} {}\n", self.last?, self.at_last, self.bytes))
    }

    pub fn decode(text: &str) -> Option<LogCursor> {
        let mut parts = text.split_whitespace();
        let cursor = LogCursor {
            last: Some(parts.next()?.parse().ok()?),
            at_last: parts.next()?.parse().ok()?,
            bytes: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(cursor)
    }

    /// `sinceTime` for the next request: the last timestamp rounded down to
    /// the second (the API takes whole seconds; kube would round to nearest,
    /// which could skip lines).
    pub fn since(&self) -> Option<Timestamp> {
        self.last
            .and_then(|t| Timestamp::from_second(t.as_second()).ok())
    }

    /// Starts a new stream: returns its filter.
    pub fn stream(&self) -> StreamFilter {
        StreamFilter {
            last: self.last,
            skip_at_last: self.at_last,
        }
    }

    fn advance(&mut self, at: Timestamp, len: usize) {
        self.bytes += len as u64;
        if self.last == Some(at) {
            self.at_last += 1;
        } else {
            self.last = Some(at);
            self.at_last = 1;
        }
    }
}

/// Decides, line by line, what a resumed stream adds to the step log.
#[derive(Debug, Clone)]
pub struct StreamFilter {
    last: Option<Timestamp>,
    skip_at_last: usize,
}

impl StreamFilter {
    /// The text of `raw` (a `timestamp text` line) to write, if new; moves `cursor`.
    pub fn accept<'a>(&mut self, raw: &'a str, cursor: &mut LogCursor) -> Option<&'a str> {
        let Some((at, text)) = split_timestamp(raw) else {
            // A line without a timestamp (a server that ignores the flag).
            cursor.bytes += raw.len() as u64;
            return Some(raw);
        };
        match self.last {
            Some(last) if at < last => None,
            Some(last) if at == last && self.skip_at_last > 0 => {
                self.skip_at_last -= 1;
                None
            }
            _ => {
                cursor.advance(at, text.len());
                Some(text)
            }
        }
    }
}

fn split_timestamp(raw: &str) -> Option<(Timestamp, &str)> {
    let (stamp, text) = raw.split_once(' ')?;
    Some((stamp.parse().ok()?, text))
}

/// Where the cursor of the step log `path` is kept.
pub fn cursor_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.cursor"))
}

/// The step log to append to, and where it has got to: with `resume` and a
/// saved cursor that fits the file, the file cut back to the cursor; else
/// an empty file (the log is read from its start).
async fn open_step_log(path: &Path, resume: bool) -> std::io::Result<(tokio::fs::File, LogCursor)> {
    if resume
        && let Ok(text) = tokio::fs::read_to_string(cursor_path(path)).await
        && let Some(cursor) = LogCursor::decode(&text)
        && let Ok(mut file) = tokio::fs::OpenOptions::new().write(true).open(path).await
        && file.metadata().await.is_ok_and(|m| m.len() >= cursor.bytes)
    {
        file.set_len(cursor.bytes).await?;
        file.seek(std::io::SeekFrom::End(0)).await?;
        return Ok((file, cursor));
    }
    let _ = tokio::fs::remove_file(cursor_path(path)).await;
    Ok((tokio::fs::File::create(path).await?, LogCursor::default()))
}

/// Saves the cursor (after the file was flushed up to it).
async fn save_cursor(path: &Path, cursor: &LogCursor) {
    if let Some(text) = cursor.encode() {
        let _ = tokio::fs::write(cursor_path(path), text).await;
    }
}

/// Copies the pod's log into `path` once the container has started, then
/// only appends to it. The file holds the log from its start: it is written
/// from a fresh request, or, with `resume` (a daemon re-attaching after a
/// restart), continued from the cursor saved next to it. Ends when the pod
/// has ended and its log is complete, when the pod is gone, or when `phase`
/// is dropped and a last read is done.
pub async fn follow_logs(
    api: Api<Pod>,
    name: String,
    path: PathBuf,
    mut phase: watch::Receiver<String>,
    resume: bool,
) {
    if let Some(dir) = path.parent() {
        let _ = tokio::fs::create_dir_all(dir).await;
    }
    let (mut file, mut cursor) = match open_step_log(&path, resume).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the step log");
            return;
        }
    };
    let mut pause = Duration::from_millis(200);
    loop {
        // No log exists before the container starts.
        let started = phase.wait_for(|p| p != "Pending").await.map(|p| p.clone());
        let ended_before = match &started {
            Ok(p) => is_terminal(p),
            // The runner is done and dropped the channel: one last read.
            Err(_) => true,
        };
        let params = LogParams {
            follow: !ended_before,
            timestamps: true,
            since_time: cursor.since(),
            container: Some(CONTAINER_NAME.into()),
            ..Default::default()
        };
        let copied = copy_stream(&api, &name, &params, &mut cursor, &mut file, &path).await;
        save_cursor(&path, &cursor).await;
        match copied {
            Copy::Done => {}
            Copy::Gone => return,
            Copy::Failed(e) => {
                tracing::debug!(pod = %name, error = %e, "pod log not available; retrying");
                if ended_before {
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        if ended_before {
            return;
        }
        // The stream ends when the container does, or when it was cut:
        // the phase tells which. After the end, read once more from the
        // cursor for what the stream may have missed.
        let ended = tokio::time::timeout(END_CONFIRM, phase.wait_for(|p| is_terminal(p)))
            .await
            .is_ok_and(|r| r.is_ok());
        if ended {
            let last = LogParams {
                timestamps: true,
                since_time: cursor.since(),
                container: Some(CONTAINER_NAME.into()),
                ..Default::default()
            };
            let _ = copy_stream(&api, &name, &last, &mut cursor, &mut file, &path).await;
            save_cursor(&path, &cursor).await;
            return;
        }
        tracing::debug!(pod = %name, "pod log stream ended while the container runs; resuming");
    }
}

enum Copy {
    Done,
    Gone,
    Failed(String),
}

/// One log request, copied line by line into `file` (the step log at
/// `path`) through the cursor, which is saved every [`CURSOR_EVERY`].
async fn copy_stream(
    api: &Api<Pod>,
    name: &str,
    params: &LogParams,
    cursor: &mut LogCursor,
    file: &mut tokio::fs::File,
    path: &Path,
) -> Copy {
    let stream = match api.log_stream(name, params).await {
        Ok(s) => s,
        Err(kube::Error::Api(s)) if s.code == 404 => return Copy::Gone,
        Err(e) => return Copy::Failed(e.to_string()),
    };
    let mut reader = Box::pin(stream);
    let mut filter = cursor.stream();
    let mut raw = Vec::new();
    let mut saved = tokio::time::Instant::now();
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw).await {
            Ok(0) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&raw);
                if let Some(text) = filter.accept(&line, cursor)
                    && file.write_all(text.as_bytes()).await.is_err()
                {
                    break;
                }
                if saved.elapsed() >= CURSOR_EVERY {
                    let _ = file.flush().await;
                    save_cursor(path, cursor).await;
                    saved = tokio::time::Instant::now();
                }
            }
            // A broken stream: the caller resumes from the cursor.
            Err(_) => break,
        }
    }
    // tokio's File writes in the background: the step log is complete
    // only once this returns.
    let _ = file.flush().await;
    Copy::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_stream_skips_what_was_written() {
        let mut cursor = LogCursor::default();
        let mut first = cursor.stream();
        let a = "2026-01-01T10:00:00.5Z one\n";
        let b = "2026-01-01T10:00:01.25Z two\n";
        let c = "2026-01-01T10:00:01.25Z two again\n";
        assert_eq!(first.accept(a, &mut cursor), Some("one\n"));
        assert_eq!(first.accept(b, &mut cursor), Some("two\n"));
        // Resumed from 10:00:01 (rounded down): `two` is sent again, then `two again`.
        assert_eq!(
            cursor.since().map(|t| t.to_string()).as_deref(),
            Some("2026-01-01T10:00:01Z")
        );
        let mut second = cursor.stream();
        assert_eq!(second.accept(b, &mut cursor), None);
        assert_eq!(second.accept(c, &mut cursor), Some("two again\n"));
        let mut third = cursor.stream();
        assert_eq!(third.accept(b, &mut cursor), None);
        assert_eq!(third.accept(c, &mut cursor), None);
        assert_eq!(
            third.accept("2026-01-01T10:00:02Z three\n", &mut cursor),
            Some("three\n")
        );
    }

    #[test]
    fn the_cursor_round_trips_with_the_log_length() {
        let mut cursor = LogCursor::default();
        let mut s = cursor.stream();
        s.accept("2026-01-01T10:00:00.5Z one\n", &mut cursor);
        s.accept("2026-01-01T10:00:00.5Z two\n", &mut cursor);
        assert_eq!(cursor.bytes, 8);
        let text = cursor.encode().unwrap();
        assert_eq!(text, "2026-01-01T10:00:00.5Z 2 8\n");
        assert_eq!(LogCursor::decode(&text), Some(cursor));
        assert_eq!(LogCursor::decode("garbage"), None);
        assert_eq!(
            cursor_path(Path::new("/s/logs/j/compile.log")),
            Path::new("/s/logs/j/.compile.log.cursor")
        );
    }

    #[test]
    fn lines_without_a_timestamp_are_kept() {
        let mut cursor = LogCursor::default();
        assert_eq!(
            cursor.stream().accept("plain\n", &mut cursor),
            Some("plain\n")
        );
    }
}
