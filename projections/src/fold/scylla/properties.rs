//! The Scylla fold as properties over any log of interactions (copies of events included), any
//! batching, and batches interrupted after their derived rows, against a model of the tables
//! that applies each plan as the store writes it.

use super::tests::{H, deleted, favorite, like, positioned, posted, view};
use super::*;
use crate::fold::SetEvent;
use gallery_schemas::{ArtworkViewed, FavoriteSet, LikeSet};
use proptest::prelude::*;

/// The tables as the store writes a plan into them: last write wins by timestamp (a deletion
/// on equal ones, as in CQL) for the users' lists and the popularity rows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tables {
    partitions: HashMap<String, ArtworkState>,
    pairs: PerSet<HashMap<SetKey, SetFact>>,
    applied: PerSet<HashMap<SetEvent, Position>>,
    /// (kind, user, at, artwork) -> (timestamp, present)
    marks: BTreeMap<(SetKind, String, i64, String), (i64, bool)>,
    comments: HashMap<Uuid, CommentRow>,
    views: HashMap<(String, Uuid), i64>,
    /// (hour, artwork) -> (timestamp, net likes, views)
    popular: BTreeMap<(i64, String), (i64, i64, i64)>,
}

impl Tables {
    /// Reads what the batch asks for, as the store does.
    fn read(&self, batch: &InteractionBatch<'_>) -> StoredRows {
        let mut stored = StoredRows::default();
        for (a, users) in batch.pairs() {
            for u in users {
                let key = (a.clone(), u);
                for kind in SetKind::ALL {
                    if let Some(f) = self.pairs.get(kind).get(&key) {
                        stored.facts.get_mut(kind).insert(key.clone(), f.clone());
                    }
                }
            }
        }
        for (a, ids) in batch.events() {
            for e in ids {
                let event = (a.clone(), e);
                for kind in SetKind::ALL {
                    if let Some(p) = self.applied.get(kind).get(&event) {
                        stored
                            .applied
                            .get_mut(kind)
                            .insert(event.clone(), p.clone());
                    }
                }
            }
        }
        stored.comments = batch
            .comment_ids()
            .iter()
            .filter_map(|id| self.comments.get(id).cloned())
            .collect();
        for (a, ids) in batch.view_ids() {
            for e in ids {
                if let Some(offset) = self.views.get(&(a.clone(), e)) {
                    stored.views.push(ViewRow {
                        artwork_id: a.clone(),
                        event_id: e,
                        offset: *offset,
                    });
                }
            }
        }
        stored
    }

    /// Folds `facts` and writes the plan; `interrupted`: only the derived rows and the
    /// positions (a crash before the artworks' partitions).
    fn apply(&mut self, facts: &[Positioned<'_>], interrupted: bool) -> ScyllaPlan {
        let states: HashMap<String, ArtworkState> = artworks(facts)
            .into_iter()
            .filter_map(|a| self.partitions.get(&a).map(|s| (a, s.clone())))
            .collect();
        let batch = InteractionBatch::new(facts, &states);
        let plan = batch.plan(&self.read(&batch));
        for row in &plan.derived {
            match row {
                DerivedRow::InsertMark(m) => self.mark(m, true),
                DerivedRow::DeleteMark(m) => self.mark(m, false),
                DerivedRow::Comment {
                    comment,
                    posted_offset,
                } => {
                    let row = self
                        .comments
                        .entry(comment.comment_id)
                        .or_insert(CommentRow {
                            comment_id: comment.comment_id,
                            artwork_id: None,
                            posted_at_ms: None,
                            posted_offset: None,
                            deleted_offset: None,
                        });
                    row.artwork_id = Some(comment.artwork_id.clone());
                    row.posted_at_ms = Some(comment.posted_at_ms);
                    row.posted_offset = Some(*posted_offset);
                }
                DerivedRow::CommentDeleted {
                    comment_id,
                    deleted_offset,
                    ..
                } => {
                    let row = self.comments.entry(*comment_id).or_insert(CommentRow {
                        comment_id: *comment_id,
                        artwork_id: None,
                        posted_at_ms: None,
                        posted_offset: None,
                        deleted_offset: None,
                    });
                    row.deleted_offset = Some(*deleted_offset);
                }
                DerivedRow::View {
                    artwork_id,
                    event_id,
                    offset,
                } => {
                    self.views.insert((artwork_id.clone(), *event_id), *offset);
                }
            }
        }
        for (a, rows) in &plan.positions {
            for r in rows {
                let event = (a.clone(), r.event_id);
                self.applied.get_mut(r.kind).insert(event, r.at.clone());
            }
        }
        if interrupted {
            return plan;
        }
        for (a, p) in &plan.partitions {
            // The statements of the partition, applied to what is stored.
            let stored = self.partitions.entry(a.clone()).or_default();
            stored.likes = p.state.likes;
            stored.favorites = p.state.favorites;
            stored.comments = p.state.comments;
            stored.views = p.state.views;
            stored.next_offset = p.state.next_offset;
            stored.like_hours.extend(&p.hours.likes_changed);
            stored.view_hours.extend(&p.hours.views_changed);
            for h in &p.hours.likes_dropped {
                stored.like_hours.remove(h);
            }
            for h in &p.hours.views_dropped {
                stored.view_hours.remove(h);
            }
            for pair in &p.pairs {
                let key = (a.clone(), pair.user.clone());
                self.pairs.get_mut(pair.kind).insert(key, pair.fact.clone());
            }
        }
        for r in &plan.popular {
            let ts = r.decided_at + 1;
            let cell = self
                .popular
                .entry((r.hour_ms, r.artwork_id.clone()))
                .or_insert((ts, r.net_likes, r.views));
            if ts >= cell.0 {
                *cell = (ts, r.net_likes, r.views);
            }
        }
        plan
    }

    fn mark(&mut self, m: &MarkEntry, present: bool) {
        let ts = m.decided_at + 1;
        let cell = (m.kind, m.user.clone(), m.at_ms, m.artwork.clone());
        if crate::fold::cql_write_wins(self.marks.get(&cell), ts, present) {
            self.marks.insert(cell, (ts, present));
        }
    }

    fn lists(&self) -> BTreeSet<(SetKind, String, i64, String)> {
        self.marks
            .iter()
            .filter(|(_, (_, present))| *present)
            .map(|(cell, _)| cell.clone())
            .collect()
    }

    /// The popularity rows' values, but those of nothing (an hour whose likes came and went
    /// in different batches keeps a zero where one batch would leave nothing).
    fn popular_values(&self) -> BTreeMap<(i64, String), (i64, i64)> {
        self.popular
            .iter()
            .filter(|(_, (_, likes, views))| (*likes, *views) != (0, 0))
            .map(|(k, (_, likes, views))| (k.clone(), (*likes, *views)))
            .collect()
    }

    /// The partitions without their hours of nothing (see [`Tables::popular_values`]).
    fn partitions_without_zero_hours(&self) -> HashMap<String, ArtworkState> {
        let mut partitions = self.partitions.clone();
        for s in partitions.values_mut() {
            s.like_hours.retain(|_, v| *v != 0);
            s.view_hours.retain(|_, v| *v != 0);
        }
        partitions
    }

    /// What the comments hold but the offset of the deletion (see the note on the property).
    fn comments_without_deletion_offsets(&self) -> HashMap<Uuid, (CommentRow, bool)> {
        self.comments
            .iter()
            .map(|(id, c)| {
                let row = CommentRow {
                    deleted_offset: None,
                    ..c.clone()
                };
                (*id, (row, c.deleted_offset.is_some()))
            })
            .collect()
    }
}

/// One step of a generated log.
#[derive(Debug, Clone)]
enum Step {
    Like(u8, u8, bool, i64),
    Favorite(u8, u8, bool, i64),
    Post(u8),
    Delete(u8),
    View(u8, i64),
    /// A copy of the event `back` steps before (if any), at another time.
    Copy(usize, i64),
}

fn step() -> impl Strategy<Value = Step> {
    let a = 0u8..2;
    let u = 0u8..3;
    let hour = (0i64..3).prop_map(|h| h * H + 7);
    prop_oneof![
        (a.clone(), u.clone(), any::<bool>(), hour.clone())
            .prop_map(|(a, u, on, t)| Step::Like(a, u, on, t)),
        (a.clone(), u, any::<bool>(), hour.clone())
            .prop_map(|(a, u, on, t)| Step::Favorite(a, u, on, t)),
        (0u8..4).prop_map(Step::Post),
        (0u8..4).prop_map(Step::Delete),
        (a, hour.clone()).prop_map(|(a, t)| Step::View(a, t)),
        (1usize..6, hour).prop_map(|(back, t)| Step::Copy(back, t)),
    ]
}

/// The events of `steps`; comment `c` belongs to artwork `a{c % 2}`. A comment is deleted
/// only once posted, as the write side decides (it refuses to delete a comment it does not
/// know): a deletion logged before its comment's posting would be stamped below the posting.
fn log_of(steps: &[Step]) -> Vec<Event> {
    let mut log: Vec<Event> = Vec::new();
    let mut posted_comments: HashSet<u8> = HashSet::new();
    for (i, s) in steps.iter().enumerate() {
        let id = 1 + i as u128;
        let art = |a: &u8| format!("a{a}");
        let comment = |c: &u8| {
            (
                Uuid::from_u128(1_000 + u128::from(*c)),
                format!("a{}", c % 2),
            )
        };
        let event = match s {
            Step::Like(a, u, on, t) => like(id, &art(a), &format!("u{u}"), *on, *t),
            Step::Favorite(a, u, on, t) => favorite(id, &art(a), &format!("u{u}"), *on, *t),
            Step::Post(c) => {
                posted_comments.insert(*c);
                let (c, a) = comment(c);
                posted(id, c, &a, 7)
            }
            Step::Delete(c) => {
                if !posted_comments.contains(c) {
                    continue;
                }
                let (c, a) = comment(c);
                deleted(id, c, &a, 9)
            }
            Step::View(a, t) => view(id, &art(a), *t),
            Step::Copy(back, t) => {
                let Some(original) = log.len().checked_sub(*back).and_then(|j| log.get(j)) else {
                    continue;
                };
                match original.clone() {
                    Event::LikeSet(e) => Event::LikeSet(LikeSet {
                        occurred_at: *t,
                        ..e
                    }),
                    Event::FavoriteSet(e) => Event::FavoriteSet(FavoriteSet {
                        occurred_at: *t,
                        ..e
                    }),
                    Event::ArtworkViewed(e) => Event::ArtworkViewed(ArtworkViewed {
                        occurred_at: *t,
                        ..e
                    }),
                    other => other,
                }
            }
        };
        log.push(event);
    }
    log
}

/// The counts the log means, straight from its definition: a copy of an event (its id again,
/// per artwork and kind) is no fact; a pair counts when its latest fact is "on"; a comment
/// counts from its posting to its deletion (a deletion of an unknown comment is nothing); a
/// view counts once.
fn expected_counts(log: &[Event]) -> BTreeMap<String, (i64, i64, i64, i64)> {
    let mut seen: HashSet<(u8, String, Uuid)> = HashSet::new();
    let mut latest: BTreeMap<(u8, String, String), bool> = BTreeMap::new();
    let mut comments: HashMap<Uuid, (String, bool)> = HashMap::new();
    let mut views: BTreeSet<(String, Uuid)> = BTreeSet::new();
    for e in log {
        match e {
            Event::LikeSet(e) => {
                let a = e.artwork_id.as_str().to_owned();
                if seen.insert((0, a.clone(), e.event_id)) {
                    latest.insert((0, a, e.user_id.as_str().to_owned()), e.liked);
                }
            }
            Event::FavoriteSet(e) => {
                let a = e.artwork_id.as_str().to_owned();
                if seen.insert((1, a.clone(), e.event_id)) {
                    latest.insert((1, a, e.user_id.as_str().to_owned()), e.favorited);
                }
            }
            Event::CommentPosted(e) => {
                comments
                    .entry(e.comment_id)
                    .or_insert((e.artwork_id.as_str().to_owned(), false));
            }
            Event::CommentDeleted(e) => {
                if let Some(c) = comments.get_mut(&e.comment_id) {
                    c.1 = true;
                }
            }
            Event::ArtworkViewed(e) => {
                views.insert((e.artwork_id.as_str().to_owned(), e.event_id));
            }
            _ => {}
        }
    }
    let mut out: BTreeMap<String, (i64, i64, i64, i64)> = BTreeMap::new();
    for ((kind, a, _), on) in latest {
        let c = out.entry(a).or_default();
        if on && kind == 0 {
            c.0 += 1;
        } else if on {
            c.1 += 1;
        }
    }
    for (a, deleted) in comments.into_values() {
        out.entry(a).or_default().2 += i64::from(!deleted);
    }
    for (a, _) in views {
        out.entry(a).or_default().3 += 1;
    }
    out.retain(|_, c| *c != (0, 0, 0, 0));
    out
}

fn counts_of(tables: &Tables) -> BTreeMap<String, (i64, i64, i64, i64)> {
    tables
        .partitions
        .iter()
        .map(|(a, s)| (a.clone(), (s.likes, s.favorites, s.comments, s.views)))
        .filter(|(_, c)| *c != (0, 0, 0, 0))
        .collect()
}

proptest! {
    /// Any log, cut into batches anyhow, each possibly interrupted once after its derived
    /// rows and then applied from the same start with another cut, and each possibly applied
    /// twice: the counts are those the log means and never negative on the way, the store's
    /// state is what its writes leave, and every table ends as after one batch of the whole
    /// log.
    #[test]
    fn the_tables_do_not_depend_on_batching_interruptions_or_replays(
        steps in proptest::collection::vec(step(), 0..40),
        cuts in proptest::collection::vec((1usize..8, any::<bool>(), any::<bool>()), 0..20),
    ) {
        let log = log_of(&steps);
        let facts = positioned(0, &log);

        let mut whole = Tables::default();
        whole.apply(&facts, false);

        let mut tables = Tables::default();
        let mut start = 0;
        for (cut, interrupted, twice) in &cuts {
            let end = (start + cut).min(facts.len());
            let batch = &facts[start..end];
            if *interrupted {
                tables.apply(batch, true);
                continue; // the next attempt starts here again, with the next cut
            }
            for _ in 0..if *twice { 2 } else { 1 } {
                let plan = tables.apply(batch, false);
                for (a, p) in &plan.partitions {
                    let s = &p.state;
                    prop_assert!(s.likes >= 0 && s.favorites >= 0 && s.comments >= 0 && s.views >= 0);
                    prop_assert_eq!(Some(s), tables.partitions.get(a), "the state the store keeps");
                }
            }
            start = end;
        }
        tables.apply(&facts[start..], false);

        let expected = expected_counts(&log);
        prop_assert_eq!(&counts_of(&whole), &expected);
        prop_assert_eq!(&counts_of(&tables), &expected);
        prop_assert_eq!(
            tables.partitions_without_zero_hours(),
            whole.partitions_without_zero_hours()
        );
        prop_assert_eq!(&tables.pairs, &whole.pairs);
        prop_assert_eq!(&tables.applied, &whole.applied);
        prop_assert_eq!(tables.lists(), whole.lists());
        // A deletion is stamped with the offset of the batch's first deletion of its comment,
        // which may be one that came before the posting and changed nothing: so only whether
        // a comment is deleted is compared.
        prop_assert_eq!(
            tables.comments_without_deletion_offsets(),
            whole.comments_without_deletion_offsets()
        );
        prop_assert_eq!(&tables.views, &whole.views);
        prop_assert_eq!(tables.popular_values(), whole.popular_values());
        // The users' lists are what the pairs say.
        let expected_lists: BTreeSet<(SetKind, String, i64, String)> = SetKind::ALL
            .into_iter()
            .flat_map(|kind| {
                whole.pairs.get(kind).iter().filter(|(_, f)| f.on).map(move |((a, u), f)| {
                    (kind, u.clone(), f.occurred_at_ms, a.clone())
                })
            })
            .collect();
        prop_assert_eq!(whole.lists(), expected_lists);
    }

    /// A batch applied again after it was applied writes nothing but the same popularity rows.
    #[test]
    fn a_replayed_batch_writes_only_the_same_popularity_rows(
        before in proptest::collection::vec(step(), 0..20),
        steps in proptest::collection::vec(step(), 1..20),
    ) {
        let log = log_of(&[before.clone(), steps].concat());
        let facts = positioned(0, &log);
        let (earlier, batch) = facts.split_at(log_of(&before).len());
        let mut tables = Tables::default();
        tables.apply(earlier, false);
        let first = tables.apply(batch, false);
        let after = tables.clone();
        let again = tables.apply(batch, false);
        prop_assert!(again.derived.is_empty() && again.positions.is_empty() && again.partitions.is_empty());
        prop_assert_eq!(&again.popular, &first.popular);
        prop_assert_eq!(tables, after);
    }
}
