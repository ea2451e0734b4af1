//! A model directory's layout, and reading its files with errors that name the file.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::config::ModelConfig;
use super::error::{Component, DiffusionError};

/// The files of one model. [`ModelFiles::in_dir`] gives the standard layout:
///
/// ```text
/// <dir>/unet.safetensors    the UNet            (diffusers' unet/diffusion_pytorch_model*.safetensors)
/// <dir>/vae.safetensors     the VAE             (vae/diffusion_pytorch_model*.safetensors)
/// <dir>/clip.safetensors    first text encoder  (text_encoder/model*.safetensors)
/// <dir>/clip2.safetensors   second text encoder, SDXL only (text_encoder_2/model*.safetensors)
/// <dir>/tokenizer.json      CLIP's BPE tokenizer (scripts/models.d/clip-tokenizer)
/// ```
///
/// Weights may be stored in any float type; they are converted to the configuration's
/// `dtype` while loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    pub unet: PathBuf,
    pub vae: PathBuf,
    pub clip: PathBuf,
    /// Present when the configuration has a second text encoder.
    pub clip2: Option<PathBuf>,
    pub tokenizer: PathBuf,
}

impl ModelFiles {
    /// The standard layout inside `dir`, with `clip2.safetensors` when `config` has two text
    /// encoders.
    pub fn in_dir(dir: impl AsRef<Path>, config: &ModelConfig) -> Self {
        let dir = dir.as_ref();
        let file = |c: Component| dir.join(c.file_name());
        Self {
            unet: file(Component::Unet),
            vae: file(Component::Vae),
            clip: file(Component::Clip),
            clip2: (config.text_encoders.len() > 1).then(|| file(Component::Clip2)),
            tokenizer: file(Component::Tokenizer),
        }
    }

    /// The weights of text encoder `index` (0 or 1).
    pub(crate) fn text_encoder(&self, index: usize) -> (Component, Option<&Path>) {
        match index {
            0 => (Component::Clip, Some(self.clip.as_path())),
            _ => (Component::Clip2, self.clip2.as_deref()),
        }
    }
}

/// Reads a whole file, telling a missing file from an unreadable one.
pub(crate) fn read(component: Component, path: &Path) -> Result<Vec<u8>, DiffusionError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        ErrorKind::NotFound => DiffusionError::MissingFile {
            component,
            path: path.to_path_buf(),
        },
        _ => DiffusionError::ReadFile {
            component,
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Builds a module from a safetensors file: `build` gets the file's tensors, converted to
/// `dtype` on `device`. A file that is not safetensors and weights that do not fit the
/// module (a missing tensor, a wrong shape) are told apart.
pub(crate) fn build_from_safetensors<T>(
    component: Component,
    path: &Path,
    dtype: DType,
    device: &Device,
    build: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<T>,
) -> Result<T, DiffusionError> {
    let data = read(component, path)?;
    let vb = VarBuilder::from_buffered_safetensors(data, dtype, device).map_err(|source| {
        DiffusionError::MalformedWeights {
            component,
            path: path.to_path_buf(),
            source,
        }
    })?;
    build(vb).map_err(|source| DiffusionError::IncompatibleWeights {
        component,
        path: path.to_path_buf(),
        source,
    })
}
