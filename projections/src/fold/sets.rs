//! Facts with set semantics: likes and favorites. "User U set like(A) = on": the latest fact
//! per (artwork, user) wins, a count is the number of users whose latest fact is "on", and
//! every transition (off to on, on to off) is also a +1/-1 in the hour bucket of the fact, so
//! the sum of buckets over a window is the net change in that window.
//!
//! A copy of the pair's current fact (the same event id, as a command re-sent after a crash
//! writes it, possibly with another `occurred_at`) is no change at all: not to the count, not
//! to a bucket, not to the stored fact or its time, not to the user's list. The first copy
//! decides, whatever the time the later ones carry.

use std::collections::{BTreeMap, HashMap};

use gallery_schemas::{FavoriteSet, LikeSet};

use super::hour_of;

/// An (artwork id, user id) pair.
pub type SetKey = (String, String);

/// One fact about a pair; also what a store keeps of a pair's current fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetFact {
    pub on: bool,
    pub event_id: uuid::Uuid,
    pub occurred_at_ms: i64,
}

impl From<&LikeSet> for SetFact {
    fn from(e: &LikeSet) -> Self {
        Self {
            on: e.liked,
            event_id: e.event_id,
            occurred_at_ms: e.occurred_at,
        }
    }
}

impl From<&FavoriteSet> for SetFact {
    fn from(e: &FavoriteSet) -> Self {
        Self {
            on: e.favorited,
            event_id: e.event_id,
            occurred_at_ms: e.occurred_at,
        }
    }
}

/// The facts of one batch, per pair in log order (all facts of one artwork share a partition,
/// so partition order is enough).
#[derive(Debug, Default)]
pub struct SetBatch {
    facts: BTreeMap<SetKey, Vec<SetFact>>,
}

impl SetBatch {
    pub fn add(&mut self, artwork: &str, user: &str, fact: SetFact) {
        self.facts
            .entry((artwork.to_owned(), user.to_owned()))
            .or_default()
            .push(fact);
    }

    pub fn add_like(&mut self, fact: &LikeSet) {
        self.add(fact.artwork_id.as_str(), fact.user_id.as_str(), fact.into());
    }

    pub fn add_favorite(&mut self, fact: &FavoriteSet) {
        self.add(fact.artwork_id.as_str(), fact.user_id.as_str(), fact.into());
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &SetKey> {
        self.facts.keys()
    }

    /// Combines the batch with the stored current facts of its pairs (absent = never set).
    /// Every fact of the batch is new to the store (the stores skip by offset what they have
    /// applied), but a fact may be a copy of the pair's current one, which changes nothing. A
    /// copy of an older fact, written again after a newer one, re-asserts its fact where it
    /// stands, like any other fact. Counts, buckets, stored facts and lists therefore do not
    /// depend on how the log is cut into batches.
    pub fn plan(&self, stored: &HashMap<SetKey, SetFact>) -> SetPlan {
        let mut plan = SetPlan::default();
        for (key, facts) in &self.facts {
            let before = stored.get(key);
            let mut state = before;
            let mut changed = false;
            // The entries of the user's list that may exist: the stored one, and those of the
            // batch's facts (an interrupted run of a longer batch may have written them).
            let mut entries: Vec<i64> = before
                .filter(|f| f.on)
                .map(|f| f.occurred_at_ms)
                .into_iter()
                .collect();
            for fact in facts {
                if state.is_some_and(|s| s.event_id == fact.event_id) {
                    continue; // a copy of the current fact
                }
                let delta = set_delta(state.map(|s| s.on), fact.on);
                if delta != 0 {
                    *plan.count_deltas.entry(key.0.clone()).or_insert(0) += delta;
                    *plan
                        .bucket_deltas
                        .entry((key.0.clone(), hour_of(fact.occurred_at_ms)))
                        .or_insert(0) += delta;
                }
                if fact.on {
                    entries.push(fact.occurred_at_ms);
                }
                state = Some(fact);
                changed = true;
            }
            let Some(last) = state.filter(|_| changed) else {
                continue; // nothing, or nothing but copies
            };
            // Even when the batch ends where it began, its list writes go out: an interrupted
            // run of a shorter batch may have removed the entry.
            plan.upserts.push((key.clone(), last.clone()));
            let insert = last.on.then_some(last.occurred_at_ms);
            entries.sort_unstable();
            entries.dedup();
            entries.retain(|at| Some(*at) != insert);
            plan.lists.push((
                key.clone(),
                ListChange {
                    insert,
                    delete: entries,
                },
            ));
        }
        plan.count_deltas.retain(|_, d| *d != 0);
        plan.bucket_deltas.retain(|_, d| *d != 0);
        plan
    }
}

/// What to write for one batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetPlan {
    /// New current fact per (artwork, user).
    pub upserts: Vec<(SetKey, SetFact)>,
    /// Change of the count per artwork (non-zero only).
    pub count_deltas: BTreeMap<String, i64>,
    /// Change per (artwork, hour bucket start) (non-zero only).
    pub bucket_deltas: BTreeMap<(String, i64), i64>,
    /// How each changed pair's entry in the user's list (artworks by time, for a store that
    /// keeps the list apart from the pairs) changes.
    pub lists: Vec<(SetKey, ListChange)>,
}

/// How a user's list changes for one (artwork, user) pair and one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListChange {
    /// The entry (its time) of the pair's new current fact, when it is "on".
    pub insert: Option<i64>,
    /// Entries to remove: the stored one and those of the batch's other "on" facts, which an
    /// interrupted run of a longer batch may have written; never the inserted one.
    pub delete: Vec<i64>,
}

/// How a count changes when a pair's state goes from `prev` to `next`.
pub fn set_delta(prev: Option<bool>, next: bool) -> i64 {
    match (prev.unwrap_or(false), next) {
        (false, true) => 1,
        (true, false) => -1,
        _ => 0,
    }
}

#[cfg(test)]
#[path = "sets_tests.rs"]
mod tests;
