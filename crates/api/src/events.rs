//! `GET /v1/events` (SPEC §8.4): a server-sent event stream. Each frame's
//! `event:` names its kind and its `data:` is JSON: a [`crate::Status`]
//! for `status`, a job ([`oj_core::Job`]) for `job`, and so on; `id:` is
//! a durable sequence number to resume from (`Last-Event-ID` or
//! `?after=`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The data of a `log` frame (`?logs=1`): text a step wrote, from byte
/// `offset` of its log on. Fields in sorted order (the bytes of the
/// `json!` object it replaces).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogData {
    pub job: oj_core::JobId,
    pub offset: u64,
    pub step: String,
    pub text: String,
}

/// The data of a `reset` frame: the newest sequence number, to resume
/// from after reading the objects again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetData {
    pub id: u64,
}

/// The `event:` word of a frame. Unknown words (a newer daemon) are kept.
/// The `data` of `reset` is `{"id": <newest sequence number>}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The daemon's status (the body of `GET /v1/status`).
    Status,
    /// A job as it is after a change (its last state when removed).
    Job,
    /// A queue after a change ([`crate::QueueInfo`]).
    Queue,
    /// A schedule after a change ([`crate::ScheduleInfo`]).
    Schedule,
    /// Output of a step (`?logs=true`).
    Log,
    /// The reader fell too far behind: resynchronise from the data.
    Reset,
    Other(String),
}

impl EventKind {
    pub fn from_word(word: &str) -> EventKind {
        match word {
            "status" => EventKind::Status,
            "job" => EventKind::Job,
            "queue" => EventKind::Queue,
            "schedule" => EventKind::Schedule,
            "log" => EventKind::Log,
            "reset" => EventKind::Reset,
            other => EventKind::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Status => "status",
            EventKind::Job => "job",
            EventKind::Queue => "queue",
            EventKind::Schedule => "schedule",
            EventKind::Log => "log",
            EventKind::Reset => "reset",
            EventKind::Other(word) => word,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for w in [
            "status", "job", "queue", "schedule", "log", "reset", "later",
        ] {
            assert_eq!(EventKind::from_word(w).as_str(), w);
        }
        assert_eq!(
            EventKind::from_word("later"),
            EventKind::Other("later".into())
        );
    }
}
