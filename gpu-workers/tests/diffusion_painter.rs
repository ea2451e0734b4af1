//! The diffusion pipeline as the worker's text-to-image painter, on the tiny configuration
//! with seeded random weights: checks before running, progress per step, a cancel that
//! stops it mid-run, the same job giving the same pixels.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ops::ControlFlow;

use gallery_gpu_workers::diffusion::tiny;
use gallery_gpu_workers::{
    DiffusionPainter, FailureCode, PaintError, PaintJob, PaintParams, Painter,
};
use gallery_schemas::GenerationMode;

fn painter(dir: &std::path::Path) -> DiffusionPainter {
    tiny::write_model(dir, 7).unwrap();
    DiffusionPainter::load("tiny", tiny::config(), dir, &candle_core::Device::Cpu).unwrap()
}

fn job(prompt: Option<&str>, steps: u32, side: u32) -> PaintJob {
    PaintJob {
        params: PaintParams {
            mode: GenerationMode::TextToImage,
            prompt: prompt.map(str::to_owned),
            negative_prompt: None,
            style: "any".into(),
            seed: 11,
            steps,
            width: side,
            height: side,
        },
        source: None,
    }
}

#[test]
fn a_prompt_is_painted_step_by_step_and_the_same_job_gives_the_same_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let p = painter(dir.path());
    assert_eq!(p.model(), "tiny");
    assert_eq!(p.weights_digest().len(), 64);
    let j = job(Some("a red boat"), 3, 32);
    p.validate(&j.params).unwrap();
    let mut steps = Vec::new();
    let a = p
        .paint(&j, &mut |s, n| {
            steps.push((s, n));
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(steps, vec![(1, 3), (2, 3), (3, 3)]);
    assert_eq!(a.dimensions(), (32, 32));
    let b = p.paint(&j, &mut |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!(a, b);
    let other = p
        .paint(&job(Some("a blue boat"), 3, 32), &mut |_, _| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_ne!(a, other);
}

#[test]
fn a_cancel_stops_it_after_the_step_it_was_asked_at() {
    let dir = tempfile::tempdir().unwrap();
    let p = painter(dir.path());
    let stopped = p.paint(&job(Some("a boat"), 5, 32), &mut |s, _| {
        if s >= 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert!(
        matches!(stopped, Err(PaintError::Cancelled { step: 2 })),
        "{stopped:?}"
    );
}

#[test]
fn requests_it_cannot_paint_are_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let p = painter(dir.path());
    let no_prompt = p.validate(&job(None, 3, 32).params).unwrap_err();
    assert_eq!(no_prompt.code, FailureCode::InvalidPrompt);
    let odd = p.validate(&job(Some("x"), 3, 33).params).unwrap_err();
    assert_eq!(odd.code, FailureCode::UnsupportedMode);
    assert!(odd.reason.contains("33x33"), "{}", odd.reason);
    let mut photo = job(Some("x"), 3, 32);
    photo.params.mode = GenerationMode::ImageToImage;
    assert_eq!(
        p.validate(&photo.params).unwrap_err().code,
        FailureCode::UnsupportedMode
    );
}
