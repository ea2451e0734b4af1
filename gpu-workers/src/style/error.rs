//! What can go wrong when loading or running the style-transfer network.

use std::path::PathBuf;

/// An error of the style-transfer model: bad input (style mix, image), missing or damaged
/// model files, a failed tensor computation, or a run stopped by its progress hook.
#[derive(Debug, thiserror::Error)]
pub enum StyleError {
    #[error("unknown style {name:?} (the model has {known} styles, named like {example:?})")]
    UnknownStyle {
        name: String,
        known: usize,
        example: String,
    },
    #[error("style {name:?} appears twice in the mix")]
    DuplicateStyle { name: String },
    #[error("style {name:?} has weight {weight}; weights must be finite and not negative")]
    BadWeight { name: String, weight: f32 },
    #[error("cannot read the weight {text:?} of style {name:?}")]
    UnreadableWeight { name: String, text: String },
    #[error("a style mix needs at least one style with a weight above zero")]
    EmptyMix,
    #[error("the style list is not usable: {reason}")]
    BadCatalog { reason: &'static str },
    #[error("expected {expected} style weights, got {found}")]
    WrongStyleCount { expected: usize, found: usize },
    #[error(
        "the image tensor must be float32 of shape [batch, 3, height, width], got {dtype} {dims:?}"
    )]
    BadImageTensor { dims: Vec<usize>, dtype: String },
    #[error("the image is {width}x{height}; each side needs at least {min} pixels")]
    ImageTooSmall {
        width: usize,
        height: usize,
        min: usize,
    },
    #[error("model file {path} is missing: run scripts/models to download and convert the weights")]
    MissingFile { path: PathBuf },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid style list")]
    BadStyleList {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} does not hold a sha256 digest (64 hexadecimal digits)")]
    BadDigestFile { path: PathBuf },
    #[error(
        "{path} has sha256 {actual}, but the digest file says {expected}: run scripts/models again"
    )]
    DigestMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("the weights in {path} do not fit the network")]
    Weights {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    #[error("tensor computation failed")]
    Tensor(#[from] candle_core::Error),
    /// The progress hook stopped the run after `at` of its `total` steps; there is no
    /// output.
    #[error("stopped after {at} of {total} steps")]
    Stopped { at: u32, total: u32 },
}

/// The result type of the style-transfer model.
pub type Result<T, E = StyleError> = std::result::Result<T, E>;
