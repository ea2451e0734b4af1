//! Object storage for images, chosen by a URL: a local directory, S3 (or any S3-compatible
//! store), or memory. Keys are content-addressed, so storing the same bytes twice writes one
//! object and gives the same key.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use gallery_schemas::ImageRef;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use url::Url;

use super::check::{self, ImageLimits};
use super::{MediaConfig, MediaError};

const STORE_URL: &str = "media.store_url";

/// Where images are stored, parsed from `media.store_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A local directory (`file:///abs/path` or a plain path), created if missing.
    Local(PathBuf),
    /// An S3 bucket, keys under an optional prefix (`s3://bucket/optional/prefix`).
    S3 {
        bucket: String,
        prefix: Option<String>,
    },
    /// The process's memory (`memory://`): lost when the process stops, never durable.
    Memory,
}

impl StoreLocation {
    pub fn parse(raw: &str) -> Result<Self, MediaError> {
        let bad = |reason: &'static str| MediaError::Config {
            key: STORE_URL,
            value: raw.to_owned(),
            reason,
        };
        let raw_trimmed = raw.trim();
        if raw_trimmed.is_empty() {
            return Err(bad("must name a directory, an s3:// bucket or memory://"));
        }
        if !raw_trimmed.contains("://") {
            return Ok(StoreLocation::Local(PathBuf::from(raw_trimmed)));
        }
        let url = Url::parse(raw_trimmed).map_err(|_| bad("is neither a URL nor a path"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "must not hold credentials (S3 takes them from AWS_* environment variables)",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or a fragment"));
        }
        match url.scheme() {
            "file" => url
                .to_file_path()
                .map(StoreLocation::Local)
                .map_err(|()| bad("a file:// URL must name an absolute local path")),
            "s3" => {
                let bucket = url.host_str().unwrap_or_default();
                if bucket.is_empty() {
                    return Err(bad("an s3:// URL must name a bucket"));
                }
                let prefix = url.path().trim_matches('/');
                if !prefix.is_empty() && Path::parse(prefix).is_err() {
                    return Err(bad("the S3 prefix is not a valid object path"));
                }
                Ok(StoreLocation::S3 {
                    bucket: bucket.to_owned(),
                    prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
                })
            }
            "memory" => {
                if url.host_str().is_some_and(|h| !h.is_empty())
                    || !url.path().trim_matches('/').is_empty()
                {
                    return Err(bad("memory:// takes no host or path"));
                }
                Ok(StoreLocation::Memory)
            }
            _ => Err(bad(
                "must be a path, a file:// URL, an s3:// URL or memory://",
            )),
        }
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Local(dir) => write!(f, "{}", dir.display()),
            StoreLocation::S3 {
                bucket,
                prefix: Some(prefix),
            } => write!(f, "s3://{bucket}/{prefix}"),
            StoreLocation::S3 { bucket, .. } => write!(f, "s3://{bucket}"),
            StoreLocation::Memory => f.write_str("memory://"),
        }
    }
}

/// The default image directory: `$XDG_DATA_HOME/gallery/objects`, or
/// `~/.local/share/gallery/objects` when `XDG_DATA_HOME` is unset (or not absolute), or
/// `gallery/objects` under the working directory when there is no home directory either.
pub fn default_store_dir() -> PathBuf {
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| PathBuf::from(home).join(".local").join("share"))
        })
        .unwrap_or_default();
    data_home.join("gallery").join("objects")
}

/// The S3 store for `bucket`, keys under `prefix`, from an otherwise configured builder.
fn s3_store(
    builder: AmazonS3Builder,
    bucket: &str,
    prefix: Option<&str>,
) -> object_store::Result<Arc<dyn ObjectStore>> {
    let s3 = builder.with_bucket_name(bucket).build()?;
    Ok(match prefix {
        Some(prefix) => Arc::new(PrefixStore::new(s3, prefix)),
        None => Arc::new(s3),
    })
}

/// Checked, content-addressed image storage.
#[derive(Debug, Clone)]
pub struct MediaStore {
    store: Arc<dyn ObjectStore>,
    location: StoreLocation,
}

impl MediaStore {
    /// Opens the store `config.store_url` names.
    pub fn open(config: &MediaConfig) -> Result<Self, MediaError> {
        Self::open_at(StoreLocation::parse(&config.store_url)?)
    }

    /// Opens a store: creates a local directory if missing (writes are fsynced); builds an S3
    /// client from the `AWS_*` environment variables (`AWS_ENDPOINT`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, ...) for the bucket;
    /// or starts an empty memory store.
    pub fn open_at(location: StoreLocation) -> Result<Self, MediaError> {
        let store: Arc<dyn ObjectStore> = match &location {
            StoreLocation::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| MediaError::CreateDir {
                    path: dir.clone(),
                    source,
                })?;
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|source| MediaError::Open {
                        url: location.to_string(),
                        source,
                    })?
                    .with_fsync(true);
                Arc::new(fs)
            }
            StoreLocation::S3 { bucket, prefix } => {
                s3_store(AmazonS3Builder::from_env(), bucket, prefix.as_deref()).map_err(
                    |source| MediaError::Open {
                        url: location.to_string(),
                        source,
                    },
                )?
            }
            StoreLocation::Memory => Arc::new(InMemory::new()),
        };
        Ok(Self { store, location })
    }

    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// The object store underneath, for other roles of the process that share it (the AI
    /// painter reads source photos from it and writes its results into it).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// Checks `bytes` against `limits` (off the async runtime: decoding is CPU work), then
    /// stores them under their content-addressed key unless an object is already there.
    /// Returns the reference an event carries; the same bytes always give the same key.
    #[tracing::instrument(skip_all, fields(size = bytes.len(), key))]
    pub async fn put_image(
        &self,
        bytes: Bytes,
        limits: &ImageLimits,
    ) -> Result<ImageRef, MediaError> {
        let limits = *limits;
        let checked = bytes.clone();
        let info = tokio::task::spawn_blocking(move || check::check_image(&checked, &limits))
            .await
            .map_err(|source| MediaError::CheckAborted { source })??;
        let image = info.to_image_ref();
        tracing::Span::current().record("key", image.key.as_str());

        let mut options = PutOptions::from(PutMode::Create);
        if matches!(self.location, StoreLocation::S3 { .. }) {
            // Lets the bucket serve the object directly; the local store keeps no attributes.
            options.attributes =
                Attributes::from_iter([(Attribute::ContentType, info.content_type())]);
        }
        let path = Path::from(image.key.as_str());
        match self
            .store
            .put_opts(&path, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => tracing::debug!("image stored"),
            // Same key, same bytes: the object is already there.
            Err(object_store::Error::AlreadyExists { .. }) => {
                tracing::debug!("image already stored");
            }
            Err(source) => return Err(MediaError::Store { source }),
        }
        Ok(image)
    }

    /// The bytes stored under `key` and their content type.
    #[tracing::instrument(skip(self))]
    pub async fn get(&self, key: &str) -> Result<(Bytes, &'static str), MediaError> {
        let format = check::parse_key(key).ok_or_else(|| MediaError::InvalidKey {
            key: key.to_owned(),
        })?;
        let not_found_or_store = |source| match source {
            object_store::Error::NotFound { .. } => MediaError::NotFound {
                key: key.to_owned(),
            },
            source => MediaError::Store { source },
        };
        let bytes = self
            .store
            .get(&Path::from(key))
            .await
            .map_err(not_found_or_store)?
            .bytes()
            .await
            .map_err(not_found_or_store)?;
        Ok((bytes, format.content_type()))
    }
}

#[cfg(test)]
#[path = "s3_tests.rs"]
mod s3_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::ImageFormat;
    use crate::media::check::tests::encode;

    fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(d) = pending.pop() {
            for entry in std::fs::read_dir(&d).unwrap_or_else(|e| unreachable!("{e}")) {
                let path = entry.unwrap_or_else(|e| unreachable!("{e}")).path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files
    }

    fn open(url: &str) -> MediaStore {
        MediaStore::open(&MediaConfig {
            store_url: url.to_owned(),
            ..MediaConfig::default()
        })
        .unwrap_or_else(|e| unreachable!("{url}: {e}"))
    }

    #[test]
    fn store_urls_parse_to_locations() {
        let local = |p: &str| Ok(StoreLocation::Local(PathBuf::from(p)));
        let s3 = |bucket: &str, prefix: Option<&str>| {
            Ok(StoreLocation::S3 {
                bucket: bucket.into(),
                prefix: prefix.map(Into::into),
            })
        };
        let cases = [
            ("file:///srv/gallery/objects", local("/srv/gallery/objects")),
            ("file:///srv/my%20images", local("/srv/my images")),
            ("/srv/gallery/objects", local("/srv/gallery/objects")),
            ("data/objects", local("data/objects")),
            ("s3://art-bucket", s3("art-bucket", None)),
            ("s3://art-bucket/", s3("art-bucket", None)),
            (
                "s3://art-bucket/prod/media/",
                s3("art-bucket", Some("prod/media")),
            ),
            ("memory://", Ok(StoreLocation::Memory)),
        ];
        for (raw, expected) in cases {
            let parsed = StoreLocation::parse(raw).map_err(|e| e.to_string());
            assert_eq!(parsed, expected, "{raw}");
        }
        for bad in [
            "",
            "ftp://example.org/x",
            "s3://",
            "s3://key:secret@bucket/x",
            "file://relative/dir",
            "memory://somewhere",
            "s3://bucket/a//b",
        ] {
            assert!(
                matches!(
                    StoreLocation::parse(bad),
                    Err(MediaError::Config {
                        key: "media.store_url",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_local_store_round_trips_and_stores_the_same_bytes_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let url = Url::from_directory_path(dir.path()).unwrap_or_else(|()| unreachable!());
        let store = open(url.as_str());
        let png = Bytes::from(encode(40, 50, ImageFormat::Png));

        let first = store.put_image(png.clone(), &ImageLimits::default()).await;
        let first = first.unwrap_or_else(|e| unreachable!("{e}"));
        assert!(first.key.starts_with("images/sha256/") && first.key.ends_with(".png"));
        assert_eq!(first.content_type, "image/png");
        assert_eq!((first.width, first.height), (40, 50));
        assert_eq!(first.size_bytes, png.len() as i64);

        let again = store.put_image(png.clone(), &ImageLimits::default()).await;
        assert_eq!(again.ok().as_ref(), Some(&first));
        assert_eq!(files_under(dir.path()), vec![dir.path().join(&first.key)]);

        let got = store.get(&first.key).await.map_err(|e| e.to_string());
        assert_eq!(got, Ok((png, "image/png")));

        let jpeg = Bytes::from(encode(40, 50, ImageFormat::Jpeg));
        let other = store.put_image(jpeg, &ImageLimits::default()).await;
        let other = other.unwrap_or_else(|e| unreachable!("{e}"));
        assert_ne!(other.key, first.key);
        assert_eq!(files_under(dir.path()).len(), 2);
    }

    #[tokio::test]
    async fn a_refused_image_writes_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let store = open(&dir.path().join("objects").to_string_lossy());
        let text = Bytes::from_static(b"hello, this is not an image at all");
        let refused = store.put_image(text, &ImageLimits::default()).await;
        assert!(matches!(refused, Err(MediaError::UnsupportedFormat)));
        assert!(dir.path().join("objects").is_dir());
        assert!(files_under(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_memory_store_round_trips() {
        let store = open("memory://");
        let webp = Bytes::from(encode(64, 32, ImageFormat::WebP));
        let image = store.put_image(webp.clone(), &ImageLimits::default()).await;
        let image = image.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(image.content_type, "image/webp");
        assert!(image.key.ends_with(".webp"));
        let again = store.put_image(webp.clone(), &ImageLimits::default()).await;
        assert_eq!(again.ok().map(|r| r.key), Some(image.key.clone()));
        let got = store.get(&image.key).await.map_err(|e| e.to_string());
        assert_eq!(got, Ok((webp, "image/webp")));
    }

    #[tokio::test]
    async fn unknown_and_malformed_keys_are_told_apart() {
        let store = open("memory://");
        let missing = format!("images/sha256/{}.png", "0".repeat(64));
        assert!(matches!(
            store.get(&missing).await,
            Err(MediaError::NotFound { .. })
        ));
        assert!(matches!(
            store.get("../../etc/passwd").await,
            Err(MediaError::InvalidKey { .. })
        ));
    }
}

/// The write side's image store: a [`MediaStore`] with the configured limits, for artwork
/// images and visitors' photos alike.
#[derive(Debug, Clone)]
pub struct LimitedImages {
    pub store: MediaStore,
    pub limits: ImageLimits,
}

impl crate::ports::ImageStore for LimitedImages {
    fn put_image(
        &self,
        bytes: Vec<u8>,
        _kind: crate::ports::ImageKind,
    ) -> crate::ports::ImageFuture<'_> {
        Box::pin(async move {
            Ok(self
                .store
                .put_image(Bytes::from(bytes), &self.limits)
                .await?)
        })
    }
}
