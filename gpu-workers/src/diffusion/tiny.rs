//! A tiny model with seeded random weights: the real loader and pipeline at a size that
//! paints (noise) in milliseconds on a CPU. For tests of this crate and of the worker.
//!
//! [`write_model`] writes a complete model directory: the safetensors files of
//! [`config`], with the tensor names candle's modules ask for (found by building each module
//! on a recording backend), filled from a seeded ChaCha8 generator following each
//! parameter's usual initialisation; and a byte-level `tokenizer.json` with CLIP's framing
//! tokens, so that any prompt encodes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::init::{Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::stable_diffusion::clip::{
    ClipTextTransformer as SdClipTextTransformer, Config as SdClipConfig,
};
use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModel, UNet2DConditionModelConfig,
};
use candle_transformers::models::stable_diffusion::vae::{AutoEncoderKL, AutoEncoderKLConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::Lowercase;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::{AddedToken, Tokenizer};

use super::config::{Defaults, ModelConfig, TextEncoderConfig};
use super::error::{Component, DiffusionError, WriteError};
use super::files::ModelFiles;
use super::tokenizer::{END_OF_TEXT, START_OF_TEXT};

/// Tokens of the byte-level tokenizer: 256 byte symbols, the same ending a word, start and
/// end of text.
pub const BYTE_VOCAB_SIZE: usize = 2 * 256 + 2;

/// The tiny configuration: a 2-level UNet (32 and 64 channels, cross-attention in the
/// first), a 2-level VAE (pixels per latent cell: 2), one 2-layer CLIP text encoder of 32
/// features over 16 tokens, SD 1.5's DDIM schedule. 32 × 32 pixels by default.
pub fn config() -> ModelConfig {
    let mut config = ModelConfig::sd15();
    config.unet = UNet2DConditionModelConfig {
        blocks: vec![
            BlockConfig {
                out_channels: 32,
                use_cross_attn: Some(1),
                attention_head_dim: 4,
            },
            BlockConfig {
                out_channels: 64,
                use_cross_attn: None,
                attention_head_dim: 4,
            },
        ],
        cross_attention_dim: 32,
        layers_per_block: 1,
        norm_num_groups: 8,
        ..config.unet
    };
    config.vae = AutoEncoderKLConfig {
        block_out_channels: vec![32, 64],
        layers_per_block: 1,
        latent_channels: 4,
        norm_num_groups: 8,
        use_quant_conv: true,
        use_post_quant_conv: true,
    };
    config.text_encoders = vec![TextEncoderConfig::Clip(ClipTextConfig {
        vocab_size: BYTE_VOCAB_SIZE,
        embed_dim: 32,
        activation: Activation::QuickGelu,
        intermediate_size: 64,
        max_position_embeddings: 16,
        pad_with: None,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        projection_dim: 32,
    })];
    config.max_side = 256;
    config.defaults = Defaults {
        width: 32,
        height: 32,
        steps: 4,
        guidance_scale: 7.5,
        strength: 0.6,
    };
    config
}

/// Writes [`config`]'s model into `dir` (created if missing) with weights drawn from `seed`.
pub fn write_model(dir: impl AsRef<Path>, seed: u64) -> Result<ModelFiles, DiffusionError> {
    write_random_model(&config(), dir, seed)
}

/// Writes a model directory for `config` with random weights from `seed` and the
/// byte-level tokenizer. Meant for tiny configurations: every tensor is held in memory and
/// the text encoders' vocabulary must cover [`BYTE_VOCAB_SIZE`] tokens.
pub fn write_random_model(
    config: &ModelConfig,
    dir: impl AsRef<Path>,
    seed: u64,
) -> Result<ModelFiles, DiffusionError> {
    config.check()?;
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|source| DiffusionError::WriteFile {
        path: dir.to_path_buf(),
        source: source.into(),
    })?;
    let files = ModelFiles::in_dir(dir, config);
    let channels = config.vae.latent_channels;
    write_weights(Component::Unet, &files.unet, seed, 1, |vb| {
        UNet2DConditionModel::new(vb, channels, channels, false, config.unet.clone()).map(drop)
    })?;
    write_weights(Component::Vae, &files.vae, seed, 2, |vb| {
        AutoEncoderKL::new(vb, 3, 3, config.vae.clone()).map(drop)
    })?;
    for (index, encoder) in config.text_encoders.iter().enumerate() {
        let (component, path) = files.text_encoder(index);
        let path = path.ok_or_else(|| DiffusionError::MissingFile {
            component,
            path: dir.join(component.file_name()),
        })?;
        write_weights(
            component,
            path,
            seed,
            3 + index as u64,
            |vb| match encoder {
                TextEncoderConfig::Clip(c) => {
                    ClipTextTransformer::new(vb.pp("text_model"), c).map(drop)
                }
                TextEncoderConfig::OpenClipBigG => {
                    SdClipTextTransformer::new(vb, &SdClipConfig::sdxl2()).map(drop)
                }
            },
        )?;
    }
    write_byte_tokenizer(&files.tokenizer)?;
    Ok(files)
}

/// What a module asked for: each parameter's shape and initialisation.
#[derive(Debug, Default)]
struct Recorder {
    params: Arc<Mutex<BTreeMap<String, (Shape, Init)>>>,
}

impl SimpleBackend for Recorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        self.params
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), (shape.clone(), init));
        Tensor::zeros(shape, dtype, device)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::CannotFindTensor {
            path: name.to_owned(),
        })
    }

    /// Attention layers of the VAE read either naming; answering yes for diffusers' current
    /// one (`to_q`, `to_k`, `to_v`, `to_out.0`) records that one.
    fn contains_tensor(&self, name: &str) -> bool {
        name.ends_with(".to_q.weight") || name == "to_q.weight"
    }
}

/// Builds a module on a [`Recorder`], then draws every parameter it asked for, in name
/// order, from ChaCha8 seeded with `seed` on `stream`, and saves them to `path`.
fn write_weights(
    component: Component,
    path: &Path,
    seed: u64,
    stream: u64,
    build: impl FnOnce(VarBuilder<'_>) -> candle_core::Result<()>,
) -> Result<(), DiffusionError> {
    let failed = |source: candle_core::Error| DiffusionError::WriteFile {
        path: path.to_path_buf(),
        source: WriteError::Tensors(source),
    };
    let params = Arc::new(Mutex::new(BTreeMap::new()));
    let recorder = Recorder {
        params: Arc::clone(&params),
    };
    let vb = VarBuilder::from_backend(Box::new(recorder), DType::F32, Device::Cpu);
    build(vb).map_err(|source| DiffusionError::IncompatibleWeights {
        component,
        path: path.to_path_buf(),
        source,
    })?;
    let params = std::mem::take(&mut *params.lock().unwrap_or_else(PoisonError::into_inner));

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut tensors = std::collections::HashMap::with_capacity(params.len());
    for (name, (shape, init)) in params {
        let values = draw(&mut rng, &shape, init);
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu).map_err(failed)?;
        tensors.insert(name, tensor);
    }
    candle_core::safetensors::save(&tensors, path).map_err(failed)
}

/// Values for a parameter of `shape`, drawn as `init` describes (PyTorch's conventions).
fn draw(rng: &mut ChaCha8Rng, shape: &Shape, init: Init) -> Vec<f32> {
    let count = shape.elem_count();
    let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| {
        let z: f64 = StandardNormal.sample(rng);
        (mean + std * z) as f32
    };
    match init {
        Init::Const(value) => vec![value as f32; count],
        Init::Randn { mean, stdev } => (0..count).map(|_| normal(rng, mean, stdev)).collect(),
        Init::Uniform { lo, up } => (0..count)
            .map(|_| rng.random_range(lo..=up) as f32)
            .collect(),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape).max(1) as f64).sqrt();
            match dist {
                NormalOrUniform::Normal => (0..count).map(|_| normal(rng, 0., std)).collect(),
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    (0..count)
                        .map(|_| rng.random_range(-bound..=bound) as f32)
                        .collect()
                }
            }
        }
    }
}

/// Writes a byte-level BPE tokenizer without merges: each byte of a word is a token, the
/// last one marked `</w>` as in CLIP; text is lower-cased and split at whitespace.
pub fn write_byte_tokenizer(path: &Path) -> Result<(), DiffusionError> {
    let failed = |source: WriteError| DiffusionError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let mut symbols: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    symbols.sort_unstable();
    let tokens = symbols
        .iter()
        .map(char::to_string)
        .chain(symbols.iter().map(|c| format!("{c}</w>")))
        .chain([START_OF_TEXT.to_owned(), END_OF_TEXT.to_owned()]);
    let vocab: Vocab = tokens.zip(0u32..).collect();
    let model = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .end_of_word_suffix("</w>".to_owned())
        .unk_token(END_OF_TEXT.to_owned())
        .build()
        .map_err(|e| failed(WriteError::Tokenizer(e)))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(Lowercase))
        .map_err(|e| failed(WriteError::Tokenizer(e)))?;
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        Whitespace.into(),
        ByteLevel::new(false, true, false).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevel::new(false, true, false)));
    tokenizer
        .add_special_tokens([
            AddedToken::from(START_OF_TEXT, true),
            AddedToken::from(END_OF_TEXT, true),
        ])
        .map_err(|e| failed(WriteError::Tokenizer(e)))?;
    tokenizer
        .save(path, false)
        .map_err(|e| failed(WriteError::Tokenizer(e)))
}
