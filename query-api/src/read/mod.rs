//! The read model as the GraphQL API sees it: one function per query, each a single SQL
//! statement, counted, so tests can hold the number of statements of a request constant.
//!
//! The interaction reads ([`ReadModel::stats`], [`ReadModel::flags`],
//! [`ReadModel::comments_page`], [`ReadModel::marks_page`]) come from the store the
//! deployment reads interactions from ([`InteractionStore`]): Postgres, or Scylla. Everything
//! else always comes from Postgres. Resolvers see one `ReadModel` either way.

pub(crate) mod records;
mod scylla;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_postgres::Pool;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::error::QueryError;
use gallery_infra::Columns;
pub use records::{
    ArtworkRow, CommentRow, ExhibitionRow, JobResult, JobRow, MarkRecord, Progress, Stats,
    StoredImage,
};
pub use scylla::ScyllaReads;

/// How many read-model statements the API has run (the N+1 guard of the tests).
#[derive(Debug, Clone, Default)]
pub struct StatementCounter(Arc<AtomicUsize>);

impl StatementCounter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A keyset position: the sort time (milliseconds) and the id that breaks ties.
pub type After<I> = Option<(i64, I)>;

/// Which set fact a list is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Likes,
    Favorites,
}

/// What popularity counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Likes,
    Views,
}

/// Where the interaction reads come from.
#[derive(Debug, Clone, Default)]
pub enum InteractionStore {
    /// The Postgres read model, like every other read.
    #[default]
    Postgres,
    /// The Scylla read model.
    Scylla(Arc<ScyllaReads>),
}

/// The read model behind a connection pool.
#[derive(Debug, Clone)]
pub struct ReadModel {
    pool: Pool,
    interactions: InteractionStore,
    statements: StatementCounter,
}

use gallery_projections::{ARTWORK_COLUMNS, COMMENT_COLUMNS, EXHIBITION_COLUMNS, JOB_COLUMNS};

impl ReadModel {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            interactions: InteractionStore::Postgres,
            statements: StatementCounter::default(),
        }
    }

    /// Reads the interactions from `store` instead.
    pub fn with_interactions(mut self, store: InteractionStore) -> Self {
        self.interactions = store;
        self
    }

    /// The counter of statements run through this read model (shared by its clones).
    pub fn statements(&self) -> StatementCounter {
        self.statements.clone()
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, QueryError> {
        self.statements.bump();
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(sql).await?;
        Ok(client.query(&statement, params).await?)
    }

    /// The read model's next offset of each of `partitions` it has stored: the Postgres
    /// projection's, and where the interactions are read from Scylla, for the topics its
    /// projector folds, the smaller of both (a partition Scylla has not stored is left out).
    pub async fn projected(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<std::collections::HashMap<(String, i32), i64>, QueryError> {
        let mut stored = self.postgres_projected(partitions).await?;
        if let InteractionStore::Scylla(reads) = &self.interactions
            && stored.keys().any(|(topic, _)| reads.folds(topic))
        {
            self.statements.bump();
            let scylla = reads.projected().await?;
            stored.retain(|partition, next| {
                if !reads.folds(&partition.0) {
                    return true;
                }
                match scylla.get(partition) {
                    Some(theirs) => {
                        *next = (*next).min(*theirs);
                        true
                    }
                    None => false,
                }
            });
        }
        Ok(stored)
    }

    async fn postgres_projected(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<std::collections::HashMap<(String, i32), i64>, QueryError> {
        let (topics, numbers): (Vec<&str>, Vec<i32>) =
            partitions.iter().map(|(t, p)| (t.as_str(), *p)).unzip();
        let rows = self
            .query(
                include_str!("../../sql/projected_offsets.sql"),
                &[&topics, &numbers, &crate::changes::PROJECTION],
            )
            .await?;
        Ok(gallery_projections::offsets_of(&rows)?)
    }

    pub async fn artworks(&self, ids: &[String]) -> Result<Vec<ArtworkRow>, QueryError> {
        let sql = format!("SELECT {ARTWORK_COLUMNS} FROM artworks WHERE artwork_id = ANY($1)");
        let rows = self.query(&sql, &[&ids]).await?;
        Ok(rows
            .iter()
            .map(gallery_projections::read_artwork_row)
            .collect::<Result<_, _>>()?)
    }

    /// Artworks not removed, newest first, optionally of one exhibition.
    pub async fn artworks_page(
        &self,
        exhibition: Option<Uuid>,
        after: After<String>,
        limit: i64,
    ) -> Result<Vec<ArtworkRow>, QueryError> {
        let (at, id) = after.unzip();
        let sql = format!(
            "SELECT {ARTWORK_COLUMNS} FROM artworks
             WHERE NOT removed AND ($1::uuid IS NULL OR exhibition_id = $1)
               AND ($2::bigint IS NULL OR (added_at_ms, artwork_id) < ($2, $3::text))
             ORDER BY added_at_ms DESC, artwork_id DESC LIMIT $4"
        );
        let rows = self.query(&sql, &[&exhibition, &at, &id, &limit]).await?;
        Ok(rows
            .iter()
            .map(gallery_projections::read_artwork_row)
            .collect::<Result<_, _>>()?)
    }

    pub async fn exhibitions(&self, ids: &[Uuid]) -> Result<Vec<ExhibitionRow>, QueryError> {
        let sql =
            format!("SELECT {EXHIBITION_COLUMNS} FROM exhibitions WHERE exhibition_id = ANY($1)");
        let rows = self.query(&sql, &[&ids]).await?;
        rows.iter()
            .map(|r| Ok(gallery_projections::read_exhibition_row(r)?))
            .collect()
    }

    /// Exhibitions by schedule (opening first), optionally in one status.
    pub async fn exhibitions_page(
        &self,
        status: Option<&str>,
        after: After<Uuid>,
        limit: i64,
    ) -> Result<Vec<ExhibitionRow>, QueryError> {
        let (at, id) = after.unzip();
        let sql = format!(
            "SELECT {EXHIBITION_COLUMNS} FROM exhibitions
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::bigint IS NULL OR (opens_at_ms, exhibition_id) > ($2, $3::uuid))
             ORDER BY opens_at_ms, exhibition_id LIMIT $4"
        );
        let rows = self.query(&sql, &[&status, &at, &id, &limit]).await?;
        rows.iter()
            .map(|r| Ok(gallery_projections::read_exhibition_row(r)?))
            .collect()
    }

    pub async fn stats(&self, ids: &[String]) -> Result<Vec<(String, Stats)>, QueryError> {
        if let InteractionStore::Scylla(s) = &self.interactions {
            self.statements.bump();
            return s.stats(ids).await;
        }
        let rows = self
            .query(include_str!("../../sql/artwork_stats.sql"), &[&ids])
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.column("artwork_id")?,
                    Stats {
                        likes: r.column("like_count")?,
                        favorites: r.column("favorite_count")?,
                        comments: r.column("comment_count")?,
                        views: r.column("view_count")?,
                    },
                ))
            })
            .collect()
    }

    /// (liked, favorited) of (user, artwork) pairs; pairs never set are left out.
    pub async fn flags(
        &self,
        pairs: &[(String, String)],
    ) -> Result<Vec<((String, String), (bool, bool))>, QueryError> {
        if let InteractionStore::Scylla(s) = &self.interactions {
            self.statements.bump();
            return s.flags(pairs).await;
        }
        let (users, artworks): (Vec<&str>, Vec<&str>) =
            pairs.iter().map(|(u, a)| (u.as_str(), a.as_str())).unzip();
        let rows = self
            .query(
                include_str!("../../sql/user_flags.sql"),
                &[&users, &artworks],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    (r.column("user_id")?, r.column("artwork_id")?),
                    (r.column("liked")?, r.column("favorited")?),
                ))
            })
            .collect()
    }

    /// Comments of an artwork not deleted, newest first.
    pub async fn comments_page(
        &self,
        artwork: &str,
        after: After<Uuid>,
        limit: i64,
    ) -> Result<Vec<CommentRow>, QueryError> {
        if let InteractionStore::Scylla(s) = &self.interactions {
            self.statements.bump();
            return s.comments_page(artwork, after, limit).await;
        }
        let (at, id) = after.unzip();
        let sql = format!(
            "SELECT {COMMENT_COLUMNS} FROM comments
             WHERE artwork_id = $1 AND NOT deleted
               AND ($2::bigint IS NULL OR (posted_at_ms, comment_id) < ($2, $3::uuid))
             ORDER BY posted_at_ms DESC, comment_id DESC LIMIT $4"
        );
        let rows = self.query(&sql, &[&artwork, &at, &id, &limit]).await?;
        Ok(rows
            .iter()
            .map(gallery_projections::read_comment_row)
            .collect::<Result<_, _>>()?)
    }

    /// The artworks a user likes (or favorites) now, newest first.
    pub async fn marks_page(
        &self,
        mark: Mark,
        user: &str,
        after: After<String>,
        limit: i64,
    ) -> Result<Vec<MarkRecord>, QueryError> {
        if let InteractionStore::Scylla(s) = &self.interactions {
            self.statements.bump();
            return s.marks_page(mark, user, after, limit).await;
        }
        let (at, id) = after.unzip();
        let sql = match mark {
            Mark::Likes => {
                include_str!("../../sql/liked_page.sql")
            }
            Mark::Favorites => {
                include_str!("../../sql/favorited_page.sql")
            }
        };
        let rows = self.query(sql, &[&user, &at, &id, &limit]).await?;
        rows.iter()
            .map(|r| {
                Ok(MarkRecord {
                    artwork_id: r.column("artwork_id")?,
                    at_ms: r.column("occurred_at_ms")?,
                })
            })
            .collect()
    }

    /// A user's generation jobs, newest first.
    pub async fn jobs_page(
        &self,
        user: &str,
        after: After<Uuid>,
        limit: i64,
    ) -> Result<Vec<JobRow>, QueryError> {
        let (at, id) = after.unzip();
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM generation_jobs
             WHERE user_id = $1
               AND ($2::bigint IS NULL OR (requested_at_ms, request_id) < ($2, $3::uuid))
             ORDER BY requested_at_ms DESC, request_id DESC LIMIT $4"
        );
        let rows = self.query(&sql, &[&user, &at, &id, &limit]).await?;
        rows.iter()
            .map(|r| Ok(gallery_projections::read_job_row(r)?))
            .collect()
    }

    pub async fn job(&self, id: Uuid) -> Result<Option<JobRow>, QueryError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM generation_jobs WHERE request_id = $1");
        let rows = self.query(&sql, &[&id]).await?;
        rows.first()
            .map(|r| Ok(gallery_projections::read_job_row(r)?))
            .transpose()
    }

    /// Artworks by net likes (or views) in the hour buckets from `since_ms` on, most first;
    /// artworks with no net gain are left out. `now_ms` is the reader's clock.
    pub async fn popular(
        &self,
        measure: Measure,
        since_ms: i64,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, QueryError> {
        if let InteractionStore::Scylla(s) = &self.interactions {
            self.statements.bump();
            // Scylla keeps one partition per hour: read up to a day past the clock, for
            // events stamped by a clock slightly ahead of this one.
            return s
                .popular(measure, since_ms, now_ms + 86_400_000, limit)
                .await;
        }
        let sql = match measure {
            Measure::Likes => {
                include_str!("../../sql/popular_by_likes.sql")
            }
            Measure::Views => {
                include_str!("../../sql/popular_by_views.sql")
            }
        };
        let rows = self.query(sql, &[&since_ms, &limit]).await?;
        rows.iter()
            .map(|r| Ok((r.column("artwork_id")?, r.column("score")?)))
            .collect()
    }
}
