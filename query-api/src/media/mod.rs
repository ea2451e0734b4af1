//! Signed, expiring URLs of stored images, and the route that serves them.
//!
//! A URL is `/media/<key>?exp=<unix seconds>&sig=<signature>`, where the signature is
//! HMAC-SHA256, keyed with the configured secret, over a domain tag, the object key and the
//! expiry; it is written in unpadded base64url. Whoever holds a URL may fetch the image until it
//! expires; nobody can make one for another key or a later expiry without the secret. Expiries
//! are rounded up to a step of a quarter of the lifetime, so the URL of an image stays the same
//! for a while and browsers and CDNs can cache it: a URL lives from `ttl` to `1.25 × ttl`.

mod serve;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use serve::{IMAGE_PREFIXES, Media, media_routes};

/// The development secret of media URLs, used when none is configured (with a warning).
pub const DEV_MEDIA_URL_SECRET: &str = "gallery-development-media-url-secret-change-me";

/// Shortest secret accepted, bytes.
pub const MIN_MEDIA_SECRET_LEN: usize = 32;

/// The path under which images are served.
pub const MEDIA_PATH: &str = "/media/";

/// What is signed before the key and the expiry, so a signature of this scheme means nothing
/// to any other use of the same secret.
const DOMAIN: &[u8] = b"gallery-media-url-v1\n";

/// The HMAC secret of media URLs; never printed.
#[derive(Clone)]
pub struct MediaSecret(Arc<[u8]>);

impl MediaSecret {
    pub fn new(secret: &[u8]) -> Self {
        MediaSecret(Arc::from(secret))
    }
}

impl fmt::Debug for MediaSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why media URLs cannot be made with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum MediaUrlError {
    #[error("the media URL secret must be at least {min} bytes, got {len}")]
    SecretTooShort { len: usize, min: usize },
    #[error("the media URL secret is not a valid HMAC key")]
    Key(#[source] hmac::digest::InvalidLength),
}

/// How media URLs are made.
#[derive(Debug, Clone)]
pub struct MediaUrlSettings {
    pub secret: MediaSecret,
    /// The shortest time a URL stays valid.
    pub ttl: Duration,
    /// Prefix of the URLs (`https://gallery.example.org`, no trailing slash), or `None` for
    /// URLs relative to the API's own origin.
    pub public_base_url: Option<String>,
}

impl Default for MediaUrlSettings {
    /// The development secret, an hour, URLs relative to the API.
    fn default() -> Self {
        crate::settings::QueryApiSettings::default().media_url_settings()
    }
}

/// Why a media URL is refused before the store is asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("the URL is not signed: it needs both `exp` and `sig`")]
    Unsigned,
    #[error("the URL's signature is not valid for this image and expiry")]
    BadSignature,
    #[error("the URL expired at {expired_at} (Unix seconds); ask the API for a new one")]
    Expired { expired_at: u64 },
}

/// Makes and checks signed media URLs.
#[derive(Clone)]
pub struct MediaUrls {
    /// The HMAC keyed with the secret, before any input.
    keyed: Hmac<Sha256>,
    ttl_secs: u64,
    step_secs: u64,
    base: String,
}

impl fmt::Debug for MediaUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaUrls")
            .field("ttl_secs", &self.ttl_secs)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl MediaUrls {
    pub fn new(settings: &MediaUrlSettings) -> Result<Self, MediaUrlError> {
        let secret = &settings.secret.0;
        if secret.len() < MIN_MEDIA_SECRET_LEN {
            return Err(MediaUrlError::SecretTooShort {
                len: secret.len(),
                min: MIN_MEDIA_SECRET_LEN,
            });
        }
        let keyed =
            <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(MediaUrlError::Key)?;
        let ttl_secs = settings.ttl.as_secs().max(1);
        Ok(Self {
            keyed,
            ttl_secs,
            step_secs: (ttl_secs / 4).max(1),
            base: settings
                .public_base_url
                .as_deref()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned(),
        })
    }

    fn mac(&self, key: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(DOMAIN);
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The signature of `key` until `expires` (Unix seconds).
    pub fn signature(&self, key: &str, expires: u64) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(key, expires).finalize().into_bytes())
    }

    /// The expiry of a URL made at `now`: at least `ttl` later, rounded up to a step.
    pub fn expiry(&self, now: u64) -> u64 {
        let at_least = now.saturating_add(self.ttl_secs);
        at_least
            .div_ceil(self.step_secs)
            .saturating_mul(self.step_secs)
    }

    /// The URL of `key` made at `now`.
    pub fn url_at(&self, key: &str, now: u64) -> String {
        let expires = self.expiry(now);
        format!(
            "{}{MEDIA_PATH}{}?exp={expires}&sig={}",
            self.base,
            encode_path(key),
            self.signature(key, expires)
        )
    }

    /// The URL of `key`, made now.
    pub fn url(&self, key: &str) -> String {
        self.url_at(key, unix_now())
    }

    /// Checks a URL's `exp` and `sig` for `key` at `now`: the signature first (in constant
    /// time), so only a genuine URL is ever told it expired.
    pub fn verify(
        &self,
        key: &str,
        exp: Option<&str>,
        sig: Option<&str>,
        now: u64,
    ) -> Result<(), UrlRefusal> {
        let (Some(exp), Some(sig)) = (exp, sig) else {
            return Err(UrlRefusal::Unsigned);
        };
        // Only the canonical decimal form was ever signed.
        let expires: u64 = exp
            .parse()
            .ok()
            .filter(|e: &u64| e.to_string() == exp)
            .ok_or(UrlRefusal::BadSignature)?;
        let tag = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| UrlRefusal::BadSignature)?;
        self.mac(key, expires)
            .verify_slice(&tag)
            .map_err(|_| UrlRefusal::BadSignature)?;
        if now >= expires {
            return Err(UrlRefusal::Expired {
                expired_at: expires,
            });
        }
        Ok(())
    }
}

/// The signed URL of `key`, from the schema's [`MediaUrls`].
pub(crate) fn signed_url(
    ctx: &async_graphql::Context<'_>,
    key: &str,
) -> async_graphql::Result<String> {
    use async_graphql::ErrorExtensions;
    let urls = ctx.data::<MediaUrls>().map_err(|e| {
        tracing::error!(error = ?e, "the schema was built without media URLs");
        async_graphql::Error::new("internal error").extend_with(|_, x| x.set("code", "INTERNAL"))
    })?;
    Ok(urls.url(key))
}

/// `key` as a URL path: unreserved characters and `/` as they are, every other byte
/// percent-encoded (image keys hold none; the route decodes them back).
fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "images/sha256/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.png";

    fn urls(ttl_secs: u64, base: Option<&str>) -> MediaUrls {
        MediaUrls::new(&MediaUrlSettings {
            secret: MediaSecret::new(b"a test secret of at least thirty-two bytes"),
            ttl: Duration::from_secs(ttl_secs),
            public_base_url: base.map(str::to_owned),
        })
        .unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// (exp, sig) of a URL.
    fn parts(url: &str) -> (String, String) {
        let query = url.split_once('?').map(|q| q.1).unwrap_or_default();
        let mut exp = String::new();
        let mut sig = String::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("exp", v)) => exp = v.to_owned(),
                Some(("sig", v)) => sig = v.to_owned(),
                _ => {}
            }
        }
        (exp, sig)
    }

    #[test]
    fn a_url_verifies_until_it_expires_and_only_for_its_key() {
        let u = urls(3600, None);
        let now = 1_700_000_000;
        let url = u.url_at(KEY, now);
        assert!(url.starts_with(&format!("/media/{KEY}?exp=")), "{url}");
        let (exp, sig) = parts(&url);
        let expires: u64 = exp.parse().unwrap_or_default();
        assert!(expires >= now + 3600 && expires <= now + 3600 + 900);
        assert_eq!(u.verify(KEY, Some(&exp), Some(&sig), now), Ok(()));
        assert_eq!(u.verify(KEY, Some(&exp), Some(&sig), expires - 1), Ok(()));
        assert_eq!(
            u.verify(KEY, Some(&exp), Some(&sig), expires),
            Err(UrlRefusal::Expired {
                expired_at: expires
            })
        );
        let other = KEY.replace(".png", ".webp");
        assert_eq!(
            u.verify(&other, Some(&exp), Some(&sig), now),
            Err(UrlRefusal::BadSignature)
        );
    }

    #[test]
    fn tampered_missing_and_foreign_signatures_are_refused() {
        let u = urls(3600, None);
        let now = 1_700_000_000;
        let (exp, sig) = parts(&u.url_at(KEY, now));
        let later = (exp.parse::<u64>().unwrap_or_default() + 3600).to_string();
        let bad = |exp: Option<&str>, sig: Option<&str>| u.verify(KEY, exp, sig, now);
        assert_eq!(bad(Some(&later), Some(&sig)), Err(UrlRefusal::BadSignature));
        assert_eq!(
            bad(Some(&format!("0{exp}")), Some(&sig)),
            Err(UrlRefusal::BadSignature),
            "only the canonical expiry"
        );
        let mut flipped = sig.clone().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        assert_eq!(
            bad(Some(&exp), Some(&flipped)),
            Err(UrlRefusal::BadSignature)
        );
        assert_eq!(bad(Some(&exp), Some("%%%")), Err(UrlRefusal::BadSignature));
        assert_eq!(bad(Some("soon"), Some(&sig)), Err(UrlRefusal::BadSignature));
        assert_eq!(bad(Some(&exp), None), Err(UrlRefusal::Unsigned));
        assert_eq!(bad(None, Some(&sig)), Err(UrlRefusal::Unsigned));
        // Another secret's URL.
        let other = MediaUrls::new(&MediaUrlSettings::default());
        let other = other.unwrap_or_else(|e| unreachable!("{e}"));
        let (exp, sig) = parts(&other.url_at(KEY, now));
        assert_eq!(bad(Some(&exp), Some(&sig)), Err(UrlRefusal::BadSignature));
    }

    #[test]
    fn urls_stay_the_same_within_a_step_so_they_cache() {
        let u = urls(3600, None);
        let t: u64 = 900 * 1_888_889; // a multiple of the step (900 s)
        assert_eq!(u.url_at(KEY, t + 1), u.url_at(KEY, t + 899));
        assert_ne!(u.url_at(KEY, t + 1), u.url_at(KEY, t + 901));
        assert_eq!(u.expiry(t), t + 3600);
        assert_eq!(urls(1, None).expiry(10), 11);
    }

    #[test]
    fn a_public_base_makes_absolute_urls_and_odd_keys_are_escaped() {
        let u = urls(60, Some("https://gallery.example.org/"));
        assert!(u.url_at(KEY, 0).starts_with(&format!(
            "https://gallery.example.org/media/{KEY}?exp=60&sig="
        )));
        assert_eq!(encode_path("a b/ü?#"), "a%20b/%C3%BC%3F%23");
    }

    #[test]
    fn a_short_secret_is_refused() {
        let short = MediaUrls::new(&MediaUrlSettings {
            secret: MediaSecret::new(b"short"),
            ..MediaUrlSettings::default()
        });
        assert!(matches!(
            short,
            Err(MediaUrlError::SecretTooShort { len: 5, min: 32 })
        ));
    }

    #[test]
    fn the_secret_never_prints() {
        let shown = format!("{:?}", MediaUrlSettings::default());
        assert!(!shown.contains(DEV_MEDIA_URL_SECRET), "{shown}");
        assert!(!format!("{:?}", urls(60, None)).contains("thirty-two"));
    }
}
