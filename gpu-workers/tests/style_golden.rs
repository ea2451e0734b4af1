//! The candle network against onnxruntime on the original ONNX graph: the golden reference
//! made by `scripts/models` (the NASA astronaut photo; one style, a blend of three, and a
//! size that is not a multiple of 4). Loads the converted weights through the real loader.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::ops::ControlFlow;

use candle_core::{Device, Tensor};
use gallery_gpu_workers::style::{ModelFiles, StyleMix, StyleNet};
use serde::Deserialize;

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    input: String,
    styles: BTreeMap<String, f32>,
    weights: Vec<f32>,
}

fn model_files() -> ModelFiles {
    let files = ModelFiles::from_env().expect("HOME or GALLERY_MODELS_DIR must be set");
    for path in [
        files.weights(),
        files.digest_file(),
        files.styles(),
        files.golden_dir().join("cases.json"),
        files.golden_dir().join("input.safetensors"),
        files.golden_dir().join("reference.safetensors"),
    ] {
        assert!(
            path.is_file(),
            "{} is missing: run scripts/models first (it downloads the weights and makes the \
             golden reference)",
            path.display()
        );
    }
    files
}

fn load_tensors(path: std::path::PathBuf) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn abs_diff_stats(a: &Tensor, b: &Tensor) -> (f32, f32) {
    assert_eq!(a.dims(), b.dims());
    let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
    let mean = diff.mean_all().unwrap().to_scalar::<f32>().unwrap();
    let max = diff.max(0).unwrap().to_scalar::<f32>().unwrap();
    (mean, max)
}

#[test]
fn candle_matches_onnxruntime_on_the_golden_reference() {
    let files = model_files();
    let net = StyleNet::load(&files, &Device::Cpu).expect("the converted weights load");
    assert_eq!(net.catalog().len(), 26);
    assert_eq!(net.digest(), files.digest().unwrap());

    let golden = files.golden_dir();
    let text = std::fs::read_to_string(golden.join("cases.json")).unwrap();
    let cases: Cases = serde_json::from_str(&text).unwrap();
    let inputs = load_tensors(golden.join("input.safetensors"));
    let references = load_tensors(golden.join("reference.safetensors"));
    let names: Vec<_> = cases.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["single", "blend", "odd"]);

    for case in &cases.cases {
        let parts = case.styles.iter().map(|(name, &w)| (name.as_str(), w));
        let mix = StyleMix::new(net.catalog(), parts).unwrap();
        for (ours, theirs) in mix.weights().iter().zip(&case.weights) {
            assert!(
                (ours - theirs).abs() < 1e-6,
                "{}: style weights differ",
                case.name
            );
        }
        let input = &inputs[&case.input];
        let expected = &references[&case.name];
        let output = net.stylize(input, &mix).unwrap();
        // The same run with a progress hook: every layer reported, the same floats.
        let mut steps = Vec::new();
        let hooked = net
            .stylize_with_progress(input, &mix, &mut |done, total| {
                steps.push((done, total));
                ControlFlow::Continue(())
            })
            .unwrap();
        let expected_steps: Vec<(u32, u32)> = (1..=18).map(|s| (s, 18)).collect();
        assert_eq!(steps, expected_steps, "{}", case.name);
        assert_eq!(
            hooked.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            output.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "{}: the hook changes the output",
            case.name
        );
        let (mean, max) = abs_diff_stats(&output, expected);
        println!(
            "{}: mean |candle - onnxruntime| = {mean:e}, max = {max:e}",
            case.name
        );
        assert!(
            mean < 1e-4,
            "{}: mean absolute difference {mean} (max {max})",
            case.name
        );
    }
}

#[test]
fn the_styles_differ_from_each_other_and_from_the_photo() {
    // Guards the golden comparison against a reference that would match anything close to
    // the input: the two styles of the reference are far apart and far from the photo.
    let files = model_files();
    let references = load_tensors(files.golden_dir().join("reference.safetensors"));
    let inputs = load_tensors(files.golden_dir().join("input.safetensors"));
    let (single_vs_blend, _) = abs_diff_stats(&references["single"], &references["blend"]);
    let (single_vs_photo, _) = abs_diff_stats(&references["single"], &inputs["image"]);
    assert!(single_vs_blend > 0.01, "{single_vs_blend}");
    assert!(single_vs_photo > 0.01, "{single_vs_photo}");
}
