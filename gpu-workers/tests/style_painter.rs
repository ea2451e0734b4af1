//! The style network as the worker's image-to-image painter, on the real weights
//! (`scripts/models`): same job, same bytes; styles and blends checked before running; a
//! step per layer of the network, and a cancel stops it at the step it answers; sizes fit
//! the request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ops::ControlFlow;
use std::time::Instant;

use gallery_gpu_workers::style::{ModelFiles, StyleMix, StyleNet};
use gallery_gpu_workers::worker::images::encode_result;
use gallery_gpu_workers::{FailureCode, PaintError, PaintJob, PaintParams, Painter, StylePainter};
use gallery_schemas::GenerationMode;
use image::{DynamicImage, RgbImage};

fn painter() -> StylePainter {
    let files = ModelFiles::from_env().expect("HOME or GALLERY_MODELS_DIR must be set");
    assert!(
        files.weights().is_file(),
        "{} is missing: run scripts/models first",
        files.weights().display()
    );
    StylePainter::load(&files, &candle_core::Device::Cpu).unwrap()
}

fn photo(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x + y) % 200) as u8,
        ])
    })
}

fn job(style: &str, w: u32, h: u32, source: RgbImage) -> PaintJob {
    PaintJob {
        params: PaintParams {
            mode: GenerationMode::ImageToImage,
            prompt: None,
            negative_prompt: None,
            style: style.into(),
            seed: 1,
            steps: 20,
            width: w,
            height: h,
        },
        source: Some(source),
    }
}

#[test]
fn the_same_job_paints_the_same_bytes_and_fits_the_requested_size() {
    let p = painter();
    assert_eq!(p.model(), "multistyle26");
    assert_eq!(p.weights_digest().len(), 64);
    let j = job("style-05", 192, 192, photo(320, 240));
    p.validate(&j.params).unwrap();
    let mut steps = Vec::new();
    let started = Instant::now();
    let a = p
        .paint(&j, &mut |s, n| {
            steps.push((s, n));
            ControlFlow::Continue(())
        })
        .unwrap();
    eprintln!("style-05 at 192x144: {:?}", started.elapsed());
    assert_eq!(a.dimensions(), (192, 144), "fits inside, aspect kept");
    // The photo prepared, then the network's 18 layers.
    let expected: Vec<(u32, u32)> = (1..=19).map(|s| (s, 19)).collect();
    assert_eq!(steps, expected);
    let b = p.paint(&j, &mut |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!(a, b, "deterministic pixels");
    assert_eq!(
        encode_result(&a, 64).unwrap(),
        encode_result(&b, 64).unwrap()
    );
    let other = p
        .paint(&job("style-06", 192, 192, photo(320, 240)), &mut |_, _| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_ne!(a, other, "another style, another picture");
}

#[test]
fn styles_and_blends_are_checked_before_running() {
    let p = painter();
    let blend = job("style-01:0.7+style-02:0.3", 64, 64, photo(64, 64));
    p.validate(&blend.params).unwrap();
    for bad in [
        "impressionism",
        "style-01:x",
        "style-01+style-01",
        "style-01:-1",
    ] {
        let e = p
            .validate(&job(bad, 64, 64, photo(64, 64)).params)
            .unwrap_err();
        assert_eq!(e.code, FailureCode::UnknownStyle, "{bad}");
        assert!(e.reason.contains("style-00"), "{}", e.reason);
    }
    let mut text = job("style-01", 64, 64, photo(64, 64));
    text.params.mode = GenerationMode::TextToImage;
    assert_eq!(
        p.validate(&text.params).unwrap_err().code,
        FailureCode::UnsupportedMode
    );
}

#[test]
fn a_cancel_stops_it_at_the_step_it_answers() {
    let p = painter();
    let j = job("style-03", 128, 128, photo(128, 128));
    let stopped = p.paint(&j, &mut |_, _| ControlFlow::Break(()));
    assert!(
        matches!(stopped, Err(PaintError::Cancelled { step: 1 })),
        "{stopped:?}"
    );
    // Within the network: after the prepare step and two layers.
    let mut seen = Vec::new();
    let stopped = p.paint(&j, &mut |step, _| {
        seen.push(step);
        if step == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert!(
        matches!(stopped, Err(PaintError::Cancelled { step: 3 })),
        "{stopped:?}"
    );
    assert_eq!(seen, [1, 2, 3], "nothing runs after the cancel");
}

#[test]
fn the_painting_is_the_network_s_picture_without_a_hook() {
    let files = ModelFiles::from_env().expect("HOME or GALLERY_MODELS_DIR must be set");
    let net = StyleNet::load(&files, &candle_core::Device::Cpu).unwrap();
    let mix = StyleMix::single(net.catalog(), "style-09").unwrap();
    // Already inside the requested size: the painter paints it as it is.
    let source = photo(150, 100);
    let plain = net
        .stylize_image(&DynamicImage::ImageRgb8(source.clone()), &mix)
        .unwrap();
    let painted = painter()
        .paint(&job("style-09", 256, 256, source), &mut |_, _| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(painted, plain);
}
