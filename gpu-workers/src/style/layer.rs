//! One layer of the network, a convolution (no bias) and the conditional instance norm after
//! it, and the two paths that run layers (a [`Lane`]): tensor ops on any device, or the CPU
//! kernels (see `cpu`).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::cpu::{self, ConvKernel, Pool};
use super::ops::{self, Activation, AxisMap, Norm};

/// One convolution and the norm after it.
#[derive(Debug)]
pub(super) struct ConvNorm {
    /// `[out, in, k, k]`, as in the ONNX graph.
    weight: Tensor,
    /// The same, laid out for the CPU kernels.
    cpu_kernel: ConvKernel,
    stride: usize,
    channels: usize,
    /// `[styles, channels]`, row-major.
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// Where a layer's output goes: the activation, the norm's output maps, the residual (the
/// padded input of the block and its padding) added before the activation, and the layer
/// that reads it (none for the last).
pub(super) struct Output<'a, T> {
    act: Activation,
    maps: (AxisMap, AxisMap),
    skip: Option<(&'a T, usize)>,
    next: Option<&'a ConvNorm>,
}

impl<'a, T> Output<'a, T> {
    /// To the padded input of `next`.
    pub(super) fn to(act: Activation, maps: (AxisMap, AxisMap), next: &'a ConvNorm) -> Self {
        Output {
            act,
            maps,
            skip: None,
            next: Some(next),
        }
    }

    /// The network's output.
    pub(super) fn last(act: Activation, maps: (AxisMap, AxisMap)) -> Self {
        Output {
            act,
            maps,
            skip: None,
            next: None,
        }
    }

    /// Adds `skip`'s interior, without `pad` on each side, before the activation.
    pub(super) fn plus(self, skip: &'a T, pad: usize) -> Self {
        Output {
            skip: Some((skip, pad)),
            ..self
        }
    }

    fn norm<'n>(&'n self, scale: &'n [f32], shift: &'n [f32]) -> Norm<'n> {
        Norm {
            scale,
            shift,
            act: self.act,
            rows: &self.maps.0,
            cols: &self.maps.1,
        }
    }
}

impl ConvNorm {
    pub(super) fn load(
        vb: &VarBuilder<'_>,
        name: &str,
        (cin, cout, kernel, stride): (usize, usize, usize, usize),
        styles: usize,
    ) -> candle_core::Result<Self> {
        let vb = vb.pp(name);
        let weight = vb.get((cout, cin, kernel, kernel), "w")?;
        let cpu_kernel = ConvKernel::new(&weight, stride)?;
        let gamma = vb.get((styles, cout), "norm.gamma")?;
        let beta = vb.get((styles, cout), "norm.beta")?;
        Ok(Self {
            weight,
            cpu_kernel,
            stride,
            channels: cout,
            gamma: gamma.flatten_all()?.to_vec1()?,
            beta: beta.flatten_all()?.to_vec1()?,
        })
    }

    /// The style mix of gamma and beta: one scale and one shift per channel.
    fn affine(&self, weights: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let mix = |rows: &[f32]| -> Vec<f32> {
            (0..self.channels)
                .map(|c| {
                    weights
                        .iter()
                        .enumerate()
                        .map(|(s, &w)| f64::from(w) * f64::from(rows[s * self.channels + c]))
                        .sum::<f64>() as f32
                })
                .collect()
        };
        (mix(&self.gamma), mix(&self.beta))
    }
}

/// How a path holds activations between layers and runs one layer.
pub(super) trait Lane {
    type Act;
    /// The input image `[b, 3, h, w]` through the maps (extended and padded), as `first`
    /// reads it.
    fn enter(
        &self,
        image: &Tensor,
        maps: &(AxisMap, AxisMap),
        first: &ConvNorm,
    ) -> candle_core::Result<Self::Act>;
    fn layer(
        &self,
        conv: &ConvNorm,
        x: &Self::Act,
        weights: &[f32],
        out: Output<'_, Self::Act>,
    ) -> candle_core::Result<Self::Act>;
    /// The last layer, whose output is the network's `[b, 3, h, w]`.
    fn last(
        &self,
        conv: &ConvNorm,
        x: &Self::Act,
        weights: &[f32],
        out: Output<'_, Self::Act>,
    ) -> candle_core::Result<Tensor>;
}

/// Any device: `[b, c, h, w]` tensors, candle's `conv2d` and tensor ops.
pub(super) struct Composed;

impl Lane for Composed {
    type Act = Tensor;

    fn enter(
        &self,
        image: &Tensor,
        (rows, cols): &(AxisMap, AxisMap),
        _: &ConvNorm,
    ) -> candle_core::Result<Tensor> {
        ops::remap(image, rows, cols)
    }

    fn layer(
        &self,
        conv: &ConvNorm,
        x: &Tensor,
        weights: &[f32],
        out: Output<'_, Tensor>,
    ) -> candle_core::Result<Tensor> {
        let y = x.conv2d(&conv.weight, 0, conv.stride, 1, 1)?;
        let (scale, shift) = conv.affine(weights);
        ops::norm(&y, &out.norm(&scale, &shift), out.skip)
    }

    fn last(
        &self,
        conv: &ConvNorm,
        x: &Tensor,
        weights: &[f32],
        out: Output<'_, Tensor>,
    ) -> candle_core::Result<Tensor> {
        self.layer(conv, x, weights, out)
    }
}

/// The CPU kernels, one `[1, 3, h, w]` sample, with the buffers of `pool`.
pub(super) struct OnCpu<'p> {
    pub(super) pool: &'p Pool,
}

impl<'p> Lane for OnCpu<'p> {
    type Act = cpu::Act<'p>;

    fn enter(
        &self,
        image: &Tensor,
        (rows, cols): &(AxisMap, AxisMap),
        first: &ConvNorm,
    ) -> candle_core::Result<cpu::Act<'p>> {
        cpu::enter(image, (rows, cols), first.cpu_kernel.layout(), self.pool)
    }

    fn layer(
        &self,
        conv: &ConvNorm,
        x: &cpu::Act<'p>,
        weights: &[f32],
        out: Output<'_, cpu::Act<'p>>,
    ) -> candle_core::Result<cpu::Act<'p>> {
        let Some(next) = out.next else {
            candle_core::bail!("a layer before the last without a next layer")
        };
        let y = cpu::conv(x, &conv.cpu_kernel, self.pool)?;
        let (scale, shift) = conv.affine(weights);
        let layout = next.cpu_kernel.layout();
        cpu::norm(&y, &out.norm(&scale, &shift), out.skip, layout, self.pool)
    }

    fn last(
        &self,
        conv: &ConvNorm,
        x: &cpu::Act<'p>,
        weights: &[f32],
        out: Output<'_, cpu::Act<'p>>,
    ) -> candle_core::Result<Tensor> {
        let y = cpu::conv(x, &conv.cpu_kernel, self.pool)?;
        let (scale, shift) = conv.affine(weights);
        cpu::output(&y, &out.norm(&scale, &shift))
    }
}
