//! The worker's side of object storage: source photos read by key, results stored
//! content-addressed (put-if-absent, so the same bytes are one object however often a job is
//! re-run), and the result cache, one small manifest per cache key written after its images.

use std::sync::Arc;

use bytes::Bytes;
use gallery_schemas::ImageRef;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use serde::{Deserialize, Serialize};

use super::images::{IMAGE_KEY_PREFIX, sha256_hex};

/// Where cache manifests live: `results/<cache key>.json`.
const RESULT_PREFIX: &str = "results/";

/// Why object storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no object is stored under {key}")]
    NotFound { key: String },
    #[error("object storage failed on {key}")]
    Store {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("the cache manifest {key} is not readable")]
    Manifest {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A cached result: the three images of a cache key and what made them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub model: String,
    pub weights_digest: String,
    pub image: ImageRef,
    pub webp: ImageRef,
    pub thumbnail: ImageRef,
    pub steps: u32,
}

/// Content-addressed images and cache manifests in an object store.
#[derive(Debug, Clone)]
pub struct ResultStore {
    store: Arc<dyn ObjectStore>,
    /// Store each object's content type with it (S3 serves it; a directory keeps none).
    content_types: bool,
}

impl ResultStore {
    pub fn new(store: Arc<dyn ObjectStore>, content_types: bool) -> Self {
        Self {
            store,
            content_types,
        }
    }

    /// Writes `bytes` under `key` unless an object is already there (the same key always
    /// holds the same bytes here).
    async fn put_if_absent(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &'static str,
    ) -> Result<(), StoreError> {
        let mut options = PutOptions::from(PutMode::Create);
        if self.content_types {
            options.attributes = Attributes::from_iter([(Attribute::ContentType, content_type)]);
        }
        match self
            .store
            .put_opts(&Path::from(key), PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => {
                tracing::debug!(key, "object stored");
                Ok(())
            }
            Err(object_store::Error::AlreadyExists { .. }) => {
                tracing::debug!(key, "object already stored");
                Ok(())
            }
            Err(source) => Err(StoreError::Store {
                key: key.to_owned(),
                source,
            }),
        }
    }

    /// Stores an encoded image under `images/sha256/<hex>.<ext>` and returns its reference.
    pub async fn put_image(
        &self,
        bytes: Vec<u8>,
        extension: &str,
        content_type: &'static str,
        width: u32,
        height: u32,
    ) -> Result<ImageRef, StoreError> {
        let sha256 = sha256_hex(&bytes);
        let key = format!("{IMAGE_KEY_PREFIX}{sha256}.{extension}");
        let image = ImageRef {
            key: key.clone(),
            content_type: content_type.to_owned(),
            width: i32::try_from(width).unwrap_or(i32::MAX),
            height: i32::try_from(height).unwrap_or(i32::MAX),
            size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            sha256,
        };
        self.put_if_absent(&key, Bytes::from(bytes), content_type)
            .await?;
        Ok(image)
    }

    /// The size of the object under `key`.
    pub async fn size(&self, key: &str) -> Result<u64, StoreError> {
        match self.store.head(&Path::from(key)).await {
            Ok(meta) => Ok(meta.size),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound {
                key: key.to_owned(),
            }),
            Err(source) => Err(StoreError::Store {
                key: key.to_owned(),
                source,
            }),
        }
    }

    /// The bytes under `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let failed = |source| match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                key: key.to_owned(),
            },
            source => StoreError::Store {
                key: key.to_owned(),
                source,
            },
        };
        self.store
            .get(&Path::from(key))
            .await
            .map_err(failed)?
            .bytes()
            .await
            .map_err(failed)
    }

    fn manifest_key(cache_key: &str) -> String {
        format!("{RESULT_PREFIX}{cache_key}.json")
    }

    /// The cached result of `cache_key`, if any.
    pub async fn manifest(&self, cache_key: &str) -> Result<Option<Manifest>, StoreError> {
        let key = Self::manifest_key(cache_key);
        match self.get(&key).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Manifest { key, source }),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records the result of `cache_key`; call it once its images are stored.
    pub async fn put_manifest(
        &self,
        cache_key: &str,
        manifest: &Manifest,
    ) -> Result<(), StoreError> {
        let key = Self::manifest_key(cache_key);
        let bytes = serde_json::to_vec(manifest).map_err(|source| StoreError::Manifest {
            key: key.clone(),
            source,
        })?;
        self.put_if_absent(&key, Bytes::from(bytes), "application/json")
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn store() -> (Arc<InMemory>, ResultStore) {
        let memory = Arc::new(InMemory::new());
        (memory.clone(), ResultStore::new(memory, false))
    }

    async fn count(memory: &InMemory) -> usize {
        use futures::StreamExt as _;
        memory.list(None).count().await
    }

    #[tokio::test]
    async fn the_same_bytes_are_stored_once_under_their_digest() {
        let (memory, s) = store();
        let a = s
            .put_image(b"pixels".to_vec(), "png", "image/png", 2, 3)
            .await
            .unwrap();
        let b = s
            .put_image(b"pixels".to_vec(), "png", "image/png", 2, 3)
            .await
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.key,
            format!("images/sha256/{}.png", sha256_hex(b"pixels"))
        );
        assert_eq!((a.width, a.height, a.size_bytes), (2, 3, 6));
        assert_eq!(count(&memory).await, 1);
        assert_eq!(s.get(&a.key).await.unwrap(), Bytes::from_static(b"pixels"));
        assert_eq!(s.size(&a.key).await.unwrap(), 6);
    }

    #[tokio::test]
    async fn manifests_round_trip_and_a_miss_is_none() {
        let (_, s) = store();
        assert_eq!(s.manifest("k").await.unwrap(), None);
        let image = s
            .put_image(b"x".to_vec(), "png", "image/png", 1, 1)
            .await
            .unwrap();
        let m = Manifest {
            model: "m".into(),
            weights_digest: "d".into(),
            image: image.clone(),
            webp: image.clone(),
            thumbnail: image,
            steps: 3,
        };
        s.put_manifest("k", &m).await.unwrap();
        assert_eq!(s.manifest("k").await.unwrap(), Some(m));
        assert!(matches!(
            s.get("images/sha256/none.png").await,
            Err(StoreError::NotFound { .. })
        ));
    }
}
