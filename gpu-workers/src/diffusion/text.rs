//! Prompts to token features: the CLIP tokenizer and one or two CLIP text encoders.

use candle_core::{D, DType, Device, Tensor};
use candle_nn::Module;
use candle_transformers::models::clip::text_model::ClipTextTransformer;
use candle_transformers::models::stable_diffusion::clip::{
    ClipTextTransformer as SdClipTextTransformer, Config as SdClipConfig,
};

use super::config::{ModelConfig, TextEncoderConfig};
use super::error::{DiffusionError, Stage};
use super::files::{self, ModelFiles};
use super::tokenizer::ClipTokenizer;

#[derive(Debug)]
enum Transformer {
    Clip(ClipTextTransformer),
    BigG(SdClipTextTransformer),
}

#[derive(Debug)]
struct Encoder {
    transformer: Transformer,
    context: usize,
    pad_id: u32,
}

/// Turns prompts into the UNet's conditioning: `(1, context, features)` per prompt, the
/// features of all encoders concatenated.
#[derive(Debug)]
pub(crate) struct PromptEncoder {
    tokenizer: ClipTokenizer,
    encoders: Vec<Encoder>,
    device: Device,
    dtype: DType,
}

impl PromptEncoder {
    pub(crate) fn load(
        config: &ModelConfig,
        files: &ModelFiles,
        device: &Device,
    ) -> Result<Self, DiffusionError> {
        let tokenizer = ClipTokenizer::from_file(&files.tokenizer)?;
        let encoders = config
            .text_encoders
            .iter()
            .enumerate()
            .map(|(index, encoder)| {
                let pad_id = match encoder.pad_with() {
                    Some(pad) => tokenizer.token_id(&pad)?,
                    None => tokenizer.end_id(),
                };
                let (component, weights) = files.text_encoder(index);
                let vocab_size = encoder.vocab_size();
                if tokenizer.max_id() as usize >= vocab_size {
                    return Err(DiffusionError::VocabularyMismatch {
                        path: tokenizer.path().to_path_buf(),
                        tokens: tokenizer.max_id() as usize + 1,
                        component,
                        vocab_size,
                    });
                }
                let weights = weights.ok_or_else(|| DiffusionError::MissingFile {
                    component,
                    path: files.clip.with_file_name(component.file_name()),
                })?;
                let transformer = files::build_from_safetensors(
                    component,
                    weights,
                    config.dtype,
                    device,
                    |vb| match encoder {
                        TextEncoderConfig::Clip(c) => {
                            ClipTextTransformer::new(vb.pp("text_model"), c).map(Transformer::Clip)
                        }
                        TextEncoderConfig::OpenClipBigG => {
                            SdClipTextTransformer::new(vb, &SdClipConfig::sdxl2())
                                .map(Transformer::BigG)
                        }
                    },
                )?;
                Ok(Encoder {
                    transformer,
                    context: encoder.context_length(),
                    pad_id,
                })
            })
            .collect::<Result<Vec<_>, DiffusionError>>()?;
        Ok(Self {
            tokenizer,
            encoders,
            device: device.clone(),
            dtype: config.dtype,
        })
    }

    /// The conditioning of one prompt, `(1, context, features)`. A prompt longer than the
    /// context is cut (as CLIP pipelines do); one prompt at a time, since candle's SD CLIP
    /// module handles a batch of one only.
    pub(crate) fn encode(&self, prompt: &str) -> Result<Tensor, DiffusionError> {
        let features = self
            .encoders
            .iter()
            .map(|encoder| self.run(encoder, prompt))
            .collect::<Result<Vec<_>, _>>()?;
        Tensor::cat(&features, D::Minus1)
            .and_then(|t| t.to_dtype(self.dtype))
            .map_err(DiffusionError::model(Stage::TextEncoding))
    }

    fn run(&self, encoder: &Encoder, prompt: &str) -> Result<Tensor, DiffusionError> {
        let tokens = self
            .tokenizer
            .encode_padded(prompt, encoder.context, encoder.pad_id)?;
        let input = Tensor::new(tokens.as_slice(), &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(DiffusionError::model(Stage::TextEncoding))?;
        match &encoder.transformer {
            Transformer::Clip(t) => t.forward_with_mask(&input, usize::MAX),
            Transformer::BigG(t) => t.forward(&input),
        }
        .map_err(DiffusionError::model(Stage::TextEncoding))
    }
}
