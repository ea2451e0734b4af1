//! The painters a worker runs by default, loaded from the models directory: the style
//! network for image-to-image, and a diffusion model for text-to-image when one is
//! configured. A model that cannot be loaded does not stop the worker: its mode's requests
//! fail with `model_unavailable` and the reason.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::diffusion_painter::DiffusionPainter;
use super::painter::{Painter, Painters};
use super::style_painter::StylePainter;
use crate::diffusion::ModelKind;
use crate::style::{MODEL_NAME, ModelFiles};

/// Where the models run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Cpu,
    /// The first CUDA device (a build with the `cuda` feature and a GPU).
    Cuda,
    /// A CUDA device when there is one, else the CPU.
    Auto,
}

impl DeviceChoice {
    /// The device, or why it is not available.
    pub fn device(self) -> Result<Device, String> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(crate::device::choose_device()),
            DeviceChoice::Cuda => Device::new_cuda(0).map_err(|e| {
                format!("painter.device is cuda, but no CUDA device could be opened: {e}")
            }),
        }
    }
}

/// The diffusion models text-to-image can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TextModel {
    /// Stable Diffusion 1.5, from `<models>/sd15`.
    #[serde(rename = "sd15")]
    Sd15,
    /// SDXL-Turbo, from `<models>/sdxl-turbo`.
    #[serde(rename = "sdxl-turbo")]
    SdxlTurbo,
}

impl TextModel {
    fn kind(self) -> ModelKind {
        match self {
            TextModel::Sd15 => ModelKind::Sd15,
            TextModel::SdxlTurbo => ModelKind::SdxlTurbo,
        }
    }
}

/// Loads the default painters from `models_dir` on `device`: the style network, and
/// `text_model` for text-to-image when given.
pub fn load_painters(
    models_dir: &Path,
    device: DeviceChoice,
    text_model: Option<TextModel>,
) -> Painters {
    let device = device.device();
    if let Ok(device) = &device {
        let info = crate::device::describe(device);
        let memory = crate::device::memory(device);
        tracing::info!(
            kind = info.kind,
            ordinal = info.ordinal,
            name = %info.name,
            memory_used_bytes = memory.map(|m| m.used_bytes),
            memory_total_bytes = memory.map(|m| m.total_bytes),
            "the painters run on this device"
        );
    }
    let style = device.clone().and_then(|device| {
        let files = ModelFiles::new(models_dir.join(MODEL_NAME));
        StylePainter::load(&files, &device)
            .map(|p| Arc::new(p) as Arc<dyn Painter>)
            .map_err(|e| {
                format!(
                    "the style model could not be loaded from {}: {e}",
                    files.dir().display()
                )
            })
    });
    match &style {
        Ok(p) => tracing::info!(
            model = p.model(),
            digest = p.weights_digest(),
            "style model loaded"
        ),
        Err(reason) => tracing::warn!(%reason, "image-to-image requests will fail"),
    }
    let text = match text_model {
        None => Err(
            "text-to-image needs diffusion weights, and this painter has none configured \
             (painter.text_to_image)"
                .to_owned(),
        ),
        Some(model) => device.clone().and_then(|device| {
            let kind = model.kind();
            let dir = models_dir.join(kind.dir_name());
            DiffusionPainter::load(kind.dir_name(), kind.config(), &dir, &device)
                .map(|p| Arc::new(p) as Arc<dyn Painter>)
                .map_err(|e| {
                    format!(
                        "the {} model could not be loaded from {}: {e}",
                        kind.dir_name(),
                        dir.display()
                    )
                })
        }),
    };
    match &text {
        Ok(p) => tracing::info!(
            model = p.model(),
            digest = p.weights_digest(),
            "diffusion model loaded"
        ),
        Err(reason) => tracing::warn!(%reason, "text-to-image requests will fail"),
    }
    let painters = Painters::new(text, style);
    match device {
        Ok(device) => painters.on_device(device),
        Err(_) => painters,
    }
}
