//! Commit, then apply: how a turn's events reach the WAL ([`Engine::record`]),
//! how the turn is committed and its effects performed
//! ([`Engine::after_turn`]), and how a failed commit is undone and written
//! again with backoff.

use std::collections::HashSet;
use std::time::Duration;

use oj_core::{Event, JobId, Notification, Undo};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::{ActiveStep, Command, Engine, Reply, Running, SNAPSHOT_EVERY, now};
use crate::job_span;
use crate::runner::{StepContext, Stop};
use crate::storage::Committed;

/// First and longest wait before writing again what a failed commit could
/// not store.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What a turn does once its events are durable (and never otherwise).
pub(super) enum Effect {
    Reply(Reply),
    Spawn {
        ctx: Box<StepContext>,
        running: Running,
        stop: watch::Receiver<Stop>,
    },
    Notify(Box<Notification>),
    /// Job metrics (queue wait, duration, ends) of a committed event.
    Observe(Event),
    /// Schedule fire times settled (counted once durable).
    ScheduleFired {
        schedule: String,
        result: oj_core::FireResult,
        count: u64,
    },
    /// A schedule left the config: its metric series go.
    ScheduleGone(String),
    /// Deletes `logs/<id>/` of a removed job (only once the removal is durable).
    RemoveLogs(JobId),
    /// The engine stops tracking a step that ended (and, when the job
    /// ended, the job's cancel request).
    Forget(JobId),
    Submitted,
}

/// What the current turn changed, to undo it if its commit fails.
#[derive(Default)]
pub(super) struct Turn {
    /// Applied events' undos, oldest first.
    pub(super) undo: Vec<Undo>,
    /// Commands from inside the daemon whose events must be written again
    /// if this turn's commit fails.
    pub(super) internal: Vec<Command>,
    /// The turn ran the recovery after a restart.
    pub(super) recovered: bool,
    /// Idempotency keys of jobs submitted in this turn (not durable yet).
    pub(super) keys: HashSet<String>,
}

/// A storage episode: writes fail.
pub(super) struct StorageTrouble {
    pub(super) failures: u64,
    pub(super) backoff: Duration,
}

impl Engine {
    /// Applies an event to the state (keeping its undo for this turn) and
    /// buffers it for the WAL; queues the notification it calls for.
    pub(super) fn record(&mut self, event: Event) {
        self.events.before(&event, &self.state);
        match self.state.apply_undoable(&event) {
            Ok(undo) => self.turn.undo.push(undo),
            Err(e) => {
                tracing::error!(error = %e, "internal: an event does not fit the state; ignored");
                return;
            }
        }
        let seq = self.storage.next_seq();
        self.storage.append(&event);
        self.note_for_dependents(&event);
        self.events.staged(seq, &event);
        if matches!(event, Event::JobStarted { .. } | Event::JobFinished { .. }) {
            // Metrics count what is durable: after the commit.
            self.effects.push(Effect::Observe(event.clone()));
        }
        let Some((kind, id)) = event.notification_kind() else {
            return;
        };
        let Some(sink) = &self.notify else { return };
        if !sink.wants(kind) {
            return;
        }
        let Some(job) = self.state.job(id) else {
            return;
        };
        let at = match &event {
            Event::JobStarted { at, .. } | Event::JobFinished { at, .. } => *at,
            _ => now(),
        };
        let n = Notification::for_job(kind, job, at);
        let queued = Event::NotificationQueued {
            notification: Box::new(n.clone()),
        };
        if let Ok(undo) = self.state.apply_undoable(&queued) {
            self.turn.undo.push(undo);
            self.storage.append(&queued);
            self.effects.push(Effect::Notify(Box::new(n)));
        }
    }

    /// Writes again what failed commits could not store, and tries what
    /// else is due (queued jobs), while storage fails or retries wait.
    pub(super) fn retry_stored(&mut self) {
        self.retry_at = None;
        for cmd in std::mem::take(&mut self.retry) {
            // Internal commands only: none of them stops the engine.
            let _ = self.handle(cmd);
        }
        if self.is_leader && !self.recovered && !self.lead_pending {
            self.recovered = true;
            self.recover();
        }
        self.after_turn();
    }

    /// Schedules, commits the WAL, then performs the effects of the turn —
    /// or, when the commit fails, undoes the turn.
    pub(super) fn after_turn(&mut self) {
        self.judge_dependents();
        self.prune_if_over_max();
        self.tick_schedules();
        self.schedule();
        let commit = if self.storage.has_pending() {
            // Inline, not through block_in_place: a write and an fdatasync
            // hold this worker for a fraction of a millisecond while the
            // other serves requests, and handing the worker's core to
            // another thread on every turn only added context switches
            // (about 3 per job, no throughput gained in bench/peers.sh).
            // Snapshots, probes and reloads, which can take long, still go
            // through block_in_place.
            self.storage.commit(&self.state).map_err(|e| e.to_string())
        } else if self.trouble.is_some() {
            // Nothing to write: only a real write may end the episode.
            tokio::task::block_in_place(|| self.storage.probe(&self.state))
                .map(|()| Committed::Appended)
                .map_err(|e| e.to_string())
        } else {
            Ok(Committed::Appended)
        };
        match commit {
            Ok(how) => {
                if how == Committed::Rewritten {
                    self.metrics.storage_errors.inc();
                }
                self.storage_works();
                self.turn = Turn::default();
                for effect in std::mem::take(&mut self.effects) {
                    self.perform(effect);
                }
            }
            Err(e) => {
                self.events.discard();
                self.undo_turn(e);
            }
        }
        self.publish();
        let (limits, gate) = (self.limits(), self.gate());
        self.events
            .commit(&self.state, &limits, gate, || self.storage.reserve_seq());
        if self.storage.wal_len() >= SNAPSHOT_EVERY && self.trouble.is_none() {
            match tokio::task::block_in_place(|| self.storage.snapshot(&self.state)) {
                Ok(()) => tracing::debug!("snapshot written"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot write a snapshot; the WAL keeps growing")
                }
            }
        }
    }

    pub(super) fn perform(&mut self, effect: Effect) {
        match effect {
            Effect::Reply(reply) => reply(None),
            Effect::Submitted => {
                self.metrics.jobs_submitted.inc();
            }
            Effect::RemoveLogs(id) => {
                self.remove_logs(&id);
                self.remove_work_dir(&id);
            }
            Effect::Forget(id) => {
                self.running.remove(&id);
                self.active_dirty = true;
                if self.state.job(&id).is_none_or(|j| j.state.is_terminal()) {
                    self.cancel_requested.remove(&id);
                }
            }
            Effect::Spawn { ctx, running, stop } => {
                // A cancel or drain that came while the start was written.
                if self.cancel_requested.contains(&ctx.job_id) {
                    running.stop.send_replace(Stop::Cancel);
                } else if self.terminating {
                    // Container runners apply shutdown.container_steps to it.
                    running.stop.send_replace(Stop::Terminate);
                }
                self.running.insert(ctx.job_id.clone(), running);
                self.active_dirty = true;
                let runner = if ctx.container.is_some() {
                    self.runners.container.clone()
                } else {
                    self.runners.shell.clone()
                };
                let tx = self.tx.clone();
                let span = job_span::job_span(ctx.job_id.as_str(), &ctx.job_name);
                tokio::spawn(
                    async move {
                        let id = ctx.job_id.clone();
                        let index = ctx.index;
                        let outcome = runner.run(*ctx, stop).await;
                        let _ = tx.send(Command::StepExited {
                            id,
                            step: index,
                            outcome,
                        });
                    }
                    .instrument(span),
                );
            }
            Effect::Notify(n) => {
                if let Some(sink) = &self.notify {
                    let _in_job = job_span::job_span(n.job_id.as_str(), &n.job_name).entered();
                    sink.enqueue(&n);
                }
            }
            Effect::Observe(event) => {
                self.observe_schedule_end(&event);
                self.metrics.observe(&event, &self.state);
                if let Event::JobFinished { id, .. } = &event
                    && self
                        .state
                        .job(id)
                        .is_some_and(|j| j.spec.workspace.is_some())
                {
                    let release = crate::cluster::Release::Job(id.to_string());
                    self.runners.container.release(release);
                }
            }
            Effect::ScheduleFired {
                schedule,
                result,
                count,
            } => self.metrics.schedules.fired(&schedule, result, count),
            Effect::ScheduleGone(name) => self.metrics.schedules.forget(&name),
        }
    }

    /// The turn's commit failed: put memory back as it was, tell callers,
    /// drop every other effect, keep internal events to write again.
    pub(super) fn undo_turn(&mut self, error: String) {
        let turn = std::mem::take(&mut self.turn);
        for undo in turn.undo.into_iter().rev() {
            self.state.undo(undo);
        }
        if turn.recovered {
            self.recovered = false;
        }
        self.rearm_undone_retries();
        self.sched.undone();
        for effect in std::mem::take(&mut self.effects) {
            if let Effect::Reply(reply) = effect {
                reply(Some(&error));
            }
        }
        self.retry.extend(turn.internal);
        self.metrics.storage_errors.inc();
        if self.trouble.is_none() {
            self.events.status_changed();
        }
        let trouble = self.trouble.get_or_insert_with(|| {
            tracing::error!(
                error = %error,
                "cannot write the WAL: nothing of this turn is kept; submissions get 507, no step starts, and the engine writes again with backoff until it works"
            );
            StorageTrouble {
                failures: 0,
                backoff: RETRY_FIRST,
            }
        });
        trouble.failures += 1;
        tracing::debug!(error = %error, failures = trouble.failures, "WAL write failed again");
        self.retry_at = Some(Instant::now() + trouble.backoff);
        trouble.backoff = (trouble.backoff * 2).min(RETRY_MAX);
        self.storage_error_tx.send_replace(Some(error));
    }

    /// A commit succeeded: end a storage episode, if one was going on.
    pub(super) fn storage_works(&mut self) {
        if let Some(t) = self.trouble.take() {
            self.events.status_changed();
            tracing::info!(failed_writes = t.failures, "the WAL can be written again");
            self.storage_error_tx.send_replace(None);
        }
        if !self.retry.is_empty() {
            self.retry_at = Some(Instant::now());
        }
    }

    /// Publishes what the API reads without asking the engine.
    pub(super) fn publish(&mut self) {
        self.publish_queues();
        let counts = self.state.counts();
        self.counts_tx.send_if_modified(|c| {
            let changed = *c != counts;
            *c = counts;
            changed
        });
        if self.active_dirty {
            self.active_dirty = false;
            let mut active: Vec<ActiveStep> = self
                .running
                .iter()
                .map(|(id, r)| ActiveStep {
                    job_id: id.clone(),
                    job_name: r.job_name.clone(),
                    step: r.step_name.clone(),
                    container: r.container,
                })
                .collect();
            active.sort_by(|a, b| a.job_id.cmp(&b.job_id));
            self.active_tx.send_replace(active);
        }
    }
}
