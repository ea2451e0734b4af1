//! Facts with set semantics: likes and favorites. "User U set like(A) = on": the latest fact
//! per (artwork, user) wins, a count is the number of users whose latest fact is "on", and
//! every transition (off to on, on to off) is also a +1/-1 in the hour bucket of the fact, so
//! the sum of buckets over a window is the net change in that window.

use std::collections::{BTreeMap, HashMap};

use gallery_schemas::{FavoriteSet, LikeSet};

use super::hour_of;

/// An (artwork id, user id) pair.
pub type SetKey = (String, String);

/// One fact about a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetFact {
    pub on: bool,
    pub event_id: uuid::Uuid,
    pub occurred_at_ms: i64,
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
        self.add(
            fact.artwork_id.as_str(),
            fact.user_id.as_str(),
            SetFact {
                on: fact.liked,
                event_id: fact.event_id,
                occurred_at_ms: fact.occurred_at,
            },
        );
    }

    pub fn add_favorite(&mut self, fact: &FavoriteSet) {
        self.add(
            fact.artwork_id.as_str(),
            fact.user_id.as_str(),
            SetFact {
                on: fact.favorited,
                event_id: fact.event_id,
                occurred_at_ms: fact.occurred_at,
            },
        );
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &SetKey> {
        self.facts.keys()
    }

    /// Combines the batch with the stored states (`stored[key]` = (on, event id of the fact
    /// that set it); absent = never set). Every fact of the batch is new: the stores skip by
    /// offset what they have applied. A copy of an earlier fact (a producer's retry written
    /// again later in the log) re-asserts that fact where it stands, like any other fact, so
    /// counts and hour buckets do not depend on how the log is cut into batches.
    pub fn plan(&self, stored: &HashMap<SetKey, (bool, uuid::Uuid)>) -> SetPlan {
        let mut plan = SetPlan::default();
        for (key, facts) in &self.facts {
            let mut state = stored.get(key).copied();
            for fact in facts {
                let delta = set_delta(state.map(|(on, _)| on), fact.on);
                if delta != 0 {
                    *plan.count_deltas.entry(key.0.clone()).or_insert(0) += delta;
                    *plan
                        .bucket_deltas
                        .entry((key.0.clone(), hour_of(fact.occurred_at_ms)))
                        .or_insert(0) += delta;
                }
                state = Some((fact.on, fact.event_id));
            }
            if let Some(last) = facts.last()
                && stored.get(key).is_none_or(|(_, id)| *id != last.event_id)
            {
                plan.upserts.push((key.clone(), last.clone()));
            }
        }
        plan.count_deltas.retain(|_, d| *d != 0);
        plan.bucket_deltas.retain(|_, d| *d != 0);
        plan
    }
}

/// What to write for one batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetPlan {
    /// New latest fact per (artwork, user).
    pub upserts: Vec<(SetKey, SetFact)>,
    /// Change of the count per artwork (non-zero only).
    pub count_deltas: BTreeMap<String, i64>,
    /// Change per (artwork, hour bucket start) (non-zero only).
    pub bucket_deltas: BTreeMap<(String, i64), i64>,
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
mod tests {
    use super::*;
    use crate::fold::HOUR_MS;
    use gallery_schemas::{ArtworkId, UserId};
    use proptest::prelude::*;
    use uuid::Uuid;

    fn fact(artwork: &str, user: &str, liked: bool, at: i64) -> LikeSet {
        LikeSet {
            event_id: Uuid::now_v7(),
            user_id: UserId::parse(user).unwrap_or_else(|e| unreachable!("{e}")),
            artwork_id: ArtworkId::parse(artwork).unwrap_or_else(|e| unreachable!("{e}")),
            liked,
            occurred_at: at,
        }
    }

    type Stored = HashMap<SetKey, (bool, Uuid)>;

    fn apply(plan: SetPlan, stored: &mut Stored, counts: &mut BTreeMap<String, i64>) {
        for (a, d) in plan.count_deltas {
            *counts.entry(a).or_insert(0) += d;
        }
        for (key, latest) in plan.upserts {
            stored.insert(key, (latest.on, latest.event_id));
        }
    }

    #[test]
    fn like_like_unlike_unlike_counts_1_1_0_0() {
        let mut stored = Stored::new();
        let mut counts = BTreeMap::new();
        let mut seen = vec![];
        for liked in [true, true, false, false] {
            let mut batch = SetBatch::default();
            batch.add_like(&fact("a", "u", liked, 0));
            apply(batch.plan(&stored), &mut stored, &mut counts);
            seen.push(counts.get("a").copied().unwrap_or(0));
        }
        assert_eq!(seen, vec![1, 1, 0, 0]);
    }

    #[test]
    fn an_unlike_without_a_like_changes_nothing() {
        let mut batch = SetBatch::default();
        batch.add_like(&fact("a", "u", false, 0));
        let plan = batch.plan(&HashMap::new());
        assert!(plan.count_deltas.is_empty() && plan.bucket_deltas.is_empty());
    }

    #[test]
    fn within_a_batch_the_last_fact_wins_and_every_transition_lands_in_its_hour() {
        let mut batch = SetBatch::default();
        batch.add_like(&fact("a", "u", true, 10));
        batch.add_like(&fact("a", "u", false, HOUR_MS + 10));
        batch.add_like(&fact("a", "v", true, 20));
        let plan = batch.plan(&HashMap::new());
        assert_eq!(plan.count_deltas.get("a"), Some(&1));
        assert_eq!(plan.upserts.len(), 2);
        assert_eq!(plan.bucket_deltas.get(&("a".to_owned(), 0)), Some(&2));
        assert_eq!(
            plan.bucket_deltas.get(&("a".to_owned(), HOUR_MS)),
            Some(&-1)
        );
    }

    #[test]
    fn a_copy_of_the_stored_fact_changes_nothing() {
        let f = fact("a", "u", true, 0);
        let stored: Stored = [(("a".into(), "u".into()), (true, f.event_id))].into();
        let mut batch = SetBatch::default();
        batch.add_like(&f);
        assert_eq!(batch.plan(&stored), SetPlan::default());
    }

    #[test]
    fn a_copy_between_newer_facts_reasserts_its_fact_where_it_stands() {
        let liked = fact("a", "u", true, 0);
        let stored: Stored = [(("a".into(), "u".into()), (true, liked.event_id))].into();
        let mut batch = SetBatch::default();
        batch.add_like(&fact("a", "u", false, HOUR_MS));
        batch.add_like(&liked); // the retry of the stored like, written again
        batch.add_like(&fact("a", "u", true, 2 * HOUR_MS));
        let plan = batch.plan(&stored);
        assert!(plan.count_deltas.is_empty(), "liked before and after");
        let a = |h: i64| ("a".to_owned(), h * HOUR_MS);
        assert_eq!(plan.bucket_deltas, BTreeMap::from([(a(0), 1), (a(1), -1)]));
        assert_eq!(
            plan.upserts.len(),
            1,
            "the last fact becomes the stored one"
        );
    }

    proptest! {
        /// Folding any sequence of facts, some of them copies of earlier ones written again,
        /// in any batching, gives the count of users whose last fact is "on" (a copy
        /// re-asserts its fact), never a negative count, and the same hour buckets whatever
        /// the batching.
        #[test]
        fn counts_and_buckets_do_not_depend_on_batching_or_copies(
            facts in proptest::collection::vec((0u8..3, 0u8..6, any::<bool>(), 0i64..5), 0..60),
            copies in proptest::collection::vec((any::<usize>(), any::<usize>()), 0..15),
            cuts in proptest::collection::vec(1usize..8, 1..20),
        ) {
            let mut facts: Vec<LikeSet> = facts
                .iter()
                .map(|(a, u, l, h)| fact(&format!("a{a}"), &format!("u{u}"), *l, h * HOUR_MS))
                .collect();
            // A copy of an earlier fact, later in the log.
            for (from, to) in copies {
                if facts.is_empty() {
                    break;
                }
                let to = to % (facts.len() + 1);
                if to == 0 {
                    continue;
                }
                let copy = facts[from % to].clone();
                facts.insert(to, copy);
            }
            let mut stored = Stored::new();
            let mut counts: BTreeMap<String, i64> = BTreeMap::new();
            let mut buckets: BTreeMap<(String, i64), i64> = BTreeMap::new();
            let mut rest = facts.as_slice();
            let mut cut = cuts.iter().cycle();
            while !rest.is_empty() {
                let n = (*cut.next().unwrap_or(&1)).min(rest.len());
                let (chunk, tail) = rest.split_at(n);
                let mut batch = SetBatch::default();
                chunk.iter().for_each(|f| batch.add_like(f));
                let plan = batch.plan(&stored);
                for (k, d) in &plan.bucket_deltas {
                    *buckets.entry(k.clone()).or_insert(0) += d;
                }
                apply(plan, &mut stored, &mut counts);
                prop_assert!(counts.values().all(|c| *c >= 0));
                rest = tail;
            }
            // One batch of everything: the reference.
            let mut whole = SetBatch::default();
            facts.iter().for_each(|f| whole.add_like(f));
            let reference = whole.plan(&HashMap::new());
            buckets.retain(|_, d| *d != 0);
            prop_assert_eq!(&buckets, &reference.bucket_deltas);
            counts.retain(|_, c| *c != 0);
            prop_assert_eq!(&counts, &reference.count_deltas);
            let mut truth: HashMap<SetKey, bool> = HashMap::new();
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
