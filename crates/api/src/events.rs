//! `GET /v1/events` (SPEC §8.4): a server-sent event stream. Each frame's
//! `event:` names its kind and its `data:` is JSON: a [`crate::Status`]
//! for `status`, a job ([`oj_core::Job`]) for `job`, and so on; `id:` is
//! a durable sequence number to resume from (`Last-Event-ID` or
//! `?after=`).

use std::fmt;

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
