//! The painters a worker runs by default, loaded from the models directory: the style
//! network for image-to-image. A model that cannot be loaded does not stop the worker: its
//! mode's requests fail with `model_unavailable` and the reason.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::painter::{Painter, Painters};
use super::style_painter::StylePainter;
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

/// Loads the default painters from `models_dir` on `device`.
pub fn load_painters(models_dir: &Path, device: DeviceChoice) -> Painters {
    let device = device.device();
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
    let text = Err(
        "text-to-image needs diffusion weights, and this painter has none configured".to_owned(),
    );
    Painters::new(text, style)
}
