//! The fold of the Scylla read model of the interactions: from a batch of positioned facts, the
//! state of the artworks' partitions and the stored rows the batch touches, every row to
//! write. No I/O, no clock, no CQL: the store (`crate::scylla`) reads what
//! [`InteractionBatch`] asks for, calls [`InteractionBatch::plan`], and writes the
//! [`ScyllaPlan`] it returns.
//!
//! Scylla has no transactions, so every row of the plan carries the offset of the fact that
//! decides it (`decided_at`), from which the store derives the row's write timestamp: a
//! replay decides the same rows at the same offsets, and a later fact always wins. Facts the
//! artwork's partition already holds (before its `next_offset`) are not folded again, and
//! stored rows that an interrupted run wrote beyond it (comments, views) count as not written:
//! the sets, comments and views are folded with the same pure folds as Postgres
//! ([`super::sets`], [`super::comments`], [`super::views`]).
//!
//! Besides the counts, each artwork's partition keeps its net likes and views per hour for
//! [`HOURS_KEPT_MS`] back from its newest hour, copied into the popularity rows.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use gallery_schemas::Event;
use uuid::Uuid;

use super::comments::{CommentBatch, StoredComment};
use super::sets::{Position, SetBatch, SetFact, SetKey, SetKind};
use super::views::ViewBatch;
use super::{HOUR_MS, StatsDelta, hour_of};

mod rows;

pub use rows::{
    ArtworkState, CommentRow, DerivedRow, HourChanges, MarkEntry, PairRow, PartitionWrite, PerSet,
    PopularRow, PositionRow, ScyllaPlan, StoredRows, ViewRow,
};

/// An interaction fact and its message's position.
pub type Positioned<'a> = (Position, &'a Event);

/// How long an artwork keeps its hourly net likes and views, counted back from its newest
/// hour: longer than the longest popularity window (7 days).
pub const HOURS_KEPT_MS: i64 = 8 * 24 * HOUR_MS;

/// The facts of one kind of set in a batch.
#[derive(Debug, Default)]
struct SetSide {
    batch: SetBatch,
    /// Offset of each pair's last fact in the batch, copies included: decides every write for
    /// the pair (its row in the artwork's partition, its list entries).
    last: BTreeMap<SetKey, i64>,
}

impl SetSide {
    fn add(&mut self, artwork: &str, user: &str, fact: SetFact, at: &Position) {
        self.last
            .insert((artwork.to_owned(), user.to_owned()), at.offset);
        self.batch.add(artwork, user, fact, at.clone());
    }

    /// The offset that decides a pair's writes.
    fn decided_at(&self, pair: &SetKey) -> i64 {
        self.last.get(pair).copied().unwrap_or(0)
    }
}

/// The facts of one batch that the artworks' partitions do not hold yet, by kind, and what the
/// store must read to fold them.
#[derive(Debug)]
pub struct InteractionBatch<'s> {
    states: &'s HashMap<String, ArtworkState>,
    sets: PerSet<SetSide>,
    comments: CommentBatch,
    posted_offsets: HashMap<Uuid, i64>,
    deleted_offsets: HashMap<Uuid, i64>,
    views: ViewBatch,
    view_offsets: HashMap<Uuid, i64>,
    /// Offset of each artwork's last fact to fold.
    last_offset: BTreeMap<String, i64>,
    /// The popularity rows every fact may change, folded or not: a replay after a crash
    /// between an artwork's partition and these rows writes them again.
    popular: BTreeSet<(String, i64)>,
}

impl<'s> InteractionBatch<'s> {
    /// Sorts `facts` (in log order) by kind, given the stored state of their artworks' partitions
    /// (absent: never written).
    pub fn new(facts: &[Positioned<'_>], states: &'s HashMap<String, ArtworkState>) -> Self {
        let mut batch = Self {
            states,
            sets: PerSet::default(),
            comments: CommentBatch::default(),
            posted_offsets: HashMap::new(),
            deleted_offsets: HashMap::new(),
            views: ViewBatch::default(),
            view_offsets: HashMap::new(),
            last_offset: BTreeMap::new(),
            popular: BTreeSet::new(),
        };
        for (at, event) in facts {
            let offset = at.offset;
            let Some(artwork) = artwork_of(event) else {
                continue;
            };
            match event {
                Event::LikeSet(e) => {
                    batch
                        .popular
                        .insert((artwork.to_owned(), hour_of(e.occurred_at)));
                }
                Event::ArtworkViewed(e) => {
                    batch
                        .popular
                        .insert((artwork.to_owned(), hour_of(e.occurred_at)));
                }
                _ => {}
            }
            if offset < batch.through(artwork) {
                continue; // folded into the partition already
            }
            let last = batch
                .last_offset
                .entry(artwork.to_owned())
                .or_insert(offset);
            *last = (*last).max(offset);
            match event {
                Event::LikeSet(e) => {
                    batch
                        .sets
                        .likes
                        .add(artwork, e.user_id.as_str(), e.into(), at);
                }
                Event::FavoriteSet(e) => {
                    batch
                        .sets
                        .favorites
                        .add(artwork, e.user_id.as_str(), e.into(), at);
                }
                Event::CommentPosted(e) => {
                    batch.comments.add_posted(e);
                    batch.posted_offsets.entry(e.comment_id).or_insert(offset);
                }
                Event::CommentDeleted(e) => {
                    batch.comments.add_deleted(e);
                    batch.deleted_offsets.entry(e.comment_id).or_insert(offset);
                }
                Event::ArtworkViewed(e) => {
                    batch.views.add(e);
                    batch.view_offsets.entry(e.event_id).or_insert(offset);
                }
                _ => {}
            }
        }
        batch
    }

    /// The artwork's partition is folded up to here.
    fn through(&self, artwork: &str) -> i64 {
        self.states.get(artwork).map_or(0, |s| s.next_offset)
    }

    /// Whether the batch folds no fact (all of them are in their partitions already).
    pub fn is_empty(&self) -> bool {
        self.last_offset.is_empty()
    }

    /// The users of the pairs whose current like and favorite to read, per artwork.
    pub fn pairs(&self) -> BTreeMap<String, Vec<String>> {
        let mut pairs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (a, u) in self
            .sets
            .likes
            .last
            .keys()
            .chain(self.sets.favorites.last.keys())
        {
            pairs.entry(a.clone()).or_default().push(u.clone());
        }
        for users in pairs.values_mut() {
            users.sort_unstable();
            users.dedup();
        }
        pairs
    }

    /// The like and favorite events whose first positions to read, per artwork.
    pub fn events(&self) -> BTreeMap<String, Vec<Uuid>> {
        let mut events: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
        let (likes, favorites) = (&self.sets.likes.batch, &self.sets.favorites.batch);
        for (a, e) in likes.events().chain(favorites.events()) {
            events.entry(a.clone()).or_default().push(*e);
        }
        for ids in events.values_mut() {
            ids.sort_unstable();
            ids.dedup();
        }
        events
    }

    /// The comments whose rows to read.
    pub fn comment_ids(&self) -> Vec<Uuid> {
        self.comments.ids()
    }

    /// The views whose rows to read, per artwork, in log order.
    pub fn view_ids(&self) -> BTreeMap<String, Vec<Uuid>> {
        let mut ids: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
        for v in self.views.views() {
            ids.entry(v.artwork_id.clone())
                .or_default()
                .push(v.event_id);
        }
        ids
    }

    /// Everything to write for the batch, given what the store holds of the rows it touches.
    pub fn plan(&self, stored: &StoredRows) -> ScyllaPlan {
        let mut plan = ScyllaPlan::default();
        let mut deltas: BTreeMap<String, StatsDelta> = BTreeMap::new();
        let mut like_hours: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        let mut pairs: BTreeMap<String, Vec<PairRow>> = BTreeMap::new();
        for kind in SetKind::ALL {
            let side = self.sets.get(kind);
            let set = side
                .batch
                .plan(stored.facts.get(kind), stored.applied.get(kind));
            for (a, d) in &set.count_deltas {
                let entry = deltas.entry(a.clone()).or_default();
                match kind {
                    SetKind::Like => entry.likes += d,
                    SetKind::Favorite => entry.favorites += d,
                }
            }
            if kind == SetKind::Like {
                for ((a, hour), d) in &set.bucket_deltas {
                    like_hours.entry(a.clone()).or_default().push((*hour, *d));
                }
            }
            for (pair, fact) in &set.upserts {
                pairs.entry(pair.0.clone()).or_default().push(PairRow {
                    kind,
                    user: pair.1.clone(),
                    fact: fact.clone(),
                    decided_at: side.decided_at(pair),
                });
            }
            // Each list write at the offset of the pair's last fact in the batch, so even
            // entries written by an interrupted run of a longer batch are removed.
            for (pair, change) in &set.lists {
                let mark = |at_ms| MarkEntry {
                    kind,
                    user: pair.1.clone(),
                    artwork: pair.0.clone(),
                    at_ms,
                    decided_at: side.decided_at(pair),
                };
                if let Some(at) = change.insert {
                    plan.derived.push(DerivedRow::InsertMark(mark(at)));
                }
                for at in &change.delete {
                    plan.derived.push(DerivedRow::DeleteMark(mark(*at)));
                }
            }
            for ((a, event_id), at) in set.positions {
                plan.positions
                    .entry(a)
                    .or_default()
                    .push(PositionRow { kind, event_id, at });
            }
        }
        for (a, d) in self.plan_comments(&stored.comments, &mut plan.derived) {
            deltas.entry(a).or_default().comments += d;
        }
        let mut view_hours: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        let (view_deltas, view_buckets) = self.plan_views(&stored.views, &mut plan.derived);
        for (a, d) in view_deltas {
            deltas.entry(a).or_default().views += d;
        }
        for ((a, hour), d) in view_buckets {
            view_hours.entry(a).or_default().push((hour, d));
        }

        for (artwork, last) in &self.last_offset {
            let before = self.states.get(artwork).cloned().unwrap_or_default();
            let mut state = before.plus(deltas.get(artwork).copied().unwrap_or_default());
            let (likes_changed, likes_dropped) = hours_after(
                &before.like_hours,
                like_hours.get(artwork).into_iter().flatten().copied(),
            );
            let (views_changed, views_dropped) = hours_after(
                &before.view_hours,
                view_hours.get(artwork).into_iter().flatten().copied(),
            );
            state.like_hours.extend(&likes_changed);
            state.view_hours.extend(&views_changed);
            for h in &likes_dropped {
                state.like_hours.remove(h);
            }
            for h in &views_dropped {
                state.view_hours.remove(h);
            }
            state.next_offset = last + 1;
            let partition = PartitionWrite {
                decided_at: *last,
                state,
                hours: HourChanges {
                    likes_changed,
                    views_changed,
                    likes_dropped,
                    views_dropped,
                },
                pairs: pairs.remove(artwork).unwrap_or_default(),
            };
            plan.partitions.insert(artwork.clone(), partition);
        }
        plan.popular = self.popular_rows(&plan.partitions);
        plan
    }

    /// The comment rows to write (into `rows`) and the comment count changes per artwork.
    fn plan_comments(
        &self,
        read: &[CommentRow],
        rows: &mut Vec<DerivedRow>,
    ) -> BTreeMap<String, i64> {
        if self.comments.is_empty() {
            return BTreeMap::new();
        }
        let mut stored: HashMap<Uuid, StoredComment> = HashMap::new();
        let mut listed: HashMap<Uuid, (String, i64)> = HashMap::new();
        for row in read {
            let (Some(artwork), Some(posted_at), Some(posted)) =
                (&row.artwork_id, row.posted_at_ms, row.posted_offset)
            else {
                continue;
            };
            // As of the artwork's partition: rows written by an interrupted batch beyond it
            // are not applied yet. A comment of an artwork outside the batch is left alone.
            let Some(through) = self.states.get(artwork).map(|s| s.next_offset) else {
                continue;
            };
            if posted >= through {
                continue;
            }
            stored.insert(
                row.comment_id,
                StoredComment {
                    artwork_id: artwork.clone(),
                    deleted: row.deleted_offset.is_some_and(|d| d < through),
                },
            );
            listed.insert(row.comment_id, (artwork.clone(), posted_at));
        }
        let plan = self.comments.plan(&stored);
        for comment in plan.inserts {
            let posted_offset = self
                .posted_offsets
                .get(&comment.comment_id)
                .copied()
                .unwrap_or(0);
            listed.insert(
                comment.comment_id,
                (comment.artwork_id.clone(), comment.posted_at_ms),
            );
            rows.push(DerivedRow::Comment {
                comment,
                posted_offset,
            });
        }
        for d in &plan.deletions {
            rows.push(DerivedRow::CommentDeleted {
                comment_id: d.comment_id,
                deleted_offset: self
                    .deleted_offsets
                    .get(&d.comment_id)
                    .copied()
                    .unwrap_or(0),
                listed: listed.get(&d.comment_id).cloned(),
            });
        }
        plan.count_deltas
    }

    /// The view rows to write (into `rows`), the new views per artwork and per (artwork, hour).
    fn plan_views(&self, read: &[ViewRow], rows: &mut Vec<DerivedRow>) -> ViewDeltas {
        if self.views.is_empty() {
            return (BTreeMap::new(), BTreeMap::new());
        }
        let stored: HashSet<Uuid> = read
            .iter()
            .filter(|v| v.offset < self.through(&v.artwork_id))
            .map(|v| v.event_id)
            .collect();
        let plan = self.views.plan(&stored);
        for v in plan.inserts {
            rows.push(DerivedRow::View {
                offset: self.view_offsets.get(&v.event_id).copied().unwrap_or(0),
                artwork_id: v.artwork_id,
                event_id: v.event_id,
            });
        }
        (plan.count_deltas, plan.bucket_deltas)
    }

    /// The hourly values of the popularity rows the batch may change, from the artworks'
    /// partitions as folded by this batch (`folded`), else as stored.
    fn popular_rows(&self, folded: &BTreeMap<String, PartitionWrite>) -> Vec<PopularRow> {
        let mut rows = Vec::new();
        for (artwork, hour) in &self.popular {
            let Some(state) = folded
                .get(artwork)
                .map(|p| &p.state)
                .or_else(|| self.states.get(artwork))
            else {
                continue;
            };
            let newest = state
                .like_hours
                .keys()
                .chain(state.view_hours.keys())
                .max()
                .copied()
                .unwrap_or(*hour);
            if *hour < newest - HOURS_KEPT_MS || state.next_offset == 0 {
                continue; // dropped from the partition, or nothing folded yet
            }
            if !state.like_hours.contains_key(hour) && !state.view_hours.contains_key(hour) {
                continue; // no fact landed in this hour (a copy's time, say): no row
            }
            rows.push(PopularRow {
                hour_ms: *hour,
                artwork_id: artwork.clone(),
                net_likes: state.like_hours.get(hour).copied().unwrap_or(0),
                views: state.view_hours.get(hour).copied().unwrap_or(0),
                decided_at: state.next_offset - 1,
            });
        }
        rows
    }
}

/// New views per artwork and per (artwork, hour).
type ViewDeltas = (BTreeMap<String, i64>, BTreeMap<(String, i64), i64>);

/// The hourly values after adding `deltas`, and the hours to drop: those older than
/// [`HOURS_KEPT_MS`] before the newest.
fn hours_after(
    before: &BTreeMap<i64, i64>,
    deltas: impl Iterator<Item = (i64, i64)>,
) -> (BTreeMap<i64, i64>, Vec<i64>) {
    let mut after = before.clone();
    let mut changed = BTreeMap::new();
    for (hour, d) in deltas {
        let value = after.entry(hour).or_insert(0);
        *value += d;
        changed.insert(hour, *value);
    }
    let newest = after.keys().next_back().copied().unwrap_or(0);
    let dropped: Vec<i64> = after
        .keys()
        .copied()
        .take_while(|h| *h < newest - HOURS_KEPT_MS)
        .collect();
    for hour in &dropped {
        changed.remove(hour);
    }
    (changed, dropped)
}

/// The artworks `facts` are about, sorted, each once.
pub fn artworks(facts: &[Positioned<'_>]) -> Vec<String> {
    let mut artworks: Vec<String> = facts
        .iter()
        .filter_map(|(_, e)| artwork_of(e).map(str::to_owned))
        .collect();
    artworks.sort_unstable();
    artworks.dedup();
    artworks
}

/// Cuts `facts` (in log order) into consecutive rounds, each holding at most `per_artwork`
/// facts of any one artwork, as few rounds as that allows. Applied one after the other, each
/// round reads what the one before wrote, so the result is that of the whole batch at once.
pub fn rounds<'f, 'e>(
    facts: &'f [Positioned<'e>],
    per_artwork: usize,
) -> Vec<&'f [Positioned<'e>]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut held: HashMap<&'e str, usize> = HashMap::new();
    for (i, (_, event)) in facts.iter().enumerate() {
        let Some(artwork) = artwork_of(event) else {
            continue;
        };
        let count = held.entry(artwork).or_insert(0);
        if *count >= per_artwork.max(1) {
            out.push(&facts[start..i]);
            start = i;
            held.clear();
            held.insert(artwork, 1);
        } else {
            *count += 1;
        }
    }
    if start < facts.len() || out.is_empty() {
        out.push(&facts[start..]);
    }
    out
}

/// The artwork an interaction fact is about.
pub fn artwork_of(event: &Event) -> Option<&str> {
    match event {
        Event::LikeSet(e) => Some(e.artwork_id.as_str()),
        Event::FavoriteSet(e) => Some(e.artwork_id.as_str()),
        Event::CommentPosted(e) => Some(e.artwork_id.as_str()),
        Event::CommentDeleted(e) => Some(e.artwork_id.as_str()),
        Event::ArtworkViewed(e) => Some(e.artwork_id.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
