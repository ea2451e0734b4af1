//! GraphQL requests as `POST /graphql` takes them: the body read as JSON or multipart (the
//! first byte picks the `Content-Type`), then run by the schema behind its protection (the
//! document budget, persisted queries, the depth and complexity limits, validation) with the
//! service's default settings. No data is attached, so a request that passes every check
//! fails at its first resolver. Every error must carry an `extensions.code`.

#![no_main]

use std::sync::LazyLock;

use axum::body::Bytes;
use gallery_query_api::{ApiSettings, GallerySchema, parse_request, protected_schema};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(gallery_fuzz::runtime);

static SCHEMA: LazyLock<GallerySchema> =
    LazyLock::new(|| protected_schema(&ApiSettings::default()).finish());

const CONTENT_TYPES: [Option<&str>; 4] = [
    Some("application/json"),
    Some("multipart/form-data; boundary=gallery-fuzz"),
    None,
    Some("application/graphql-response+json; charset=utf-8"),
];

libfuzzer_sys::fuzz_target!(init: gallery_fuzz::init(), |data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(kind) % CONTENT_TYPES.len()];
    let body = Bytes::copy_from_slice(body);
    RUNTIME.block_on(async {
        let Ok(request) = parse_request(content_type, body).await else {
            return;
        };
        let response = SCHEMA.execute(request).await;
        for error in &response.errors {
            let code = error.extensions.as_ref().and_then(|x| x.get("code"));
            assert!(code.is_some(), "an error without a code: {error:?}");
        }
    });
});
