//! Generation jobs: what was asked, and where the AI painter is with it.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use time::OffsetDateTime;

use super::datetime;
use crate::media::signed_url;
use crate::read::{JobResult, JobRow, Progress, StoredImage};

/// What the AI painter is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum GenerationKind {
    /// A picture from a prompt.
    TextToImage,
    /// A photo repainted in a style.
    ImageToImage,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "gallery_schemas::JobStatus")]
pub enum GenerationStatus {
    /// Waiting for the AI painter.
    Requested,
    /// Being painted.
    Running,
    /// The requester cancelled it while it was being painted; the AI painter has not
    /// confirmed yet (it may still finish first: its word is final).
    Cancelling,
    /// Done; the result images are ready. Final.
    Completed,
    /// The AI painter could not paint it (see `failure`). Final.
    Failed,
    /// Cancelled: by the requester before it started, or confirmed by the AI painter (then
    /// final: `finishedAt` is set).
    Cancelled,
}

/// How far the AI painter is.
#[derive(Debug)]
pub struct GenerationProgress(Progress);

/// How far the AI painter is: steps done of all.
#[Object]
impl GenerationProgress {
    /// Steps done.
    async fn step(&self) -> i32 {
        self.0.step
    }

    /// Steps in all.
    async fn steps(&self) -> i32 {
        self.0.steps
    }

    /// `step / steps`, from 0 to 1.
    async fn fraction(&self) -> f64 {
        if self.0.steps <= 0 {
            return 0.0;
        }
        (f64::from(self.0.step) / f64::from(self.0.steps)).clamp(0.0, 1.0)
    }

    /// When the AI painter reported it.
    async fn updated_at(&self) -> OffsetDateTime {
        datetime(self.0.at_ms)
    }
}

/// A result image in object storage, content-addressed.
#[derive(Debug)]
pub struct GeneratedImage(StoredImage);

/// A result image in object storage, content-addressed.
#[Object]
impl GeneratedImage {
    /// A signed URL of the image, valid for a limited time (query again for a fresh one).
    /// The bytes behind it never change: cache them.
    async fn url(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        signed_url(ctx, &self.0.key)
    }

    /// Object key, `images/sha256/<hex>.<ext>`.
    async fn key(&self) -> &str {
        &self.0.key
    }

    /// Width in pixels.
    async fn width(&self) -> i32 {
        self.0.width
    }

    /// Height in pixels.
    async fn height(&self) -> i32 {
        self.0.height
    }

    /// `image/png` or `image/webp`.
    async fn content_type(&self) -> &str {
        &self.0.content_type
    }

    /// Size of the stored object in bytes.
    async fn size_bytes(&self) -> i64 {
        self.0.size_bytes
    }
}

/// What a completed job produced.
#[derive(Debug)]
pub struct GenerationResult {
    record: JobResult,
    model: Option<String>,
}

/// What a completed job produced: the picture in three forms, and how it was made.
#[Object]
impl GenerationResult {
    /// The picture as PNG.
    async fn image(&self) -> GeneratedImage {
        GeneratedImage(self.record.image.clone())
    }

    /// The picture as WebP.
    async fn webp(&self) -> GeneratedImage {
        GeneratedImage(self.record.webp.clone())
    }

    /// A small PNG of the picture.
    async fn thumbnail(&self) -> GeneratedImage {
        GeneratedImage(self.record.thumbnail.clone())
    }

    /// Served from the AI painter's result cache, without painting again.
    async fn cache_hit(&self) -> bool {
        self.record.cache_hit
    }

    /// Painted with fewer steps or smaller than asked because the AI painter was overloaded.
    async fn degraded(&self) -> bool {
        self.record.degraded
    }

    /// Steps actually run.
    async fn steps(&self) -> i32 {
        self.record.steps
    }

    /// The model that painted it.
    async fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Milliseconds from the start to the result (0 for a cache hit).
    async fn duration_ms(&self) -> i64 {
        self.record.duration_ms
    }
}

/// Why a job failed.
#[derive(Debug, SimpleObject)]
pub struct GenerationFailure {
    /// Stable, machine-readable: `unknown_style`, `invalid_prompt`, `invalid_image`,
    /// `unsupported_mode`, `model_unavailable` or `internal`.
    code: String,
    /// A sentence for people.
    reason: String,
}

/// A generation job.
#[derive(Debug)]
pub struct GenerationJob(JobRow);

impl From<JobRow> for GenerationJob {
    fn from(record: JobRow) -> Self {
        GenerationJob(record)
    }
}

/// A request to the AI painter, and where it is.
#[Object]
impl GenerationJob {
    /// The request id (a UUID).
    async fn id(&self) -> ID {
        ID(self.0.request_id.to_string())
    }

    /// Who asked for it.
    async fn requester(&self) -> ID {
        ID(self.0.user_id.clone())
    }

    async fn kind(&self) -> GenerationKind {
        if self.0.mode == "image_to_image" {
            GenerationKind::ImageToImage
        } else {
            GenerationKind::TextToImage
        }
    }

    async fn prompt(&self) -> Option<&str> {
        self.0.prompt.as_deref()
    }

    async fn negative_prompt(&self) -> Option<&str> {
        self.0.negative_prompt.as_deref()
    }

    async fn style(&self) -> &str {
        &self.0.style
    }

    async fn seed(&self) -> i64 {
        self.0.seed
    }

    async fn steps(&self) -> i32 {
        self.0.steps
    }

    async fn width(&self) -> i32 {
        self.0.width
    }

    async fn height(&self) -> i32 {
        self.0.height
    }

    /// Whether the request was scaled down because the AI painter was overloaded.
    async fn degraded(&self) -> bool {
        self.0.degraded
    }

    async fn status(&self) -> GenerationStatus {
        self.0.status.into()
    }

    /// The model running (or having run) the job, once a worker started it.
    async fn model(&self) -> Option<&str> {
        self.0.model.as_deref()
    }

    /// Steps done of all, once the AI painter reports them (all of them once completed).
    async fn progress(&self) -> Option<GenerationProgress> {
        self.0.progress.map(GenerationProgress)
    }

    /// The pictures, once completed.
    async fn result(&self) -> Option<GenerationResult> {
        self.0.result.clone().map(|record| GenerationResult {
            record: *record,
            model: self.0.model.clone(),
        })
    }

    /// Why it failed, if it did.
    async fn failure(&self) -> Option<GenerationFailure> {
        self.0.failure.as_ref().map(|f| GenerationFailure {
            code: f.code.clone(),
            reason: f.reason.clone(),
        })
    }

    async fn requested_at(&self) -> OffsetDateTime {
        datetime(self.0.requested_at_ms)
    }

    /// When a worker first started it.
    async fn started_at(&self) -> Option<OffsetDateTime> {
        self.0.started_at_ms.map(datetime)
    }

    /// When the AI painter ended it (completed, failed or confirmed a cancellation); the job
    /// never changes afterwards.
    async fn finished_at(&self) -> Option<OffsetDateTime> {
        self.0.finished_at_ms.map(datetime)
    }

    /// When its cancellation was asked for (or confirmed, when nobody asked).
    async fn cancelled_at(&self) -> Option<OffsetDateTime> {
        self.0.cancelled_at_ms.map(datetime)
    }
}
