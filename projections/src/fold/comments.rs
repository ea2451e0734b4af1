//! Comments, keyed by comment id: a posting inserts the comment once, a deletion marks it
//! deleted once; the comment count of an artwork is the number of its comments not deleted.

use std::collections::{BTreeMap, HashMap};

use gallery_schemas::{CommentDeleted, CommentPosted};
use uuid::Uuid;

/// What is stored of a comment, as far as the fold needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredComment {
    pub artwork_id: String,
    pub deleted: bool,
}

/// A comment as posted: a row of `comments` to insert, and what the query API shows of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentRow {
    pub comment_id: Uuid,
    pub artwork_id: String,
    pub user_id: String,
    pub body: String,
    pub posted_at_ms: i64,
}

/// A deletion to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub comment_id: Uuid,
    pub deleted_by: String,
    pub deleted_at_ms: i64,
}

#[derive(Debug, Clone)]
enum Fact {
    Posted(CommentRow),
    Deleted(Deletion),
}

/// Comment events of one batch, in log order.
#[derive(Debug, Default)]
pub struct CommentBatch {
    facts: Vec<Fact>,
}

/// What to write for one batch: inserts first, then deletions.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CommentPlan {
    pub inserts: Vec<CommentRow>,
    pub deletions: Vec<Deletion>,
    /// Change of the comment count per artwork (non-zero only).
    pub count_deltas: BTreeMap<String, i64>,
}

impl CommentBatch {
    pub fn add_posted(&mut self, e: &CommentPosted) {
        self.facts.push(Fact::Posted(CommentRow {
            comment_id: e.comment_id,
            artwork_id: e.artwork_id.as_str().to_owned(),
            user_id: e.user_id.as_str().to_owned(),
            body: e.body.as_str().to_owned(),
            posted_at_ms: e.occurred_at,
        }));
    }

    pub fn add_deleted(&mut self, e: &CommentDeleted) {
        self.facts.push(Fact::Deleted(Deletion {
            comment_id: e.comment_id,
            deleted_by: e.deleted_by.as_str().to_owned(),
            deleted_at_ms: e.occurred_at,
        }));
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    /// Every comment the batch touches.
    pub fn ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .facts
            .iter()
            .map(|f| match f {
                Fact::Posted(c) => c.comment_id,
                Fact::Deleted(d) => d.comment_id,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Combines the batch with the stored comments it touches. A second posting of a known
    /// comment, a second deletion, and the deletion of an unknown comment change nothing.
    pub fn plan(&self, stored: &HashMap<Uuid, StoredComment>) -> CommentPlan {
        let mut state = stored.clone();
        let mut plan = CommentPlan::default();
        for fact in &self.facts {
            match fact {
                Fact::Posted(c) => {
                    if state.contains_key(&c.comment_id) {
                        continue;
                    }
                    state.insert(
                        c.comment_id,
                        StoredComment {
                            artwork_id: c.artwork_id.clone(),
                            deleted: false,
                        },
                    );
                    *plan.count_deltas.entry(c.artwork_id.clone()).or_insert(0) += 1;
                    plan.inserts.push(c.clone());
                }
                Fact::Deleted(d) => {
                    let Some(known) = state.get_mut(&d.comment_id) else {
                        continue;
                    };
                    if known.deleted {
                        continue;
                    }
                    known.deleted = true;
                    *plan
                        .count_deltas
                        .entry(known.artwork_id.clone())
                        .or_insert(0) -= 1;
                    plan.deletions.push(d.clone());
                }
            }
        }
        plan.count_deltas.retain(|_, d| *d != 0);
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gallery_schemas::{ArtworkId, CommentBody, UserId};
    use proptest::prelude::*;

    fn posted(id: Uuid, artwork: &str) -> CommentPosted {
        CommentPosted {
            event_id: Uuid::now_v7(),
            comment_id: id,
            artwork_id: ArtworkId::parse(artwork).unwrap_or_else(|e| unreachable!("{e}")),
            user_id: UserId::parse("ada").unwrap_or_else(|e| unreachable!("{e}")),
            body: CommentBody::parse("nice").unwrap_or_else(|e| unreachable!("{e}")),
            occurred_at: 1,
        }
    }

    fn deleted(id: Uuid, artwork: &str) -> CommentDeleted {
        CommentDeleted {
            event_id: Uuid::now_v7(),
            comment_id: id,
            artwork_id: ArtworkId::parse(artwork).unwrap_or_else(|e| unreachable!("{e}")),
            deleted_by: UserId::parse("ada").unwrap_or_else(|e| unreachable!("{e}")),
            occurred_at: 2,
        }
    }

    fn apply(plan: &CommentPlan, stored: &mut HashMap<Uuid, StoredComment>) {
        for c in &plan.inserts {
            stored.insert(
                c.comment_id,
                StoredComment {
                    artwork_id: c.artwork_id.clone(),
                    deleted: false,
                },
            );
        }
        for d in &plan.deletions {
            if let Some(c) = stored.get_mut(&d.comment_id) {
                c.deleted = true;
            }
        }
    }

    #[test]
    fn posted_then_deleted_in_one_batch_counts_nothing() {
        let id = Uuid::now_v7();
        let mut batch = CommentBatch::default();
        batch.add_posted(&posted(id, "a"));
        batch.add_deleted(&deleted(id, "a"));
        let plan = batch.plan(&HashMap::new());
        assert!(plan.count_deltas.is_empty());
        assert_eq!((plan.inserts.len(), plan.deletions.len()), (1, 1));
    }

    #[test]
    fn deleting_an_unknown_or_deleted_comment_changes_nothing() {
        let id = Uuid::now_v7();
        let mut batch = CommentBatch::default();
        batch.add_deleted(&deleted(id, "a"));
        assert_eq!(batch.plan(&HashMap::new()), CommentPlan::default());
        let stored = [(
            id,
            StoredComment {
                artwork_id: "a".into(),
                deleted: true,
            },
        )]
        .into();
        assert_eq!(batch.plan(&stored), CommentPlan::default());
    }

    proptest! {
        /// Any batching, any replay: the count is the number of comments posted and not deleted.
        #[test]
        fn counts_equal_live_comments(
            ops in proptest::collection::vec((0usize..8, any::<bool>()), 0..50),
            cut in 1usize..6,
            replay in any::<bool>(),
        ) {
            let ids: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
            let mut events = vec![];
            let mut posted_ids = std::collections::HashSet::new();
            for (i, delete) in &ops {
                if *delete && posted_ids.contains(i) {
                    events.push((true, ids[*i]));
                } else {
                    posted_ids.insert(*i);
                    events.push((false, ids[*i]));
                }
            }
            let mut stored = HashMap::new();
            let mut count = 0i64;
            for chunk in events.chunks(cut) {
                let mut batch = CommentBatch::default();
                for (del, id) in chunk {
                    if *del { batch.add_deleted(&deleted(*id, "a")) } else { batch.add_posted(&posted(*id, "a")) }
                }
                for _ in 0..if replay { 2 } else { 1 } {
                    let plan = batch.plan(&stored);
                    count += plan.count_deltas.get("a").copied().unwrap_or(0);
                    apply(&plan, &mut stored);
                    prop_assert!(count >= 0);
                }
            }
            let live = stored.values().filter(|c| !c.deleted).count();
            prop_assert_eq!(count, i64::try_from(live).unwrap_or(-1));
        }
    }
}
