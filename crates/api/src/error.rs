//! The body of every error answer: `{"code": "<word>", "error": "<what is
//! wrong and what to do>"}` (plus `job` when a schedule's run overlaps).
//! The client decides on the `code`; the `error` text is for people.

use std::fmt;

use oj_core::JobId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares [`ErrorCode`] and its wire words in one list, so a code and
/// its spelling cannot drift apart.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $word:literal,)*) => {
        /// The machine-readable `code` of an error answer (serde
        /// `snake_case` words). A word this build does not know — sent by a
        /// newer daemon — is kept in [`ErrorCode::Other`], never refused.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code this client does not know (or none at all: empty).
            Other(String),
        }

        impl ErrorCode {
            /// Every code this build knows, for tests and documentation.
            pub const KNOWN: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The word on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $word,)*
                    ErrorCode::Other(word) => word,
                }
            }

            /// The code of a wire word; unknown words are [`ErrorCode::Other`].
            pub fn from_word(word: &str) -> ErrorCode {
                match word {
                    $($word => ErrorCode::$variant,)*
                    other => ErrorCode::Other(other.to_string()),
                }
            }
        }
    };
}

error_codes! {
    /// No such route, job or schedule (404).
    NotFound => "not_found",
    /// This daemon is a standby: another instance holds the lock (503).
    Standby => "standby",
    /// The daemon is draining (shutting down) or its engine has stopped (503).
    Draining => "draining",
    /// The job spec is invalid (400).
    InvalidSpec => "invalid_spec",
    /// The job has already ended: nothing to cancel (409).
    Ended => "ended",
    /// The change could not be stored durably (507).
    Storage => "storage",
    /// No such queue (404).
    UnknownQueue => "unknown_queue",
    /// The job is not held: nothing to release (409).
    NotHeld => "not_held",
    /// The job is queued or running: it cannot be removed yet (409).
    NotFinished => "not_finished",
    /// A waiting job names this one in its `after` (409).
    Needed => "needed",
    /// The request (body) is malformed (400).
    BadRequest => "bad_request",
    /// The `Idempotency-Key` header is malformed or repeated (400).
    BadIdempotencyKey => "bad_idempotency_key",
    /// A query parameter is malformed (400).
    BadQuery => "bad_query",
    /// A rerun names a step the job does not have (400).
    UnknownStep => "unknown_step",
    /// A rerun from a later step needs a workspace that is gone (409).
    WorkspaceGone => "workspace_gone",
    /// The `Idempotency-Key` was used with a different spec (422).
    IdempotencyConflict => "idempotency_conflict",
    /// The first request with this `Idempotency-Key` is still committing (409).
    IdempotencyInProgress => "idempotency_in_progress",
    /// A schedule's last job still runs and its overlap is `skip` (409).
    Overlap => "overlap",
    /// No valid bearer token (401).
    Unauthorized => "unauthorized",
    /// A change with the session cookie from a foreign origin (403).
    Origin => "origin",
    /// The route does not take this method (405).
    MethodNotAllowed => "method_not_allowed",
    /// `/v1/session` takes POST or DELETE only (405).
    Method => "method",
    /// The request body did not arrive in time (408).
    Timeout => "timeout",
    /// The request body is over `listen.max_request_bytes` (413).
    TooLarge => "too_large",
    /// The request's content type is not taken (415).
    UnsupportedMediaType => "unsupported_media_type",
    /// The request is well-formed but cannot be processed (422).
    Invalid => "invalid",
    /// Something went wrong inside the daemon (5xx).
    Internal => "internal",
    /// `oj ui`'s proxy cannot reach the daemon (502).
    Unreachable => "unreachable",
    /// Any other failed status the daemon had no better word for.
    Error => "error",
}

impl Default for ErrorCode {
    /// No code at all (a body from something that is not an oj daemon).
    fn default() -> Self {
        ErrorCode::Other(String::new())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Whatever the daemon sends is kept: a code is never a parse error.
        let value = serde_json::Value::deserialize(d)?;
        Ok(match value {
            serde_json::Value::String(word) => ErrorCode::from_word(&word),
            serde_json::Value::Null => ErrorCode::default(),
            other => ErrorCode::Other(other.to_string()),
        })
    }
}

/// An error answer. Fields in the order serde_json wrote the `json!`
/// object it replaces (sorted), so the bytes are as before.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: ErrorCode,
    /// What is wrong and what to do, for people.
    #[serde(default)]
    pub error: String,
    /// The job a schedule's overlapping run waits for (`overlap` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobId>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, error: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            error: error.into(),
            job: None,
        }
    }

    /// The error body of any answer text: the daemon's JSON, else (a proxy's
    /// page, a plain-text error) the text's first line, bounded, with no code.
    pub fn from_text(body: &str) -> ErrorBody {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(body) {
            let code = map
                .get("code")
                .map(|c| ErrorCode::deserialize(c).unwrap_or_default())
                .unwrap_or_default();
            // Other servers' JSON errors say it under other names.
            for key in ["error", "message", "reason"] {
                if let Some(text) = map.get(key).and_then(serde_json::Value::as_str) {
                    return ErrorBody {
                        code,
                        error: text.to_string(),
                        job: map
                            .get("job")
                            .and_then(|j| serde_json::from_value(j.clone()).ok()),
                    };
                }
            }
            return ErrorBody::new(code, first_line(body));
        }
        ErrorBody::new(ErrorCode::default(), first_line(body))
    }
}

/// The first line of a text, bounded: what is shown of an answer that
/// says nothing in the daemon's words.
fn first_line(body: &str) -> String {
    let line = body.trim().lines().next().unwrap_or("").trim();
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_round_trips() {
        for code in ErrorCode::KNOWN {
            let text = serde_json::to_string(code).unwrap();
            assert_eq!(text, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&text).unwrap();
            assert_eq!(&back, code);
            assert!(!matches!(back, ErrorCode::Other(_)), "{code}");
            // snake_case words
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
        }
        let mut words: Vec<&str> = ErrorCode::KNOWN.iter().map(ErrorCode::as_str).collect();
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), ErrorCode::KNOWN.len(), "a word is used twice");
    }

    #[test]
    fn an_unknown_code_parses_and_round_trips() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error": "x", "code": "quota_exceeded"}"#).unwrap();
        assert_eq!(body.code, ErrorCode::Other("quota_exceeded".into()));
        assert_eq!(body.error, "x");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"code":"quota_exceeded","error":"x"}"#
        );
        // No code, or a code that is not a word: still a body.
        let body: ErrorBody = serde_json::from_str(r#"{"error": "y"}"#).unwrap();
        assert_eq!(body.code, ErrorCode::default());
        let body: ErrorBody = serde_json::from_str(r#"{"error": "y", "code": 7}"#).unwrap();
        assert_eq!(body.code, ErrorCode::Other("7".into()));
    }

    #[test]
    fn the_bytes_are_those_of_the_old_json_object() {
        let body = ErrorBody::new(ErrorCode::Standby, "this daemon is a standby");
        let old = serde_json::json!({ "error": "this daemon is a standby", "code": "standby" });
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            serde_json::to_string(&old).unwrap()
        );
    }

    #[test]
    fn error_texts_of_any_server_become_a_body() {
        let b = ErrorBody::from_text(r#"{"error":"no job abc","code":"not_found"}"#);
        assert_eq!(b.code, ErrorCode::NotFound);
        assert_eq!(b.error, "no job abc");
        let b = ErrorBody::from_text(r#"{"message":"proxy says no"}"#);
        assert_eq!(b.code, ErrorCode::default());
        assert_eq!(b.error, "proxy says no");
        let b = ErrorBody::from_text("plain\nsecond");
        assert_eq!(b.error, "plain");
        assert_eq!(ErrorBody::from_text("").error, "");
        let b = ErrorBody::from_text(r#"{"error":"busy","code":"overlap","job":"0mx49xbba000"}"#);
        assert_eq!(b.job.unwrap().as_str(), "0mx49xbba000");
    }
}
