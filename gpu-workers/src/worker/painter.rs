//! The painter: a model that turns a job into a picture, behind a small synchronous trait.
//! Painters run on the worker's own OS threads, never on the async runtime; the progress
//! callback is how the worker throttles progress events and stops a cancelled run.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use candle_core::Device;
use gallery_schemas::GenerationMode;
use image::RgbImage;

/// Why a request ends in `Failed`: the stable, machine-readable `code` of the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCode {
    /// The style is not one the model knows (or a blend of styles is malformed).
    UnknownStyle,
    /// The prompt or negative prompt is longer than the painter reads, or malformed.
    InvalidPrompt,
    /// The source photo is missing, corrupt, too large or not what its reference claims.
    InvalidImage,
    /// The painter of this mode cannot do what was asked (e.g. a size it cannot make).
    UnsupportedMode,
    /// No model for this mode is installed or configured.
    ModelUnavailable,
    /// The worker failed for a reason of its own.
    Internal,
}

impl FailureCode {
    /// The code as the `GenerationFailed` event carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::UnknownStyle => "unknown_style",
            FailureCode::InvalidPrompt => "invalid_prompt",
            FailureCode::InvalidImage => "invalid_image",
            FailureCode::UnsupportedMode => "unsupported_mode",
            FailureCode::ModelUnavailable => "model_unavailable",
            FailureCode::Internal => "internal",
        }
    }
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the painter will not run, with a reason a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct Rejection {
    pub code: FailureCode,
    pub reason: String,
}

impl Rejection {
    pub fn new(code: FailureCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// What to paint, as the painter sees it: the request with the worker's limits applied
/// (a degraded request has fewer steps and a smaller size here than it asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaintParams {
    pub mode: GenerationMode,
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    /// A style name, or whatever blend syntax the painter accepts.
    pub style: String,
    pub seed: i64,
    pub steps: u32,
    /// The size asked for, in pixels. An image-to-image painter fits the photo inside it,
    /// keeping the photo's aspect ratio.
    pub width: u32,
    pub height: u32,
}

/// A job ready to run: the parameters and, for image-to-image, the decoded source photo.
#[derive(Debug, Clone)]
pub struct PaintJob {
    pub params: PaintParams,
    pub source: Option<RgbImage>,
}

/// Why painting stopped without a picture.
#[derive(Debug, thiserror::Error)]
pub enum PaintError {
    /// The progress callback asked to stop after `step` steps.
    #[error("cancelled after {step} steps")]
    Cancelled { step: u32 },
    /// The job cannot be painted (found only once running, e.g. a photo the model cannot
    /// take).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The model failed.
    #[error("the model failed")]
    Model {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `progress(step, steps)` after each step; `Break` asks the painter to stop.
pub type Progress<'a> = &'a mut dyn FnMut(u32, u32) -> ControlFlow<()>;

/// A model that paints. Implementations are synchronous and called from the worker's paint
/// threads (several at once when `painter.threads` is above one).
pub trait Painter: Send + Sync + fmt::Debug {
    /// The model's name as events carry it, e.g. `multistyle26`.
    fn model(&self) -> &str;
    /// Lower-case hex SHA-256 of the weights (part of the result cache key).
    fn weights_digest(&self) -> &str;
    /// The sampler or scheduler the model runs with (part of the cache key); a
    /// single-pass network names its one pass, e.g. `feed-forward`.
    fn scheduler(&self) -> &str;
    /// Checks a request before anything runs (an unknown style, a prompt too long for the
    /// model, a size it cannot make...).
    fn validate(&self, params: &PaintParams) -> Result<(), Rejection>;
    /// The steps a job of `params` runs: what its progress counts to, and what its result
    /// reports. A sampler runs the steps asked for; a single-pass network has its own.
    fn steps(&self, params: &PaintParams) -> u32 {
        params.steps
    }
    /// Paints `job`, calling `progress(step, steps)` after each step. When the callback
    /// answers `Break`, the painter stops and returns [`PaintError::Cancelled`] with the
    /// steps done. The same job gives the same picture, bit for bit.
    fn paint(&self, job: &PaintJob, progress: Progress<'_>) -> Result<RgbImage, PaintError>;
}

/// The painter of each mode, or why there is none.
#[derive(Debug, Clone)]
pub struct Painters {
    text_to_image: Result<Arc<dyn Painter>, String>,
    image_to_image: Result<Arc<dyn Painter>, String>,
    device: Option<Device>,
}

impl Painters {
    /// `Err(reason)` for a mode without a model: its requests fail with
    /// `model_unavailable` and that reason.
    pub fn new(
        text_to_image: Result<Arc<dyn Painter>, String>,
        image_to_image: Result<Arc<dyn Painter>, String>,
    ) -> Self {
        Self {
            text_to_image,
            image_to_image,
            device: None,
        }
    }

    /// The same painters, running on `device` (reported in the device gauges).
    pub fn on_device(self, device: Device) -> Self {
        Self {
            device: Some(device),
            ..self
        }
    }

    /// The device the painters run on, when known.
    pub fn device(&self) -> Option<&Device> {
        self.device.as_ref()
    }

    /// The painter of `mode`.
    pub fn for_mode(&self, mode: GenerationMode) -> Result<&Arc<dyn Painter>, Rejection> {
        let painter = match mode {
            GenerationMode::TextToImage => &self.text_to_image,
            GenerationMode::ImageToImage => &self.image_to_image,
        };
        painter
            .as_ref()
            .map_err(|reason| Rejection::new(FailureCode::ModelUnavailable, reason.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_codes_are_the_contract_s() {
        let codes: Vec<&str> = [
            FailureCode::UnknownStyle,
            FailureCode::InvalidPrompt,
            FailureCode::InvalidImage,
            FailureCode::UnsupportedMode,
            FailureCode::ModelUnavailable,
            FailureCode::Internal,
        ]
        .into_iter()
        .map(FailureCode::as_str)
        .collect();
        assert_eq!(
            codes,
            [
                "unknown_style",
                "invalid_prompt",
                "invalid_image",
                "unsupported_mode",
                "model_unavailable",
                "internal"
            ]
        );
    }

    #[test]
    fn a_mode_without_a_model_is_unavailable_with_its_reason() {
        let painters = Painters::new(
            Err("no diffusion weights configured".into()),
            Err("no style model".into()),
        );
        let refused = painters.for_mode(GenerationMode::TextToImage).err();
        assert_eq!(
            refused,
            Some(Rejection::new(
                FailureCode::ModelUnavailable,
                "no diffusion weights configured"
            ))
        );
    }
}
