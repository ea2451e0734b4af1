//! `GET /media/<key>?exp=<unix seconds>&sig=<signature>`: a stored image, for whoever holds a
//! URL the API signed. Objects are content-addressed (the key holds the SHA-256 of the bytes),
//! so a response never changes: it is cacheable for a year, its `ETag` is the SHA-256, and a
//! client that has it (`If-None-Match`) gets `304 Not Modified` without the store being read.
//!
//! Refusals are JSON, `{"error": {"code", "message"}}`: `400 INVALID_INPUT` (not an image
//! key), `403 INVALID_SIGNATURE` (unsigned, tampered, or signed for another key or expiry),
//! `403 URL_EXPIRED`, `404 NOT_FOUND`, `503 UNAVAILABLE` (the store, with `Retry-After`).

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gallery_commands::{CommandError, MediaStore};
use serde::Deserialize;

use super::{MediaUrls, UrlRefusal, unix_now};

/// Prefixes of the keys this route serves (where the media store puts images).
pub const IMAGE_PREFIXES: &[&str] = &["images/sha256/"];

/// `Cache-Control` of an image: public, and never stale, as its bytes never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The images the API serves, and how their URLs are signed.
#[derive(Debug, Clone)]
pub struct Media {
    pub store: MediaStore,
    pub urls: MediaUrls,
}

/// The route of stored images, `GET /media/<key>?exp=..&sig=..`, for any router state that
/// holds the [`Media`].
pub fn media_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Media: FromRef<S>,
{
    Router::new().route("/media/{*key}", get(media))
}

/// The query of a signed URL.
#[derive(Debug, Deserialize)]
pub(crate) struct Signed {
    exp: Option<String>,
    sig: Option<String>,
}

/// A refusal as JSON, never cached.
fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The SHA-256 an image key names (`images/sha256/<hex>.<ext>`), if it has the form.
fn digest_of(key: &str) -> Option<&str> {
    let (hex, _ext) = key.strip_prefix("images/sha256/")?.split_once('.')?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 wants for it), or `*`.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Serves an image: the key's form, then the signature, then the cache check, then the store.
#[tracing::instrument(skip_all, fields(key = %key))]
async fn media(
    State(media): State<Media>,
    Path(key): Path<String>,
    query: Result<Query<Signed>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    if !IMAGE_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "not an image key: images are served under images/sha256/<hex>.<png|jpg|webp>",
        );
    }
    let Ok(Query(signed)) = query else {
        return refuse(
            StatusCode::FORBIDDEN,
            "INVALID_SIGNATURE",
            &UrlRefusal::Unsigned.to_string(),
        );
    };
    if let Err(refusal) = media.urls.verify(
        &key,
        signed.exp.as_deref(),
        signed.sig.as_deref(),
        unix_now(),
    ) {
        let code = match refusal {
            UrlRefusal::Expired { .. } => "URL_EXPIRED",
            UrlRefusal::Unsigned | UrlRefusal::BadSignature => "INVALID_SIGNATURE",
        };
        tracing::debug!(%refusal, "media URL refused");
        return refuse(StatusCode::FORBIDDEN, code, &refusal.to_string());
    }
    let etag = digest_of(&key).map(|hex| format!("\"{hex}\""));
    let cache_headers = |headers: &mut HeaderMap| {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
        if let Some(value) = etag.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
            headers.insert(header::ETAG, value);
        }
    };
    if etag.as_deref().is_some_and(|e| none_match(&headers, e)) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        cache_headers(response.headers_mut());
        return response;
    }
    match media.store.get(&key).await {
        Ok((bytes, content_type)) => {
            let mut response = bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            cache_headers(headers);
            response
        }
        Err(e) => {
            // The write side's one answer (code, status, message, `Retry-After`, logging),
            // never cached.
            let mut response = CommandError::from(e).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use axum::routing::get;
    use gallery_commands::ImageLimits;
    use tower::ServiceExt;

    use super::*;
    use crate::media::{MediaSecret, MediaUrlSettings};

    fn png() -> Vec<u8> {
        let img = image::RgbImage::from_fn(40, 40, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .unwrap_or_else(|e| unreachable!("{e}"));
        out.into_inner()
    }

    fn media(ttl_secs: u64) -> Media {
        let store = MediaStore::open_at(gallery_commands::StoreLocation::Memory)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let urls = MediaUrls::new(&MediaUrlSettings {
            secret: MediaSecret::new(b"a test secret of at least thirty-two bytes"),
            ttl: Duration::from_secs(ttl_secs),
            public_base_url: None,
        })
        .unwrap_or_else(|e| unreachable!("{e}"));
        Media { store, urls }
    }

    async fn call(media: &Media, uri: &str, if_none_match: Option<&str>) -> Response {
        let app = Router::new()
            .route("/media/{*key}", get(super::media))
            .with_state(media.clone());
        let mut request = Request::get(uri);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        let request = request
            .body(Body::empty())
            .unwrap_or_else(|e| unreachable!("{e}"));
        app.oneshot(request)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    async fn json(response: Response) -> serde_json::Value {
        let bytes = to_bytes(response.into_body(), 1 << 20).await;
        serde_json::from_slice(&bytes.unwrap_or_default()).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_signed_url_serves_the_stored_bytes_cacheably() {
        let m = media(3600);
        let bytes = png();
        let image = m
            .store
            .put_image(bytes.clone().into(), &ImageLimits::default())
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        let url = m.urls.url(&image.key);

        let ok = call(&m, &url, None).await;
        assert_eq!(ok.status(), StatusCode::OK);
        let h = ok.headers().clone();
        assert_eq!(h[header::CONTENT_TYPE], "image/png");
        assert_eq!(h[header::CACHE_CONTROL], IMMUTABLE);
        let etag = format!("\"{}\"", image.sha256);
        assert_eq!(h[header::ETAG], etag.as_str());
        let body = to_bytes(ok.into_body(), 1 << 20).await;
        assert_eq!(body.ok().as_deref(), Some(bytes.as_slice()));

        let cached = call(&m, &url, Some(&format!("\"other\", W/{etag}"))).await;
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(cached.headers()[header::ETAG], etag.as_str());
        let stale = call(&m, &url, Some("\"other\"")).await;
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn bad_urls_are_refused_with_their_codes() {
        let m = media(3600);
        let missing = format!("images/sha256/{}.png", "0".repeat(64));
        let cases = [
            (m.urls.url(&missing), 404, "NOT_FOUND"),
            (format!("/media/{missing}"), 403, "INVALID_SIGNATURE"),
            (
                m.urls.url(&missing).replace("sig=", "sig=A"),
                403,
                "INVALID_SIGNATURE",
            ),
            (m.urls.url("etc/passwd"), 400, "INVALID_INPUT"),
            (
                m.urls.url("images/sha256/not-hex.png"),
                400,
                "INVALID_INPUT",
            ),
            (
                m.urls.url_at(&missing, unix_now() - 7200),
                403,
                "URL_EXPIRED",
            ),
        ];
        for (uri, status, code) in cases {
            let response = call(&m, &uri, None).await;
            assert_eq!(response.status().as_u16(), status, "{uri}");
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
            let body = json(response).await;
            assert_eq!(body["error"]["code"], code, "{uri}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
    }
}
