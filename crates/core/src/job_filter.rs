//! Filters of `GET /v1/jobs` and `oj job list` (SPEC §8.1: `label=K=V`
//! repeatable, `queue=`, `name=` glob, `since=`), served from an index
//! rather than a scan of every job, and the index of idempotency keys.
//!
//! [`JobIndex`] keeps, in step with the state's jobs, the ids of the jobs
//! of each label pair, queue and name, and the job holding each
//! idempotency key. A filtered page walks the smallest set a filter names
//! (or the id range `since` allows), newest first from the page cursor, and
//! checks the other conditions on each job it meets, so its cost follows
//! the matching jobs, not all of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use crate::id_set::IdSet;

use crate::job::{Job, JobId, JobMap, JobState, Timestamp};

/// What a job list asks for; every condition set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobState>,
    /// `K=V` pairs, all of which the job must carry.
    pub labels: Vec<(String, String)>,
    pub queue: Option<String>,
    /// A glob on the job name: `*` any run of characters, `?` one.
    pub name: Option<String>,
    /// Only jobs created at or after this time.
    pub since: Option<Timestamp>,
}

impl JobFilter {
    /// Whether `job` meets every condition.
    pub fn matches(&self, job: &Job) -> bool {
        self.status.is_none_or(|s| job.state == s)
            && self.queue.as_ref().is_none_or(|q| job.spec.queue == *q)
            && self.since.is_none_or(|t| job.created_at >= t)
            && self
                .labels
                .iter()
                .all(|(k, v)| job.spec.labels.get(k) == Some(v))
            && self.name.as_ref().is_none_or(|g| glob_match(g, &job.name))
    }

    /// True when only `status` (or nothing) is set: the unfiltered listing.
    pub fn is_plain(&self) -> bool {
        self.labels.is_empty()
            && self.queue.is_none()
            && self.name.is_none()
            && self.since.is_none()
    }
}

/// `*` matches any run of characters (also none), `?` exactly one; the
/// rest matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// The ids of jobs by label pair, queue and name, and the job of each
/// idempotency key; changed only when a job enters or leaves the state
/// (none of these change afterwards).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobIndex {
    labels: BTreeMap<(String, String), IdSet>,
    queues: BTreeMap<String, IdSet>,
    names: BTreeMap<String, IdSet>,
    keys: HashMap<String, JobId>,
}

fn add_to<K: Ord + Clone>(map: &mut BTreeMap<K, IdSet>, key: &K, id: &JobId) {
    // Most jobs share their queue and name with others: clone the key
    // only for a new one.
    match map.get_mut(key) {
        Some(ids) => ids.insert(id),
        None => {
            map.insert(key.clone(), IdSet::One(id.clone()));
        }
    }
}

fn remove_from<K: Ord>(map: &mut BTreeMap<K, IdSet>, key: &K, id: &JobId) {
    if let Some(ids) = map.get_mut(key)
        && ids.remove(id)
    {
        map.remove(key);
    }
}

impl JobIndex {
    /// Indexes a job entering the state.
    pub fn add(&mut self, job: &Job) {
        for (k, v) in &job.spec.labels {
            add_to(&mut self.labels, &(k.clone(), v.clone()), &job.id);
        }
        add_to(&mut self.queues, &job.spec.queue, &job.id);
        add_to(&mut self.names, &job.name, &job.id);
        if let Some(key) = &job.idempotency_key {
            self.keys.insert(key.clone(), job.id.clone());
        }
    }

    /// Forgets a job leaving the state (its key with it).
    pub fn remove(&mut self, job: &Job) {
        for (k, v) in &job.spec.labels {
            remove_from(&mut self.labels, &(k.clone(), v.clone()), &job.id);
        }
        remove_from(&mut self.queues, &job.spec.queue, &job.id);
        remove_from(&mut self.names, &job.name, &job.id);
        if let Some(key) = &job.idempotency_key
            && self.keys.get(key) == Some(&job.id)
        {
            self.keys.remove(key);
        }
    }

    /// The job that holds an idempotency key.
    pub fn key_holder(&self, key: &str) -> Option<&JobId> {
        self.keys.get(key)
    }

    /// The sets of ids a filter's indexed conditions allow, smallest first
    /// choice: `None` when no indexed condition is set (walk every job).
    fn narrowest<'a>(&'a self, f: &JobFilter) -> Option<Vec<&'a IdSet>> {
        static EMPTY: IdSet = IdSet::Many(BTreeSet::new());
        let mut options: Vec<Vec<&IdSet>> = Vec::new();
        for (k, v) in &f.labels {
            let set = self.labels.get(&(k.clone(), v.clone())).unwrap_or(&EMPTY);
            options.push(vec![set]);
        }
        if let Some(q) = &f.queue {
            options.push(vec![self.queues.get(q).unwrap_or(&EMPTY)]);
        }
        if let Some(g) = &f.name {
            if has_wildcard(g) {
                // Distinct names are few next to jobs; a literal prefix
                // narrows them further.
                let prefix: String = g.chars().take_while(|c| !matches!(c, '*' | '?')).collect();
                let sets: Vec<&IdSet> = self
                    .names
                    .range::<String, _>((Bound::Included(&prefix), Bound::Unbounded))
                    .take_while(|(n, _)| n.starts_with(&prefix))
                    .filter(|(n, _)| glob_match(g, n))
                    .map(|(_, s)| s)
                    .collect();
                options.push(sets);
            } else {
                options.push(vec![self.names.get(g).unwrap_or(&EMPTY)]);
            }
        }
        options
            .into_iter()
            .min_by_key(|sets| sets.iter().map(|s| s.len()).sum::<usize>())
    }

    /// One page of jobs matching `f`, newest first, older than `after`:
    /// at most `limit`, and whether more match after it.
    pub fn page<'a>(
        &self,
        jobs: &'a JobMap,
        f: &JobFilter,
        after: Option<&JobId>,
        limit: usize,
    ) -> (Vec<&'a Job>, bool) {
        let upper = match after {
            Some(id) => Bound::Excluded(id.clone()),
            None => Bound::Unbounded,
        };
        // An id's millisecond part is never before its job's creation, so
        // every job created since `since` sorts at or after this id.
        let lower = match f.since {
            Some(t) => {
                let ms =
                    t.0.duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis() as u64;
                Bound::Included(JobId::from_parts(ms, 0))
            }
            None => Bound::Unbounded,
        };
        let range = (lower, upper);
        let ids: Box<dyn Iterator<Item = &JobId> + '_> = match self.narrowest(f) {
            None => Box::new(jobs.range(range.clone()).rev().map(|(id, _)| id)),
            Some(sets) if sets.len() == 1 => sets[0].newest_first(range.clone()),
            Some(sets) => Box::new(MergeDesc::new(
                sets.into_iter()
                    .map(|s| s.newest_first(range.clone()))
                    .collect(),
            )),
        };
        let mut matching = ids
            .filter_map(|id| jobs.get(id).map(|j| &**j))
            .filter(|j| f.matches(j));
        let page: Vec<&Job> = matching.by_ref().take(limit).collect();
        let more = matching.next().is_some();
        (page, more)
    }
}

/// Merges iterators of ids that each run newest first into one, newest first.
struct MergeDesc<'a, I: Iterator<Item = &'a JobId>> {
    heads: Vec<std::iter::Peekable<I>>,
}

impl<'a, I: Iterator<Item = &'a JobId>> MergeDesc<'a, I> {
    fn new(iters: Vec<I>) -> Self {
        MergeDesc {
            heads: iters.into_iter().map(Iterator::peekable).collect(),
        }
    }
}

impl<'a, I: Iterator<Item = &'a JobId>> Iterator for MergeDesc<'a, I> {
    type Item = &'a JobId;

    fn next(&mut self) -> Option<&'a JobId> {
        let mut best: Option<(usize, &'a JobId)> = None;
        for (i, it) in self.heads.iter_mut().enumerate() {
            if let Some(&id) = it.peek()
                && best.is_none_or(|(_, b)| id > b)
            {
                best = Some((i, id));
            }
        }
        let (i, id) = best?;
        self.heads[i].next();
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::JobSpec;
    use std::time::{Duration, UNIX_EPOCH};

    fn job(n: u64, name: &str, queue: &str, labels: &[(&str, &str)], key: Option<&str>) -> Job {
        let mut spec: JobSpec = serde_json::from_value(serde_json::json!({
            "name": name, "queue": queue,
            "steps": [{"name": "s", "run": "true"}]
        }))
        .unwrap();
        spec.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let created = Timestamp(UNIX_EPOCH + Duration::from_millis(1_795_000_000_000 + n * 1000));
        let mut j = Job::new(
            JobId::from_parts(1_795_000_000_000 + n * 1000, 0),
            spec,
            created,
        );
        j.idempotency_key = key.map(str::to_string);
        j
    }

    fn setup() -> (JobMap, JobIndex) {
        let jobs = [
            job(1, "build-a", "default", &[("team", "x")], Some("k1")),
            job(2, "build-b", "ci", &[("team", "x"), ("tier", "1")], None),
            job(3, "test", "ci", &[("team", "y")], None),
            job(4, "build-c", "default", &[("team", "x")], None),
            job(5, "deploy", "default", &[], Some("k5")),
        ];
        let mut index = JobIndex::default();
        let mut map = BTreeMap::new();
        for j in jobs {
            index.add(&j);
            map.insert(j.id.clone(), Box::new(j));
        }
        (map, index)
    }

    fn names(page: &[&Job]) -> Vec<String> {
        page.iter().map(|j| j.name.clone()).collect()
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("build-*", "build-a"));
        assert!(glob_match("*", ""));
        assert!(glob_match("b?ild*c", "build-c"));
        assert!(glob_match("*-*-*", "a-b-c"));
        assert!(!glob_match("build", "build-a"));
        assert!(!glob_match("?", ""));
        assert!(glob_match("a*b*c", "aXXbYYbc"));
        assert!(!glob_match("a*b*c", "aXXbYYb"));
    }

    #[test]
    fn filters_combine_and_page_newest_first() {
        let (jobs, index) = setup();
        let all_x = JobFilter {
            labels: vec![("team".into(), "x".into())],
            ..JobFilter::default()
        };
        let (page, more) = index.page(&jobs, &all_x, None, 2);
        assert_eq!(names(&page), ["build-c", "build-b"]);
        assert!(more);
        let (page, more) = index.page(&jobs, &all_x, Some(&page[1].id), 2);
        assert_eq!(names(&page), ["build-a"]);
        assert!(!more);

        let two_labels = JobFilter {
            labels: vec![("team".into(), "x".into()), ("tier".into(), "1".into())],
            ..JobFilter::default()
        };
        assert_eq!(
            names(&index.page(&jobs, &two_labels, None, 10).0),
            ["build-b"]
        );
        let queue = JobFilter {
            queue: Some("ci".into()),
            ..JobFilter::default()
        };
        assert_eq!(
            names(&index.page(&jobs, &queue, None, 10).0),
            ["test", "build-b"]
        );
        let glob = JobFilter {
            name: Some("build-*".into()),
            queue: Some("default".into()),
            ..JobFilter::default()
        };
        assert_eq!(
            names(&index.page(&jobs, &glob, None, 10).0),
            ["build-c", "build-a"]
        );
        let glob_only = JobFilter {
            name: Some("*-?".into()),
            ..JobFilter::default()
        };
        let (page, more) = index.page(&jobs, &glob_only, None, 2);
        assert_eq!(names(&page), ["build-c", "build-b"]);
        assert!(more);
        let since = JobFilter {
            since: Some(jobs.values().nth(3).unwrap().created_at),
            ..JobFilter::default()
        };
        assert_eq!(
            names(&index.page(&jobs, &since, None, 10).0),
            ["deploy", "build-c"]
        );
        let nothing = JobFilter {
            labels: vec![("team".into(), "nobody".into())],
            ..JobFilter::default()
        };
        assert_eq!(index.page(&jobs, &nothing, None, 10), (vec![], false));
        let status = JobFilter {
            status: Some(JobState::Done),
            ..all_x.clone()
        };
        assert!(index.page(&jobs, &status, None, 10).0.is_empty());
    }

    /// The page walks the narrowest set, not every job: a filter on a rare
    /// label never looks at the others (checked by what it picks).
    #[test]
    fn the_narrowest_indexed_set_is_walked() {
        let (_jobs, index) = setup();
        let f = JobFilter {
            labels: vec![("team".into(), "x".into()), ("tier".into(), "1".into())],
            queue: Some("default".into()),
            ..JobFilter::default()
        };
        let sets = index.narrowest(&f).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].len(), 1);
        assert!(index.narrowest(&JobFilter::default()).is_none());
    }

    #[test]
    fn keys_and_sets_follow_jobs_in_and_out() {
        let (jobs, mut index) = setup();
        let first = jobs.values().next().unwrap();
        assert_eq!(index.key_holder("k1"), Some(&first.id));
        index.remove(first);
        assert_eq!(index.key_holder("k1"), None);
        for j in jobs.values().skip(1) {
            index.remove(j);
        }
        assert_eq!(index, JobIndex::default());
    }

    #[test]
    fn a_key_shrinks_back_to_one_id_and_goes_when_its_last_job_does() {
        let (mut jobs, mut index) = setup();
        let again = job(6, "test", "ci", &[], None);
        index.add(&again);
        jobs.insert(again.id.clone(), Box::new(again.clone()));
        let by_name = JobFilter {
            name: Some("test".into()),
            ..JobFilter::default()
        };
        assert_eq!(
            names(&index.page(&jobs, &by_name, None, 10).0),
            ["test", "test"]
        );
        index.remove(&again);
        jobs.remove(&again.id);
        let (page, _) = index.page(&jobs, &by_name, None, 10);
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].id, JobId::from_parts(1_795_000_003_000, 0));
        let first = page[0].clone();
        index.remove(&first);
        assert!(!index.names.contains_key("test"));
        assert!(index.page(&jobs, &by_name, None, 10).0.is_empty());
    }
}
