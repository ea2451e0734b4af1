//! The S3 store against a real S3-compatible server: moto, from PyPI, installed by
//! `scripts/install-deps` into its own virtualenv. Each test starts its own server on a free
//! port and stops it when done, and uses its own bucket.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::{Read, Seek};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

use super::{MediaStore, StoreLocation, s3_store};
use crate::media::check::tests::encode;
use crate::media::{ImageFormat, ImageLimits, MediaError};

/// The Python that runs moto: `GALLERY_MOTO_PYTHON`, else the virtualenv
/// `scripts/install-deps` makes in the stack directory.
fn moto_python() -> PathBuf {
    if let Some(python) = std::env::var_os("GALLERY_MOTO_PYTHON") {
        return PathBuf::from(python);
    }
    let stack = std::env::var_os("GALLERY_STACK_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|cache| cache.join("gallery").join("stack"))
        })
        .unwrap_or_default();
    stack.join("dist/moto/venv/bin/python")
}

/// A moto server of this test's own, stopped on drop (also when the test fails).
struct Moto {
    child: Child,
    log: std::fs::File,
    endpoint: String,
}

impl Moto {
    async fn start() -> Self {
        let python = moto_python();
        assert!(
            python.exists(),
            "{} not found: run scripts/install-deps (or set GALLERY_MOTO_PYTHON)",
            python.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = tempfile::tempfile().expect("log file");
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log.try_clone().expect("log file")))
            .spawn()
            .expect("start moto");
        let mut moto = Moto {
            child,
            log,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto exited ({status}):\n{}", moto.output());
            }
            if Instant::now() > deadline {
                panic!("moto did not listen within 60 s:\n{}", moto.output());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto
    }

    fn output(&mut self) -> String {
        let mut out = String::new();
        let _ = self.log.rewind();
        let _ = self.log.read_to_string(&mut out);
        out
    }

    async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(response.status().is_success(), "{}", response.status());
    }

    fn store(&self, bucket: &str, prefix: Option<&str>) -> MediaStore {
        let builder = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test");
        MediaStore {
            store: s3_store(builder, bucket, prefix).expect("S3 store"),
            location: StoreLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.map(str::to_owned),
            },
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_s3_store_round_trips_under_its_prefix_and_stores_the_same_bytes_once() {
    let moto = Moto::start().await;
    let bucket = format!("gallery-test-{}", uuid::Uuid::new_v4().simple());
    moto.create_bucket(&bucket).await;
    let store = moto.store(&bucket, Some("media/test"));
    let png = Bytes::from(encode(48, 40, ImageFormat::Png));

    let image = store
        .put_image(png.clone(), &ImageLimits::default())
        .await
        .expect("first put");
    assert_eq!((image.width, image.height), (48, 40));
    assert_eq!(image.content_type, "image/png");
    // The second put of the same bytes meets the conditional write and is still a success.
    let again = store
        .put_image(png.clone(), &ImageLimits::default())
        .await
        .expect("second put");
    assert_eq!(again, image);

    let got = store.get(&image.key).await.expect("get");
    assert_eq!(got, (png.clone(), "image/png"));

    // The object sits under the prefix, with its content type, seen from the bucket's root.
    let root = moto.store(&bucket, None);
    let raw = root
        .store
        .get(&Path::from(format!("media/test/{}", image.key)))
        .await
        .expect("object under the prefix");
    assert_eq!(
        raw.attributes.get(&Attribute::ContentType),
        Some(&AttributeValue::from("image/png"))
    );
    assert_eq!(raw.bytes().await.expect("object body"), png);
    // The server really refuses to overwrite: the second put above met an existing object.
    let overwrite = store
        .store
        .put_opts(
            &Path::from(image.key.as_str()),
            PutPayload::from_static(b"other bytes"),
            PutOptions::from(PutMode::Create),
        )
        .await;
    assert!(
        matches!(overwrite, Err(object_store::Error::AlreadyExists { .. })),
        "{overwrite:?}"
    );

    let missing = format!("images/sha256/{}.png", "0".repeat(64));
    assert!(matches!(
        store.get(&missing).await,
        Err(MediaError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_missing_bucket_is_a_store_error_the_client_sees_as_unavailable() {
    let moto = Moto::start().await;
    let store = moto.store("no-such-bucket", None);
    let png = Bytes::from(encode(40, 40, ImageFormat::Png));
    let refused = store.put_image(png, &ImageLimits::default()).await;
    let error = refused.expect_err("no bucket");
    assert!(matches!(error, MediaError::Store { .. }), "{error:?}");
    let error = crate::CommandError::from(error);
    assert_eq!(
        (error.code(), error.status().as_u16()),
        ("UNAVAILABLE", 503)
    );
}
