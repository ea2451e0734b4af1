//! Topic `generation`, key: request id, so a request and its cancellation are read in order.
//! Workers add their result events (issue of the AI painter) under the same key.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::catalog::ImageRef;
use crate::ids::UserId;
use crate::text::{Prompt, StyleName};

/// What the AI painter is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GenerationMode {
    /// A picture from a prompt.
    TextToImage,
    /// A source photo repainted in a style.
    ImageToImage,
}

impl GenerationMode {
    /// The mode's name in read models and metric labels (`text_to_image`, `image_to_image`).
    pub fn name(self) -> &'static str {
        match self {
            GenerationMode::TextToImage => "text_to_image",
            GenerationMode::ImageToImage => "image_to_image",
        }
    }
}

/// A visitor asked for a picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRequested {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    /// The job; a client may supply it, so a retried request maps to the same job.
    #[serde(with = "crate::events::uuid_text")]
    pub request_id: Uuid,
    pub user_id: UserId,
    pub mode: GenerationMode,
    /// Required for text-to-image; optional guidance for image-to-image.
    pub prompt: Option<Prompt>,
    pub negative_prompt: Option<Prompt>,
    pub style: StyleName,
    pub seed: i64,
    pub steps: i32,
    pub width: i32,
    pub height: i32,
    /// The photo to repaint (image-to-image only).
    pub source_image: Option<ImageRef>,
    /// True when the request was scaled down because the backlog was high.
    pub degraded: bool,
    pub occurred_at: i64,
}

/// The requester cancelled a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationCancelled {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::events::uuid_text")]
    pub request_id: Uuid,
    pub user_id: UserId,
    pub occurred_at: i64,
}

impl GenerationRequested {
    pub const RECORD: &'static str = "gallery.generation.GenerationRequested";
}
impl GenerationCancelled {
    pub const RECORD: &'static str = "gallery.generation.GenerationCancelled";
}

/// A worker began a generation. Not terminal: a job restarted after a worker crash is started
/// again, with the same event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationStarted {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::events::uuid_text")]
    pub request_id: Uuid,
    pub user_id: UserId,
    /// The worker's stable id (its transactional id).
    pub worker: String,
    /// The model that runs the job, e.g. `multistyle26`.
    pub model: String,
    pub occurred_at: i64,
}

/// Step `step` of `steps` of a running generation is done (throttled). Not terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationProgressed {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::events::uuid_text")]
    pub request_id: Uuid,
    pub user_id: UserId,
    pub step: i32,
    pub steps: i32,
    pub occurred_at: i64,
}

/// Terminal: the picture is ready, in three forms in object storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationCompleted {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::events::uuid_text")]
    pub request_id: Uuid,
    pub user_id: UserId,
    pub model: String,
    /// Lower-case hex SHA-256 of the model's weights.
    pub weights_digest: String,
    /// The picture as PNG.
    pub image: ImageRef,
    pub webp: ImageRef,
    pub thumbnail: ImageRef,
    /// Served from the result cache, without inference.
    pub cache_hit: bool,
    /// Fewer steps or a smaller size because the backlog was high.
    pub degraded: bool,
    pub steps: i32,
    pub width: i32,
    pub height: i32,
    pub duration_ms: i64,
    pub occurred_at: i64,
}

/// Terminal: the job ended without a picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationFailed {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::events::uuid_text")]
    pub request_id: Uuid,
    pub user_id: UserId,
    /// Stable machine-readable reason: `unknown_style`, `invalid_prompt`, `invalid_image`,
    /// `unsupported_mode`, `model_unavailable` or `internal`.
    pub code: String,
    pub reason: String,
    pub occurred_at: i64,
}

/// Terminal: the worker honoured a cancellation, before or during the run; no picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationCancelConfirmed {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::events::uuid_text")]
    pub request_id: Uuid,
    pub user_id: UserId,
    /// Steps done when it stopped; 0 when it never ran.
    pub step: i32,
    pub occurred_at: i64,
}

impl GenerationStarted {
    pub const RECORD: &'static str = "gallery.generation.GenerationStarted";
}
impl GenerationProgressed {
    pub const RECORD: &'static str = "gallery.generation.GenerationProgressed";
}
impl GenerationCompleted {
    pub const RECORD: &'static str = "gallery.generation.GenerationCompleted";
}
impl GenerationFailed {
    pub const RECORD: &'static str = "gallery.generation.GenerationFailed";
}
impl GenerationCancelConfirmed {
    pub const RECORD: &'static str = "gallery.generation.GenerationCancelConfirmed";
}
