//! The pure model of `oj`: job specs, runbooks, templates, the job record,
//! the write-ahead-log events and the state machine that applies them.
//!
//! Nothing here performs I/O, reads a clock or spawns a task: the daemon
//! passes times and ids in, so every rule can be tested with plain values.

pub mod cluster;
pub mod events;
mod id_set;
pub mod idempotency;
pub mod job;
pub mod job_filter;
pub mod job_view;
pub mod labels;
pub mod notification;
pub mod placement;
pub mod queue;
pub mod retry;
pub mod runbook;
mod runbook_schema;
pub mod schedule;
pub mod schedule_book;
pub mod scheduler;
pub mod spec;
pub mod state;
pub mod step_end;
pub mod template;
pub mod topic;

pub use cluster::{PodOverlay, SecretRef, WORKSPACE_MOUNT, Workspace};
pub use events::Event;
pub use job::{IdGen, Job, JobId, JobMap, JobState, StepState, StepStatus, Timestamp};
pub use job_filter::{JobFilter, JobIndex};
pub use job_view::JobView;
pub use notification::{Notification, NotificationKind};
pub use queue::{Dependency, Need, QueueError, WaitReason, Waiting};
pub use retry::{RetryCause, RetryError, RetrySpec};
pub use runbook::{Runbook, RunbookError};
pub use runbook_schema::runbook_json_schema;
pub use schedule_book::{FireResult, JobSchedule, ScheduleRecord};
pub use scheduler::{Gate, Limits, QueueCounts};
pub use spec::{
    ContainerResources, ContainerSpec, FilledStep, JobSpec, MAX_NAME_BYTES, NotifyTemplates,
    ResourceAmounts, SpecError, StepSpec,
};
pub use state::{ApplyError, JobCounts, State, Undo};
pub use step_end::{AfterStep, after_step};
pub use template::{MAX_FILLED_BYTES, MAX_MESSAGE_BYTES, RuntimeVars, TemplateError};
pub use topic::Topic;
