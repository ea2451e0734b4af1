//! Generation jobs: what was asked, and where the AI painter is with it.

use async_graphql::{Enum, ID, Object};
use time::OffsetDateTime;

use super::datetime;
use crate::read::JobRecord;

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
pub enum GenerationStatus {
    /// Waiting for the AI painter.
    Requested,
    /// Being painted.
    Running,
    /// Done; the result images are ready.
    Completed,
    /// The AI painter could not paint it.
    Failed,
    /// Cancelled by the requester.
    Cancelled,
}

/// A generation job.
#[derive(Debug)]
pub struct GenerationJob(JobRecord);

impl From<JobRecord> for GenerationJob {
    fn from(record: JobRecord) -> Self {
        GenerationJob(record)
    }
}

#[Object]
impl GenerationJob {
    /// The request id (a UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
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
        match self.0.status.as_str() {
            "running" => GenerationStatus::Running,
            "completed" => GenerationStatus::Completed,
            "failed" => GenerationStatus::Failed,
            "cancelled" => GenerationStatus::Cancelled,
            _ => GenerationStatus::Requested,
        }
    }

    /// How far the painting is, from 0 to 1, once the AI painter reports it.
    async fn progress(&self) -> Option<f32> {
        self.0.progress
    }

    /// Object keys of the result images, once completed.
    async fn result_image_keys(&self) -> &[String] {
        &self.0.result_image_keys
    }

    /// Why it failed, if it did.
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }

    async fn requested_at(&self) -> OffsetDateTime {
        datetime(self.0.requested_at_ms)
    }

    async fn cancelled_at(&self) -> Option<OffsetDateTime> {
        self.0.cancelled_at_ms.map(datetime)
    }
}
