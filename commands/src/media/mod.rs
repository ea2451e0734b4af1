//! Images (artworks from curators, source photos from visitors) are checked by content and
//! stored in object storage, content-addressed, before any event refers to them: an event
//! carries the [`ImageRef`](gallery_schemas::ImageRef) that [`MediaStore::put_image`] returns.

mod check;
mod store;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use check::{ImageFormat, ImageInfo, ImageLimits, check_image};
pub use store::{LimitedImages, MediaStore, StoreLocation, default_store_dir};

/// The `media` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Where images are stored: `file:///abs/path` or a plain path (a local directory,
    /// created if missing), `s3://bucket/optional/prefix` (endpoint, region and credentials
    /// from the standard `AWS_*` environment variables), or `memory://` (in the process only,
    /// lost when it stops: for development and tests, never durable).
    pub store_url: String,
    /// What an uploaded image may be.
    pub limits: ImageLimits,
}

impl Default for MediaConfig {
    /// Stores under [`default_store_dir`], with [`ImageLimits::default`].
    fn default() -> Self {
        Self {
            store_url: default_store_dir().to_string_lossy().into_owned(),
            limits: ImageLimits::default(),
        }
    }
}

impl MediaConfig {
    /// Checks the store URL and the limits without touching the store; the error names the
    /// key at fault (`media.store_url`, `media.limits.*`).
    pub fn validate(&self) -> Result<(), MediaError> {
        StoreLocation::parse(&self.store_url)?;
        self.limits.validate()
    }
}

/// Why an image was refused or could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("image is {size} bytes, more than the {max} allowed")]
    TooLarge { size: u64, max: u64 },
    #[error("not a PNG, JPEG or WebP image")]
    UnsupportedFormat,
    #[error("the {format} image is corrupt or truncated")]
    Corrupt {
        format: ImageFormat,
        #[source]
        source: image::ImageError,
    },
    #[error(
        "image is {width}x{height} pixels; each side must be {min_side} to {max_side} pixels \
         and the area at most {max_pixels} pixels"
    )]
    Dimensions {
        width: u32,
        height: u32,
        min_side: u32,
        max_side: u32,
        max_pixels: u64,
    },
    #[error("{key:?} is not an image key (images/sha256/<hex>.<png|jpg|webp>)")]
    InvalidKey { key: String },
    #[error("no image is stored under {key}")]
    NotFound { key: String },
    #[error("object storage failed")]
    Store {
        #[source]
        source: object_store::Error,
    },
    #[error("the image check did not finish")]
    CheckAborted {
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("{key} = {value:?}: {reason}")]
    Config {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("could not create the image directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not open object storage at {url}")]
    Open {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid_and_stores_under_the_data_dir() {
        let config = MediaConfig::default();
        assert!(config.validate().is_ok());
        assert!(config.store_url.ends_with("gallery/objects"));
    }

    #[test]
    fn a_bad_store_url_is_refused_with_its_key() {
        let config = MediaConfig {
            store_url: "ftp://example.org/images".into(),
            ..MediaConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(MediaError::Config {
                key: "media.store_url",
                ..
            })
        ));
    }
}
