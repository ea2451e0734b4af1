//! The rows of the Scylla fold: what it takes (the state of an artwork's partition, the stored
//! rows a batch touches) and what it gives (the [`ScyllaPlan`] of a batch, every row with the
//! offset of the fact that decides it).

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use crate::fold::StatsDelta;
use crate::fold::comments;
use crate::fold::sets::{Position, SetEvent, SetFact, SetKey, SetKind};

/// An artwork's partition: its counts, its hourly net likes and views, and how far the
/// partition is folded (the offset of the next fact of the artwork's Kafka partition to fold).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArtworkState {
    pub likes: i64,
    pub favorites: i64,
    pub comments: i64,
    pub views: i64,
    pub like_hours: BTreeMap<i64, i64>,
    pub view_hours: BTreeMap<i64, i64>,
    pub next_offset: i64,
}

impl ArtworkState {
    pub(super) fn plus(&self, d: StatsDelta) -> Self {
        Self {
            likes: self.likes + d.likes,
            favorites: self.favorites + d.favorites,
            comments: self.comments + d.comments,
            views: self.views + d.views,
            ..self.clone()
        }
    }
}

/// One value per kind of set fact.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PerSet<T> {
    pub likes: T,
    pub favorites: T,
}

impl<T> PerSet<T> {
    pub fn get(&self, kind: SetKind) -> &T {
        match kind {
            SetKind::Like => &self.likes,
            SetKind::Favorite => &self.favorites,
        }
    }

    pub fn get_mut(&mut self, kind: SetKind) -> &mut T {
        match kind {
            SetKind::Like => &mut self.likes,
            SetKind::Favorite => &mut self.favorites,
        }
    }
}

/// A row of `comments` as read by id. Every column may be missing: a deletion's cells can
/// land without the posting's when a batch is interrupted (the replay writes the posting
/// again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentRow {
    pub comment_id: Uuid,
    pub artwork_id: Option<String>,
    pub posted_at_ms: Option<i64>,
    pub posted_offset: Option<i64>,
    pub deleted_offset: Option<i64>,
}

/// A row of `artwork_views`: a view and the offset of its fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewRow {
    pub artwork_id: String,
    pub event_id: Uuid,
    pub offset: i64,
}

/// What the store holds of the rows a batch touches, read before folding it.
#[derive(Debug, Default, Clone)]
pub struct StoredRows {
    /// The current fact of each pair the batch touches (rows of the artworks' partitions,
    /// written together with `next_offset`, so as of it).
    pub facts: PerSet<HashMap<SetKey, SetFact>>,
    /// Where the batch's events were first applied, as stored, whatever their stamp (possibly
    /// by an interrupted run of this batch: the same positions, so the replay applies them
    /// again).
    pub applied: PerSet<HashMap<SetEvent, Position>>,
    /// The rows of the comments the batch touches.
    pub comments: Vec<CommentRow>,
    /// The rows of the views the batch touches.
    pub views: Vec<ViewRow>,
}

/// Everything to write for one batch, in the order to write it: the derived rows and the
/// positions first (if the process dies before an artwork's partition is written, the replay
/// recomputes and rewrites them identically), then each artwork's partition, then the
/// popularity rows.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScyllaPlan {
    /// Rows outside the artworks' partitions: the users' lists, comments, views.
    pub derived: Vec<DerivedRow>,
    /// The events the batch applies first and where, per artwork.
    pub positions: BTreeMap<String, Vec<PositionRow>>,
    /// Each folded artwork's partition, written at once.
    pub partitions: BTreeMap<String, PartitionWrite>,
    /// The popularity rows, copies of the partitions' hourly values.
    pub popular: Vec<PopularRow>,
}

/// A row outside the artworks' partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerivedRow {
    /// An entry of a user's list of likes or favorites.
    InsertMark(MarkEntry),
    /// An entry to remove from a user's list.
    DeleteMark(MarkEntry),
    /// A comment, and its entry in its artwork's list, decided by the posting at
    /// `posted_offset`.
    Comment {
        comment: comments::CommentRow,
        posted_offset: i64,
    },
    /// A comment's deletion, decided by the fact at `deleted_offset`, and the removal of its
    /// entry (artwork, posted at) from its artwork's list when the entry is known.
    CommentDeleted {
        comment_id: Uuid,
        deleted_offset: i64,
        listed: Option<(String, i64)>,
    },
    /// A view, decided by its fact at `offset`.
    View {
        artwork_id: String,
        event_id: Uuid,
        offset: i64,
    },
}

/// An entry of a user's list of likes (or favorites): the artwork at the time of the fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkEntry {
    pub kind: SetKind,
    pub user: String,
    pub artwork: String,
    pub at_ms: i64,
    /// The offset of the pair's last fact in the batch.
    pub decided_at: i64,
}

/// Where a like or favorite event was first applied. Decided by that message's offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRow {
    pub kind: SetKind,
    pub event_id: Uuid,
    pub at: Position,
}

/// An artwork's partition after the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionWrite {
    /// The offset of the artwork's last fact in the batch: decides the counts and the hours.
    pub decided_at: i64,
    /// The counts, hours and `next_offset` after the batch.
    pub state: ArtworkState,
    /// How the hourly values change.
    pub hours: HourChanges,
    /// The pairs' new current facts.
    pub pairs: Vec<PairRow>,
}

/// The hourly net likes and views of an artwork that change, and the hours to drop.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HourChanges {
    pub likes_changed: BTreeMap<i64, i64>,
    pub views_changed: BTreeMap<i64, i64>,
    pub likes_dropped: Vec<i64>,
    pub views_dropped: Vec<i64>,
}

/// A pair's new current like (or favorite), in its artwork's partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairRow {
    pub kind: SetKind,
    pub user: String,
    pub fact: SetFact,
    /// The offset of the pair's last fact in the batch.
    pub decided_at: i64,
}

/// An artwork's net likes and views in one hour, for the popularity reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopularRow {
    pub hour_ms: i64,
    pub artwork_id: String,
    pub net_likes: i64,
    pub views: i64,
    /// The offset of the last fact folded into the artwork's partition.
    pub decided_at: i64,
}
