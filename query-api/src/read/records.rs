//! Rows of the read model, as the queries return them.

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
    pub(super) fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            exhibition_id: r.get(1),
            title: r.get(2),
            artist: r.get(3),
            year: r.get(4),
            style: r.get(5),
            description: r.get(6),
            image_key: r.get(7),
            image_content_type: r.get(8),
            image_width: r.get(9),
            image_height: r.get(10),
            added_at_ms: r.get(11),
            removed: r.get(12),
        }
    }
}

/// Where an exhibition is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Draft,
    Published,
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Published => "published",
            Status::Closed => "closed",
        }
    }
}

/// An exhibition.
#[derive(Debug, Clone)]
pub struct ExhibitionRecord {
    pub id: Uuid,
    pub curator_id: String,
    pub title: String,
    pub description: String,
    pub opens_at_ms: i64,
    pub closes_at_ms: i64,
    pub status: Status,
    pub created_at_ms: i64,
    pub published_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
}

impl ExhibitionRecord {
    pub(super) fn from_row(r: &Row) -> Result<Self, QueryError> {
        let status: String = r.get(6);
        let status = match status.as_str() {
            "draft" => Status::Draft,
            "published" => Status::Published,
            "closed" => Status::Closed,
            _ => {
                return Err(QueryError::Stored {
                    column: "exhibitions.status",
                    value: status,
                });
            }
        };
        Ok(Self {
            id: r.get(0),
            curator_id: r.get(1),
            title: r.get(2),
            description: r.get(3),
            opens_at_ms: r.get(4),
            closes_at_ms: r.get(5),
            status,
            created_at_ms: r.get(7),
            published_at_ms: r.get(8),
            closed_at_ms: r.get(9),
        })
    }
}

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
    pub(super) fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            artwork_id: r.get(1),
            user_id: r.get(2),
            body: r.get(3),
            posted_at_ms: r.get(4),
        }
    }
}

/// An artwork a user likes or favorites, and since when.
#[derive(Debug, Clone)]
pub struct MarkRecord {
    pub artwork_id: String,
    pub at_ms: i64,
}

/// A generation job.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: Uuid,
    pub user_id: String,
    pub mode: String,
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub style: String,
    pub seed: i64,
    pub steps: i32,
    pub width: i32,
    pub height: i32,
    pub degraded: bool,
    pub status: String,
    pub requested_at_ms: i64,
    pub cancelled_at_ms: Option<i64>,
    pub progress: Option<f32>,
    pub result_image_keys: Vec<String>,
    pub failure_reason: Option<String>,
}

impl JobRecord {
    pub(super) fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            user_id: r.get(1),
            mode: r.get(2),
            prompt: r.get(3),
            negative_prompt: r.get(4),
            style: r.get(5),
            seed: r.get(6),
            steps: r.get(7),
            width: r.get(8),
            height: r.get(9),
            degraded: r.get(10),
            status: r.get(11),
            requested_at_ms: r.get(12),
            cancelled_at_ms: r.get(13),
            progress: r.get(14),
            result_image_keys: r.get(15),
            failure_reason: r.get(16),
        }
    }
}
