//! CLIP's BPE tokenizer, read from a `tokenizer.json` in the Hugging Face format.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use super::error::{Component, DiffusionError};
use super::files;

/// The token that opens every prompt.
pub const START_OF_TEXT: &str = "<|startoftext|>";
/// The token that closes every prompt (and pads it, unless the encoder says otherwise).
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// CLIP's tokenizer: prompts to token ids framed by start and end of text.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    path: PathBuf,
    start_id: u32,
    end_id: u32,
    max_id: u32,
}

impl ClipTokenizer {
    /// Reads `tokenizer.json` (as built by `scripts/models.d/clip-tokenizer`); it must know
    /// the start and end of text tokens.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, DiffusionError> {
        let path = path.as_ref();
        let bytes = files::read(Component::Tokenizer, path)?;
        let tokenizer =
            Tokenizer::from_bytes(&bytes).map_err(|source| DiffusionError::MalformedTokenizer {
                path: path.to_path_buf(),
                source,
            })?;
        let mut this = Self {
            tokenizer,
            path: path.to_path_buf(),
            start_id: 0,
            end_id: 0,
            max_id: 0,
        };
        this.max_id = this
            .tokenizer
            .get_vocab(true)
            .into_values()
            .max()
            .unwrap_or(0);
        this.start_id = this.token_id(START_OF_TEXT)?;
        this.end_id = this.token_id(END_OF_TEXT)?;
        Ok(this)
    }

    /// The id of `token`, which must be in the vocabulary.
    pub fn token_id(&self, token: &str) -> Result<u32, DiffusionError> {
        self.tokenizer
            .token_to_id(token)
            .ok_or_else(|| DiffusionError::MissingToken {
                path: self.path.clone(),
                token: token.to_owned(),
            })
    }

    /// The largest id this tokenizer can produce.
    pub fn max_id(&self) -> u32 {
        self.max_id
    }

    /// The path it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of the end of text token.
    pub fn end_id(&self) -> u32 {
        self.end_id
    }

    /// The ids of `prompt`, framed by start and end of text, neither cut nor padded.
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>, DiffusionError> {
        let encoding = self
            .tokenizer
            .encode(prompt, false)
            .map_err(|source| DiffusionError::Tokenize { source })?;
        let mut ids = Vec::with_capacity(encoding.len() + 2);
        ids.push(self.start_id);
        ids.extend_from_slice(encoding.get_ids());
        ids.push(self.end_id);
        Ok(ids)
    }

    /// The ids of `prompt` as a text encoder takes them: exactly `context` ids, the prompt
    /// cut when too long (the end of text token is kept), then padded with `pad_id`.
    pub fn encode_padded(
        &self,
        prompt: &str,
        context: usize,
        pad_id: u32,
    ) -> Result<Vec<u32>, DiffusionError> {
        let mut ids = self.encode(prompt)?;
        if ids.len() > context {
            ids.truncate(context.saturating_sub(1));
            ids.push(self.end_id);
        }
        ids.resize(context, pad_id);
        Ok(ids)
    }
}
