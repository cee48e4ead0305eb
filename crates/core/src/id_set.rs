//! A small set of job ids for the indexes of the state (filters,
//! dependents): most keys hold one id, which costs no node of its own.

use std::collections::BTreeSet;
use std::ops::{Bound, RangeBounds};

use crate::job::JobId;

/// The ids filed under one key. A key with one job is common (a name used
/// once, a job one other waits for), and a one-element B-tree set costs a
/// whole node (~300 bytes), so a lone id is kept as it is (SPEC §8.2
/// budgets 2 KB per waiting job).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IdSet {
    One(JobId),
    Many(BTreeSet<JobId>),
}

pub(crate) type IdRange = (Bound<JobId>, Bound<JobId>);

impl IdSet {
    pub(crate) fn len(&self) -> usize {
        match self {
            IdSet::One(_) => 1,
            IdSet::Many(set) => set.len(),
        }
    }

    pub(crate) fn insert(&mut self, id: &JobId) {
        match self {
            IdSet::One(one) if one == id => {}
            IdSet::One(one) => *self = IdSet::Many(BTreeSet::from([one.clone(), id.clone()])),
            IdSet::Many(set) => {
                set.insert(id.clone());
            }
        }
    }

    /// Takes `id` out; whether no id is left.
    pub(crate) fn remove(&mut self, id: &JobId) -> bool {
        match self {
            IdSet::One(one) => one == id,
            // A set shrinks to `One` at one id, so it never empties.
            IdSet::Many(set) => {
                set.remove(id);
                if set.len() == 1
                    && let Some(last) = set.pop_first()
                {
                    *self = IdSet::One(last);
                }
                false
            }
        }
    }

    /// The ids within `range`, newest first.
    pub(crate) fn newest_first(&self, range: IdRange) -> Box<dyn Iterator<Item = &JobId> + '_> {
        match self {
            IdSet::One(one) => Box::new(std::iter::once(one).filter(move |id| range.contains(*id))),
            IdSet::Many(set) => Box::new(set.range(range).rev()),
        }
    }

    /// The ids, oldest first.
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = &JobId> + '_> {
        match self {
            IdSet::One(one) => Box::new(std::iter::once(one)),
            IdSet::Many(set) => Box::new(set.iter()),
        }
    }
}
