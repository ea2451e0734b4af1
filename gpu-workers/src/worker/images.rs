//! Pictures in and out: the source photo checked against its reference and decoded within
//! limits, and a result encoded as PNG, lossless WebP and a PNG thumbnail. Pure CPU work, run
//! on the paint threads.

use std::io::Cursor;

use gallery_schemas::ImageRef;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::imageops::FilterType;
use image::{ExtendedColorType, ImageEncoder, ImageError, ImageReader, Limits, RgbImage};
use sha2::{Digest, Sha256};

use super::painter::{FailureCode, Rejection};

/// Where content-addressed images live in the object store (the same layout as uploads).
pub const IMAGE_KEY_PREFIX: &str = "images/sha256/";

/// What a source photo may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    /// Largest file, in bytes.
    pub max_bytes: u64,
    /// Longest side, in pixels.
    pub max_side: u32,
    /// Largest area, in pixels.
    pub max_pixels: u64,
}

impl Default for SourceLimits {
    /// The upload limits' defaults: 10 MiB, 8192 pixels a side, 40 megapixels.
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            max_side: 8192,
            max_pixels: 40_000_000,
        }
    }
}

/// The image formats a source may have, from the key's extension and the magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Jpeg,
    WebP,
}

impl Format {
    fn from_extension(ext: &str) -> Option<Self> {
        match ext {
            "png" => Some(Format::Png),
            "jpg" => Some(Format::Jpeg),
            "webp" => Some(Format::WebP),
            _ => None,
        }
    }

    fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else if bytes.starts_with(b"\xff\xd8\xff") {
            Some(Format::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Format::WebP)
        } else {
            None
        }
    }

    fn codec(self) -> image::ImageFormat {
        match self {
            Format::Png => image::ImageFormat::Png,
            Format::Jpeg => image::ImageFormat::Jpeg,
            Format::WebP => image::ImageFormat::WebP,
        }
    }
}

fn invalid(reason: impl Into<String>) -> Rejection {
    Rejection::new(FailureCode::InvalidImage, reason)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks what a source reference claims, before anything is fetched: a well-formed
/// content-addressed key matching its digest, and a size and dimensions within `limits`.
pub fn check_reference(source: &ImageRef, limits: &SourceLimits) -> Result<(), Rejection> {
    let parsed = source
        .key
        .strip_prefix(IMAGE_KEY_PREFIX)
        .and_then(|rest| rest.split_once('.'));
    let Some((hex, ext)) = parsed else {
        return Err(invalid(format!(
            "the source image key {:?} is not an image key (images/sha256/<hex>.<png|jpg|webp>)",
            source.key
        )));
    };
    let hex_ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex_ok || Format::from_extension(ext).is_none() || hex != source.sha256 {
        return Err(invalid(format!(
            "the source image key {:?} does not name its digest {}",
            source.key, source.sha256
        )));
    }
    let size = u64::try_from(source.size_bytes).unwrap_or(0);
    if size == 0 || size > limits.max_bytes {
        return Err(invalid(format!(
            "the source image is {} bytes; at most {} are accepted",
            source.size_bytes, limits.max_bytes
        )));
    }
    let (w, h) = (
        u32::try_from(source.width).unwrap_or(0),
        u32::try_from(source.height).unwrap_or(0),
    );
    check_dimensions(w, h, limits)
}

fn check_dimensions(width: u32, height: u32, limits: &SourceLimits) -> Result<(), Rejection> {
    let area = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 || width.max(height) > limits.max_side || area > limits.max_pixels
    {
        return Err(invalid(format!(
            "the source image is {width}x{height} pixels; sides of at most {} pixels and at most {} pixels in all are accepted",
            limits.max_side, limits.max_pixels
        )));
    }
    Ok(())
}

/// Checks the fetched bytes of `source` (size, digest, format, dimensions) and decodes them
/// within `limits`, so a corrupt or oversized photo is refused without being expanded.
pub fn decode_source(
    bytes: &[u8],
    source: &ImageRef,
    limits: &SourceLimits,
) -> Result<RgbImage, Rejection> {
    check_reference(source, limits)?;
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if len > limits.max_bytes {
        return Err(invalid(format!(
            "the source image is {len} bytes; at most {} are accepted",
            limits.max_bytes
        )));
    }
    if i64::try_from(len).ok() != Some(source.size_bytes) || sha256_hex(bytes) != source.sha256 {
        return Err(invalid(format!(
            "the stored source image {} is not the image the request refers to (size or digest differ)",
            source.key
        )));
    }
    let format = Format::sniff(bytes)
        .ok_or_else(|| invalid("the source image is not a PNG, JPEG or WebP image"))?;
    let corrupt = |e: ImageError| invalid(format!("the source image is corrupt: {e}"));

    let mut header = ImageReader::with_format(Cursor::new(bytes), format.codec());
    let mut header_limits = Limits::default();
    header_limits.max_alloc = Some(64 << 20);
    header.limits(header_limits);
    let (width, height) = header.into_dimensions().map_err(corrupt)?;
    check_dimensions(width, height, limits)?;

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.codec());
    let mut decode_limits = Limits::default();
    decode_limits.max_image_width = Some(limits.max_side);
    decode_limits.max_image_height = Some(limits.max_side);
    decode_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(decode_limits);
    let decoded = reader.decode().map_err(|e| match e {
        ImageError::Limits(_) => invalid(format!(
            "the source image ({width}x{height}) needs more memory to decode than allowed"
        )),
        other => corrupt(other),
    })?;
    Ok(decoded.into_rgb8())
}

/// A result in the three stored forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub png: Vec<u8>,
    pub webp: Vec<u8>,
    pub thumbnail: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
}

fn encode_png(image: &RgbImage) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(
        image.as_raw(),
        image.width(),
        image.height(),
        ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// Encodes `image` as PNG, lossless WebP and a PNG thumbnail whose longer side is at most
/// `thumbnail_side` (a small picture is its own thumbnail). Deterministic: the same pixels
/// always give the same bytes, so a job re-run after a crash stores nothing new.
pub fn encode_result(image: &RgbImage, thumbnail_side: u32) -> Result<Encoded, ImageError> {
    let png = encode_png(image)?;
    let mut webp = Vec::new();
    WebPEncoder::new_lossless(&mut webp).write_image(
        image.as_raw(),
        image.width(),
        image.height(),
        ExtendedColorType::Rgb8,
    )?;
    let (w, h) = (image.width(), image.height());
    let long = w.max(h).max(1);
    let side = thumbnail_side.max(1);
    let (tw, th) = if long <= side {
        (w, h)
    } else {
        let scale = |s: u32| {
            u32::try_from((u64::from(s) * u64::from(side) / u64::from(long)).max(1)).unwrap_or(1)
        };
        (scale(w), scale(h))
    };
    let thumbnail = if (tw, th) == (w, h) {
        png.clone()
    } else {
        encode_png(&image::imageops::resize(
            image,
            tw,
            th,
            FilterType::Triangle,
        ))?
    };
    Ok(Encoded {
        png,
        webp,
        thumbnail,
        width: w,
        height: h,
        thumbnail_width: tw,
        thumbnail_height: th,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 5) as u8, (x ^ y) as u8])
        })
    }

    fn reference(bytes: &[u8], ext: &str, w: i32, h: i32) -> ImageRef {
        let sha = sha256_hex(bytes);
        ImageRef {
            key: format!("{IMAGE_KEY_PREFIX}{sha}.{ext}"),
            content_type: format!("image/{ext}"),
            width: w,
            height: h,
            size_bytes: bytes.len() as i64,
            sha256: sha,
        }
    }

    #[test]
    fn results_encode_deterministically_and_decode_back() {
        let img = picture(300, 200);
        let a = encode_result(&img, 128).unwrap();
        let b = encode_result(&img, 128).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.thumbnail_width, a.thumbnail_height), (128, 85));
        let png = image::load_from_memory(&a.png).unwrap().into_rgb8();
        let webp = image::load_from_memory(&a.webp).unwrap().into_rgb8();
        assert_eq!(png, img);
        assert_eq!(webp, img, "lossless");
        let thumb = image::load_from_memory(&a.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (128, 85));
    }

    #[test]
    fn a_small_picture_is_its_own_thumbnail() {
        let e = encode_result(&picture(64, 32), 256).unwrap();
        assert_eq!(e.thumbnail, e.png);
    }

    #[test]
    fn a_good_source_decodes() {
        let bytes = encode_png(&picture(40, 30)).unwrap();
        let r = reference(&bytes, "png", 40, 30);
        let img = decode_source(&bytes, &r, &SourceLimits::default()).unwrap();
        assert_eq!(img, picture(40, 30));
    }

    #[test]
    fn a_source_that_is_not_what_its_reference_says_is_invalid() {
        let bytes = encode_png(&picture(40, 30)).unwrap();
        let mut r = reference(&bytes, "png", 40, 30);
        let other = encode_png(&picture(41, 30)).unwrap();
        let e = decode_source(&other, &r, &SourceLimits::default()).unwrap_err();
        assert_eq!(e.code, FailureCode::InvalidImage);
        assert!(e.reason.contains("not the image"), "{}", e.reason);
        r.key = "images/sha256/../../etc/passwd.png".into();
        let e = decode_source(&bytes, &r, &SourceLimits::default()).unwrap_err();
        assert!(e.reason.contains("not an image key") || e.reason.contains("digest"));
    }

    #[test]
    fn a_corrupt_source_is_invalid() {
        let mut bytes = encode_png(&picture(64, 64)).unwrap();
        let n = bytes.len();
        for b in &mut bytes[n - 40..n - 20] {
            *b ^= 0xff;
        }
        let r = reference(&bytes, "png", 64, 64);
        let e = decode_source(&bytes, &r, &SourceLimits::default()).unwrap_err();
        assert_eq!(e.code, FailureCode::InvalidImage);
        assert!(e.reason.contains("corrupt"), "{}", e.reason);
        let text = b"not an image at all, just text".to_vec();
        let r = reference(&text, "png", 64, 64);
        let e = decode_source(&text, &r, &SourceLimits::default()).unwrap_err();
        assert!(e.reason.contains("not a PNG"), "{}", e.reason);
    }

    #[test]
    fn an_oversized_source_is_refused_before_decoding() {
        let bytes = encode_png(&picture(200, 100)).unwrap();
        let limits = SourceLimits {
            max_side: 128,
            ..SourceLimits::default()
        };
        // The reference claims a small picture; the header tells the truth.
        let r = reference(&bytes, "png", 100, 100);
        let e = decode_source(&bytes, &r, &limits).unwrap_err();
        assert!(e.reason.contains("200x100"), "{}", e.reason);
        let by_bytes = SourceLimits {
            max_bytes: 10,
            ..SourceLimits::default()
        };
        let e = check_reference(&reference(&bytes, "png", 200, 100), &by_bytes).unwrap_err();
        assert!(e.reason.contains("bytes"), "{}", e.reason);
    }
}
