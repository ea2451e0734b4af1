//! Every command of the gallery, as methods of [`crate::Commands`].

mod catalog;
mod generation;
mod interactions;

pub use catalog::ArtworkUpload;
pub use generation::GenerationInput;
