//! Restart cost (SPEC §5: "restart replays 100 000 logged events in ≤ 1 s"):
//! `Storage::open` on a WAL of 100 000 events (20 000 five-event jobs), and
//! on a snapshot holding the same jobs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use oj_core::{Event, Job, JobId, JobSpec, JobState, StepSpec, Timestamp};
use oj_daemon::storage::Storage;

const JOBS: u64 = 20_000;

fn events() -> Vec<Event> {
    let mut out = Vec::with_capacity(JOBS as usize * 5);
    let base = 1_795_000_000_000u64;
    for n in 0..JOBS {
        let id = JobId::from_parts(base + n, 0);
        let at = Timestamp(UNIX_EPOCH + Duration::from_millis(base + n));
        let spec = JobSpec {
            name: format!("bench-{n}"),
            queue: "default".into(),
            dir: None,
            labels: Default::default(),
            env: Default::default(),
            notify: None,
            container: None,
            retry: None,
            priority: 0,
            after: Vec::new(),
            hold: false,
            not_before: None,
            steps: vec![StepSpec {
                name: "main".into(),
                run: "true".into(),
                timeout: None,
                container: None,
                retry: None,
                secrets: Default::default(),
            }],
            workspace: None,
            secrets: Default::default(),
        };
        out.push(Event::JobSubmitted {
            job: Box::new(Job::new(id.clone(), spec, at)),
        });
        out.push(Event::JobStarted { id: id.clone(), at });
        out.push(Event::StepStarted {
            id: id.clone(),
            step: 0,
            at,
            pod: None,
        });
        out.push(Event::StepFinished {
            id: id.clone(),
            step: 0,
            at,
            state: JobState::Done,
            exit_code: Some(0),
            reason: None,
        });
        out.push(Event::JobFinished {
            id,
            at,
            state: JobState::Done,
            error: None,
        });
    }
    out
}

fn bench(c: &mut Criterion) {
    let wal_dir = tempfile::tempdir().unwrap();
    let snap_dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, mut state, _) = Storage::open(wal_dir.path()).unwrap();
        let (mut snap, _, _) = Storage::open(snap_dir.path()).unwrap();
        for e in events() {
            state.apply(&e).unwrap();
            wal.append(&e);
        }
        wal.commit(&state).unwrap();
        snap.snapshot(&state).unwrap();
    }
    let start = SystemTime::now();
    let (_, state, report) = Storage::open(wal_dir.path()).unwrap();
    eprintln!(
        "one replay of {} WAL events ({} jobs): {:?}",
        report.wal_records,
        state.jobs().count(),
        start.elapsed().unwrap_or_default()
    );
    let mut g = c.benchmark_group("restart");
    g.sample_size(10);
    g.bench_function("replay 100k WAL events", |b| {
        b.iter(|| Storage::open(wal_dir.path()).unwrap())
    });
    g.bench_function("load snapshot of 20k jobs", |b| {
        b.iter(|| Storage::open(snap_dir.path()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
