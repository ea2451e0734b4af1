//! A request's plan as given / when / then: the painter of its mode, the worker's limits on
//! prompts, photos and numbers, degradation by the backlog, and the painter's own checks.

use gallery_schemas::{Prompt, StyleName, Topics, UserId};
use image::RgbImage;
use uuid::Uuid;

use super::*;
use crate::worker::degrade::Degradation;
use crate::worker::painter::{PaintError, PaintJob, Progress};

/// A painter that knows one style and paints at most 512 pixels a side; it is never run here.
#[derive(Debug)]
struct Fussy;

impl Painter for Fussy {
    fn model(&self) -> &str {
        "fussy"
    }

    fn weights_digest(&self) -> &str {
        "00"
    }

    fn scheduler(&self) -> &str {
        "none"
    }

    fn validate(&self, params: &PaintParams) -> Result<(), Rejection> {
        if params.style != "warm" {
            return Err(Rejection::new(FailureCode::UnknownStyle, "warm only"));
        }
        if params.width.max(params.height) > 512 {
            return Err(Rejection::new(FailureCode::UnsupportedMode, "512 at most"));
        }
        Ok(())
    }

    fn paint(&self, _job: &PaintJob, _progress: Progress<'_>) -> Result<RgbImage, PaintError> {
        Err(Rejection::new(FailureCode::Internal, "not painted in these tests").into())
    }
}

fn painters() -> Painters {
    let fussy: Arc<dyn Painter> = Arc::new(Fussy);
    Painters::new(Ok(fussy.clone()), Ok(fussy))
}

const THRESHOLD: u64 = 100;

fn settings() -> WorkerSettings {
    WorkerSettings {
        max_prompt_chars: 20,
        degradation: Degradation {
            backlog_threshold: THRESHOLD,
            max_steps: 10,
            max_side: 256,
        },
        ..WorkerSettings::new(String::new(), Topics::new("t."), "w".into())
    }
}

fn request() -> GenerationRequested {
    GenerationRequested {
        event_id: Uuid::nil(),
        request_id: Uuid::nil(),
        user_id: UserId::parse("ada").unwrap_or_else(|e| unreachable!("{e}")),
        mode: GenerationMode::TextToImage,
        prompt: Some(Prompt::parse("a lighthouse").unwrap_or_else(|e| unreachable!("{e}"))),
        negative_prompt: None,
        style: StyleName::parse("warm").unwrap_or_else(|e| unreachable!("{e}")),
        seed: 7,
        steps: 40,
        width: 512,
        height: 256,
        source_image: None,
        degraded: false,
        occurred_at: 0,
    }
}

fn photo(sha256: &str) -> ImageRef {
    ImageRef {
        key: format!("images/sha256/{sha256}.png"),
        content_type: "image/png".into(),
        width: 640,
        height: 480,
        size_bytes: 1000,
        sha256: sha256.into(),
    }
}

fn planned(request: &GenerationRequested, backlog: u64) -> Plan {
    plan(request, &settings(), &painters(), backlog).unwrap_or_else(|e| unreachable!("{e}"))
}

fn refused(request: &GenerationRequested) -> Rejection {
    match plan(request, &settings(), &painters(), 0) {
        Err(rejection) => rejection,
        Ok(plan) => unreachable!("planned: {plan:?}"),
    }
}

#[test]
fn within_the_threshold_a_request_runs_as_asked() {
    let p = planned(&request(), THRESHOLD);
    assert_eq!(
        (p.params.steps, p.params.width, p.params.height, p.degraded),
        (40, 512, 256, false)
    );
    assert_eq!(p.params.prompt.as_deref(), Some("a lighthouse"));
    assert_eq!(p.painter.model(), "fussy");
    assert!(p.source.is_none());
}

#[test]
fn above_the_threshold_it_is_scaled_down_by_the_shared_rule_and_marked() {
    let p = planned(&request(), THRESHOLD + 1);
    assert_eq!(
        (p.params.steps, p.params.width, p.params.height, p.degraded),
        (10, 256, 128, true)
    );
    // The cache key is the key of what is painted.
    assert_ne!(p.cache_key, planned(&request(), 0).cache_key);
}

#[test]
fn a_request_the_command_side_degraded_stays_degraded() {
    let r = GenerationRequested {
        degraded: true,
        steps: 10,
        width: 256,
        height: 128,
        ..request()
    };
    let p = planned(&r, THRESHOLD + 1);
    assert_eq!(
        (p.params.steps, p.params.width, p.degraded),
        (10, 256, true)
    );
}

#[test]
fn the_painter_checks_the_size_it_will_paint() {
    let big = GenerationRequested {
        width: 1024,
        ..request()
    };
    assert_eq!(refused(&big).code, FailureCode::UnsupportedMode);
    // Degraded first, it fits.
    let p = planned(&big, THRESHOLD + 1);
    assert_eq!((p.params.width, p.params.height), (256, 64));
    let style = GenerationRequested {
        style: StyleName::parse("cool").unwrap_or_else(|e| unreachable!("{e}")),
        ..request()
    };
    assert_eq!(refused(&style).code, FailureCode::UnknownStyle);
}

#[test]
fn a_prompt_longer_than_the_painter_reads_is_refused() {
    let long = Prompt::parse("x".repeat(21)).unwrap_or_else(|e| unreachable!("{e}"));
    let r = GenerationRequested {
        prompt: Some(long.clone()),
        ..request()
    };
    let rejection = refused(&r);
    assert_eq!(rejection.code, FailureCode::InvalidPrompt);
    assert_eq!(
        rejection.reason,
        "the prompt is 21 characters long; the painter reads at most 20"
    );
    let r = GenerationRequested {
        negative_prompt: Some(long),
        ..request()
    };
    assert!(refused(&r).reason.starts_with("the negative prompt is 21"));
}

#[test]
fn numbers_must_be_positive() {
    for (r, reason) in [
        (
            GenerationRequested {
                steps: 0,
                ..request()
            },
            "steps must be positive, not 0",
        ),
        (
            GenerationRequested {
                width: -8,
                ..request()
            },
            "width must be positive, not -8",
        ),
        (
            GenerationRequested {
                height: 0,
                ..request()
            },
            "height must be positive, not 0",
        ),
    ] {
        assert_eq!(
            refused(&r),
            Rejection::new(FailureCode::UnsupportedMode, reason)
        );
    }
}

#[test]
fn image_to_image_needs_a_well_formed_photo_and_keys_on_its_digest() {
    let a = "a".repeat(64);
    let with = |source: Option<ImageRef>| GenerationRequested {
        mode: GenerationMode::ImageToImage,
        source_image: source,
        ..request()
    };
    assert_eq!(refused(&with(None)).code, FailureCode::InvalidImage);
    let mut wrong = photo(&a);
    wrong.sha256 = "b".repeat(64);
    assert_eq!(refused(&with(Some(wrong))).code, FailureCode::InvalidImage);

    let p = planned(&with(Some(photo(&a))), 0);
    assert_eq!(p.source, Some(photo(&a)));
    let other = planned(&with(Some(photo(&"c".repeat(64)))), 0);
    assert_ne!(p.cache_key, other.cache_key);
}

#[test]
fn a_mode_without_a_painter_is_unavailable() {
    let fussy: Arc<dyn Painter> = Arc::new(Fussy);
    let only_text = Painters::new(Ok(fussy), Err("no style model".into()));
    let r = GenerationRequested {
        mode: GenerationMode::ImageToImage,
        source_image: Some(photo(&"a".repeat(64))),
        ..request()
    };
    assert_eq!(
        plan(&r, &settings(), &only_text, 0).err(),
        Some(Rejection::new(
            FailureCode::ModelUnavailable,
            "no style model"
        ))
    );
}
