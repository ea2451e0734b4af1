//! The default image-to-image painter: the 26-style transfer network ([`crate::style`]).
//! A style is one of the network's style names (`style-00` ... `style-25`) or a blend,
//! `name:weight+name:weight` (weights relative: `style-03:3+style-12:1` is three quarters of
//! `style-03`). The photo is scaled down to fit the requested size, keeping its aspect ratio
//! (never up); the network paints it in one pass, whose layers are the run's steps.

use std::ops::ControlFlow;

use candle_core::Device;
use gallery_schemas::GenerationMode;
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};

use super::painter::{
    FailureCode, PaintError, PaintJob, PaintParams, Painter, Progress, Rejection,
};
use crate::style::{MIN_SIDE, MODEL_NAME, ModelFiles, StyleError, StyleMix, StyleNet};

/// The steps a run reports before the network's: the photo prepared. Then one per layer of
/// the network ([`StyleNet::steps`]), so a cancel is seen within a layer.
const PREPARE: u32 = 1;

/// The style network as a [`Painter`].
#[derive(Debug)]
pub struct StylePainter {
    net: StyleNet,
    digest: String,
}

impl StylePainter {
    /// Loads the weights `scripts/models` wrote (checked against their digest).
    pub fn load(files: &ModelFiles, device: &Device) -> Result<Self, StyleError> {
        let net = StyleNet::load(files, device)?;
        Ok(Self::new(net))
    }

    pub fn new(net: StyleNet) -> Self {
        let digest = net.digest().to_string();
        Self { net, digest }
    }

    fn mix(&self, style: &str) -> Result<StyleMix, Rejection> {
        StyleMix::parse(self.net.catalog(), style).map_err(|e| {
            let names = self.net.catalog().names();
            let (first, last) = (
                names.first().map_or("", String::as_str),
                names.last().map_or("", String::as_str),
            );
            Rejection::new(
                FailureCode::UnknownStyle,
                format!(
                    "{e}; a style is one of {first} ... {last}, or a blend such as {first}:0.7+{last}:0.3"
                ),
            )
        })
    }
}

/// The size `width`×`height` scaled to fit inside `max_w`×`max_h`, never larger, keeping the
/// aspect ratio, each side at least [`MIN_SIDE`].
fn fit_inside(width: u32, height: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    let scale = (f64::from(max_w) / f64::from(width.max(1)))
        .min(f64::from(max_h) / f64::from(height.max(1)))
        .min(1.0);
    let side = |s: u32| {
        let scaled = (f64::from(s) * scale).round();
        // In range: at most the original side.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let scaled = scaled as u32;
        scaled.max(u32::try_from(MIN_SIDE).unwrap_or(8))
    };
    (side(width), side(height))
}

impl Painter for StylePainter {
    fn model(&self) -> &str {
        MODEL_NAME
    }

    fn weights_digest(&self) -> &str {
        &self.digest
    }

    fn scheduler(&self) -> &str {
        "feed-forward"
    }

    fn validate(&self, params: &PaintParams) -> Result<(), Rejection> {
        if params.mode != GenerationMode::ImageToImage {
            return Err(Rejection::new(
                FailureCode::UnsupportedMode,
                "the style network repaints photos (image-to-image) only",
            ));
        }
        let min = u32::try_from(MIN_SIDE).unwrap_or(8);
        if params.width < min || params.height < min {
            return Err(Rejection::new(
                FailureCode::UnsupportedMode,
                format!("the style network makes pictures of at least {min}x{min} pixels"),
            ));
        }
        self.mix(&params.style).map(drop)
    }

    /// The prepared photo, then the network's layers, whatever steps the request asked for.
    fn steps(&self, _: &PaintParams) -> u32 {
        PREPARE + self.net.steps(1)
    }

    fn paint(&self, job: &PaintJob, progress: Progress<'_>) -> Result<RgbImage, PaintError> {
        let mix = self.mix(&job.params.style)?;
        let source = job.source.as_ref().ok_or_else(|| {
            Rejection::new(FailureCode::InvalidImage, "no source photo to repaint")
        })?;
        let (w, h) = fit_inside(
            source.width(),
            source.height(),
            job.params.width,
            job.params.height,
        );
        let photo = if (w, h) == source.dimensions() {
            source.clone()
        } else {
            image::imageops::resize(source, w, h, FilterType::Triangle)
        };
        let total = self.steps(&job.params);
        if let ControlFlow::Break(()) = progress(PREPARE, total) {
            return Err(PaintError::Cancelled { step: PREPARE });
        }
        let painted = self
            .net
            .stylize_image_with_progress(&DynamicImage::ImageRgb8(photo), &mix, &mut |done, _| {
                progress(PREPARE + done, total)
            })
            .map_err(|e| match e {
                StyleError::Stopped { at, .. } => PaintError::Cancelled { step: PREPARE + at },
                other => PaintError::Model {
                    source: Box::new(other),
                },
            })?;
        Ok(painted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photos_fit_inside_the_requested_size_never_larger() {
        assert_eq!(fit_inside(4000, 3000, 512, 512), (512, 384));
        assert_eq!(fit_inside(3000, 4000, 512, 512), (384, 512));
        assert_eq!(fit_inside(300, 200, 512, 512), (300, 200));
        assert_eq!(fit_inside(1000, 10, 256, 256), (256, 8));
    }
}
