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
