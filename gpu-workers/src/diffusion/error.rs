//! What can go wrong while loading a diffusion model or painting with it.

use std::fmt;
use std::path::PathBuf;

/// A file of a model directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The denoising UNet (`unet.safetensors`).
    Unet,
    /// The autoencoder between pixels and latents (`vae.safetensors`).
    Vae,
    /// The first CLIP text encoder (`clip.safetensors`).
    Clip,
    /// SDXL's second text encoder, OpenCLIP ViT-bigG (`clip2.safetensors`).
    Clip2,
    /// The CLIP BPE tokenizer (`tokenizer.json`).
    Tokenizer,
}

impl Component {
    /// The file name of this component inside a model directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Unet => "unet.safetensors",
            Self::Vae => "vae.safetensors",
            Self::Clip => "clip.safetensors",
            Self::Clip2 => "clip2.safetensors",
            Self::Tokenizer => "tokenizer.json",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unet => "UNet",
            Self::Vae => "VAE",
            Self::Clip => "CLIP text encoder",
            Self::Clip2 => "second text encoder (OpenCLIP ViT-bigG)",
            Self::Tokenizer => "CLIP tokenizer",
        })
    }
}

/// The part of a generation that failed inside the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Turning the prompts into embeddings.
    TextEncoding,
    /// Encoding the source picture into latents (image-to-image).
    ImageEncoding,
    /// Making the seeded starting latents.
    Noise,
    /// The denoising loop.
    Denoising,
    /// Decoding the latents into pixels.
    Decoding,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TextEncoding => "encoding the prompt",
            Self::ImageEncoding => "encoding the source image",
            Self::Noise => "making the starting noise",
            Self::Denoising => "denoising",
            Self::Decoding => "decoding the latents",
        })
    }
}

/// A model configuration that cannot work (checked before anything is built).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("the UNet has no blocks")]
    NoUnetBlocks,
    #[error("the VAE has no blocks")]
    NoVaeBlocks,
    #[error("the VAE has {blocks} blocks; at most {max} are possible")]
    TooManyVaeBlocks { blocks: usize, max: usize },
    #[error("{part}: {channels} channels cannot be split into {groups} normalisation groups")]
    Groups {
        part: &'static str,
        channels: usize,
        groups: usize,
    },
    #[error("{part}: {channels} channels cannot be split into {heads} attention heads")]
    Heads {
        part: &'static str,
        channels: usize,
        heads: usize,
    },
    #[error("{part}: {what} must be positive")]
    Zero {
        part: &'static str,
        what: &'static str,
    },
    #[error("a pipeline has one or two text encoders, this one has {count}")]
    TextEncoderCount { count: usize },
    #[error("the text encoders produce {text} features per token but the UNet attends to {unet}")]
    CrossAttention { text: usize, unet: usize },
    #[error("the text encoders take {first} and {second} tokens; they must take as many")]
    SequenceLength { first: usize, second: usize },
    #[error("the CLIP sequence length {length} leaves no room for a prompt (at least 2)")]
    SequenceTooShort { length: usize },
    #[error("DDIM's eta is {eta}; it must be 0 (any other value draws unseeded noise)")]
    EtaNotZero { eta: f64 },
    #[error("the scheduler needs a positive number of training timesteps")]
    NoTrainTimesteps,
    #[error("max_side {max_side}: it must be between 1 and {limit} pixels")]
    MaxSide { max_side: usize, limit: usize },
    #[error("the latent scaling factor {factor} is not a positive number")]
    LatentScale { factor: f64 },
}

/// A generation request that this model cannot paint.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error(
        "{width}x{height} pixels: each side must be a multiple of {multiple} between {multiple} \
         and {max}"
    )]
    Size {
        width: usize,
        height: usize,
        multiple: usize,
        max: usize,
    },
    #[error("{steps} steps: between 1 and {max} are possible")]
    Steps { steps: usize, max: usize },
    #[error("guidance scale {scale}: it must be a finite number, 0 or more")]
    Guidance { scale: f64 },
    #[error("strength {strength}: it must be above 0 and at most 1")]
    Strength { strength: f64 },
    #[error("the source image is empty ({width}x{height})")]
    EmptyImage { width: u32, height: u32 },
}

/// Everything that can go wrong while loading or running a diffusion model.
#[derive(Debug, thiserror::Error)]
pub enum DiffusionError {
    #[error("invalid model configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("invalid request: {0}")]
    Request(#[from] RequestError),
    #[error("the {component} file {} is missing", path.display())]
    MissingFile { component: Component, path: PathBuf },
    #[error("the {component} file {} cannot be read", path.display())]
    ReadFile {
        component: Component,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {component} file {} is not a valid safetensors file", path.display())]
    MalformedWeights {
        component: Component,
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    #[error(
        "the {component} weights in {} do not fit the model configuration",
        path.display()
    )]
    IncompatibleWeights {
        component: Component,
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    #[error("the tokenizer file {} is not a valid tokenizer", path.display())]
    MalformedTokenizer {
        path: PathBuf,
        #[source]
        source: tokenizers::Error,
    },
    #[error("the tokenizer {} has no {token} token", path.display())]
    MissingToken { path: PathBuf, token: String },
    #[error(
        "the tokenizer {} has {tokens} token ids but the {component} knows {vocab_size}",
        path.display()
    )]
    VocabularyMismatch {
        path: PathBuf,
        tokens: usize,
        component: Component,
        vocab_size: usize,
    },
    #[error("the prompt cannot be tokenized")]
    Tokenize {
        #[source]
        source: tokenizers::Error,
    },
    #[error("the model failed while {stage}")]
    Model {
        stage: Stage,
        #[source]
        source: candle_core::Error,
    },
    #[error("writing {} failed", path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: WriteError,
    },
    #[error("cancelled after {step} of {total} steps")]
    Cancelled { step: usize, total: usize },
}

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tensors(#[from] candle_core::Error),
    #[error(transparent)]
    Tokenizer(tokenizers::Error),
}

impl DiffusionError {
    /// Wraps a candle error raised while `stage` ran.
    pub(crate) fn model(stage: Stage) -> impl FnOnce(candle_core::Error) -> Self {
        move |source| Self::Model { stage, source }
    }
}
