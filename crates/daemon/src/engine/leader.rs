//! Becoming leader: reloading the state a lease standby may hold stale,
//! the lead hook, and recovering jobs a dead daemon left running.

use oj_core::{Event, IdGen, JobId, JobState};
use tokio::sync::watch;
use tracing::Instrument;

use super::{Command, Engine, Running, now};
use crate::job_span;
use crate::runner::Stop;
use crate::storage::Storage;

impl Engine {
    pub(super) fn check_leader(&mut self) {
        let leader = *self.leader.borrow_and_update();
        if leader != self.is_leader {
            self.is_leader = leader;
            self.events.status_changed();
            if leader {
                tracing::info!("leader: jobs may run");
            } else {
                tracing::warn!("not the leader: no job starts");
            }
        }
        if leader && !self.recovered && !self.lead_pending {
            self.reload();
            match &self.lead_hook {
                Some(hook) => {
                    self.lead_pending = true;
                    let ids = self.state.jobs().map(|j| j.id.to_string()).collect();
                    let fut = hook(ids);
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        fut.await;
                        let _ = tx.send(Command::LeadReady);
                    });
                }
                None => {
                    self.recovered = true;
                    self.recover();
                }
            }
        }
    }

    /// Reloads state from disk (first leadership of a lease standby).
    pub(super) fn reload(&mut self) {
        if !self.cfg.get().reload_on_lead {
            return;
        }
        let dir = self.storage.dir().to_path_buf();
        match tokio::task::block_in_place(|| Storage::open(&dir)) {
            Ok((storage, state, report)) => {
                tracing::info!(
                    jobs = state.jobs().count(),
                    wal_records = report.wal_records,
                    "state reloaded on becoming leader"
                );
                self.storage = storage;
                self.state = state;
                self.ids =
                    IdGen::after(self.state.newest_id()).with_node(crate::identity::id_node());
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reload the state on becoming leader; using the copy loaded at start")
            }
        }
    }

    /// Jobs left `running` by a process that died: follow container steps
    /// again when the container runner can, end the rest `interrupted`.
    pub(super) fn recover(&mut self) {
        self.turn.recovered = true;
        // Workspaces of jobs that ended while no daemon ran (SPEC §8.5).
        self.runners
            .container
            .release(crate::cluster::sweep_of(self.state.jobs()));
        let now = now();
        let running: Vec<JobId> = self
            .state
            .running()
            .filter(|id| !self.running.contains_key(*id))
            .cloned()
            .collect();
        for id in running {
            if self.rearm_waiting_retry(&id) {
                continue;
            }
            let Some(job) = self.state.job(&id) else {
                continue;
            };
            let span = job_span::job_span(id.as_str(), &job.name);
            let _in_job = span.enter();
            let step = job.running_step();
            let reattach = step.and_then(|i| {
                job.spec.step_container(i)?;
                let ctx = self.step_context(job, i).ok()?;
                let (stop_tx, stop_rx) = watch::channel(Stop::Run);
                let fut = self.runners.container.reattach(ctx.clone(), stop_rx)?;
                Some((i, ctx, stop_tx, fut))
            });
            match reattach {
                Some((i, ctx, stop_tx, fut)) => {
                    tracing::info!(job_id = %id, step = %ctx.step_name, "following a container step started before the restart");
                    self.running.insert(
                        id.clone(),
                        Running {
                            step: i,
                            stop: stop_tx,
                            container: true,
                            step_name: ctx.step_name.clone(),
                            job_name: ctx.job_name.clone(),
                        },
                    );
                    self.active_dirty = true;
                    let tx = self.tx.clone();
                    let fut = fut.instrument(span.clone());
                    tokio::spawn(async move {
                        let outcome = fut.await;
                        let _ = tx.send(Command::StepExited {
                            id: ctx.job_id.clone(),
                            step: ctx.index,
                            outcome,
                        });
                    });
                }
                None => {
                    // Its shell step's processes outlived the dead daemon
                    // (own process group): stop them before saying so.
                    let killed = crate::runner::shell::kill_leftovers(id.as_str());
                    if killed > 0 {
                        tracing::warn!(job_id = %id, processes = killed, "killed what was left of the job's step from before the restart");
                    }
                    let what = match step.map(|i| job.steps[i].name.clone()) {
                        Some(s) => format!("the daemon stopped while step {s} was running"),
                        None => "the daemon stopped while the job was running".to_string(),
                    };
                    tracing::warn!(job_id = %id, "job was running when the daemon stopped; marking it interrupted");
                    self.record(Event::JobFinished {
                        id,
                        at: now,
                        state: JobState::Interrupted,
                        error: Some(what),
                    });
                }
            }
        }
        self.judge_all_blocked();
        let queued = self.state.counts().queued;
        if queued > 0 {
            tracing::info!(queued, "queued jobs from before the restart will start");
        }
    }
}
