//! What the Scylla projector reads before folding a batch: the artworks' partitions, and the
//! stored rows of the pairs, events, comments and views the batch touches, as the fold
//! ([`crate::fold::scylla`]) takes them.

use std::collections::{BTreeMap, HashMap};

use futures::future::try_join_all;
use scylla::response::query_result::QueryRowsResult;
use scylla::serialize::row::SerializeRow;
use scylla::serialize::value::SerializeValue;
use scylla::statement::prepared::PreparedStatement;
use uuid::Uuid;

use super::store::ScyllaStore;
use crate::error::ProjectionError;
use crate::fold::scylla::{
    ArtworkState, CommentRow, InteractionBatch, PerSet, StoredRows, ViewRow,
};
use crate::fold::{Position, SetEvent, SetFact, SetKey, SetKind};

/// Partition keys in one `IN` at most: Scylla refuses more than 100 by default
/// (`max_partition_key_restrictions_per_query`), and a batch may touch many more artworks or
/// comments.
const KEYS_PER_IN: usize = 100;

impl ScyllaStore {
    /// The stored rows `batch` touches.
    pub(super) async fn read_stored(
        &self,
        batch: &InteractionBatch<'_>,
    ) -> Result<StoredRows, ProjectionError> {
        let (pairs, events) = (batch.pairs(), batch.events());
        let (facts, applied) =
            futures::try_join!(self.read_marks(&pairs), self.read_positions(&events))?;
        let comments = self.read_comments(&batch.comment_ids()).await?;
        let views = self.read_views(&batch.view_ids()).await?;
        Ok(StoredRows {
            facts,
            applied,
            comments,
            views,
        })
    }

    /// Runs `statement`, whose one bind marker is an `IN` of partition keys, over `keys` in
    /// groups of at most [`KEYS_PER_IN`], the groups at once.
    async fn select_partitions<K: SerializeValue + Sync>(
        &self,
        statement: &PreparedStatement,
        keys: &[K],
        what: &'static str,
    ) -> Result<Vec<QueryRowsResult>, ProjectionError> {
        let reads = keys
            .chunks(KEYS_PER_IN)
            .map(|group| self.select(statement, (group,), what));
        try_join_all(reads).await
    }

    /// Runs `statement` with `values`: its rows.
    pub(super) async fn select(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
        what: &'static str,
    ) -> Result<QueryRowsResult, ProjectionError> {
        self.session
            .execute_unpaged(statement, values)
            .await
            .map_err(ProjectionError::cql(what))?
            .into_rows_result()
            .map_err(ProjectionError::cql(what))
    }

    /// The partitions of `artworks` as stored (an artwork never written has none).
    pub(super) async fn read_counts(
        &self,
        artworks: &[String],
    ) -> Result<HashMap<String, ArtworkState>, ProjectionError> {
        let results = self
            .select_partitions(&self.statements.read_counts, artworks, "read counts")
            .await?;
        let mut out = HashMap::new();
        type Hours = Option<BTreeMap<i64, i64>>;
        type Row = (
            String,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Hours,
            Hours,
        );
        for rows in &results {
            for row in rows
                .rows::<Row>()
                .map_err(ProjectionError::cql("read counts"))?
            {
                let (a, likes, favorites, comments, views, next, like_hours, view_hours) =
                    row.map_err(ProjectionError::cql("read counts"))?;
                let state = ArtworkState {
                    likes: likes.unwrap_or(0),
                    favorites: favorites.unwrap_or(0),
                    comments: comments.unwrap_or(0),
                    views: views.unwrap_or(0),
                    like_hours: like_hours.unwrap_or_default(),
                    view_hours: view_hours.unwrap_or_default(),
                    next_offset: next.unwrap_or(0),
                };
                out.insert(a, state);
            }
        }
        Ok(out)
    }

    /// The like and favorite state of (artwork, user) pairs, as of the partition's offset.
    async fn read_marks(
        &self,
        pairs: &BTreeMap<String, Vec<String>>,
    ) -> Result<PerSet<HashMap<SetKey, SetFact>>, ProjectionError> {
        let reads = pairs.iter().map(|(artwork, users)| async move {
            let rows = self
                .select(
                    &self.statements.read_marks,
                    (artwork, users),
                    "read like states",
                )
                .await?;
            type Row = (
                String,
                Option<bool>,
                Option<Uuid>,
                Option<i64>,
                Option<bool>,
                Option<Uuid>,
                Option<i64>,
            );
            let mut out = Vec::new();
            for row in rows
                .rows::<Row>()
                .map_err(ProjectionError::cql("read like states"))?
            {
                out.push((
                    artwork.clone(),
                    row.map_err(ProjectionError::cql("read like states"))?,
                ));
            }
            Ok::<_, ProjectionError>(out)
        });
        let mut facts = PerSet::<HashMap<SetKey, SetFact>>::default();
        for (artwork, (user, liked, like_event, liked_at, favorited, favorite_event, fav_at)) in
            try_join_all(reads).await?.into_iter().flatten()
        {
            let key = (artwork, user);
            let stored = |on, event_id, at: Option<i64>| SetFact {
                on,
                event_id,
                occurred_at_ms: at.unwrap_or(0),
            };
            if let (Some(on), Some(e)) = (liked, like_event) {
                facts.likes.insert(key.clone(), stored(on, e, liked_at));
            }
            if let (Some(on), Some(e)) = (favorited, favorite_event) {
                facts.favorites.insert(key, stored(on, e, fav_at));
            }
        }
        Ok(facts)
    }

    /// Where the events `events` (per artwork) were first applied, as stored.
    async fn read_positions(
        &self,
        events: &BTreeMap<String, Vec<Uuid>>,
    ) -> Result<PerSet<HashMap<SetEvent, Position>>, ProjectionError> {
        let what = "read set event positions";
        let reads = events.iter().map(|(artwork, ids)| async move {
            let rows = self
                .select(&self.statements.read_positions, (artwork, ids), what)
                .await?;
            type Row = (Uuid, String, Option<String>, Option<i32>, Option<i64>);
            let mut out = Vec::new();
            for row in rows.rows::<Row>().map_err(ProjectionError::cql(what))? {
                let (event, mark, topic, partition, offset) =
                    row.map_err(ProjectionError::cql(what))?;
                // One statement writes every cell of a row, so none is missing.
                let (Some(topic), Some(partition), Some(offset)) = (topic, partition, offset)
                else {
                    continue;
                };
                let at = Position {
                    topic,
                    partition,
                    offset,
                };
                out.push((mark, (artwork.clone(), event), at));
            }
            Ok::<_, ProjectionError>(out)
        });
        let mut applied = PerSet::<HashMap<SetEvent, Position>>::default();
        for (mark, event, at) in try_join_all(reads).await?.into_iter().flatten() {
            // A mark no version of this projector writes is no kind.
            if let Some(kind) = SetKind::from_mark(&mark) {
                applied.get_mut(kind).insert(event, at);
            }
        }
        Ok(applied)
    }

    /// The rows of the comments `ids`.
    async fn read_comments(&self, ids: &[Uuid]) -> Result<Vec<CommentRow>, ProjectionError> {
        let results = self
            .select_partitions(&self.statements.read_comments, ids, "read comments")
            .await?;
        type Row = (Uuid, Option<String>, Option<i64>, Option<i64>, Option<i64>);
        let mut out = Vec::new();
        for row in results
            .iter()
            .map(|rows| {
                rows.rows::<Row>()
                    .map_err(ProjectionError::cql("read comments"))
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
        {
            let (comment_id, artwork_id, posted_at_ms, posted_offset, deleted_offset) =
                row.map_err(ProjectionError::cql("read comments"))?;
            out.push(CommentRow {
                comment_id,
                artwork_id,
                posted_at_ms,
                posted_offset,
                deleted_offset,
            });
        }
        Ok(out)
    }

    /// The rows of the views `ids` (per artwork).
    async fn read_views(
        &self,
        ids: &BTreeMap<String, Vec<Uuid>>,
    ) -> Result<Vec<ViewRow>, ProjectionError> {
        let reads = ids.iter().map(|(artwork, ids)| async move {
            let rows = self
                .select(&self.statements.read_views, (artwork, ids), "read views")
                .await?;
            let mut out = Vec::new();
            for row in rows
                .rows::<(Uuid, i64)>()
                .map_err(ProjectionError::cql("read views"))?
            {
                let (event_id, offset) = row.map_err(ProjectionError::cql("read views"))?;
                out.push(ViewRow {
                    artwork_id: artwork.clone(),
                    event_id,
                    offset,
                });
            }
            Ok::<_, ProjectionError>(out)
        });
        Ok(try_join_all(reads).await?.into_iter().flatten().collect())
    }
}
