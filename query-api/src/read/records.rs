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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Set by the worker's terminal event; the job never changes afterwards.
    pub finished_at_ms: Option<i64>,
    pub model: Option<String>,
    pub started_at_ms: Option<i64>,
    pub progress: Option<ProgressRecord>,
    pub result: Option<ResultRecord>,
    pub failure: Option<FailureRecord>,
}

/// Step `step` of `steps`, reported at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressRecord {
    pub step: i32,
    pub steps: i32,
    pub at_ms: i64,
}

/// An image in object storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub key: String,
    pub content_type: String,
    pub width: i32,
    pub height: i32,
    pub size_bytes: i64,
}

/// What a completed job produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRecord {
    pub image: ImageRecord,
    pub webp: ImageRecord,
    pub thumbnail: ImageRecord,
    pub cache_hit: bool,
    pub degraded: bool,
    pub steps: i32,
    pub duration_ms: i64,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRecord {
    pub code: String,
    pub reason: String,
}

/// The image of five columns from `at` on (key, content type, width, height, size).
fn image_at(r: &Row, at: usize) -> Option<ImageRecord> {
    Some(ImageRecord {
        key: r.get::<_, Option<String>>(at)?,
        content_type: r.get::<_, Option<String>>(at + 1)?,
        width: r.get::<_, Option<i32>>(at + 2)?,
        height: r.get::<_, Option<i32>>(at + 3)?,
        size_bytes: r.get::<_, Option<i64>>(at + 4)?,
    })
}

impl JobRecord {
    /// A row of `JOB_COLUMNS`.
    pub(super) fn from_row(r: &Row) -> Self {
        let progress = match (r.get(17), r.get(18), r.get(19)) {
            (Some(step), Some(steps), Some(at_ms)) => Some(ProgressRecord { step, steps, at_ms }),
            _ => None,
        };
        let result = match (image_at(r, 20), image_at(r, 25), image_at(r, 30)) {
            (Some(image), Some(webp), Some(thumbnail)) => Some(ResultRecord {
                image,
                webp,
                thumbnail,
                cache_hit: r.get::<_, Option<bool>>(35).unwrap_or(false),
                degraded: r.get::<_, Option<bool>>(36).unwrap_or(false),
                steps: r.get::<_, Option<i32>>(37).unwrap_or(0),
                duration_ms: r.get::<_, Option<i64>>(38).unwrap_or(0),
            }),
            _ => None,
        };
        let failure = match (r.get(39), r.get(40)) {
            (Some(code), Some(reason)) => Some(FailureRecord { code, reason }),
            _ => None,
        };
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
            finished_at_ms: r.get(14),
            model: r.get(15),
            started_at_ms: r.get(16),
            progress,
            result,
            failure,
        }
    }
}
