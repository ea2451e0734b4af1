//! Rows of the read model, as the queries return them.

use gallery_infra::Columns;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::QueryError;

/// An artwork of the catalog.
#[derive(Debug, Clone)]
pub struct ArtworkRecord {
    pub id: String,
    pub exhibition_id: Uuid,
    pub title: String,
    pub artist: String,
    pub year: Option<i32>,
    pub style: Option<String>,
    pub description: String,
    pub image_key: String,
    pub image_content_type: String,
    pub image_width: i32,
    pub image_height: i32,
    pub added_at_ms: i64,
    pub removed: bool,
}

impl ArtworkRecord {
    pub(super) fn from_row(r: &Row) -> Result<Self, QueryError> {
        Ok(Self {
            id: r.column("artwork_id")?,
            exhibition_id: r.column("exhibition_id")?,
            title: r.column("title")?,
            artist: r.column("artist")?,
            year: r.column("year")?,
            style: r.column("style")?,
            description: r.column("description")?,
            image_key: r.column("image_key")?,
            image_content_type: r.column("image_content_type")?,
            image_width: r.column("image_width")?,
            image_height: r.column("image_height")?,
            added_at_ms: r.column("added_at_ms")?,
            removed: r.column("removed")?,
        })
    }
}

/// An exhibition: the projector's row, read with its reader
/// (`gallery_projections::read_exhibition_row`).
pub use gallery_projections::fold::catalog::ExhibitionRow;

/// An artwork's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub likes: i64,
    pub favorites: i64,
    pub comments: i64,
    pub views: i64,
}

/// A comment.
#[derive(Debug, Clone)]
pub struct CommentRecord {
    pub id: Uuid,
    pub artwork_id: String,
    pub user_id: String,
    pub body: String,
    pub posted_at_ms: i64,
}

impl CommentRecord {
    pub(super) fn from_row(r: &Row) -> Result<Self, QueryError> {
        Ok(Self {
            id: r.column("comment_id")?,
            artwork_id: r.column("artwork_id")?,
            user_id: r.column("user_id")?,
            body: r.column("body")?,
            posted_at_ms: r.column("posted_at_ms")?,
        })
    }
}

/// An artwork a user likes or favorites, and since when.
#[derive(Debug, Clone)]
pub struct MarkRecord {
    pub artwork_id: String,
    pub at_ms: i64,
}

/// A generation job, its progress, result and failure: the projector's row, read with its
/// reader (`gallery_projections::read_job_row`).
pub use gallery_projections::fold::generation::{JobResult, JobRow, Progress, StoredImage};
