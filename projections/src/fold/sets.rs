//! Facts with set semantics: likes and favorites. "User U set like(A) = on": the latest fact
//! per (artwork, user) wins, a count is the number of users whose latest fact is "on", and
//! every transition (off to on, on to off) is also a +1/-1 in the hour bucket of the fact, so
//! the sum of buckets over a window is the net change in that window.
//!
//! An event is applied once. A copy of an event (the same event id, as a command re-sent after
//! a crash writes it, possibly with another `occurred_at`, and possibly after newer facts of
//! the pair) is no change at all: not to the count, not to a bucket, not to the stored fact or
//! its time, not to the user's list. The stores remember, per event applied, the position
//! (topic, partition, offset) of the message that first applied it, and the fold takes those
//! positions as input: a message whose event was first applied at **another** position is a
//! copy, while the same message read again (a replay after a crash) has the same position and
//! is applied again exactly as before. A plain set of ids seen would break replays: a crash
//! after the ids were written and before the state would lose the fact for good.
//!
//! Positions are remembered per artwork and kind (a like and a favorite are separate facts):
//! all facts of an artwork share one Kafka partition, so "first" follows that partition's
//! order, the same in every run, every batching and every rebuild.

use std::collections::{BTreeMap, HashMap};

pub use gallery_schemas::Position;
use gallery_schemas::{FavoriteSet, LikeSet};
use uuid::Uuid;

use super::hour_of;

/// An (artwork id, user id) pair.
pub type SetKey = (String, String);

/// An event of one artwork: (artwork id, event id), the key under which a store remembers
/// where the event was first applied.
pub type SetEvent = (String, Uuid);

/// The kinds of set facts. Each is folded, counted, listed and remembered apart from the
/// other: a like and a favorite of the same pair are separate facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    Like,
    Favorite,
}

impl SetKind {
    /// Every kind, likes first.
    pub const ALL: [SetKind; 2] = [SetKind::Like, SetKind::Favorite];

    /// The kind's name where a store keeps both kinds in one table (a `mark` column).
    pub fn mark(self) -> &'static str {
        match self {
            SetKind::Like => "like",
            SetKind::Favorite => "favorite",
        }
    }

    /// The kind a stored `mark` names; `None` for a name no version of the projectors writes.
    pub fn from_mark(mark: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.mark() == mark)
    }
}

/// One fact about a pair; also what a store keeps of a pair's current fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetFact {
    pub on: bool,
    pub event_id: Uuid,
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
/// so partition order is enough), each with its message's position.
#[derive(Debug, Default)]
pub struct SetBatch {
    facts: BTreeMap<SetKey, Vec<(SetFact, Position)>>,
    /// Where each event of the batch first occurs in it.
    first: BTreeMap<SetEvent, Position>,
}

impl SetBatch {
    /// Adds one fact; facts are added in log order.
    pub fn add(&mut self, artwork: &str, user: &str, fact: SetFact, at: Position) {
        self.first
            .entry((artwork.to_owned(), fact.event_id))
            .or_insert_with(|| at.clone());
        self.facts
            .entry((artwork.to_owned(), user.to_owned()))
            .or_default()
            .push((fact, at));
    }

    pub fn add_like(&mut self, fact: &LikeSet, at: Position) {
        self.add(
            fact.artwork_id.as_str(),
            fact.user_id.as_str(),
            fact.into(),
            at,
        );
    }

    pub fn add_favorite(&mut self, fact: &FavoriteSet, at: Position) {
        self.add(
            fact.artwork_id.as_str(),
            fact.user_id.as_str(),
            fact.into(),
            at,
        );
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &SetKey> {
        self.facts.keys()
    }

    /// The batch's events, each once: those whose first position the store must look up.
    pub fn events(&self) -> impl Iterator<Item = &SetEvent> {
        self.first.keys()
    }

    /// Combines the batch with the stored current facts of its pairs (absent = never set) and
    /// with where its events were first applied, as stored (absent = never applied).
    ///
    /// A fact whose event was first applied at another position (stored, or earlier in the
    /// batch) is a copy and changes nothing, wherever it stands. A fact at the position that
    /// first applied its event is applied, even when the store already remembers it there (a
    /// replay of a batch that was interrupted after the positions were written). A fact whose
    /// event is the pair's current one changes nothing either (a store that predates the
    /// positions knows the current event, not where it was applied). Counts, buckets, stored
    /// facts, lists and positions therefore do not depend on how the log is cut into batches,
    /// and equal those of the log without its copies.
    pub fn plan(
        &self,
        stored: &HashMap<SetKey, SetFact>,
        applied: &HashMap<SetEvent, Position>,
    ) -> SetPlan {
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
            for (fact, at) in facts {
                let event = (key.0.clone(), fact.event_id);
                if applied.get(&event).or_else(|| self.first.get(&event)) != Some(at) {
                    continue; // a copy: its event was applied at another position
                }
                if state.is_some_and(|s| s.event_id == fact.event_id) {
                    continue; // the pair's current fact again
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
        plan.positions = self
            .first
            .iter()
            .filter(|(event, _)| !applied.contains_key(*event))
            .map(|(event, at)| (event.clone(), at.clone()))
            .collect();
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
    /// The events this batch applies first, with the position of the message that does: to
    /// remember, with the batch's other writes.
    pub positions: Vec<(SetEvent, Position)>,
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
