//! Retries of a step (SPEC §7.6): `retry = { attempts, backoff, on }` on a
//! job (the default of its steps) or on a step. The policy lives here, as
//! plain values, so the client checks a runbook with the same rules the
//! daemon applies, and the decision "run this step again, and when" is
//! testable without a clock.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// The most runs one step may be given: enough for any flaky step, small
/// enough that a typo (`attempts = 1000000`) cannot keep a job for ever.
pub const MAX_ATTEMPTS: u32 = 100;

/// The longest wait between two attempts, however often the delay doubled.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The first delay when `backoff` is not given.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);

/// Why an attempt failed, in the words of `retry.on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RetryCause {
    /// A non-zero exit (or a kill by a signal the daemon did not send).
    Failed,
    /// The step ran past its timeout.
    Timeout,
    /// The step's pod was evicted, deleted, never scheduled or could not
    /// pull its image: the step's own command is not to blame.
    Infra,
}

impl RetryCause {
    pub const ALL: [RetryCause; 3] = [RetryCause::Failed, RetryCause::Timeout, RetryCause::Infra];

    pub fn as_str(self) -> &'static str {
        match self {
            RetryCause::Failed => "failed",
            RetryCause::Timeout => "timeout",
            RetryCause::Infra => "infra",
        }
    }
}

impl fmt::Display for RetryCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RetryCause {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RetryCause {
    /// Refuses an unknown word naming the field, which serde's own enum
    /// error would not (it only says "unknown variant").
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = String::deserialize(d)?;
        RetryCause::ALL
            .into_iter()
            .find(|c| c.as_str() == word)
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "retry.on: {word:?} is not a retry cause; use any of \"failed\", \"timeout\", \"infra\""
                ))
            })
    }
}

fn default_on() -> Vec<RetryCause> {
    vec![RetryCause::Infra]
}

fn is_default_on(on: &[RetryCause]) -> bool {
    on == [RetryCause::Infra]
}

fn default_backoff() -> Duration {
    DEFAULT_BACKOFF
}

/// `retry = { attempts = N, backoff = "10s", on = [...] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Runs in all, the first one included (1 = no retry).
    pub attempts: u32,
    /// The wait before the second run; it doubles for each later one,
    /// capped at [`MAX_BACKOFF`].
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Which failures are retried (default: only `infra`).
    #[serde(default = "default_on", skip_serializing_if = "is_default_on")]
    pub on: Vec<RetryCause>,
}

/// Why a retry policy is refused; the message names where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    #[error(
        "{place}: retry.attempts = {attempts}; it counts runs in all, from 1 (no retry) to {MAX_ATTEMPTS}"
    )]
    Attempts { place: String, attempts: u32 },
    #[error(
        "{place}: retry.backoff = {backoff:?} is above the 5m cap of every wait between runs; give at most \"5m\""
    )]
    Backoff { place: String, backoff: String },
}

impl RetrySpec {
    /// Checks what serde cannot (the range of `attempts`).
    pub fn validate(&self, place: &str) -> Result<(), RetryError> {
        if self.attempts == 0 || self.attempts > MAX_ATTEMPTS {
            return Err(RetryError::Attempts {
                place: place.to_string(),
                attempts: self.attempts,
            });
        }
        if self.backoff > MAX_BACKOFF {
            return Err(RetryError::Backoff {
                place: place.to_string(),
                backoff: humantime::format_duration(self.backoff).to_string(),
            });
        }
        Ok(())
    }

    /// Whether a step that has run `runs` times (the failed one included)
    /// and failed for `cause` gets another run.
    pub fn retries(&self, cause: RetryCause, runs: usize) -> bool {
        self.on.contains(&cause) && runs < self.attempts as usize
    }

    /// The wait before run `runs + 1`: `backoff` after the first run,
    /// doubling after each later one, at most [`MAX_BACKOFF`].
    pub fn delay_after(&self, runs: usize) -> Duration {
        let doublings = runs.saturating_sub(1).min(32) as u32;
        self.backoff
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(MAX_BACKOFF)
            .min(MAX_BACKOFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Result<RetrySpec, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn defaults_are_infra_only_and_ten_seconds() {
        let p = policy(r#"{"attempts":3}"#).unwrap();
        assert_eq!(p.on, vec![RetryCause::Infra]);
        assert_eq!(p.backoff, Duration::from_secs(10));
        assert!(p.retries(RetryCause::Infra, 1));
        assert!(!p.retries(RetryCause::Failed, 1));
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"attempts":3,"backoff":"10s"}"#
        );
    }

    #[test]
    fn attempts_count_every_run() {
        let p = policy(r#"{"attempts":3,"on":["failed","timeout"]}"#).unwrap();
        assert!(p.retries(RetryCause::Failed, 1));
        assert!(p.retries(RetryCause::Timeout, 2));
        assert!(
            !p.retries(RetryCause::Failed, 3),
            "the third run was the last"
        );
        assert!(!p.retries(RetryCause::Infra, 1));
        let once = policy(r#"{"attempts":1,"on":["failed"]}"#).unwrap();
        assert!(!once.retries(RetryCause::Failed, 1));
    }

    #[test]
    fn the_delay_doubles_and_is_capped() {
        let p = policy(r#"{"attempts":20,"backoff":"10s"}"#).unwrap();
        let secs: Vec<u64> = (1..=7).map(|r| p.delay_after(r).as_secs()).collect();
        assert_eq!(secs, vec![10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(p.delay_after(99), MAX_BACKOFF);
        let zero = policy(r#"{"attempts":3,"backoff":"0s"}"#).unwrap();
        assert_eq!(zero.delay_after(2), Duration::ZERO);
    }

    #[test]
    fn bad_policies_are_refused_naming_the_field() {
        let err = policy(r#"{"attempts":2,"on":["failed","oom"]}"#).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("retry.on") && text.contains("\"oom\""),
            "{text}"
        );
        assert!(policy(r#"{"attempts":2,"tries":3}"#).is_err());
        for bad in [0, MAX_ATTEMPTS + 1] {
            let p = RetrySpec {
                attempts: bad,
                backoff: DEFAULT_BACKOFF,
                on: default_on(),
            };
            let err = p.validate("step \"s\"").unwrap_err().to_string();
            assert!(
                err.contains("step \"s\"") && err.contains("retry.attempts"),
                "{err}"
            );
        }
        let slow = policy(r#"{"attempts":2,"backoff":"10m"}"#).unwrap();
        let err = slow.validate("job").unwrap_err().to_string();
        assert!(
            err.contains("retry.backoff = \"10m\"") && err.contains("5m"),
            "{err}"
        );
        let capped = policy(r#"{"attempts":2,"backoff":"5m"}"#).unwrap();
        assert_eq!(capped.validate("job"), Ok(()));
    }
}
