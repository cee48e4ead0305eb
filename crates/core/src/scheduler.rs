//! The scheduler's index (SPEC §8.2): which queued jobs may start, kept in
//! step with every event so that deciding what starts next never scans the
//! waiting jobs.
//!
//! A queued job is in exactly one of: `blocked` (a dependency has not ended
//! the way it needs), `held`, `timed` (its `not_before` is later than the
//! clock the engine last gave), or `ready` — one ordered set per queue,
//! keyed by (−priority, id), and ids sort by submission. `dependents` maps
//! a job to the queued jobs that wait for it, so a job's end touches only
//! them. [`Index::pick`] merges the heads of the ready sets of the queues
//! that have room: O(started · log queues), whatever the number waiting.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::ops::Bound;

use crate::id_set::IdSet;
use crate::job::{Job, JobId, JobMap, JobState, Timestamp};
use crate::queue::{Dependency, Need, WaitReason, Waiting};

/// Jobs of one queue, as `GET /v1/queues` and the metrics count them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub queued: usize,
    /// Running and holding a slot (a job waiting for a step's retry does not).
    pub running: usize,
}

/// How many jobs may run at once: in all, and per queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// `jobs.max_concurrent`.
    pub max_concurrent: usize,
    /// `queues.<name>.max_concurrent`; a queue not listed has `max_concurrent`.
    pub queues: BTreeMap<String, usize>,
}

impl Limits {
    /// Only the daemon-wide limit.
    pub fn total(max_concurrent: usize) -> Limits {
        Limits {
            max_concurrent,
            queues: BTreeMap::new(),
        }
    }

    pub fn of(&self, queue: &str) -> usize {
        self.queues
            .get(queue)
            .copied()
            .unwrap_or(self.max_concurrent)
    }
}

/// What keeps a daemon from starting anything (the `leader` reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    Standby,
    Draining,
}

type Key = (i32, JobId);

/// See the module docs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Index {
    ready: BTreeMap<String, BTreeSet<Key>>,
    blocked: HashMap<JobId, u32>,
    dependents: HashMap<JobId, IdSet>,
    held: BTreeSet<JobId>,
    timed: BTreeSet<(Timestamp, JobId)>,
    clock: Option<Timestamp>,
    paused: BTreeSet<String>,
    queues: BTreeMap<String, QueueCounts>,
    active: usize,
}

/// Whether a dependency is met (a missing job counts as met: it cannot be
/// removed while needed, so only an old state can lack it).
fn met(dep: &Dependency, jobs: &JobMap) -> bool {
    match jobs.get(&dep.job) {
        None => true,
        Some(d) => match dep.need {
            Need::Done => d.state == JobState::Done,
            Need::Ended => d.state.is_terminal(),
        },
    }
}

fn holds_slot(job: &Job) -> bool {
    job.state == JobState::Running && job.retrying_step().is_none()
}

impl Index {
    fn counts_of(&mut self, queue: &str) -> &mut QueueCounts {
        // Most events are about a queue already counted: no allocation.
        if !self.queues.contains_key(queue) {
            self.queues
                .insert(queue.to_string(), QueueCounts::default());
        }
        match self.queues.get_mut(queue) {
            Some(c) => c,
            None => unreachable!("inserted above"),
        }
    }

    /// Adds `job` (already in `jobs`, as it is now) to the index.
    pub(crate) fn add(&mut self, job: &Job, jobs: &JobMap) {
        if holds_slot(job) {
            self.counts_of(&job.queue).running += 1;
            self.active += 1;
        }
        if job.state != JobState::Queued {
            return;
        }
        self.counts_of(&job.queue).queued += 1;
        let mut unmet = 0;
        for dep in &job.after {
            match self.dependents.get_mut(&dep.job) {
                Some(ids) => ids.insert(&job.id),
                None => {
                    self.dependents
                        .insert(dep.job.clone(), IdSet::One(job.id.clone()));
                }
            }
            if !met(dep, jobs) {
                unmet += 1;
            }
        }
        if unmet > 0 {
            self.blocked.insert(job.id.clone(), unmet);
        } else if job.hold {
            self.held.insert(job.id.clone());
        } else if let Some(nb) = job
            .not_before
            .filter(|nb| self.clock.is_none_or(|c| *nb > c))
        {
            self.timed.insert((nb, job.id.clone()));
        } else {
            self.ready
                .entry(job.queue.clone())
                .or_default()
                .insert((-job.priority, job.id.clone()));
        }
    }

    /// Takes `job` (as it was when added) out of the index.
    pub(crate) fn remove(&mut self, job: &Job) {
        if holds_slot(job) {
            if let Some(q) = self.queues.get_mut(&job.queue) {
                q.running = q.running.saturating_sub(1);
            }
            self.active = self.active.saturating_sub(1);
        }
        if job.state == JobState::Queued {
            if let Some(q) = self.queues.get_mut(&job.queue) {
                q.queued = q.queued.saturating_sub(1);
            }
            for dep in &job.after {
                if let Some(ids) = self.dependents.get_mut(&dep.job)
                    && ids.remove(&job.id)
                {
                    self.dependents.remove(&dep.job);
                }
            }
            self.blocked.remove(&job.id);
            self.held.remove(&job.id);
            if let Some(nb) = job.not_before {
                self.timed.remove(&(nb, job.id.clone()));
            }
            if let Some(set) = self.ready.get_mut(&job.queue) {
                set.remove(&(-job.priority, job.id.clone()));
                if set.is_empty() {
                    self.ready.remove(&job.queue);
                }
            }
        }
        if let Some(q) = self.queues.get(&job.queue)
            && *q == QueueCounts::default()
        {
            self.queues.remove(&job.queue);
        }
    }

    /// The queued jobs that wait for `id`.
    pub fn dependents_of(&self, id: &JobId) -> impl Iterator<Item = &JobId> {
        self.dependents.get(id).into_iter().flat_map(IdSet::iter)
    }

    /// Whether a job that has not started names `id` in its `after`.
    pub fn is_needed(&self, id: &JobId) -> bool {
        self.dependents.contains_key(id)
    }

    /// Queued jobs with an unmet dependency.
    pub fn blocked(&self) -> impl Iterator<Item = &JobId> {
        self.blocked.keys()
    }

    /// Moves jobs whose `not_before` is not after `now` to the ready sets.
    pub(crate) fn advance_clock(&mut self, now: Timestamp, jobs: &JobMap) {
        if self.clock.is_some_and(|c| c >= now) {
            return;
        }
        self.clock = Some(now);
        while let Some((nb, id)) = self.timed.first().cloned() {
            if nb > now {
                break;
            }
            self.timed.pop_first();
            if let Some(job) = jobs.get(&id) {
                self.ready
                    .entry(job.queue.clone())
                    .or_default()
                    .insert((-job.priority, id));
            }
        }
    }

    /// The earliest `not_before` still in the future of the clock.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.timed.first().map(|(t, _)| *t)
    }

    pub(crate) fn set_paused(&mut self, queue: &str, paused: bool) -> bool {
        if paused {
            self.paused.insert(queue.to_string())
        } else {
            self.paused.remove(queue)
        }
    }

    pub fn is_paused(&self, queue: &str) -> bool {
        self.paused.contains(queue)
    }

    pub fn paused(&self) -> impl Iterator<Item = &String> {
        self.paused.iter()
    }

    /// Queued and slot-holding jobs per queue (queues with any).
    pub fn queue_counts(&self) -> &BTreeMap<String, QueueCounts> {
        &self.queues
    }

    /// Running jobs that hold a slot of `jobs.max_concurrent`.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Whether a job of `queue` could take a slot now (pauses aside).
    pub fn has_room(&self, queue: &str, limits: &Limits) -> bool {
        let running = self.queues.get(queue).map_or(0, |q| q.running);
        self.active < limits.max_concurrent && running < limits.of(queue)
    }

    /// The jobs to start now, best first: higher priority, then earlier
    /// submission, across the queues that are not paused and have room.
    pub fn pick(&self, limits: &Limits) -> Vec<JobId> {
        let mut free = limits.max_concurrent.saturating_sub(self.active);
        let mut heap = BinaryHeap::new();
        let mut room: HashMap<&str, usize> = HashMap::new();
        for (queue, set) in &self.ready {
            if free == 0 {
                break;
            }
            if self.paused.contains(queue) {
                continue;
            }
            let running = self.queues.get(queue).map_or(0, |q| q.running);
            let r = limits.of(queue).saturating_sub(running);
            if r == 0 {
                continue;
            }
            if let Some(first) = set.first() {
                room.insert(queue.as_str(), r);
                heap.push(Reverse((first.clone(), queue.as_str())));
            }
        }
        let mut out = Vec::new();
        while free > 0 {
            let Some(Reverse((key, queue))) = heap.pop() else {
                break;
            };
            out.push(key.1.clone());
            free -= 1;
            let r = room.entry(queue).or_default();
            *r = r.saturating_sub(1);
            if *r == 0 {
                continue;
            }
            if let Some(next) = self.ready.get(queue).and_then(|set| {
                set.range((Bound::Excluded(key), Bound::Unbounded))
                    .next()
                    .cloned()
            }) {
                heap.push(Reverse((next, queue)));
            }
        }
        out
    }

    /// Why queued `job` waits, or `None` when it is not queued.
    pub fn waiting(
        &self,
        job: &Job,
        jobs: &JobMap,
        limits: &Limits,
        gate: Gate,
    ) -> Option<Waiting> {
        if job.state != JobState::Queued {
            return None;
        }
        let w = |reason, detail: String| Some(Waiting { reason, detail });
        if self.blocked.contains_key(&job.id) {
            let first = job.after.iter().find(|d| !met(d, jobs))?;
            return w(WaitReason::Dependency, format!("after {}", first.job));
        }
        if self.held.contains(&job.id) {
            return w(WaitReason::Held, "held".into());
        }
        if let Some(nb) = job.not_before
            && self.timed.contains(&(nb, job.id.clone()))
        {
            return w(WaitReason::NotBefore, format!("until {nb}"));
        }
        match gate {
            Gate::Open => {}
            Gate::Standby => return w(WaitReason::Leader, "standby".into()),
            Gate::Draining => return w(WaitReason::Leader, "draining".into()),
        }
        if self.paused.contains(&job.queue) {
            return w(
                WaitReason::QueuePaused,
                format!("queue {} paused", job.queue),
            );
        }
        // A queue without a limit of its own is full only when the daemon is.
        let running = self.queues.get(&job.queue).map_or(0, |q| q.running);
        let limit = limits.of(&job.queue);
        if running >= limit && limits.queues.contains_key(&job.queue) {
            return w(
                WaitReason::QueueFull,
                format!("queue {} full, {running}/{limit}", job.queue),
            );
        }
        if self.active >= limits.max_concurrent {
            return w(
                WaitReason::Capacity,
                format!("jobs.max_concurrent {} reached", limits.max_concurrent),
            );
        }
        w(WaitReason::Capacity, "next to start".into())
    }

    /// The first dependency of queued `job` that can no longer be met (a
    /// `done` dependency that ended otherwise) and how it ended.
    pub fn doomed_by(job: &Job, jobs: &JobMap) -> Option<(JobId, JobState)> {
        if job.state != JobState::Queued {
            return None;
        }
        job.after.iter().find_map(|d| {
            let dep = jobs.get(&d.job)?;
            (d.need == Need::Done && dep.state.is_terminal() && dep.state != JobState::Done)
                .then(|| (d.job.clone(), dep.state))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use crate::spec::{JobSpec, StepSpec};
    use crate::state::State;
    use std::time::{Duration, UNIX_EPOCH};

    fn t(s: u64) -> Timestamp {
        Timestamp(UNIX_EPOCH + Duration::from_secs(1_795_000_000 + s))
    }

    fn spec(queue: &str, priority: i32, after: Vec<Dependency>) -> JobSpec {
        JobSpec {
            name: "j".into(),
            queue: queue.into(),
            env: Default::default(),
            notify: None,
            container: None,
            retry: None,
            priority,
            after,
            hold: false,
            not_before: None,
            dir: None,
            labels: Default::default(),
            workspace: None,
            secrets: Default::default(),
            steps: vec![StepSpec {
                name: "a".into(),
                run: "true".into(),
                timeout: None,
                container: None,
                retry: None,
                secrets: Default::default(),
            }],
        }
    }

    struct Jobs {
        s: State,
        n: u64,
    }

    impl Jobs {
        fn new() -> Jobs {
            Jobs {
                s: State::new(),
                n: 0,
            }
        }

        fn add(&mut self, spec: JobSpec) -> JobId {
            self.n += 1;
            let id = JobId::from_parts(1_795_000_000_000 + self.n, 0);
            let job = Job::new(id.clone(), spec, t(self.n));
            self.s
                .apply(&Event::JobSubmitted { job: Box::new(job) })
                .unwrap();
            id
        }

        fn job(&mut self, queue: &str, priority: i32) -> JobId {
            self.add(spec(queue, priority, vec![]))
        }

        fn after(&mut self, deps: &[(&JobId, Need)]) -> JobId {
            let after = deps
                .iter()
                .map(|(id, need)| Dependency {
                    job: (*id).clone(),
                    need: *need,
                })
                .collect();
            self.add(spec("default", 0, after))
        }

        fn start(&mut self, id: &JobId) {
            self.s
                .apply(&Event::JobStarted {
                    id: id.clone(),
                    at: t(100),
                })
                .unwrap();
        }

        fn end(&mut self, id: &JobId, state: JobState) {
            self.s
                .apply(&Event::JobFinished {
                    id: id.clone(),
                    at: t(101),
                    state,
                    error: None,
                })
                .unwrap();
        }
    }

    fn limits(total: usize, queues: &[(&str, usize)]) -> Limits {
        Limits {
            max_concurrent: total,
            queues: queues.iter().map(|(q, n)| (q.to_string(), *n)).collect(),
        }
    }

    /// Higher priority first; equal priorities in submission order.
    #[test]
    fn priority_then_submission() {
        let mut j = Jobs::new();
        let low = j.job("default", -5);
        let a = j.job("default", 0);
        let high = j.job("default", 10);
        let b = j.job("default", 0);
        assert_eq!(j.s.next_to_start(10), vec![high.clone(), a.clone(), b, low]);
        assert_eq!(j.s.next_to_start(2), vec![high.clone(), a]);
        j.start(&high);
        assert_eq!(j.s.scheduler().active(), 1);
        assert_eq!(j.s.next_to_start(1), Vec::<JobId>::new());
    }

    /// A full or paused queue never holds back another; the daemon-wide
    /// limit still caps them all; priorities compete across queues.
    #[test]
    fn queues_have_their_own_limits_and_pauses() {
        let mut j = Jobs::new();
        let b1 = j.job("build", 0);
        let b2 = j.job("build", 5);
        let d1 = j.job("deploy", 1);
        let d2 = j.job("deploy", 0);
        let l = limits(3, &[("build", 1), ("deploy", 1)]);
        assert_eq!(j.s.pick(&l), vec![b2.clone(), d1.clone()]);
        j.start(&b2);
        assert_eq!(j.s.pick(&l), vec![d1.clone()]);
        let w = j.s.waiting(&b1, &l, Gate::Open).unwrap();
        assert_eq!(w.reason, WaitReason::QueueFull);
        assert_eq!(w.detail, "queue build full, 1/1");
        j.s.apply(&Event::QueuePaused {
            queue: "deploy".into(),
        })
        .unwrap();
        assert!(j.s.pick(&l).is_empty());
        let w = j.s.waiting(&d2, &l, Gate::Open).unwrap();
        assert_eq!(w.reason, WaitReason::QueuePaused);
        let restored = State::from_snapshot(j.s.snapshot());
        assert!(
            restored.scheduler().is_paused("deploy"),
            "pauses are in the snapshot"
        );
        assert_eq!(restored.pick(&l), Vec::<JobId>::new());
        j.s.apply(&Event::QueueResumed {
            queue: "deploy".into(),
        })
        .unwrap();
        assert_eq!(j.s.pick(&l), vec![d1.clone()]);
        // The daemon-wide limit caps every queue.
        assert_eq!(j.s.pick(&limits(1, &[("build", 1), ("deploy", 1)])), vec![]);
        let w =
            j.s.waiting(&d1, &limits(1, &[("deploy", 5)]), Gate::Open)
                .unwrap();
        assert_eq!(w.reason, WaitReason::Capacity);
        let w = j.s.waiting(&d1, &l, Gate::Draining).unwrap();
        assert_eq!(
            (w.reason, w.detail.as_str()),
            (WaitReason::Leader, "draining")
        );
        assert_eq!(j.s.scheduler().queue_counts()["build"].queued, 1);
        assert_eq!(j.s.scheduler().queue_counts()["build"].running, 1);
    }

    /// A chain starts link by link; each link waits for the one before it.
    #[test]
    fn a_chain_starts_link_by_link() {
        let mut j = Jobs::new();
        let a = j.job("default", 0);
        let b = j.after(&[(&a, Need::Done)]);
        let c = j.after(&[(&b, Need::Done)]);
        assert_eq!(j.s.next_to_start(10), vec![a.clone()]);
        let w = j.s.waiting(&c, &Limits::total(10), Gate::Open).unwrap();
        assert_eq!(w.reason, WaitReason::Dependency);
        assert_eq!(w.detail, format!("after {b}"));
        assert!(j.s.scheduler().is_needed(&a));
        j.start(&a);
        assert!(j.s.next_to_start(10).is_empty());
        j.end(&a, JobState::Done);
        assert_eq!(j.s.next_to_start(10), vec![b.clone()]);
        // A needed job cannot be removed; once its dependent started it can.
        assert_eq!(
            j.s.apply(&Event::JobRemoved { id: b.clone() }),
            Err(crate::state::ApplyError::NotFinished {
                id: b.clone(),
                state: JobState::Queued
            })
        );
        j.start(&b);
        assert!(!j.s.scheduler().is_needed(&a));
        j.s.apply(&Event::JobRemoved { id: a.clone() }).unwrap();
        j.end(&b, JobState::Done);
        assert_eq!(j.s.next_to_start(10), vec![c]);
    }

    /// A `done` dependency that fails dooms its dependent; an `ended` one
    /// lets it run; a removed dependency is refused while needed.
    #[test]
    fn a_dependency_ends_each_way() {
        let mut j = Jobs::new();
        let a = j.job("default", 0);
        let needs_done = j.after(&[(&a, Need::Done)]);
        let needs_end = j.after(&[(&a, Need::Ended)]);
        j.start(&a);
        j.end(&a, JobState::Failed);
        assert_eq!(j.s.doomed(&needs_done), Some((a.clone(), JobState::Failed)));
        assert_eq!(j.s.doomed(&needs_end), None);
        assert_eq!(j.s.next_to_start(10), vec![needs_end.clone()]);
        assert_eq!(
            j.s.apply(&Event::JobRemoved { id: a.clone() }),
            Err(crate::state::ApplyError::Needed(a.clone()))
        );
        // The engine cancels the doomed one; its own dependents follow.
        let grandchild = j.after(&[(&needs_done, Need::Done)]);
        j.end(&needs_done, JobState::Cancelled);
        assert_eq!(
            j.s.doomed(&grandchild),
            Some((needs_done.clone(), JobState::Cancelled))
        );
        // Already ended at submission: judged the same way.
        let late = j.after(&[(&a, Need::Done)]);
        assert_eq!(j.s.doomed(&late), Some((a, JobState::Failed)));
    }

    /// A paused queue keeps a dependent whose dependency is done; resume
    /// starts it.
    #[test]
    fn pause_with_dependencies() {
        let mut j = Jobs::new();
        let a = j.job("default", 0);
        let b = j.after(&[(&a, Need::Done)]);
        j.start(&a);
        j.s.apply(&Event::QueuePaused {
            queue: "default".into(),
        })
        .unwrap();
        j.end(&a, JobState::Done);
        assert!(j.s.next_to_start(10).is_empty());
        assert_eq!(
            j.s.waiting(&b, &Limits::total(10), Gate::Open)
                .unwrap()
                .reason,
            WaitReason::QueuePaused
        );
        j.s.apply(&Event::QueueResumed {
            queue: "default".into(),
        })
        .unwrap();
        assert_eq!(j.s.next_to_start(10), vec![b]);
    }

    /// Held jobs wait for their release; timed jobs for the clock; both
    /// survive a snapshot; a release is undone by its undo.
    #[test]
    fn holds_and_times() {
        let mut j = Jobs::new();
        let mut held = spec("default", 0, vec![]);
        held.hold = true;
        let h = j.add(held);
        let mut later = spec("default", 0, vec![]);
        later.not_before = Some(t(50));
        let l = j.add(later);
        assert!(j.s.next_to_start(10).is_empty());
        assert_eq!(j.s.scheduler().next_due(), Some(t(50)));
        let w = j.s.waiting(&l, &Limits::total(10), Gate::Open).unwrap();
        assert_eq!(w.reason, WaitReason::NotBefore);
        j.s.advance_clock(t(49));
        assert!(j.s.next_to_start(10).is_empty());
        j.s.advance_clock(t(50));
        assert_eq!(j.s.next_to_start(10), vec![l]);
        let before = j.s.clone();
        let undo =
            j.s.apply_undoable(&Event::JobReleased { id: h.clone() })
                .unwrap();
        assert_eq!(j.s.next_to_start(10).len(), 2);
        assert!(!j.s.job(&h).unwrap().hold);
        assert_eq!(
            j.s.apply(&Event::JobReleased { id: h.clone() }),
            Err(crate::state::ApplyError::NotHeld(h.clone()))
        );
        j.s.undo(undo);
        assert_eq!(j.s, before);
        let restored = State::from_snapshot(j.s.snapshot());
        assert_eq!(
            restored
                .waiting(&h, &Limits::total(10), Gate::Open)
                .unwrap()
                .reason,
            WaitReason::Held
        );
    }

    /// A running job waiting for a step's retry holds no slot.
    #[test]
    fn a_retry_wait_holds_no_slot() {
        let mut j = Jobs::new();
        let a = j.job("default", 0);
        let b = j.job("default", 0);
        j.start(&a);
        assert!(j.s.next_to_start(1).is_empty());
        j.s.apply(&Event::StepStarted {
            id: a.clone(),
            step: 0,
            at: t(100),
            pod: None,
        })
        .unwrap();
        j.s.apply(&Event::StepRetrying {
            id: a.clone(),
            step: 0,
            at: t(101),
            exit_code: Some(1),
            reason: "x".into(),
            retry_at: t(200),
        })
        .unwrap();
        assert_eq!(j.s.scheduler().active(), 0);
        assert_eq!(j.s.next_to_start(1), vec![b]);
        assert!(j.s.scheduler().has_room("default", &Limits::total(1)));
        j.s.apply(&Event::StepStarted {
            id: a,
            step: 0,
            at: t(200),
            pod: None,
        })
        .unwrap();
        assert_eq!(j.s.scheduler().active(), 1);
    }

    /// Picking touches the heads only: many waiting jobs in many queues
    /// cost nothing per pick beyond the queues' heads.
    #[test]
    fn picking_from_many_waiting_jobs_is_ordered() {
        let mut j = Jobs::new();
        for i in 0..2000 {
            let q = format!("q{}", i % 10);
            j.job(&q, i % 7);
        }
        let picked = j.s.pick(&Limits::total(5));
        assert_eq!(picked.len(), 5);
        for id in &picked {
            assert_eq!(j.s.job(id).unwrap().priority, 6);
        }
        assert!(
            picked.windows(2).all(|w| w[0] < w[1]),
            "oldest first among equals"
        );
    }
}
