//! The pure part of the like projection: from the facts of a batch and the stored state of
//! the (artwork, user) pairs they touch, compute the new states and the count changes.
//! No I/O; unit tests drive it directly.

use std::collections::{BTreeMap, HashMap};

use gallery_schemas::LikeSet;

/// An (artwork id, user id) pair.
pub type LikeKey = (String, String);

/// The last fact of a batch for one (artwork, user) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestLike {
    pub liked: bool,
    pub event_id: uuid::Uuid,
    pub occurred_at_ms: i64,
}

/// Facts of one batch, folded to the latest per (artwork, user). Facts must be added in log
/// order (all facts of one artwork share a partition, so partition order is enough).
#[derive(Debug, Default)]
pub struct LikeBatch {
    latest: BTreeMap<LikeKey, LatestLike>,
}

impl LikeBatch {
    pub fn add(&mut self, fact: &LikeSet) {
        self.latest.insert(
            (
                fact.artwork_id.as_str().to_owned(),
                fact.user_id.as_str().to_owned(),
            ),
            LatestLike {
                liked: fact.liked,
                event_id: fact.event_id,
                occurred_at_ms: fact.occurred_at,
            },
        );
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &LikeKey> {
        self.latest.keys()
    }

    /// Combines the batch with the stored states (`stored[key]` = liked, absent = never set).
    pub fn plan(&self, stored: &HashMap<LikeKey, bool>) -> LikePlan {
        let mut plan = LikePlan::default();
        for (key, latest) in &self.latest {
            let delta = like_delta(stored.get(key).copied(), latest.liked);
            if delta != 0 {
                *plan.count_deltas.entry(key.0.clone()).or_insert(0) += delta;
            }
            plan.upserts.push((key.clone(), latest.clone()));
        }
        plan.count_deltas.retain(|_, d| *d != 0);
        plan
    }
}

/// What to write for one batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LikePlan {
    /// New latest state per (artwork, user).
    pub upserts: Vec<(LikeKey, LatestLike)>,
    /// Change of like count per artwork (non-zero only).
    pub count_deltas: BTreeMap<String, i64>,
}

/// How a like count changes when a pair's state goes from `prev` to `next`.
pub fn like_delta(prev: Option<bool>, next: bool) -> i64 {
    match (prev.unwrap_or(false), next) {
        (false, true) => 1,
        (true, false) => -1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gallery_schemas::{ArtworkId, UserId};
    use proptest::prelude::*;
    use uuid::Uuid;

    fn fact(artwork: &str, user: &str, liked: bool) -> LikeSet {
        LikeSet {
            event_id: Uuid::now_v7(),
            user_id: UserId::parse(user).unwrap_or_else(|e| unreachable!("{e}")),
            artwork_id: ArtworkId::parse(artwork).unwrap_or_else(|e| unreachable!("{e}")),
            liked,
            occurred_at: 0,
        }
    }

    #[test]
    fn like_like_unlike_unlike_counts_1_1_0_0() {
        let mut stored = HashMap::new();
        let mut count = 0;
        let mut seen = vec![];
        for liked in [true, true, false, false] {
            let mut batch = LikeBatch::default();
            batch.add(&fact("a", "u", liked));
            let plan = batch.plan(&stored);
            count += plan.count_deltas.get("a").copied().unwrap_or(0);
            for (key, latest) in plan.upserts {
                stored.insert(key, latest.liked);
            }
            seen.push(count);
        }
        assert_eq!(seen, vec![1, 1, 0, 0]);
    }

    #[test]
    fn an_unlike_without_a_like_changes_nothing() {
        let mut batch = LikeBatch::default();
        batch.add(&fact("a", "u", false));
        assert!(batch.plan(&HashMap::new()).count_deltas.is_empty());
    }

    #[test]
    fn within_a_batch_the_last_fact_wins() {
        let mut batch = LikeBatch::default();
        batch.add(&fact("a", "u", true));
        batch.add(&fact("a", "u", false));
        batch.add(&fact("a", "v", true));
        let plan = batch.plan(&HashMap::new());
        assert_eq!(plan.count_deltas.get("a"), Some(&1));
        assert_eq!(plan.upserts.len(), 2);
    }

    proptest! {
        /// Folding any sequence of facts in any batching, with any batch applied twice, gives
        /// the count of users whose last fact is "liked", and the count is never negative.
        #[test]
        fn counts_equal_distinct_likers_under_any_batching_and_replay(
            facts in proptest::collection::vec((0u8..3, 0u8..6, any::<bool>()), 0..60),
            cuts in proptest::collection::vec(1usize..8, 1..20),
            replay in any::<bool>(),
        ) {
            let facts: Vec<LikeSet> = facts
                .iter()
                .map(|(a, u, l)| fact(&format!("a{a}"), &format!("u{u}"), *l))
                .collect();
            let mut stored: HashMap<LikeKey, bool> = HashMap::new();
            let mut counts: BTreeMap<String, i64> = BTreeMap::new();
            let mut rest = facts.as_slice();
            let mut cut = cuts.iter().cycle();
            while !rest.is_empty() {
                let n = (*cut.next().unwrap_or(&1)).min(rest.len());
                let (chunk, tail) = rest.split_at(n);
                let mut batch = LikeBatch::default();
                chunk.iter().for_each(|f| batch.add(f));
                for _ in 0..if replay { 2 } else { 1 } {
                    let plan = batch.plan(&stored);
                    for (a, d) in plan.count_deltas {
                        *counts.entry(a).or_insert(0) += d;
                    }
                    for (key, latest) in plan.upserts {
                        stored.insert(key, latest.liked);
                    }
                    prop_assert!(counts.values().all(|c| *c >= 0));
                }
                rest = tail;
            }
            let mut truth: HashMap<LikeKey, bool> = HashMap::new();
            for f in &facts {
                truth.insert((f.artwork_id.to_string(), f.user_id.to_string()), f.liked);
            }
            for a in 0..3 {
                let artwork = format!("a{a}");
                let expected = truth.iter().filter(|((art, _), l)| *art == artwork && **l).count();
                prop_assert_eq!(counts.get(&artwork).copied().unwrap_or(0), i64::try_from(expected).unwrap_or(-1));
            }
        }
    }
}
