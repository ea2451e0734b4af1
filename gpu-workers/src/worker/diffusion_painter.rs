//! The text-to-image painter: a Stable Diffusion pipeline ([`crate::diffusion`]) when its
//! weights are configured. The weights digest is the SHA-256 over the digests of the model's
//! files (UNet, VAE, text encoders, tokenizer), computed once at load.

use std::io::Read;
use std::ops::ControlFlow;
use std::path::Path;

use candle_core::Device;
use gallery_schemas::GenerationMode;
use image::RgbImage;
use sha2::{Digest, Sha256};

use super::painter::{
    FailureCode, PaintError, PaintJob, PaintParams, Painter, Progress, Rejection,
};
use crate::diffusion::{DiffusionError, DiffusionModel, Generation, ModelConfig, ModelFiles};

/// A diffusion model as a [`Painter`].
#[derive(Debug)]
pub struct DiffusionPainter {
    model: DiffusionModel,
    name: String,
    digest: String,
}

/// Why a diffusion model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Model(#[from] DiffusionError),
    #[error("cannot read {path} to digest it")]
    Digest {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// SHA-256 over the files' own SHA-256s, in layout order.
fn digest_files(files: &ModelFiles) -> Result<String, LoadError> {
    let mut all = Sha256::new();
    let paths = [
        Some(&files.unet),
        Some(&files.vae),
        Some(&files.clip),
        files.clip2.as_ref(),
        Some(&files.tokenizer),
    ];
    for path in paths.into_iter().flatten() {
        let failed = |source| LoadError::Digest {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(failed)?;
        let mut one = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buffer).map_err(failed)?;
            if n == 0 {
                break;
            }
            one.update(&buffer[..n]);
        }
        all.update(one.finalize());
    }
    Ok(hex::encode(all.finalize()))
}

impl DiffusionPainter {
    /// Loads the model of `config` from the standard layout of `dir`, named `name` in events
    /// (e.g. `sd15`).
    pub fn load(
        name: &str,
        config: ModelConfig,
        dir: &Path,
        device: &Device,
    ) -> Result<Self, LoadError> {
        let files = ModelFiles::in_dir(dir, &config);
        let model = DiffusionModel::load(config, &files, device)?;
        let digest = digest_files(&files)?;
        Ok(Self::new(model, name, digest))
    }

    pub fn new(model: DiffusionModel, name: &str, digest: String) -> Self {
        Self {
            model,
            name: name.to_owned(),
            digest,
        }
    }
}

/// An `i64` seed as the pipeline's `u64`, bit for bit.
fn seed_bits(seed: i64) -> u64 {
    u64::from_ne_bytes(seed.to_ne_bytes())
}

impl Painter for DiffusionPainter {
    fn model(&self) -> &str {
        &self.name
    }

    fn weights_digest(&self) -> &str {
        &self.digest
    }

    fn scheduler(&self) -> &str {
        "ddim-eta0"
    }

    fn validate(&self, params: &PaintParams) -> Result<(), Rejection> {
        if params.mode != GenerationMode::TextToImage {
            return Err(Rejection::new(
                FailureCode::UnsupportedMode,
                "the diffusion painter paints from a prompt (text-to-image) only",
            ));
        }
        if params.prompt.as_deref().is_none_or(|p| p.trim().is_empty()) {
            return Err(Rejection::new(
                FailureCode::InvalidPrompt,
                "text-to-image needs a prompt",
            ));
        }
        let config = self.model.config();
        let multiple = config.vae_factor();
        let side_ok = |s: u32| {
            let s = usize::try_from(s).unwrap_or(usize::MAX);
            s >= multiple && s <= config.max_side && s.is_multiple_of(multiple)
        };
        if !(side_ok(params.width) && side_ok(params.height)) {
            return Err(Rejection::new(
                FailureCode::UnsupportedMode,
                format!(
                    "{}x{} pixels: {} makes sides that are multiples of {multiple}, at most {}",
                    params.width, params.height, self.name, config.max_side
                ),
            ));
        }
        let max_steps = config.scheduler.train_timesteps;
        if usize::try_from(params.steps).map_or(true, |s| s > max_steps) {
            return Err(Rejection::new(
                FailureCode::UnsupportedMode,
                format!(
                    "{} steps: {} runs at most {max_steps}",
                    params.steps, self.name
                ),
            ));
        }
        Ok(())
    }

    fn paint(&self, job: &PaintJob, progress: Progress<'_>) -> Result<RgbImage, PaintError> {
        let p = &job.params;
        let to_usize = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        let request = Generation {
            prompt: p.prompt.clone().unwrap_or_default(),
            negative_prompt: p.negative_prompt.clone().unwrap_or_default(),
            seed: seed_bits(p.seed),
            steps: to_usize(p.steps),
            width: to_usize(p.width),
            height: to_usize(p.height),
            guidance_scale: self.model.config().defaults.guidance_scale,
            init_image: None,
        };
        let step_of = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let result = self.model.generate(&request, |at| {
            if at.step == 0 {
                ControlFlow::Continue(())
            } else {
                progress(step_of(at.step), step_of(at.total))
            }
        });
        result.map_err(|e| match e {
            DiffusionError::Cancelled { step, .. } => PaintError::Cancelled {
                step: step_of(step),
            },
            DiffusionError::Request(why) => {
                Rejection::new(FailureCode::UnsupportedMode, why.to_string()).into()
            }
            DiffusionError::Tokenize { .. } => {
                Rejection::new(FailureCode::InvalidPrompt, e.to_string()).into()
            }
            other => PaintError::Model {
                source: Box::new(other),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_keep_their_bits() {
        assert_eq!(seed_bits(42), 42);
        assert_eq!(seed_bits(-1), u64::MAX);
    }
}
