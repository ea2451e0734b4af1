//! The interaction reads (counts, viewer flags, the viewer's likes and favorites, an artwork's
//! comments) from the Scylla read model, with the same answers as from Postgres. Each
//! function is one statement (the flags: one per viewer), counted like the SQL ones.

use std::collections::{BTreeMap, HashMap};

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use uuid::Uuid;

use super::{After, CommentRow, Mark, MarkRecord, Measure, Stats};
use gallery_infra::CqlError;

use crate::error::QueryError;

/// Prepared statements over one keyspace.
#[derive(Debug)]
pub struct ScyllaReads {
    session: Session,
    stats: PreparedStatement,
    flags: PreparedStatement,
    comments_first: PreparedStatement,
    comments_after: PreparedStatement,
    marks_first: PreparedStatement,
    marks_after: PreparedStatement,
    popular: PreparedStatement,
    offsets: PreparedStatement,
    /// The topics the Scylla projector folds (its offsets tell what Scylla holds of them).
    folding: Vec<String>,
}

fn cql<E: Into<CqlError>>(e: E) -> QueryError {
    QueryError::Cql(Box::new(e.into()))
}

fn limit(limit: i64) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

impl ScyllaReads {
    /// Prepares the statements over `keyspace` (created by the projections' migrations; the
    /// name is checked by the configuration).
    pub async fn new(session: Session, keyspace: &str) -> Result<Self, QueryError> {
        let prepare = |cql_text: &str| {
            let text = cql_text.replace("{ks}", keyspace);
            let session = &session;
            async move { session.prepare(text).await.map_err(cql) }
        };
        let stats = prepare(
            "SELECT artwork_id, likes, favorites, comments, views FROM {ks}.artwork_state
             WHERE artwork_id IN ? PER PARTITION LIMIT 1",
        )
        .await?;
        let flags = prepare(
            "SELECT artwork_id, liked, favorited FROM {ks}.artwork_state
             WHERE artwork_id IN ? AND user_id = ?",
        )
        .await?;
        let comments_first = prepare(
            "SELECT comment_id, user_id, body, posted_at_ms FROM {ks}.artwork_comments
             WHERE artwork_id = ? LIMIT ?",
        )
        .await?;
        let comments_after = prepare(
            "SELECT comment_id, user_id, body, posted_at_ms FROM {ks}.artwork_comments
             WHERE artwork_id = ? AND (posted_at_ms, comment_id) < (?, ?) LIMIT ?",
        )
        .await?;
        let marks_first = prepare(
            "SELECT artwork_id, at_ms FROM {ks}.user_marks WHERE user_id = ? AND mark = ? LIMIT ?",
        )
        .await?;
        let marks_after = prepare(
            "SELECT artwork_id, at_ms FROM {ks}.user_marks WHERE user_id = ? AND mark = ?
             AND (at_ms, artwork_id) < (?, ?) LIMIT ?",
        )
        .await?;
        let popular = prepare(
            "SELECT artwork_id, net_likes, views FROM {ks}.popular_hours WHERE hour_ms IN ?",
        )
        .await?;
        let offsets = prepare(
            "SELECT topic, partition, next_offset FROM {ks}.projection_offsets
             WHERE projection = ?",
        )
        .await?;
        Ok(Self {
            session,
            popular,
            offsets,
            folding: Vec::new(),
            stats,
            flags,
            comments_first,
            comments_after,
            marks_first,
            marks_after,
        })
    }

    /// Tells that the Scylla projector folds `topics`: a position in them is in the read model
    /// once Scylla holds it too (see [`ScyllaReads::projected`]).
    pub fn folding(mut self, topics: Vec<String>) -> Self {
        self.folding = topics;
        self
    }

    /// Whether the Scylla projector folds `topic`.
    pub(super) fn folds(&self, topic: &str) -> bool {
        self.folding.iter().any(|t| t == topic)
    }

    /// The Scylla projection's stored next offset of every partition it has read.
    pub(super) async fn projected(&self) -> Result<HashMap<(String, i32), i64>, QueryError> {
        let rows = self
            .session
            .execute_unpaged(&self.offsets, (crate::changes::PROJECTION,))
            .await
            .map_err(cql)?
            .into_rows_result()
            .map_err(cql)?;
        let mut out = HashMap::new();
        for row in rows.rows::<(String, i32, i64)>().map_err(cql)? {
            let (topic, partition, next) = row.map_err(cql)?;
            out.insert((topic, partition), next);
        }
        Ok(out)
    }

    /// Artworks by net likes (or views) in the hours from `since_ms` to `until_ms`, most
    /// first, ties by id; artworks with no net gain are left out.
    pub(super) async fn popular(
        &self,
        measure: Measure,
        since_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, QueryError> {
        const HOUR_MS: i64 = 3_600_000;
        let first = since_ms.div_euclid(HOUR_MS) + i64::from(since_ms.rem_euclid(HOUR_MS) != 0);
        let hours: Vec<i64> = (first..=until_ms.div_euclid(HOUR_MS))
            .map(|h| h * HOUR_MS)
            .collect();
        let mut scores: BTreeMap<String, i64> = BTreeMap::new();
        // One statement per day of hours keeps each `IN` list short.
        for day in hours.chunks(24) {
            let rows = self
                .session
                .execute_unpaged(&self.popular, (day,))
                .await
                .map_err(cql)?
                .into_rows_result()
                .map_err(cql)?;
            for row in rows
                .rows::<(String, Option<i64>, Option<i64>)>()
                .map_err(cql)?
            {
                let (artwork, likes, views) = row.map_err(cql)?;
                let value = match measure {
                    Measure::Likes => likes,
                    Measure::Views => views,
                };
                *scores.entry(artwork).or_insert(0) += value.unwrap_or(0);
            }
        }
        let mut ranked: Vec<(String, i64)> = scores.into_iter().filter(|(_, s)| *s > 0).collect();
        ranked.sort_by(|(a, x), (b, y)| y.cmp(x).then_with(|| a.cmp(b)));
        ranked.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(ranked)
    }

    pub(super) async fn stats(&self, ids: &[String]) -> Result<Vec<(String, Stats)>, QueryError> {
        let rows = self
            .session
            .execute_unpaged(&self.stats, (ids,))
            .await
            .map_err(cql)?
            .into_rows_result()
            .map_err(cql)?;
        type Row = (String, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
        let mut out = Vec::new();
        for row in rows.rows::<Row>().map_err(cql)? {
            let (id, likes, favorites, comments, views) = row.map_err(cql)?;
            let stats = Stats {
                likes: likes.unwrap_or(0),
                favorites: favorites.unwrap_or(0),
                comments: comments.unwrap_or(0),
                views: views.unwrap_or(0),
            };
            out.push((id, stats));
        }
        Ok(out)
    }

    /// (liked, favorited) of (user, artwork) pairs; every pair is answered.
    pub(super) async fn flags(
        &self,
        pairs: &[(String, String)],
    ) -> Result<Vec<((String, String), (bool, bool))>, QueryError> {
        let mut by_user: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (u, a) in pairs {
            by_user.entry(u.as_str()).or_default().push(a.as_str());
        }
        let mut found: HashMap<(String, String), (bool, bool)> = HashMap::new();
        for (user, artworks) in by_user {
            let rows = self
                .session
                .execute_unpaged(&self.flags, (&artworks, user))
                .await
                .map_err(cql)?
                .into_rows_result()
                .map_err(cql)?;
            for row in rows
                .rows::<(String, Option<bool>, Option<bool>)>()
                .map_err(cql)?
            {
                let (artwork, liked, favorited) = row.map_err(cql)?;
                found.insert(
                    (user.to_owned(), artwork),
                    (liked.unwrap_or(false), favorited.unwrap_or(false)),
                );
            }
        }
        Ok(pairs
            .iter()
            .map(|p| (p.clone(), found.get(p).copied().unwrap_or((false, false))))
            .collect())
    }

    pub(super) async fn comments_page(
        &self,
        artwork: &str,
        after: After<Uuid>,
        n: i64,
    ) -> Result<Vec<CommentRow>, QueryError> {
        let result = match after {
            None => {
                self.session
                    .execute_unpaged(&self.comments_first, (artwork, limit(n)))
                    .await
            }
            Some((at, id)) => {
                self.session
                    .execute_unpaged(
                        &self.comments_after,
                        (artwork, at, id.to_string(), limit(n)),
                    )
                    .await
            }
        };
        let rows = result.map_err(cql)?.into_rows_result().map_err(cql)?;
        let mut out = Vec::new();
        for row in rows.rows::<(String, String, String, i64)>().map_err(cql)? {
            let (id, user_id, body, posted_at_ms) = row.map_err(cql)?;
            let id = Uuid::parse_str(&id).map_err(|_| QueryError::Stored {
                table: "artwork_comments",
                column: "comment_id",
                value: id.clone(),
            })?;
            out.push(CommentRow {
                comment_id: id,
                artwork_id: artwork.to_owned(),
                user_id,
                body,
                posted_at_ms,
            });
        }
        Ok(out)
    }

    pub(super) async fn marks_page(
        &self,
        mark: Mark,
        user: &str,
        after: After<String>,
        n: i64,
    ) -> Result<Vec<MarkRecord>, QueryError> {
        let mark = match mark {
            Mark::Likes => "like",
            Mark::Favorites => "favorite",
        };
        let result = match after {
            None => {
                self.session
                    .execute_unpaged(&self.marks_first, (user, mark, limit(n)))
                    .await
            }
            Some((at, id)) => {
                self.session
                    .execute_unpaged(&self.marks_after, (user, mark, at, id, limit(n)))
                    .await
            }
        };
        let rows = result.map_err(cql)?.into_rows_result().map_err(cql)?;
        let mut out = Vec::new();
        for row in rows.rows::<(String, i64)>().map_err(cql)? {
            let (artwork_id, at_ms) = row.map_err(cql)?;
            out.push(MarkRecord { artwork_id, at_ms });
        }
        Ok(out)
    }
}
