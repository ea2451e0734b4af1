//! Rows of the read model, as the queries return them.

use gallery_infra::Columns;
use gallery_schemas::{ExhibitionStatus, JobStatus};
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

/// An exhibition.
#[derive(Debug, Clone)]
pub struct ExhibitionRecord {
    pub id: Uuid,
    pub curator_id: String,
    pub title: String,
    pub description: String,
    pub opens_at_ms: i64,
    pub closes_at_ms: i64,
    pub status: ExhibitionStatus,
    pub created_at_ms: i64,
    pub published_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
}

impl ExhibitionRecord {
    pub(super) fn from_row(r: &Row) -> Result<Self, QueryError> {
        let status: String = r.column("status")?;
        let status = status.parse().map_err(|_| QueryError::Stored {
            column: "exhibitions.status",
            value: status,
        })?;
        Ok(Self {
            id: r.column("exhibition_id")?,
            curator_id: r.column("curator_id")?,
            title: r.column("title")?,
            description: r.column("description")?,
            opens_at_ms: r.column("opens_at_ms")?,
            closes_at_ms: r.column("closes_at_ms")?,
            status,
            created_at_ms: r.column("created_at_ms")?,
            published_at_ms: r.column("published_at_ms")?,
            closed_at_ms: r.column("closed_at_ms")?,
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
    pub status: JobStatus,
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

/// The columns of an image: key, content type, width, height, size.
type ImageColumnNames = [&'static str; 5];

const RESULT_IMAGE: ImageColumnNames = [
    "result_image_key",
    "result_image_content_type",
    "result_image_width",
    "result_image_height",
    "result_image_size_bytes",
];
const RESULT_WEBP: ImageColumnNames = [
    "result_webp_key",
    "result_webp_content_type",
    "result_webp_width",
    "result_webp_height",
    "result_webp_size_bytes",
];
const RESULT_THUMBNAIL: ImageColumnNames = [
    "result_thumbnail_key",
    "result_thumbnail_content_type",
    "result_thumbnail_width",
    "result_thumbnail_height",
    "result_thumbnail_size_bytes",
];

/// The image in `columns`, if every one of them is set.
fn image(r: &Row, columns: ImageColumnNames) -> Result<Option<ImageRecord>, QueryError> {
    let [key, content_type, width, height, size_bytes] = columns;
    Ok(
        match (
            r.column(key)?,
            r.column(content_type)?,
            r.column(width)?,
            r.column(height)?,
            r.column(size_bytes)?,
        ) {
            (Some(key), Some(content_type), Some(width), Some(height), Some(size_bytes)) => {
                Some(ImageRecord {
                    key,
                    content_type,
                    width,
                    height,
                    size_bytes,
                })
            }
            _ => None,
        },
    )
}

impl JobRecord {
    /// A row of `JOB_COLUMNS`.
    pub(super) fn from_row(r: &Row) -> Result<Self, QueryError> {
        let status: String = r.column("status")?;
        let status = status.parse().map_err(|_| QueryError::Stored {
            column: "generation_jobs.status",
            value: status,
        })?;
        let progress = match (
            r.column("progress_step")?,
            r.column("progress_steps")?,
            r.column("progress_at_ms")?,
        ) {
            (Some(step), Some(steps), Some(at_ms)) => Some(ProgressRecord { step, steps, at_ms }),
            _ => None,
        };
        let result = match (
            image(r, RESULT_IMAGE)?,
            image(r, RESULT_WEBP)?,
            image(r, RESULT_THUMBNAIL)?,
        ) {
            (Some(image), Some(webp), Some(thumbnail)) => Some(ResultRecord {
                image,
                webp,
                thumbnail,
                cache_hit: r.column::<Option<bool>>("cache_hit")?.unwrap_or(false),
                degraded: r
                    .column::<Option<bool>>("result_degraded")?
                    .unwrap_or(false),
                steps: r.column::<Option<i32>>("result_steps")?.unwrap_or(0),
                duration_ms: r.column::<Option<i64>>("duration_ms")?.unwrap_or(0),
            }),
            _ => None,
        };
        let failure = match (r.column("failure_code")?, r.column("failure_reason")?) {
            (Some(code), Some(reason)) => Some(FailureRecord { code, reason }),
            _ => None,
        };
        Ok(Self {
            id: r.column("request_id")?,
            user_id: r.column("user_id")?,
            mode: r.column("mode")?,
            prompt: r.column("prompt")?,
            negative_prompt: r.column("negative_prompt")?,
            style: r.column("style")?,
            seed: r.column("seed")?,
            steps: r.column("steps")?,
            width: r.column("width")?,
            height: r.column("height")?,
            degraded: r.column("degraded")?,
            status,
            requested_at_ms: r.column("requested_at_ms")?,
            cancelled_at_ms: r.column("cancelled_at_ms")?,
            finished_at_ms: r.column("finished_at_ms")?,
            model: r.column("model")?,
            started_at_ms: r.column("started_at_ms")?,
            progress,
            result,
            failure,
        })
    }
}
