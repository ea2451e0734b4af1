//! Signed media URLs as `GET /media/<key>?exp=..&sig=..` takes them, through the route itself
//! (path and query decoding, the key's form, the signature, `If-None-Match`, the store). The
//! first byte picks the mode: the rest is a request target (and, after a newline, an
//! `If-None-Match` header), or a key whose URL the API signs, which the route must then accept.
//! The store is in memory and holds the PNG of the seeds.

#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use gallery_commands::{ImageLimits, MediaStore, StoreLocation};
use gallery_query_api::{Media, MediaSecret, MediaUrlSettings, MediaUrls, media_routes};
use tower::ServiceExt;

/// The secret the seeds' URLs are signed with.
const SECRET: &[u8] = b"gallery fuzzing secret, thirty-two bytes or more";

/// An 8 × 8 PNG, stored before the first input.
const PNG: &[u8] = include_bytes!("../corpus/upload/png-8x8");

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(gallery_fuzz::runtime);

static MEDIA: LazyLock<Media> = LazyLock::new(|| {
    let store = MediaStore::open_at(StoreLocation::Memory).unwrap_or_else(|e| panic!("{e}"));
    let limits = ImageLimits {
        min_side: 8,
        ..ImageLimits::default()
    };
    RUNTIME
        .block_on(store.put_image(Bytes::from_static(PNG), &limits))
        .unwrap_or_else(|e| panic!("{e}"));
    let urls = MediaUrls::new(&MediaUrlSettings {
        secret: MediaSecret::new(SECRET),
        ttl: Duration::from_secs(3600),
        public_base_url: None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    Media { store, urls }
});

fn get(target: &str, if_none_match: Option<&str>) -> Option<StatusCode> {
    let mut request = Request::get(target);
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    let request = request.body(Body::empty()).ok()?;
    let app: Router = media_routes().with_state(MEDIA.clone());
    let response = RUNTIME.block_on(app.oneshot(request));
    Some(response.unwrap_or_else(|e| match e {}).status())
}

libfuzzer_sys::fuzz_target!(init: gallery_fuzz::init(), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode % 2 == 0 {
        let (target, tag) = match text.split_once('\n') {
            Some((target, tag)) => (target, Some(tag)),
            None => (text, None),
        };
        if let Some(status) = get(target, tag) {
            assert!(!status.is_server_error(), "{status} for {target:?}");
        }
    } else {
        // A URL the API made is accepted for its key (found, missing or refused as not an
        // image key, never a bad signature).
        let url = MEDIA.urls.url(text);
        if let Some(status) = get(&url, None) {
            assert_ne!(status, StatusCode::FORBIDDEN, "{url}");
            assert!(!status.is_server_error(), "{status} for {url}");
        }
    }
});
