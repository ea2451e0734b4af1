//! Style transfer on the CPU, candle against onnxruntime on the same network and the same
//! images (the astronaut photo at 256x256 and 512x512): prints milliseconds per image
//! (median of warm runs, the two taking turns) and the ratio candle / onnxruntime. onnxruntime runs in the
//! virtualenv of `scripts/models` (`scripts/models bench-onnxruntime`).
//!
//! `cargo bench -p gallery-gpu-workers --bench style` (release build). `STYLE_BENCH_RUNS`
//! sets the number of timed runs per size (default 10); `STYLE_BENCH_LAYERS=1` also prints
//! candle's milliseconds per layer (timed through the progress hook), and
//! `STYLE_BENCH_ONLY_CANDLE=1` skips onnxruntime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use candle_core::{Device, Tensor};
use gallery_gpu_workers::style::{ModelFiles, StyleMix, StyleNet, image_to_tensor};
use image::imageops::FilterType;

const SIZES: [u32; 2] = [256, 512];
const ROUNDS: usize = 3;

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

fn main() {
    let runs: usize = std::env::var("STYLE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let files = ModelFiles::from_env().expect("HOME or GALLERY_MODELS_DIR must be set");
    let net = StyleNet::load(&files, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{e} (run scripts/models first)"));
    let mix = StyleMix::single(net.catalog(), "style-07").unwrap();
    let photo = image::open(files.golden_dir().join("astronaut.png"))
        .expect("golden/astronaut.png (run scripts/models first)")
        .to_rgb8();

    let mut inputs = HashMap::new();
    for size in SIZES {
        let img = image::imageops::resize(&photo, size, size, FilterType::Lanczos3);
        inputs.insert(key(size), image_to_tensor(&img, &Device::Cpu).unwrap());
    }
    let weights = Tensor::new(mix.weights(), &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inputs.safetensors");
    let mut file_inputs = inputs.clone();
    file_inputs.insert("style_weights".to_owned(), weights);
    candle_core::safetensors::save(&file_inputs, &path).unwrap();

    // The machine may be shared: candle and onnxruntime take turns, ROUNDS times, and each
    // side's figure is the median of its rounds' medians.
    let flag = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    if flag("STYLE_BENCH_LAYERS") {
        for size in SIZES {
            print_layers(&net, &mix, &inputs[&key(size)], size, runs);
        }
    }
    let only_candle = flag("STYLE_BENCH_ONLY_CANDLE");
    let mut candle_rounds: Vec<Vec<f64>> = vec![Vec::new(); SIZES.len()];
    let mut ort_rounds: Vec<Vec<f64>> = vec![Vec::new(); SIZES.len()];
    let mut ort_version = String::new();
    for _ in 0..ROUNDS {
        for (i, size) in SIZES.into_iter().enumerate() {
            let input = &inputs[&key(size)];
            net.stylize(input, &mix).unwrap();
            let samples = (0..runs)
                .map(|_| {
                    let start = Instant::now();
                    net.stylize(input, &mix).unwrap();
                    start.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            candle_rounds[i].push(median_ms(samples));
        }
        if only_candle {
            continue;
        }
        let report = onnxruntime(&path, runs);
        ort_version = report["onnxruntime"].as_str().unwrap_or("?").to_owned();
        for (i, size) in SIZES.into_iter().enumerate() {
            ort_rounds[i].push(report["ms"][&key(size)].as_f64().unwrap());
        }
    }

    println!(
        "style transfer, CPU, {} threads; median of {ROUNDS} alternating rounds, each the \
         median of {runs} warm runs (ms per image):",
        rayon::current_num_threads()
    );
    println!(
        "{:>9}  {:>10}  {:>18}  {:>18}",
        "size",
        "candle",
        format!("onnxruntime {ort_version}"),
        "candle/onnxruntime"
    );
    for (i, size) in SIZES.into_iter().enumerate() {
        let candle = median_ms(candle_rounds[i].clone());
        if only_candle {
            println!("{:>9}  {candle:>10.1}", key(size));
            continue;
        }
        let ort = median_ms(ort_rounds[i].clone());
        println!(
            "{:>9}  {candle:>10.1}  {ort:>18.1}  {:>18.2}",
            key(size),
            candle / ort
        );
    }
}

/// candle's median milliseconds per layer over `runs` warm runs, timed between the progress
/// hook's calls.
fn print_layers(net: &StyleNet, mix: &StyleMix, input: &Tensor, size: u32, runs: usize) {
    let layers = net.steps(1) as usize;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); layers];
    for _ in 0..=runs {
        let mut last = Instant::now();
        let mut times = Vec::with_capacity(layers);
        net.stylize_with_progress(input, mix, &mut |_, _| {
            let now = Instant::now();
            times.push((now - last).as_secs_f64() * 1000.0);
            last = now;
            ControlFlow::Continue(())
        })
        .unwrap();
        for (layer, t) in times.into_iter().enumerate() {
            samples[layer].push(t);
        }
    }
    let medians: Vec<f64> = samples.into_iter().map(median_ms).collect();
    let cells: Vec<String> = medians.iter().map(|ms| format!("{ms:.1}")).collect();
    println!(
        "candle per layer at {} (ms, sum {:.1}): {}",
        key(size),
        medians.iter().sum::<f64>(),
        cells.join(" ")
    );
}

fn key(size: u32) -> String {
    format!("{size}x{size}")
}

/// `scripts/models bench-onnxruntime`: onnxruntime's median per input, as JSON.
fn onnxruntime(inputs: &Path, runs: usize) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/models");
    let output = Command::new(&script)
        .arg("bench-onnxruntime")
        .arg(inputs)
        .arg(runs.to_string())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        output.status.success(),
        "scripts/models bench-onnxruntime failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
