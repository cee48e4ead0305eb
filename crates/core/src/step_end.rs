//! What happens to a job when one of its steps has ended: the next step
//! starts, or the job ends (and in which state, with which error). A pure
//! decision: the engine classifies how the step ended, asks this, and
//! records what it says.

use crate::job::{JobState, StepState, StepStatus};

/// The job's next move after a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterStep {
    /// Start step `n` (the one after the step that ended `done`).
    StartNext(usize),
    /// The job ends in `state`; `error` says why when it is not `done`.
    JobEnds {
        state: JobState,
        error: Option<String>,
    },
}

/// How step `step` of a job with `steps` ended (`state`, `error`), whether
/// the job's cancel was requested, and whether the daemon is terminating
/// running work (drain phase 3), decide the job's next move.
pub fn after_step(
    steps: &[StepStatus],
    step: usize,
    state: StepState,
    error: Option<String>,
    cancelled: bool,
    terminating: bool,
) -> AfterStep {
    let ends = |state, error: Option<String>| AfterStep::JobEnds { state, error };
    match state {
        JobState::Done if cancelled => ends(JobState::Cancelled, Some("cancelled".into())),
        JobState::Done if step + 1 < steps.len() => {
            if terminating {
                ends(
                    JobState::Interrupted,
                    Some(format!(
                        "the daemon shut down before step {} could start",
                        steps[step + 1].name
                    )),
                )
            } else {
                AfterStep::StartNext(step + 1)
            }
        }
        JobState::Done => ends(JobState::Done, None),
        JobState::Cancelled => ends(JobState::Cancelled, Some("cancelled".into())),
        other => ends(other, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(names: &[&str]) -> Vec<StepStatus> {
        names
            .iter()
            .map(|n| StepStatus {
                name: n.to_string(),
                state: JobState::Queued,
                exit_code: None,
                pod: None,
                started_at: None,
                ended_at: None,
                attempts: Vec::new(),
                retry_at: None,
            })
            .collect()
    }

    #[test]
    fn a_step_that_ends_done_starts_the_next_until_the_last() {
        let s = steps(&["a", "b"]);
        assert_eq!(
            after_step(&s, 0, JobState::Done, None, false, false),
            AfterStep::StartNext(1)
        );
        assert_eq!(
            after_step(&s, 1, JobState::Done, None, false, false),
            AfterStep::JobEnds {
                state: JobState::Done,
                error: None
            }
        );
    }

    #[test]
    fn a_failing_step_ends_the_job_with_its_error() {
        let s = steps(&["a", "b"]);
        assert_eq!(
            after_step(
                &s,
                0,
                JobState::Failed,
                Some("step a exited with code 3".into()),
                false,
                false
            ),
            AfterStep::JobEnds {
                state: JobState::Failed,
                error: Some("step a exited with code 3".into())
            }
        );
    }

    #[test]
    fn a_cancel_wins_over_a_step_that_ended_done() {
        let s = steps(&["a", "b"]);
        for state in [JobState::Done, JobState::Cancelled] {
            assert_eq!(
                after_step(&s, 0, state, None, true, false),
                AfterStep::JobEnds {
                    state: JobState::Cancelled,
                    error: Some("cancelled".into())
                }
            );
        }
    }

    #[test]
    fn a_terminating_daemon_starts_no_next_step() {
        let s = steps(&["a", "b"]);
        let AfterStep::JobEnds { state, error } =
            after_step(&s, 0, JobState::Done, None, false, true)
        else {
            panic!("the job must end");
        };
        assert_eq!(state, JobState::Interrupted);
        assert!(error.unwrap().contains("before step b could start"));
        // The last step ending done is a done job, terminating or not.
        assert_eq!(
            after_step(&s, 1, JobState::Done, None, false, true),
            AfterStep::JobEnds {
                state: JobState::Done,
                error: None
            }
        );
    }
}
