//! The set fold as given / when / then: transitions, buckets, copies of an event with other
//! times (a re-sent command), also after newer facts of the pair, replays of interrupted
//! batches; and as properties over any log, any batching, and batches interrupted after the
//! users' lists and the events' positions were written.

use super::*;
use crate::fold::HOUR_MS;
use gallery_schemas::{ArtworkId, UserId};
use proptest::prelude::*;
use std::collections::BTreeSet;
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

/// The same event (same id) with another time: a command re-sent after a crash.
fn copy_at(f: &LikeSet, at: i64) -> LikeSet {
    LikeSet {
        occurred_at: at,
        ..f.clone()
    }
}

fn key(artwork: &str, user: &str) -> SetKey {
    (artwork.to_owned(), user.to_owned())
}

/// The position of the message at `offset` (one partition: all facts of an artwork share one).
fn at(offset: i64) -> Position {
    Position {
        topic: "g.interactions".to_owned(),
        partition: 0,
        offset,
    }
}

fn event(f: &LikeSet) -> SetEvent {
    (f.artwork_id.as_str().to_owned(), f.event_id)
}

/// A batch of `facts` at offsets `first`, `first + 1`, ...
fn batch_from(first: i64, facts: &[LikeSet]) -> SetBatch {
    let mut batch = SetBatch::default();
    for (f, offset) in facts.iter().zip(first..) {
        batch.add_like(f, at(offset));
    }
    batch
}

type Stored = HashMap<SetKey, SetFact>;
type Applied = HashMap<SetEvent, Position>;

fn nothing_applied() -> Applied {
    HashMap::new()
}

/// A store: the pairs' current facts, the counts, the buckets, where each event was first
/// applied, and the users' lists kept apart from the pairs (as Scylla keeps them) with
/// last-write-wins cells: (user, at, artwork) -> (write timestamp, present); on equal
/// timestamps a deletion wins, as in CQL.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Store {
    stored: Stored,
    counts: BTreeMap<String, i64>,
    buckets: BTreeMap<(String, i64), i64>,
    applied: Applied,
    cells: BTreeMap<(String, i64, String), (i64, bool)>,
}

impl Store {
    /// Folds `batch` (facts with their offsets) and applies it: the lists and the positions,
    /// then the pairs and counts, as the Scylla store does; with `interrupted`, only the lists
    /// and the positions (a crash after the derived rows, before the artwork's partition).
    /// Postgres writes all of it in one transaction: a batch is applied or not at all.
    fn apply(&mut self, batch: &[(i64, LikeSet)], interrupted: bool) {
        let mut set = SetBatch::default();
        let mut last: HashMap<SetKey, i64> = HashMap::new();
        for (offset, f) in batch {
            set.add_like(f, at(*offset));
            last.insert(key(f.artwork_id.as_str(), f.user_id.as_str()), *offset);
        }
        let plan = set.plan(&self.stored, &self.applied);
        for (event, first) in &plan.positions {
            self.applied.insert(event.clone(), first.clone());
        }
        for ((a, u), change) in &plan.lists {
            let ts = last.get(&(a.clone(), u.clone())).copied().unwrap_or(0) + 1;
            if let Some(at) = change.insert {
                self.write((u.clone(), at, a.clone()), ts, true);
            }
            for at in &change.delete {
                self.write((u.clone(), *at, a.clone()), ts, false);
            }
        }
        if interrupted {
            return;
        }
        for (a, d) in &plan.count_deltas {
            *self.counts.entry(a.clone()).or_insert(0) += d;
        }
        for (k, d) in &plan.bucket_deltas {
            *self.buckets.entry(k.clone()).or_insert(0) += d;
        }
        for (k, latest) in plan.upserts {
            self.stored.insert(k, latest);
        }
        self.counts.retain(|_, c| *c != 0);
        self.buckets.retain(|_, b| *b != 0);
    }

    fn write(&mut self, cell: (String, i64, String), ts: i64, present: bool) {
        if crate::fold::cql_write_wins(self.cells.get(&cell), ts, present) {
            self.cells.insert(cell, (ts, present));
        }
    }

    /// The users' lists: (user, at, artwork).
    fn lists(&self) -> BTreeSet<(String, i64, String)> {
        self.cells
            .iter()
            .filter(|(_, (_, present))| *present)
            .map(|(cell, _)| cell.clone())
            .collect()
    }

    /// The lists the pairs say there should be: every pair whose current fact is "on", at
    /// its time.
    fn expected_lists(&self) -> BTreeSet<(String, i64, String)> {
        self.stored
            .iter()
            .filter(|(_, f)| f.on)
            .map(|((a, u), f)| (u.clone(), f.occurred_at_ms, a.clone()))
            .collect()
    }

    fn fold_each(&mut self, log: &[LikeSet]) {
        for (i, f) in log.iter().enumerate() {
            self.apply(&[(position(i), f.clone())], false);
        }
    }
}

fn position(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

fn positioned(log: &[LikeSet]) -> Vec<(i64, LikeSet)> {
    log.iter()
        .enumerate()
        .map(|(i, f)| (position(i), f.clone()))
        .collect()
}

#[test]
fn each_kind_is_named_by_its_mark_and_found_by_it() {
    assert_eq!(SetKind::Like.mark(), "like");
    assert_eq!(SetKind::Favorite.mark(), "favorite");
    for kind in SetKind::ALL {
        assert_eq!(SetKind::from_mark(kind.mark()), Some(kind));
    }
    assert_eq!(SetKind::from_mark("likes"), None);
    assert_eq!(SetKind::from_mark(""), None);
}

#[test]
fn like_like_unlike_unlike_counts_1_1_0_0() {
    let mut store = Store::default();
    let mut seen = vec![];
    for (offset, liked) in [true, true, false, false].into_iter().enumerate() {
        store.apply(&[(position(offset), fact("a", "u", liked, 0))], false);
        seen.push(store.counts.get("a").copied().unwrap_or(0));
    }
    assert_eq!(seen, vec![1, 1, 0, 0]);
}

#[test]
fn an_unlike_without_a_like_changes_nothing() {
    let batch = batch_from(0, &[fact("a", "u", false, 0)]);
    let plan = batch.plan(&HashMap::new(), &nothing_applied());
    assert!(plan.count_deltas.is_empty() && plan.bucket_deltas.is_empty());
}

#[test]
fn within_a_batch_the_last_fact_wins_and_every_transition_lands_in_its_hour() {
    let batch = batch_from(
        0,
        &[
            fact("a", "u", true, 10),
            fact("a", "u", false, HOUR_MS + 10),
            fact("a", "v", true, 20),
        ],
    );
    let plan = batch.plan(&HashMap::new(), &nothing_applied());
    assert_eq!(plan.count_deltas.get("a"), Some(&1));
    assert_eq!(plan.upserts.len(), 2);
    assert_eq!(plan.bucket_deltas.get(&("a".to_owned(), 0)), Some(&2));
    assert_eq!(
        plan.bucket_deltas.get(&("a".to_owned(), HOUR_MS)),
        Some(&-1)
    );
}

#[test]
fn a_like_moves_the_list_entry_to_its_time() {
    // Given a stored like at 10, when the user likes again (a new fact) at 20,
    let liked = fact("a", "u", true, 10);
    let stored: Stored = [(key("a", "u"), SetFact::from(&liked))].into();
    let batch = batch_from(1, &[fact("a", "u", true, 20)]);
    // then the entry moves from 10 to 20 and the count stays.
    let plan = batch.plan(&stored, &nothing_applied());
    assert!(plan.count_deltas.is_empty());
    assert_eq!(
        plan.lists,
        vec![(
            key("a", "u"),
            ListChange {
                insert: Some(20),
                delete: vec![10]
            }
        )]
    );
}

#[test]
fn an_unlike_removes_every_entry_the_batch_or_an_interrupted_run_may_have_written() {
    let stored: Stored = [(key("a", "u"), SetFact::from(&fact("a", "u", true, 10)))].into();
    let facts: Vec<LikeSet> = [
        (false, 11),
        (true, 12),
        (false, 13),
        (true, 14),
        (false, 15),
    ]
    .into_iter()
    .map(|(liked, time)| fact("a", "u", liked, time))
    .collect();
    let plan = batch_from(1, &facts).plan(&stored, &nothing_applied());
    assert_eq!(
        plan.lists,
        vec![(
            key("a", "u"),
            ListChange {
                insert: None,
                delete: vec![10, 12, 14]
            }
        )]
    );
}

#[test]
fn a_copy_of_the_stored_fact_changes_nothing_whatever_its_time() {
    // Given a like at 0 applied by the message at offset 0,
    let f = fact("a", "u", true, 0);
    let stored: Stored = [(key("a", "u"), SetFact::from(&f))].into();
    let applied: Applied = [(event(&f), at(0))].into();
    for time in [0, 5, HOUR_MS * 3, -HOUR_MS] {
        // when its copy arrives at offset 1 with any time,
        let batch = batch_from(1, &[copy_at(&f, time)]);
        // then nothing changes: no count, no bucket, no stored fact, no list entry, no position.
        assert_eq!(
            batch.plan(&stored, &applied),
            SetPlan::default(),
            "copy at {time}"
        );
    }
}

#[test]
fn a_copy_of_the_current_fact_changes_nothing_in_a_store_that_predates_the_positions() {
    // Given a like stored before positions were remembered (none is known for it),
    let f = fact("a", "u", true, 0);
    let stored: Stored = [(key("a", "u"), SetFact::from(&f))].into();
    // when its copy arrives, its fact changes nothing, and its position is remembered, so that
    // later copies are known as such.
    let plan = batch_from(1, &[copy_at(&f, HOUR_MS)]).plan(&stored, &nothing_applied());
    assert_eq!(
        plan,
        SetPlan {
            positions: vec![(event(&f), at(1))],
            ..SetPlan::default()
        }
    );
}

#[test]
fn a_copy_in_the_same_batch_keeps_the_first_copys_time() {
    // Given nothing stored, when a like and its copy an hour later come in one batch,
    let f = fact("a", "u", true, 7);
    let batch = batch_from(0, &[f.clone(), copy_at(&f, HOUR_MS + 7)]);
    // then the like counts once, in its own hour, at its own time, applied at its offset.
    let plan = batch.plan(&HashMap::new(), &nothing_applied());
    assert_eq!(plan.count_deltas, BTreeMap::from([("a".to_owned(), 1)]));
    assert_eq!(
        plan.bucket_deltas,
        BTreeMap::from([(("a".to_owned(), 0), 1)])
    );
    assert_eq!(plan.upserts, vec![(key("a", "u"), SetFact::from(&f))]);
    assert_eq!(
        plan.lists,
        vec![(
            key("a", "u"),
            ListChange {
                insert: Some(7),
                delete: vec![]
            }
        )]
    );
    assert_eq!(plan.positions, vec![(event(&f), at(0))]);
}

#[test]
fn a_copy_then_an_unlike_leaves_no_entry_behind_however_the_log_is_batched() {
    // Given a like at 10 and its copy at 20 (a re-sent command), then an unlike,
    let like = fact("a", "u", true, 10);
    let log = [
        copy_at(&like, 10),
        copy_at(&like, 20),
        fact("a", "u", false, 30),
    ];
    let log = positioned(&log);
    // when they are folded one by one, or in one batch,
    let mut one_by_one = Store::default();
    for f in &log {
        one_by_one.apply(std::slice::from_ref(f), false);
    }
    let mut together = Store::default();
    together.apply(&log, false);
    // then the list is empty: the copy left no entry.
    for store in [&one_by_one, &together] {
        assert!(store.lists().is_empty(), "{:?}", store.lists());
        assert!(store.counts.is_empty());
        assert!(!store.stored[&key("a", "u")].on);
    }
}

#[test]
fn a_favorite_copied_taken_back_and_given_again_is_listed_once() {
    // The doubled entry: favorite at 10, its copy at 20, unfavorite, favorite at 40.
    let first = fact("a", "u", true, 10);
    let log = [
        first.clone(),
        copy_at(&first, 20),
        fact("a", "u", false, 30),
        fact("a", "u", true, 40),
    ];
    let mut store = Store::default();
    store.fold_each(&log);
    assert_eq!(
        store.lists(),
        BTreeSet::from([("u".to_owned(), 40, "a".to_owned())])
    );
}

#[test]
fn a_copy_of_an_older_fact_after_a_newer_one_changes_nothing() {
    // Given a like applied at offset 0 and an unlike at offset 1, stored,
    let liked = fact("a", "u", true, 0);
    let unliked = fact("a", "u", false, HOUR_MS);
    let mut store = Store::default();
    store.fold_each(&[liked.clone(), unliked.clone()]);
    let before = store.clone();
    // when the retry of the like (its answer was lost) arrives at offset 2, an hour later,
    let plan = batch_from(2, &[copy_at(&liked, 2 * HOUR_MS)]).plan(&store.stored, &store.applied);
    // then nothing changes: still not liked, no count, no bucket, no list entry.
    assert_eq!(plan, SetPlan::default());
    store.apply(&[(2, copy_at(&liked, 2 * HOUR_MS))], false);
    assert_eq!(store, before);
    assert!(store.lists().is_empty());
}

#[test]
fn a_copy_of_an_older_fact_after_a_newer_one_in_the_same_batch_changes_nothing() {
    // Given a stored like applied at offset 0,
    let liked = fact("a", "u", true, 0);
    let stored: Stored = [(key("a", "u"), SetFact::from(&liked))].into();
    let applied: Applied = [(event(&liked), at(0))].into();
    // when an unlike and the like's copy come in one batch,
    let unliked = fact("a", "u", false, HOUR_MS);
    let batch = batch_from(1, &[unliked.clone(), copy_at(&liked, 2 * HOUR_MS)]);
    // then the unlike decides: one like less, in the unlike's hour, and no entry left.
    let plan = batch.plan(&stored, &applied);
    assert_eq!(plan.count_deltas, BTreeMap::from([("a".to_owned(), -1)]));
    assert_eq!(
        plan.bucket_deltas,
        BTreeMap::from([(("a".to_owned(), HOUR_MS), -1)])
    );
    assert_eq!(plan.upserts, vec![(key("a", "u"), SetFact::from(&unliked))]);
    assert_eq!(
        plan.lists,
        vec![(
            key("a", "u"),
            ListChange {
                insert: None,
                delete: vec![0]
            }
        )]
    );
    assert_eq!(plan.positions, vec![(event(&unliked), at(1))]);
    // And the same log in one batch from an empty store ends unliked as well.
    let log = positioned(&[liked.clone(), unliked, copy_at(&liked, 2 * HOUR_MS)]);
    let mut store = Store::default();
    store.apply(&log, false);
    assert!(store.counts.is_empty() && store.lists().is_empty());
}

#[test]
fn a_batch_interrupted_after_its_positions_were_written_is_applied_again_in_full() {
    // Given the likes of two users, whose run was interrupted after the derived rows (the
    // lists and the positions) were written, before the artwork's partition,
    let like = fact("a", "u", true, 5);
    let other = fact("a", "v", true, 6);
    let log = positioned(&[like.clone(), other.clone()]);
    let mut store = Store::default();
    store.apply(&log, true);
    assert_eq!(store.applied.get(&event(&like)), Some(&at(0)));
    assert!(store.stored.is_empty() && store.counts.is_empty());
    // when the same messages are read again (same positions), however cut,
    store.apply(&log[..1], false);
    store.apply(&log[1..], false);
    // then they are applied exactly as in one uninterrupted run: a set of ids seen would have
    // taken them for copies and lost both likes for good.
    let mut whole = Store::default();
    whole.apply(&log, false);
    assert_eq!(store, whole);
    assert_eq!(store.counts.get("a"), Some(&2));
    assert_eq!(store.lists(), store.expected_lists());
}

#[test]
fn the_same_message_applied_again_changes_nothing() {
    // Given a like applied by the message at offset 0,
    let like = fact("a", "u", true, 5);
    let mut store = Store::default();
    store.apply(&[(0, like.clone())], false);
    // when that very message is folded again (a store that does not skip it by offset),
    let plan = batch_from(0, &[like]).plan(&store.stored, &store.applied);
    // then it is the pair's current fact: no change.
    assert_eq!(plan, SetPlan::default());
}

#[test]
fn a_batch_that_ends_where_it_began_still_writes_its_list_entry() {
    // Given a stored like at 0, when an unlike and a new like at the same time 0 come in one
    // batch, the entry is written again: an interrupted run of the unlike alone removed it.
    let liked = fact("a", "u", true, 0);
    let mut store = Store::default();
    store.apply(&[(0, liked)], false);
    let unlike = fact("a", "u", false, 5);
    store.apply(&[(1, unlike.clone())], true);
    assert!(store.lists().is_empty(), "the interrupted run removed it");
    store.apply(&[(1, unlike), (2, fact("a", "u", true, 0))], false);
    assert_eq!(store.lists(), store.expected_lists());
    assert_eq!(store.lists().len(), 1);
}

/// How one fact of a generated log comes about.
#[derive(Debug, Clone)]
enum Origin {
    /// A new fact.
    New(bool),
    /// A copy of the pair's current fact with another time (a command re-sent after a crash).
    CopyOfCurrent,
    /// A copy of any earlier fact of the pair with another time, possibly after newer ones (a
    /// retry whose answer was lost, while the user changed their mind meanwhile).
    ResentOlder(usize),
}

fn origin() -> impl Strategy<Value = Origin> {
    prop_oneof![
        3 => any::<bool>().prop_map(Origin::New),
        2 => Just(Origin::CopyOfCurrent),
        1 => any::<usize>().prop_map(Origin::ResentOlder),
    ]
}

/// A log from (artwork, user, origin, hour) steps.
fn log_of(steps: &[(u8, u8, Origin, i64)]) -> Vec<LikeSet> {
    let mut log: Vec<LikeSet> = Vec::new();
    let mut history: HashMap<SetKey, Vec<LikeSet>> = HashMap::new();
    for (i, (a, u, origin, h)) in steps.iter().enumerate() {
        let (a, u) = (format!("a{a}"), format!("u{u}"));
        // Distinct times within an hour, so that two facts never share a list entry.
        let at = h * HOUR_MS + position(i);
        let earlier = history.entry(key(&a, &u)).or_default();
        let next = match (origin, earlier.last()) {
            (Origin::CopyOfCurrent, Some(current)) => copy_at(current, at),
            (Origin::ResentOlder(n), Some(_)) => copy_at(&earlier[n % earlier.len()], at),
            (Origin::New(on), _) => fact(&a, &u, *on, at),
            (_, None) => fact(&a, &u, true, at),
        };
        earlier.push(next.clone());
        log.push(next);
    }
    log
}

/// The log without its copies: each event at its first position only.
fn without_copies(log: &[LikeSet]) -> Vec<LikeSet> {
    let mut seen: BTreeSet<Uuid> = BTreeSet::new();
    log.iter()
        .filter(|f| seen.insert(f.event_id))
        .cloned()
        .collect()
}

proptest! {
    /// Folding any log, with copies of any earlier fact at any later point and with other
    /// times, in any batching, with batches interrupted after writing the lists and positions
    /// and run again with another cut: the copies change nothing (the same pairs, counts and
    /// buckets as the log without them, one fact at a time), the result is that of one batch
    /// of everything (a rebuild) and never negative, each event is remembered at its first
    /// position, and each user's list holds exactly the pairs whose fact is "on", at the
    /// fact's time: no entry left behind, none doubled.
    #[test]
    fn copies_change_nothing_and_the_lists_match_the_pairs_in_any_batching(
        steps in proptest::collection::vec((0u8..3, 0u8..4, origin(), 0i64..4), 0..60),
        cuts in proptest::collection::vec((1usize..8, any::<bool>()), 1..20),
    ) {
        let log = log_of(&steps);
        let log = positioned(&log);
        let mut store = Store::default();
        let mut rest = log.as_slice();
        let mut cut = cuts.iter().cycle();
        let mut again = false;
        while !rest.is_empty() {
            let (n, crash) = cut.next().copied().unwrap_or((1, false));
            let n = n.min(rest.len());
            // A run is interrupted at most once in a row, so the fold ends.
            let interrupted = crash && !again;
            store.apply(&rest[..n], interrupted);
            again = interrupted;
            if interrupted {
                continue; // run again from the same place, with the next cut
            }
            prop_assert!(store.counts.values().all(|c| *c >= 0));
            rest = &rest[n..];
        }

        let mut whole = Store::default();
        whole.apply(&log, false);
        prop_assert_eq!(&store.counts, &whole.counts);
        prop_assert_eq!(&store.buckets, &whole.buckets);
        prop_assert_eq!(&store.stored, &whole.stored);
        prop_assert_eq!(&store.applied, &whole.applied);

        let facts: Vec<LikeSet> = log.iter().map(|(_, f)| f.clone()).collect();
        let mut reference = Store::default();
        reference.fold_each(&without_copies(&facts));
        prop_assert_eq!(&store.stored, &reference.stored);
        prop_assert_eq!(&store.counts, &reference.counts);
        prop_assert_eq!(&store.buckets, &reference.buckets);
        prop_assert_eq!(store.lists(), reference.lists());
        for (i, f) in facts.iter().enumerate() {
            let first = facts.iter().position(|g| g.event_id == f.event_id);
            prop_assert_eq!(
                store.applied.get(&event(f)).map(|p| p.offset),
                first.map(position),
                "event {} at {}", f.event_id, i
            );
        }

        prop_assert_eq!(store.lists(), store.expected_lists());
        prop_assert_eq!(whole.lists(), whole.expected_lists());
        for a in 0..3 {
            let artwork = format!("a{a}");
            let on = store.stored.iter().filter(|((art, _), f)| *art == artwork && f.on).count();
            prop_assert_eq!(
                store.counts.get(&artwork).copied().unwrap_or(0),
                i64::try_from(on).unwrap_or(-1)
            );
        }
    }
}
