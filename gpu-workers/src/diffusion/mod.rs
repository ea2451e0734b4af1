//! The AI painter's diffusion models: text-to-image and image-to-image with Stable
//! Diffusion 1.5 or SDXL-Turbo, on candle (CPU, or CUDA with the `cuda` feature).
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use gallery_gpu_workers::diffusion::{DiffusionModel, Generation, ModelKind};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = candle_core::Device::cuda_if_available(0)?;
//! let kind = ModelKind::Sd15;
//! let dir = std::path::Path::new("models").join(kind.dir_name());
//! let model = DiffusionModel::load_dir(kind.config(), &dir, &device)?;
//! let request = Generation::new("an oil painting of sunflowers", 42, &model.config().defaults);
//! let picture = model.generate(&request, |p| {
//!     println!("step {} of {}", p.step, p.total);
//!     ControlFlow::Continue(())
//! })?;
//! picture.save("sunflowers.png")?;
//! # Ok(())
//! # }
//! ```
//!
//! A model directory holds `unet.safetensors`, `vae.safetensors`, `clip.safetensors`
//! (and `clip2.safetensors` for SDXL) and `tokenizer.json` (see [`ModelFiles`]); the
//! tokenizer is built by `scripts/models.d/clip-tokenizer` from the BPE merges of OpenAI's
//! CLIP shipped in the `open-clip-torch` wheel on PyPI (MIT licence, copied beside it). The
//! weights are not downloaded by the project: copy them from the models' published
//! diffusers layout (their own licences apply, e.g. CreativeML Open RAIL-M for SD 1.5; see
//! each model's card).
//!
//! **Determinism.** The same model, request and seed give the same picture, byte for byte,
//! on the same device: the starting noise comes from ChaCha8 seeded with the request's seed
//! (the CPU device's own RNG cannot be seeded), the scheduler is DDIM with `eta = 0`, and
//! image-to-image encodes the source with the VAE posterior's mean instead of a sample.
//! Nothing draws from an unseeded generator.

mod config;
mod error;
mod files;
mod latent;
mod pipeline;
mod text;
pub mod tiny;
mod tokenizer;

pub use candle_core::{DType, Device};
pub use config::{
    CLIP_CONTEXT, CLIP_VOCAB_SIZE, Defaults, MAX_SIDE_LIMIT, ModelConfig, ModelKind,
    TextEncoderConfig,
};
pub use error::{Component, ConfigError, DiffusionError, RequestError, Stage, WriteError};
pub use files::ModelFiles;
pub use pipeline::{DiffusionModel, Generation, InitImage, Progress};
pub use tokenizer::{ClipTokenizer, END_OF_TEXT, START_OF_TEXT};
