//! The diffusion pipeline on the tiny configuration, with seeded random weights written to
//! safetensors files and loaded back through the real loader, on the CPU.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ops::ControlFlow;
use std::path::Path;

use gallery_gpu_workers::diffusion::{
    Component, Device, DiffusionError, DiffusionModel, Generation, ModelConfig, ModelFiles,
    ModelKind, Progress, RequestError, TextEncoderConfig, tiny,
};
use image::RgbImage;
use tempfile::TempDir;

const WEIGHTS_SEED: u64 = 7;

fn tiny_model() -> (TempDir, ModelFiles, DiffusionModel) {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny::write_model(dir.path(), WEIGHTS_SEED).unwrap();
    let model = DiffusionModel::load(tiny::config(), &files, &Device::Cpu).unwrap();
    (dir, files, model)
}

fn request(model: &DiffusionModel, seed: u64) -> Generation {
    Generation::new("a red fox in the snow", seed, &model.config().defaults)
}

fn paint(model: &DiffusionModel, request: &Generation) -> RgbImage {
    model
        .generate(request, |_| ControlFlow::Continue(()))
        .unwrap()
}

/// A picture with structure: a diagonal gradient with a bright square.
fn source_picture(width: u32, height: u32, shift: u8) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let inside = (8..24).contains(&x) && (8..20).contains(&y);
        let v = ((x * 5 + y * 3) as u8).wrapping_add(shift);
        if inside {
            image::Rgb([250, 240, v])
        } else {
            image::Rgb([v, 255 - v, 90])
        }
    })
}

#[test]
fn text_to_image_is_deterministic_per_seed() {
    let (_dir, _files, model) = tiny_model();
    let first = paint(&model, &request(&model, 1));
    assert_eq!(first.dimensions(), (32, 32));
    let mut values = first.as_raw().clone();
    values.sort_unstable();
    values.dedup();
    assert!(
        values.len() > 64,
        "a picture, not a flat colour: {values:?}"
    );
    let again = paint(&model, &request(&model, 1));
    assert_eq!(first.as_raw(), again.as_raw(), "same seed, same bytes");
    let other = paint(&model, &request(&model, 2));
    assert_ne!(
        first.as_raw(),
        other.as_raw(),
        "another seed, another picture"
    );

    // A model loaded again from the same files paints the same picture.
    let (_dir2, _files2, reloaded) = tiny_model();
    assert_eq!(
        paint(&reloaded, &request(&model, 1)).as_raw(),
        first.as_raw()
    );
}

#[test]
fn the_prompt_and_guidance_change_the_picture() {
    let (_dir, _files, model) = tiny_model();
    let base = request(&model, 3);
    let picture = paint(&model, &base);

    let mut other_prompt = base.clone();
    other_prompt.prompt = "a blue whale at dawn".to_owned();
    assert_ne!(paint(&model, &other_prompt).as_raw(), picture.as_raw());

    let mut negative = base.clone();
    negative.negative_prompt = "blurry".to_owned();
    assert_ne!(paint(&model, &negative).as_raw(), picture.as_raw());

    let mut unguided = base.clone();
    unguided.guidance_scale = 0.;
    let unguided_picture = paint(&model, &unguided);
    assert_ne!(unguided_picture.as_raw(), picture.as_raw());
    assert_eq!(paint(&model, &unguided).as_raw(), unguided_picture.as_raw());

    let mut wide = base.clone();
    wide.width = 48;
    wide.height = 24;
    assert_eq!(paint(&model, &wide).dimensions(), (48, 24));

    // A prompt longer than the 16-token context is cut, not refused.
    let mut long = base;
    long.prompt = "a very long prompt about many foxes ".repeat(20);
    assert_eq!(paint(&model, &long).dimensions(), (32, 32));
}

#[test]
fn image_to_image_is_deterministic_and_starts_from_the_source() {
    let (_dir, _files, model) = tiny_model();
    let source = source_picture(40, 36, 0);
    let img2img = |seed: u64, source: &RgbImage, strength: f64| {
        request(&model, seed).with_init_image(source.clone(), strength)
    };

    let first = paint(&model, &img2img(5, &source, 0.5));
    assert_eq!(first.dimensions(), (32, 32));
    assert_eq!(
        paint(&model, &img2img(5, &source, 0.5)).as_raw(),
        first.as_raw()
    );
    assert_ne!(
        paint(&model, &img2img(6, &source, 0.5)).as_raw(),
        first.as_raw()
    );
    let other_source = source_picture(40, 36, 100);
    assert_ne!(
        paint(&model, &img2img(5, &other_source, 0.5)).as_raw(),
        first.as_raw(),
        "the source picture is used"
    );
    assert_ne!(
        paint(&model, &img2img(5, &source, 1.)).as_raw(),
        first.as_raw()
    );
    assert_ne!(paint(&model, &request(&model, 5)).as_raw(), first.as_raw());
}

#[test]
fn progress_reports_every_step_and_the_strength_shortens_the_run() {
    let (_dir, _files, model) = tiny_model();
    let mut seen = Vec::new();
    model
        .generate(&request(&model, 1), |p| {
            seen.push(p);
            ControlFlow::Continue(())
        })
        .unwrap();
    let expected: Vec<Progress> = (0..=4).map(|step| Progress { step, total: 4 }).collect();
    assert_eq!(seen, expected);

    // Strength 0.6 of 4 steps: the last 2 timesteps.
    let mut seen = Vec::new();
    let img2img = request(&model, 1).with_init_image(source_picture(32, 32, 0), 0.6);
    model
        .generate(&img2img, |p| {
            seen.push(p);
            ControlFlow::Continue(())
        })
        .unwrap();
    let expected: Vec<Progress> = (0..=2).map(|step| Progress { step, total: 2 }).collect();
    assert_eq!(seen, expected);
}

#[test]
fn the_callback_cancels_the_run() {
    let (_dir, _files, model) = tiny_model();
    let mut calls = 0;
    let outcome = model.generate(&request(&model, 1), |p| {
        calls += 1;
        if p.step == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert!(
        matches!(
            outcome,
            Err(DiffusionError::Cancelled { step: 2, total: 4 })
        ),
        "{outcome:?}"
    );
    assert_eq!(calls, 3, "no step runs after the callback said stop");

    let outcome = model.generate(&request(&model, 1), |_| ControlFlow::Break(()));
    assert!(matches!(
        outcome,
        Err(DiffusionError::Cancelled { step: 0, total: 4 })
    ));
    // The model is still usable afterwards.
    assert_eq!(paint(&model, &request(&model, 1)).dimensions(), (32, 32));
}

#[test]
fn bad_requests_are_refused_before_any_work() {
    let (_dir, _files, model) = tiny_model();
    let refused = |change: &dyn Fn(&mut Generation)| {
        let mut r = request(&model, 1);
        change(&mut r);
        let mut called = false;
        let outcome = model.generate(&r, |_| {
            called = true;
            ControlFlow::Continue(())
        });
        assert!(!called, "no step for a refused request");
        match outcome {
            Err(DiffusionError::Request(e)) => e,
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    assert!(matches!(
        refused(&|r| r.width = 33),
        RequestError::Size { .. }
    ));
    assert!(matches!(
        refused(&|r| r.height = 0),
        RequestError::Size { .. }
    ));
    assert!(matches!(
        refused(&|r| r.width = 512),
        RequestError::Size { .. }
    ));
    assert!(matches!(
        refused(&|r| r.steps = 0),
        RequestError::Steps { .. }
    ));
    assert!(matches!(
        refused(&|r| r.steps = 1001),
        RequestError::Steps { .. }
    ));
    assert!(matches!(
        refused(&|r| r.guidance_scale = f64::NAN),
        RequestError::Guidance { .. }
    ));
    let with_strength = |strength: f64| {
        move |r: &mut Generation| {
            r.init_image = Some(gallery_gpu_workers::diffusion::InitImage {
                image: source_picture(32, 32, 0),
                strength,
            })
        }
    };
    assert!(matches!(
        refused(&with_strength(0.)),
        RequestError::Strength { .. }
    ));
    assert!(matches!(
        refused(&with_strength(1.5)),
        RequestError::Strength { .. }
    ));
    assert!(matches!(
        refused(&|r| {
            r.init_image = Some(gallery_gpu_workers::diffusion::InitImage {
                image: RgbImage::new(0, 0),
                strength: 0.5,
            })
        }),
        RequestError::EmptyImage { .. }
    ));
}

fn load_error(config: ModelConfig, files: &ModelFiles) -> DiffusionError {
    match DiffusionModel::load(config, files, &Device::Cpu) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => e,
    }
}

#[test]
fn missing_files_are_named() {
    for component in [
        Component::Unet,
        Component::Vae,
        Component::Clip,
        Component::Tokenizer,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let files = tiny::write_model(dir.path(), WEIGHTS_SEED).unwrap();
        let path = dir.path().join(component.file_name());
        std::fs::remove_file(&path).unwrap();
        let error = load_error(tiny::config(), &files);
        let message = error.to_string();
        match error {
            DiffusionError::MissingFile {
                component: c,
                path: p,
            } => {
                assert_eq!(c, component);
                assert_eq!(p, path);
            }
            other => panic!("{component:?}: expected a missing file, got {other:?}"),
        }
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("missing"), "{message}");
    }
}

#[test]
fn malformed_files_are_named() {
    for component in [Component::Unet, Component::Vae, Component::Clip] {
        let dir = tempfile::tempdir().unwrap();
        let files = tiny::write_model(dir.path(), WEIGHTS_SEED).unwrap();
        let path = dir.path().join(component.file_name());

        std::fs::write(&path, b"this is not a safetensors file").unwrap();
        let error = load_error(tiny::config(), &files);
        assert!(
            matches!(&error, DiffusionError::MalformedWeights { component: c, path: p, .. }
                if *c == component && *p == path),
            "{component:?}: {error:?}"
        );
        assert!(error.to_string().contains("not a valid safetensors file"));

        // A file cut short is malformed too.
        let whole = tiny::write_model(dir.path(), WEIGHTS_SEED).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let error = load_error(tiny::config(), &whole);
        assert!(
            matches!(&error, DiffusionError::MalformedWeights { component: c, .. } if *c == component),
            "{component:?}: {error:?}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let files = tiny::write_model(dir.path(), WEIGHTS_SEED).unwrap();
    std::fs::write(&files.tokenizer, b"{\"not\": \"a tokenizer\"}").unwrap();
    let error = load_error(tiny::config(), &files);
    assert!(
        matches!(&error, DiffusionError::MalformedTokenizer { path, .. } if *path == files.tokenizer),
        "{error:?}"
    );
}

#[test]
fn weights_that_do_not_fit_the_configuration_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny::write_model(dir.path(), WEIGHTS_SEED).unwrap();

    // A configuration with wider UNet blocks than the file holds.
    let mut wider = tiny::config();
    wider.unet.blocks[0].out_channels = 48;
    let error = load_error(wider, &files);
    assert!(
        matches!(
            &error,
            DiffusionError::IncompatibleWeights {
                component: Component::Unet,
                ..
            }
        ),
        "{error:?}"
    );
    let chain = error_chain(&error);
    assert!(chain.contains("shape mismatch"), "{chain}");

    // A text encoder file with a tensor missing.
    let mut tensors =
        candle_core::safetensors::load(&files.clip, &candle_core::Device::Cpu).unwrap();
    let name = "text_model.final_layer_norm.weight";
    assert!(tensors.remove(name).is_some());
    candle_core::safetensors::save(&tensors, &files.clip).unwrap();
    let error = load_error(tiny::config(), &files);
    assert!(
        matches!(
            &error,
            DiffusionError::IncompatibleWeights {
                component: Component::Clip,
                ..
            }
        ),
        "{error:?}"
    );
    let chain = error_chain(&error);
    assert!(chain.contains(name), "{chain}");
}

#[test]
fn a_tokenizer_larger_than_the_encoders_vocabulary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny::write_model(dir.path(), WEIGHTS_SEED).unwrap();
    let mut config = tiny::config();
    let TextEncoderConfig::Clip(clip) = &mut config.text_encoders[0] else {
        panic!("the tiny encoder is a CLIP one");
    };
    clip.vocab_size = 300;
    // Weights of the smaller vocabulary, read with the 514-token byte tokenizer.
    tiny::write_random_model(&config, dir.path(), WEIGHTS_SEED).unwrap();
    let error = load_error(config, &files);
    assert!(
        matches!(
            &error,
            DiffusionError::VocabularyMismatch {
                tokens: 514,
                vocab_size: 300,
                component: Component::Clip,
                ..
            }
        ),
        "{error:?}"
    );
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[test]
fn seeded_weights_are_reproducible() {
    let read = |dir: &Path| {
        [
            Component::Unet,
            Component::Vae,
            Component::Clip,
            Component::Tokenizer,
        ]
        .map(|c| std::fs::read(dir.join(c.file_name())).unwrap())
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    tiny::write_model(a.path(), 11).unwrap();
    tiny::write_model(b.path(), 11).unwrap();
    tiny::write_model(c.path(), 12).unwrap();
    let (a, b, c) = (read(a.path()), read(b.path()), read(c.path()));
    assert_eq!(a, b);
    assert_ne!(a[0], c[0]);
    assert_eq!(a[3], c[3], "the tokenizer does not depend on the seed");
}

#[test]
fn two_text_encoders_are_concatenated_as_in_sdxl() {
    let TextEncoderConfig::Clip(clip) = &tiny::config().text_encoders[0] else {
        panic!("the tiny encoder is a CLIP one");
    };
    let mut half = clip.clone();
    half.embed_dim = 16;
    half.intermediate_size = 32;
    let mut second = half.clone();
    second.pad_with = Some("!".to_owned());
    second.num_hidden_layers = 1;
    let mut config = tiny::config();
    config.text_encoders = vec![
        TextEncoderConfig::Clip(half),
        TextEncoderConfig::Clip(second),
    ];
    // SDXL-Turbo's way: trailing timesteps, one step, no guidance.
    config.scheduler = ModelKind::SdxlTurbo.config().scheduler;
    config.defaults.steps = 1;
    config.defaults.guidance_scale = 0.;

    let dir = tempfile::tempdir().unwrap();
    let files = tiny::write_random_model(&config, dir.path(), WEIGHTS_SEED).unwrap();
    assert_eq!(
        files.clip2.as_deref(),
        Some(dir.path().join("clip2.safetensors").as_path())
    );
    let model = DiffusionModel::load(config.clone(), &files, &Device::Cpu).unwrap();
    let request = Generation::new("a lighthouse", 9, &config.defaults);
    let mut totals = Vec::new();
    let picture = model
        .generate(&request, |p| {
            totals.push(p.total);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(totals, [1, 1]);
    assert_eq!(paint(&model, &request).as_raw(), picture.as_raw());

    std::fs::remove_file(dir.path().join("clip2.safetensors")).unwrap();
    let error = load_error(config, &files);
    assert!(
        matches!(
            &error,
            DiffusionError::MissingFile {
                component: Component::Clip2,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn model_directories_follow_the_documented_layout() {
    let sd15 = ModelFiles::in_dir("models/sd15", &ModelKind::Sd15.config());
    assert_eq!(sd15.unet, Path::new("models/sd15/unet.safetensors"));
    assert_eq!(sd15.vae, Path::new("models/sd15/vae.safetensors"));
    assert_eq!(sd15.clip, Path::new("models/sd15/clip.safetensors"));
    assert_eq!(sd15.clip2, None);
    assert_eq!(sd15.tokenizer, Path::new("models/sd15/tokenizer.json"));
    let turbo = ModelFiles::in_dir("m", &ModelKind::SdxlTurbo.config());
    assert_eq!(
        turbo.clip2.as_deref(),
        Some(Path::new("m/clip2.safetensors"))
    );
    assert_eq!(ModelKind::SdxlTurbo.dir_name(), "sdxl-turbo");
}

#[test]
fn a_model_can_move_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<DiffusionModel>();
}
