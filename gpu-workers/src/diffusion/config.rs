//! Model configurations: the SD 1.5 and SDXL-Turbo presets, built from candle's public
//! configuration types, and their checks.

use candle_core::DType;
use candle_transformers::models::clip::text_model::{Activation, ClipTextConfig};
use candle_transformers::models::stable_diffusion::clip::Config as SdClipConfig;
use candle_transformers::models::stable_diffusion::ddim::DDIMSchedulerConfig;
use candle_transformers::models::stable_diffusion::schedulers::{
    BetaSchedule, PredictionType, TimestepSpacing,
};
use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModelConfig,
};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKLConfig;

use super::error::ConfigError;

/// CLIP's vocabulary: 2 × 256 byte symbols, 48,894 merges, start and end of text.
pub const CLIP_VOCAB_SIZE: usize = 49408;
/// CLIP's context: 77 tokens, start and end of text included.
pub const CLIP_CONTEXT: usize = 77;
/// Width of OpenCLIP ViT-bigG/14's token features (SDXL's second text encoder).
const BIG_G_HIDDEN: usize = 1280;
/// Each VAE block but the last halves the resolution; past 8 nothing is left of any picture.
const MAX_VAE_BLOCKS: usize = 8;
/// The largest `max_side` a configuration may allow.
pub const MAX_SIDE_LIMIT: usize = 16384;

/// The models this crate knows how to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Stable Diffusion 1.5: 512 × 512, about 20 to 50 DDIM steps, classifier-free guidance.
    Sd15,
    /// SDXL-Turbo: 512 × 512 in 1 to 4 steps, no guidance.
    SdxlTurbo,
}

impl ModelKind {
    /// Every known model.
    pub const ALL: [Self; 2] = [Self::Sd15, Self::SdxlTurbo];

    /// The model's directory name under the models directory (`sd15`, `sdxl-turbo`).
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Sd15 => "sd15",
            Self::SdxlTurbo => "sdxl-turbo",
        }
    }

    /// The model's configuration.
    pub fn config(self) -> ModelConfig {
        match self {
            Self::Sd15 => ModelConfig::sd15(),
            Self::SdxlTurbo => ModelConfig::sdxl_turbo(),
        }
    }
}

/// One text encoder of a pipeline.
#[derive(Debug, Clone)]
pub enum TextEncoderConfig {
    /// candle's CLIP text transformer, of any size (quick-GELU): OpenAI's ViT-L/14 text tower
    /// of SD 1.5 and SDXL's first encoder, or a tiny one for tests. Its `pad_with` names the
    /// padding token (`None`: the end-of-text token).
    Clip(ClipTextConfig),
    /// OpenCLIP ViT-bigG/14's text tower (exact GELU, 1280 features, padded with `!`): SDXL's
    /// second encoder, built with candle's Stable Diffusion CLIP module.
    OpenClipBigG,
}

impl TextEncoderConfig {
    /// OpenAI CLIP ViT-L/14's text tower.
    pub fn clip_vit_l14() -> Self {
        Self::Clip(ClipTextConfig {
            vocab_size: CLIP_VOCAB_SIZE,
            embed_dim: 768,
            activation: Activation::QuickGelu,
            intermediate_size: 3072,
            max_position_embeddings: CLIP_CONTEXT,
            pad_with: None,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            projection_dim: 768,
        })
    }

    /// Features per token.
    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Clip(c) => c.embed_dim,
            Self::OpenClipBigG => BIG_G_HIDDEN,
        }
    }

    /// Tokens per prompt, start and end of text included (prompts are padded to it).
    pub fn context_length(&self) -> usize {
        match self {
            Self::Clip(c) => c.max_position_embeddings,
            Self::OpenClipBigG => SdClipConfig::sdxl2().max_position_embeddings,
        }
    }

    /// Size of the token embedding table.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Clip(c) => c.vocab_size,
            Self::OpenClipBigG => CLIP_VOCAB_SIZE,
        }
    }

    /// The padding token; `None` pads with the end-of-text token.
    pub fn pad_with(&self) -> Option<String> {
        match self {
            Self::Clip(c) => c.pad_with.clone(),
            Self::OpenClipBigG => SdClipConfig::sdxl2().pad_with,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let Self::Clip(c) = self else {
            return Ok(());
        };
        for (what, value) in [
            ("vocab_size", c.vocab_size),
            ("embed_dim", c.embed_dim),
            ("intermediate_size", c.intermediate_size),
            ("num_attention_heads", c.num_attention_heads),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero {
                    part: "text encoder",
                    what,
                });
            }
        }
        if c.embed_dim % c.num_attention_heads != 0 {
            return Err(ConfigError::Heads {
                part: "text encoder",
                channels: c.embed_dim,
                heads: c.num_attention_heads,
            });
        }
        Ok(())
    }
}

/// What a request leaves out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// Classifier-free guidance; 1 or less runs without it (one UNet pass per step).
    pub guidance_scale: f64,
    /// How much of the source picture image-to-image repaints (0 < strength ≤ 1).
    pub strength: f64,
}

/// Everything needed to build and run a diffusion pipeline. Start from a preset
/// ([`ModelConfig::sd15`], [`ModelConfig::sdxl_turbo`], [`super::tiny::config`]) and change
/// fields as needed; [`ModelConfig::check`] runs before anything is built.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub unet: UNet2DConditionModelConfig,
    pub vae: AutoEncoderKLConfig,
    /// One encoder (SD 1.5) or two whose features are concatenated (SDXL).
    pub text_encoders: Vec<TextEncoderConfig>,
    /// The DDIM scheduler; `eta` must stay 0 (deterministic).
    pub scheduler: DDIMSchedulerConfig,
    /// Latents are the VAE's posterior scaled by this factor.
    pub latent_scale: f64,
    /// Weights and activations: `F32` on the CPU; `F16` halves a GPU's memory (SDXL's VAE
    /// then needs weights fixed for half precision).
    pub dtype: DType,
    /// Longest accepted side, in pixels.
    pub max_side: usize,
    pub defaults: Defaults,
}

fn block(out_channels: usize, use_cross_attn: Option<usize>, heads: usize) -> BlockConfig {
    BlockConfig {
        out_channels,
        use_cross_attn,
        attention_head_dim: heads,
    }
}

/// The VAE shared by SD 1.5 and SDXL (128 → 512 channels, 8× downsampling).
fn sd_vae() -> AutoEncoderKLConfig {
    AutoEncoderKLConfig {
        block_out_channels: vec![128, 256, 512, 512],
        layers_per_block: 2,
        latent_channels: 4,
        norm_num_groups: 32,
        use_quant_conv: true,
        use_post_quant_conv: true,
    }
}

impl ModelConfig {
    /// Stable Diffusion 1.5 (the values of its published `unet`, `vae`, `text_encoder` and
    /// `scheduler` configurations).
    pub fn sd15() -> Self {
        Self {
            unet: UNet2DConditionModelConfig {
                blocks: vec![
                    block(320, Some(1), 8),
                    block(640, Some(1), 8),
                    block(1280, Some(1), 8),
                    block(1280, None, 8),
                ],
                center_input_sample: false,
                cross_attention_dim: 768,
                downsample_padding: 1,
                flip_sin_to_cos: true,
                freq_shift: 0.,
                layers_per_block: 2,
                mid_block_scale_factor: 1.,
                norm_eps: 1e-5,
                norm_num_groups: 32,
                sliced_attention_size: None,
                use_linear_projection: false,
            },
            vae: sd_vae(),
            text_encoders: vec![TextEncoderConfig::clip_vit_l14()],
            scheduler: DDIMSchedulerConfig {
                beta_start: 0.00085,
                beta_end: 0.012,
                beta_schedule: BetaSchedule::ScaledLinear,
                eta: 0.,
                steps_offset: 1,
                prediction_type: PredictionType::Epsilon,
                train_timesteps: 1000,
                timestep_spacing: TimestepSpacing::Leading,
            },
            latent_scale: 0.18215,
            dtype: DType::F32,
            max_side: 1024,
            defaults: Defaults {
                width: 512,
                height: 512,
                steps: 20,
                guidance_scale: 7.5,
                strength: 0.75,
            },
        }
    }

    /// SDXL-Turbo (its published configurations), run with DDIM on trailing timesteps, which
    /// starts from the last training timestep as the model was distilled for. candle's UNet
    /// has no SDXL micro-conditioning (pooled text and size embeddings); the token features
    /// of both encoders are concatenated, as candle's own SDXL pipeline does.
    pub fn sdxl_turbo() -> Self {
        Self {
            unet: UNet2DConditionModelConfig {
                blocks: vec![
                    block(320, None, 5),
                    block(640, Some(2), 10),
                    block(1280, Some(10), 20),
                ],
                center_input_sample: false,
                cross_attention_dim: 2048,
                downsample_padding: 1,
                flip_sin_to_cos: true,
                freq_shift: 0.,
                layers_per_block: 2,
                mid_block_scale_factor: 1.,
                norm_eps: 1e-5,
                norm_num_groups: 32,
                sliced_attention_size: None,
                use_linear_projection: true,
            },
            vae: sd_vae(),
            text_encoders: vec![
                TextEncoderConfig::clip_vit_l14(),
                TextEncoderConfig::OpenClipBigG,
            ],
            scheduler: DDIMSchedulerConfig {
                beta_start: 0.00085,
                beta_end: 0.012,
                beta_schedule: BetaSchedule::ScaledLinear,
                eta: 0.,
                steps_offset: 1,
                prediction_type: PredictionType::Epsilon,
                train_timesteps: 1000,
                timestep_spacing: TimestepSpacing::Trailing,
            },
            latent_scale: 0.13025,
            dtype: DType::F32,
            max_side: 1024,
            defaults: Defaults {
                width: 512,
                height: 512,
                steps: 1,
                guidance_scale: 0.,
                strength: 0.5,
            },
        }
    }

    /// Pixels per latent cell along a side (8 for SD): sides must be multiples of it.
    pub fn vae_factor(&self) -> usize {
        let downsamplings = self.vae.block_out_channels.len().saturating_sub(1);
        1usize << downsamplings.min(MAX_VAE_BLOCKS)
    }

    /// Features per token of the concatenated text encoders.
    pub fn text_hidden_size(&self) -> usize {
        self.text_encoders
            .iter()
            .map(TextEncoderConfig::hidden_size)
            .sum()
    }

    /// Checks everything candle would otherwise trip over (some of its constructors index
    /// or divide without checking).
    pub fn check(&self) -> Result<(), ConfigError> {
        self.check_unet()?;
        self.check_vae()?;
        let count = self.text_encoders.len();
        if !(1..=2).contains(&count) {
            return Err(ConfigError::TextEncoderCount { count });
        }
        for encoder in &self.text_encoders {
            encoder.check()?;
        }
        let first = self.text_encoders[0].context_length();
        if let Some(second) = self.text_encoders.get(1).map(|e| e.context_length())
            && second != first
        {
            return Err(ConfigError::SequenceLength { first, second });
        }
        if first < 2 {
            return Err(ConfigError::SequenceTooShort { length: first });
        }
        let text = self.text_hidden_size();
        if text != self.unet.cross_attention_dim {
            return Err(ConfigError::CrossAttention {
                text,
                unet: self.unet.cross_attention_dim,
            });
        }
        if self.scheduler.eta != 0. {
            return Err(ConfigError::EtaNotZero {
                eta: self.scheduler.eta,
            });
        }
        if self.scheduler.train_timesteps == 0 {
            return Err(ConfigError::NoTrainTimesteps);
        }
        if !(self.latent_scale.is_finite() && self.latent_scale > 0.) {
            return Err(ConfigError::LatentScale {
                factor: self.latent_scale,
            });
        }
        if !(1..=MAX_SIDE_LIMIT).contains(&self.max_side) {
            return Err(ConfigError::MaxSide {
                max_side: self.max_side,
                limit: MAX_SIDE_LIMIT,
            });
        }
        Ok(())
    }

    fn check_unet(&self) -> Result<(), ConfigError> {
        let unet = &self.unet;
        let groups = unet.norm_num_groups;
        if unet.blocks.is_empty() {
            return Err(ConfigError::NoUnetBlocks);
        }
        if groups == 0 {
            return Err(ConfigError::Zero {
                part: "UNet",
                what: "norm_num_groups",
            });
        }
        for b in &unet.blocks {
            if b.out_channels == 0 || b.out_channels % groups != 0 {
                return Err(ConfigError::Groups {
                    part: "UNet",
                    channels: b.out_channels,
                    groups,
                });
            }
            if b.attention_head_dim == 0 || b.out_channels % b.attention_head_dim != 0 {
                return Err(ConfigError::Heads {
                    part: "UNet",
                    channels: b.out_channels,
                    heads: b.attention_head_dim,
                });
            }
        }
        if !unet.blocks[0].out_channels.is_multiple_of(2) {
            return Err(ConfigError::Groups {
                part: "UNet timestep embedding",
                channels: unet.blocks[0].out_channels,
                groups: 2,
            });
        }
        if unet.cross_attention_dim == 0 {
            return Err(ConfigError::Zero {
                part: "UNet",
                what: "cross_attention_dim",
            });
        }
        if unet.layers_per_block == 0 {
            return Err(ConfigError::Zero {
                part: "UNet",
                what: "layers_per_block",
            });
        }
        Ok(())
    }

    fn check_vae(&self) -> Result<(), ConfigError> {
        let vae = &self.vae;
        let groups = vae.norm_num_groups;
        if vae.block_out_channels.is_empty() {
            return Err(ConfigError::NoVaeBlocks);
        }
        if vae.block_out_channels.len() > MAX_VAE_BLOCKS {
            return Err(ConfigError::TooManyVaeBlocks {
                blocks: vae.block_out_channels.len(),
                max: MAX_VAE_BLOCKS,
            });
        }
        if groups == 0 {
            return Err(ConfigError::Zero {
                part: "VAE",
                what: "norm_num_groups",
            });
        }
        for &channels in &vae.block_out_channels {
            if channels == 0 || channels % groups != 0 {
                return Err(ConfigError::Groups {
                    part: "VAE",
                    channels,
                    groups,
                });
            }
        }
        if vae.latent_channels == 0 {
            return Err(ConfigError::Zero {
                part: "VAE",
                what: "latent_channels",
            });
        }
        if vae.layers_per_block == 0 {
            return Err(ConfigError::Zero {
                part: "VAE",
                what: "layers_per_block",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_pass_their_checks() {
        for kind in ModelKind::ALL {
            assert_eq!(kind.config().check(), Ok(()), "{kind:?}");
        }
        assert_eq!(ModelConfig::sd15().vae_factor(), 8);
        assert_eq!(ModelConfig::sdxl_turbo().text_hidden_size(), 2048);
    }

    /// candle keeps its presets' parts private but prints them: ours must be the same.
    #[test]
    fn presets_match_candles() {
        use candle_transformers::models::stable_diffusion::StableDiffusionConfig;
        let candle_sd15 = format!("{:?}", StableDiffusionConfig::v1_5(None, None, None));
        let ours = ModelConfig::sd15();
        for part in [
            format!("unet: {:?}", ours.unet),
            format!("autoencoder: {:?}", ours.vae),
            format!("{:?}", ours.scheduler),
        ] {
            assert!(candle_sd15.contains(&part), "{part}\nnot in\n{candle_sd15}");
        }
        // The text tower: same fields under another type name.
        let fields = |debug: String| debug.split_once('{').map(|(_, f)| f.to_owned());
        let TextEncoderConfig::Clip(clip) = TextEncoderConfig::clip_vit_l14() else {
            panic!("ViT-L/14 is a CLIP encoder");
        };
        assert_eq!(
            fields(format!("{clip:?}")),
            fields(format!("{:?}", SdClipConfig::v1_5()))
        );
        let candle_turbo = format!("{:?}", StableDiffusionConfig::sdxl_turbo(None, None, None));
        let ours = ModelConfig::sdxl_turbo();
        for part in [
            format!("unet: {:?}", ours.unet),
            format!("autoencoder: {:?}", ours.vae),
        ] {
            assert!(
                candle_turbo.contains(&part),
                "{part}\nnot in\n{candle_turbo}"
            );
        }
    }

    #[test]
    fn impossible_configurations_are_refused() {
        let mut c = ModelConfig::sd15();
        c.scheduler.eta = 0.5;
        assert_eq!(c.check(), Err(ConfigError::EtaNotZero { eta: 0.5 }));

        let mut c = ModelConfig::sd15();
        c.unet.blocks.clear();
        assert_eq!(c.check(), Err(ConfigError::NoUnetBlocks));

        let mut c = ModelConfig::sd15();
        c.unet.cross_attention_dim = 1024;
        assert_eq!(
            c.check(),
            Err(ConfigError::CrossAttention {
                text: 768,
                unet: 1024
            })
        );

        let mut c = ModelConfig::sdxl_turbo();
        c.vae.norm_num_groups = 0;
        assert!(matches!(
            c.check(),
            Err(ConfigError::Zero { part: "VAE", .. })
        ));

        let mut c = ModelConfig::sd15();
        c.text_encoders.clear();
        assert_eq!(c.check(), Err(ConfigError::TextEncoderCount { count: 0 }));
    }
}
