//! Checking an uploaded image by its content, never by its name: the format comes from the
//! magic bytes, the limits are checked from the cheapest evidence first (byte size, then the
//! header's dimensions), and only then is the whole image decoded, so a corrupt body is
//! refused and a decompression bomb is never expanded. Pure: no I/O.

use std::fmt;
use std::io::Cursor;

use gallery_schemas::ImageRef;
use image::{ImageError, ImageReader, Limits};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::MediaError;

/// The image formats Gallery accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Png,
    Jpeg,
    WebP,
}

impl ImageFormat {
    pub const ALL: [ImageFormat; 3] = [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP];

    /// The format the leading bytes announce, if it is one Gallery accepts.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
        const JPEG: &[u8] = b"\xff\xd8\xff";
        if bytes.starts_with(PNG) {
            Some(ImageFormat::Png)
        } else if bytes.starts_with(JPEG) {
            Some(ImageFormat::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(ImageFormat::WebP)
        } else {
            None
        }
    }

    /// The MIME type: `image/png`, `image/jpeg` or `image/webp`.
    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::WebP => "image/webp",
        }
    }

    /// The file extension used in object keys: `png`, `jpg` or `webp`.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::WebP => "webp",
        }
    }

    pub fn from_extension(ext: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.extension() == ext)
    }

    fn codec(self) -> image::ImageFormat {
        match self {
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            ImageFormat::WebP => image::ImageFormat::WebP,
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageFormat::Png => "PNG",
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::WebP => "WebP",
        })
    }
}

/// What an accepted image may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageLimits {
    /// Largest file accepted, in bytes.
    pub max_bytes: u64,
    /// Shortest side accepted, in pixels.
    pub min_side: u32,
    /// Longest side accepted, in pixels.
    pub max_side: u32,
    /// Largest area accepted (width × height), in pixels.
    pub max_pixels: u64,
}

impl ImageLimits {
    /// Highest `max_side` a configuration may set (the largest side JPEG can hold).
    pub const SIDE_CAP: u32 = 65_535;
    /// Highest `max_pixels` a configuration may set (a decoded image of that size takes up to
    /// 8 bytes per pixel in memory).
    pub const PIXELS_CAP: u64 = 250_000_000;

    /// Checks that the limits make sense; the error names the `media.limits` key at fault.
    pub fn validate(&self) -> Result<(), MediaError> {
        let bad = |key: &'static str, value: u64, reason: &'static str| MediaError::Config {
            key,
            value: value.to_string(),
            reason,
        };
        if self.max_bytes == 0 {
            return Err(bad("media.limits.max_bytes", 0, "must be at least 1"));
        }
        if self.min_side == 0 {
            return Err(bad("media.limits.min_side", 0, "must be at least 1"));
        }
        if self.max_side < self.min_side || self.max_side > Self::SIDE_CAP {
            return Err(bad(
                "media.limits.max_side",
                self.max_side.into(),
                "must be between media.limits.min_side and 65535",
            ));
        }
        let min_area = u64::from(self.min_side) * u64::from(self.min_side);
        if self.max_pixels < min_area || self.max_pixels > Self::PIXELS_CAP {
            return Err(bad(
                "media.limits.max_pixels",
                self.max_pixels,
                "must be between min_side squared and 250000000",
            ));
        }
        Ok(())
    }

    fn sides_and_area_allow(&self, width: u32, height: u32) -> bool {
        let side_ok = |s: u32| (self.min_side..=self.max_side).contains(&s);
        side_ok(width)
            && side_ok(height)
            && u64::from(width) * u64::from(height) <= self.max_pixels
            && i32::try_from(width.max(height)).is_ok()
    }

    fn dimensions_error(&self, width: u32, height: u32) -> MediaError {
        MediaError::Dimensions {
            width,
            height,
            min_side: self.min_side,
            max_side: self.max_side,
            max_pixels: self.max_pixels,
        }
    }

    /// For reading the header only: no bound on the dimensions (they are checked next), a
    /// small one on the metadata the decoder may expand on the way.
    fn header_limits() -> Limits {
        let mut limits = Limits::default();
        limits.max_alloc = Some(64 << 20);
        limits
    }

    /// Memory the decoder may allocate: 16-bit RGBA (8 bytes a pixel) at the largest area,
    /// plus room for the decoder's own buffers.
    fn decoder_limits(&self) -> Limits {
        let mut limits = Limits::default();
        limits.max_image_width = Some(self.max_side);
        limits.max_image_height = Some(self.max_side);
        limits.max_alloc = Some(self.max_pixels.saturating_mul(8).saturating_add(64 << 20));
        limits
    }
}

impl Default for ImageLimits {
    /// At most 10 MiB, sides of 32 to 8192 pixels, at most 40 megapixels.
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            min_side: 32,
            max_side: 8192,
            max_pixels: 40_000_000,
        }
    }
}

/// What a checked image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
}

impl ImageInfo {
    pub fn content_type(&self) -> &'static str {
        self.format.content_type()
    }

    /// The content-addressed object key: `images/sha256/<hex>.<png|jpg|webp>`.
    pub fn key(&self) -> String {
        format!("{KEY_PREFIX}{}.{}", self.sha256, self.format.extension())
    }

    /// The reference an event carries.
    pub fn to_image_ref(&self) -> ImageRef {
        ImageRef {
            key: self.key(),
            content_type: self.content_type().to_owned(),
            // The checks keep both sides within i32 and a byte slice's length within i64.
            width: i32::try_from(self.width).unwrap_or(i32::MAX),
            height: i32::try_from(self.height).unwrap_or(i32::MAX),
            size_bytes: i64::try_from(self.size_bytes).unwrap_or(i64::MAX),
            sha256: self.sha256.clone(),
        }
    }
}

/// Where content-addressed images live in the store.
pub(crate) const KEY_PREFIX: &str = "images/sha256/";

/// The format an object key names, if it is a well-formed image key.
pub(crate) fn parse_key(key: &str) -> Option<ImageFormat> {
    let (hex, ext) = key.strip_prefix(KEY_PREFIX)?.split_once('.')?;
    let hex_ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if hex_ok {
        ImageFormat::from_extension(ext)
    } else {
        None
    }
}

/// Checks `bytes` against `limits` and describes the image: the byte size first, then the
/// format from the magic bytes, then the dimensions from the header, and last a full decode.
pub fn check_image(bytes: &[u8], limits: &ImageLimits) -> Result<ImageInfo, MediaError> {
    let size_bytes = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size_bytes > limits.max_bytes {
        return Err(MediaError::TooLarge {
            size: size_bytes,
            max: limits.max_bytes,
        });
    }
    let format = ImageFormat::sniff(bytes).ok_or(MediaError::UnsupportedFormat)?;
    let corrupt = |source: ImageError| MediaError::Corrupt { format, source };

    let mut header = ImageReader::with_format(Cursor::new(bytes), format.codec());
    header.limits(ImageLimits::header_limits());
    let (width, height) = header.into_dimensions().map_err(corrupt)?;
    if !limits.sides_and_area_allow(width, height) {
        return Err(limits.dimensions_error(width, height));
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.codec());
    reader.limits(limits.decoder_limits());
    reader.decode().map_err(|e| match e {
        ImageError::Limits(_) => limits.dimensions_error(width, height),
        other => corrupt(other),
    })?;

    Ok(ImageInfo {
        format,
        width,
        height,
        size_bytes,
        sha256: sha256_hex(bytes),
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest.iter() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::{DynamicImage, Rgb, RgbImage};

    fn picture(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        }))
    }

    pub(crate) fn encode(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        picture(width, height)
            .write_to(&mut out, format.codec())
            .unwrap_or_else(|e| unreachable!("encoding a test image: {e}"));
        out.into_inner()
    }

    #[test]
    fn real_png_jpeg_and_webp_images_are_accepted_with_their_dimensions() {
        for (format, content_type) in [
            (ImageFormat::Png, "image/png"),
            (ImageFormat::Jpeg, "image/jpeg"),
            (ImageFormat::WebP, "image/webp"),
        ] {
            let bytes = encode(64, 48, format);
            let info = check_image(&bytes, &ImageLimits::default());
            let info = info.unwrap_or_else(|e| unreachable!("{format}: {e}"));
            assert_eq!(info.format, format);
            assert_eq!(info.content_type(), content_type);
            assert_eq!((info.width, info.height), (64, 48));
            assert_eq!(info.size_bytes, bytes.len() as u64);
            assert_eq!(info.sha256, sha256_hex(&bytes));
            let image_ref = info.to_image_ref();
            assert_eq!(
                image_ref.key,
                format!("images/sha256/{}.{}", info.sha256, format.extension())
            );
            assert_eq!(parse_key(&image_ref.key), Some(format));
            assert_eq!((image_ref.width, image_ref.height), (64, 48));
            assert_eq!(image_ref.content_type, content_type);
        }
    }

    #[test]
    fn the_digest_is_lower_case_hex_sha256() {
        // SHA-256 of the empty string.
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_png_signature_followed_by_junk_is_corrupt() {
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.extend(std::iter::repeat_n(0x5a, 4096));
        assert!(matches!(
            check_image(&bytes, &ImageLimits::default()),
            Err(MediaError::Corrupt {
                format: ImageFormat::Png,
                ..
            })
        ));
    }

    #[test]
    fn a_png_with_a_valid_header_and_a_damaged_body_is_corrupt() {
        let mut bytes = encode(64, 64, ImageFormat::Png);
        // The header (signature and IHDR) is the first 33 bytes; damage what follows.
        let body = bytes.len() - 40..bytes.len() - 20;
        for b in &mut bytes[body] {
            *b ^= 0xff;
        }
        assert!(matches!(
            check_image(&bytes, &ImageLimits::default()),
            Err(MediaError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_truncated_webp_is_corrupt() {
        let bytes = encode(64, 64, ImageFormat::WebP);
        let truncated = &bytes[..bytes.len() / 2];
        assert!(matches!(
            check_image(truncated, &ImageLimits::default()),
            Err(MediaError::Corrupt {
                format: ImageFormat::WebP,
                ..
            })
        ));
    }

    #[test]
    fn text_is_unsupported_whatever_it_is_called() {
        let text = b"just some notes, saved as picture.png\n".repeat(10);
        assert!(matches!(
            check_image(&text, &ImageLimits::default()),
            Err(MediaError::UnsupportedFormat)
        ));
        // Other real image formats are refused too.
        assert!(matches!(
            check_image(b"GIF89a\x01\x00\x01\x00", &ImageLimits::default()),
            Err(MediaError::UnsupportedFormat)
        ));
        assert!(matches!(
            check_image(b"", &ImageLimits::default()),
            Err(MediaError::UnsupportedFormat)
        ));
    }

    #[test]
    fn too_many_bytes_are_refused_before_anything_is_decoded() {
        let limits = ImageLimits {
            max_bytes: 100,
            ..ImageLimits::default()
        };
        // Not even an image: the size alone decides.
        let junk = vec![0u8; 101];
        assert!(matches!(
            check_image(&junk, &limits),
            Err(MediaError::TooLarge {
                size: 101,
                max: 100
            })
        ));
        let png = encode(64, 64, ImageFormat::Png);
        assert!(matches!(
            check_image(&png, &limits),
            Err(MediaError::TooLarge { max: 100, .. })
        ));
    }

    #[test]
    fn sides_out_of_bounds_are_refused() {
        let limits = ImageLimits::default();
        let small = encode(31, 64, ImageFormat::Png);
        assert!(matches!(
            check_image(&small, &limits),
            Err(MediaError::Dimensions {
                width: 31,
                height: 64,
                ..
            })
        ));
        let narrow = ImageLimits {
            max_side: 100,
            ..limits
        };
        let large = encode(101, 40, ImageFormat::Jpeg);
        assert!(matches!(
            check_image(&large, &narrow),
            Err(MediaError::Dimensions { width: 101, .. })
        ));
    }

    #[test]
    fn an_area_over_the_limit_is_refused_from_the_header() {
        let limits = ImageLimits {
            max_pixels: 100 * 100,
            ..ImageLimits::default()
        };
        let bytes = encode(101, 100, ImageFormat::WebP);
        assert!(matches!(
            check_image(&bytes, &limits),
            Err(MediaError::Dimensions {
                width: 101,
                height: 100,
                ..
            })
        ));
    }

    #[test]
    fn a_decompression_bomb_header_is_refused_without_decoding() {
        // A valid PNG header claiming 60000 x 60000 pixels, with no image data at all: the
        // dimensions alone refuse it (a decode would report it corrupt instead).
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(60_000u32.to_be_bytes());
        ihdr.extend(60_000u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        bytes.extend(13u32.to_be_bytes());
        bytes.extend(&ihdr);
        bytes.extend(crc32(&ihdr).to_be_bytes());
        bytes.extend(0u32.to_be_bytes());
        bytes.extend(b"IDAT");
        bytes.extend(crc32(b"IDAT").to_be_bytes());
        assert!(matches!(
            check_image(&bytes, &ImageLimits::default()),
            Err(MediaError::Dimensions {
                width: 60_000,
                height: 60_000,
                ..
            })
        ));
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn well_formed_keys_parse_and_others_do_not() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_key(&format!("images/sha256/{hex}.webp")),
            Some(ImageFormat::WebP)
        );
        for bad in [
            format!("images/sha256/{hex}.gif"),
            format!("images/sha256/{}.png", "AB".repeat(32)),
            format!("images/sha256/{}.png", "ab".repeat(31)),
            format!("images/sha256/../{hex}.png"),
            format!("other/{hex}.png"),
        ] {
            assert_eq!(parse_key(&bad), None, "{bad}");
        }
    }

    #[test]
    fn default_limits_are_valid_and_nonsense_is_refused_by_key() {
        assert!(ImageLimits::default().validate().is_ok());
        let inverted = ImageLimits {
            min_side: 100,
            max_side: 50,
            ..ImageLimits::default()
        };
        assert!(matches!(
            inverted.validate(),
            Err(MediaError::Config {
                key: "media.limits.max_side",
                ..
            })
        ));
        let no_bytes = ImageLimits {
            max_bytes: 0,
            ..ImageLimits::default()
        };
        assert!(matches!(
            no_bytes.validate(),
            Err(MediaError::Config {
                key: "media.limits.max_bytes",
                ..
            })
        ));
    }
}
