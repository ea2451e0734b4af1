//! The cheap operations around the convolutions, as the network describes them: reflect
//! padding, nearest x2 upsampling and cropping (one index map per axis, [`AxisMap`]), and the
//! conditional instance norm with its activation and residual addition ([`Norm`]).
//!
//! This module composes them from candle's tensor ops (`index_select`, reductions,
//! broadcasts), which run on any device; the CPU path fuses them (see `cpu.rs`).

use candle_core::Tensor;

/// The variance epsilon of the network's instance norms.
pub(crate) const EPS: f64 = 1e-5;

/// For one axis, the source index of every output index. Built from the identity over the
/// input axis by output-side steps (pad, upsample, crop), so any chain of them stays one
/// table and costs one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AxisMap {
    src: Vec<u32>,
    input: usize,
}

impl AxisMap {
    pub(crate) fn identity(n: usize) -> Self {
        Self {
            src: (0..n as u32).collect(),
            input: n,
        }
    }

    /// Reflect-pads the output by `pad` on both ends (edge not repeated, as ONNX `reflect`).
    pub(crate) fn reflect(&self, pad: usize) -> Self {
        let n = self.src.len();
        if n == 0 {
            return self.clone();
        }
        let src = (0..n + 2 * pad)
            .map(|i| self.src[reflect_index(i as isize - pad as isize, n)])
            .collect();
        Self {
            src,
            input: self.input,
        }
    }

    /// Reflect-extends the output at its end to `len` entries.
    pub(crate) fn extend(&self, len: usize) -> Self {
        let n = self.src.len();
        if n == 0 {
            return self.clone();
        }
        let src = (0..len)
            .map(|i| self.src[reflect_index(i as isize, n)])
            .collect();
        Self {
            src,
            input: self.input,
        }
    }

    /// Nearest-neighbour upsampling by two (ONNX `Resize`, nearest, asymmetric, floor).
    pub(crate) fn upsample2(&self) -> Self {
        let src = self.src.iter().flat_map(|&s| [s, s]).collect();
        Self {
            src,
            input: self.input,
        }
    }

    /// Keeps the first `len` entries.
    pub(crate) fn crop(&self, len: usize) -> Self {
        Self {
            src: self.src[..len.min(self.src.len())].to_vec(),
            input: self.input,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.src.len()
    }

    /// The length of the input axis.
    pub(crate) fn input(&self) -> usize {
        self.input
    }

    /// The source index of every output index.
    pub(crate) fn src(&self) -> &[u32] {
        &self.src
    }

    fn as_tensor(&self, device: &candle_core::Device) -> candle_core::Result<Tensor> {
        Tensor::from_slice(&self.src, self.src.len(), device)
    }
}

/// Reflection of `i` into `0..n` (period `2(n - 1)`), total for every `i` and `n > 0`.
fn reflect_index(i: isize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let i = i.rem_euclid(period);
    (if i < n as isize { i } else { period - i }) as usize
}

/// What follows a norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    Relu,
    Identity,
    Sigmoid,
}

impl Activation {
    #[inline(always)]
    pub(crate) fn apply(self, v: f32) -> f32 {
        match self {
            Self::Relu => v.max(0.0),
            Self::Identity => v,
            Self::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        }
    }
}

/// One conditional instance norm: the style-mixed scale (gamma) and shift (beta) per channel,
/// the activation after it, and where its output goes.
#[derive(Debug)]
pub(crate) struct Norm<'a> {
    pub(crate) scale: &'a [f32],
    pub(crate) shift: &'a [f32],
    pub(crate) act: Activation,
    pub(crate) rows: &'a AxisMap,
    pub(crate) cols: &'a AxisMap,
}

/// `x[.., rows[i], cols[j]]` for every output `(i, j)` of a `[batch, channels, h, w]` tensor.
pub(crate) fn remap(x: &Tensor, rows: &AxisMap, cols: &AxisMap) -> candle_core::Result<Tensor> {
    let dev = x.device();
    x.contiguous()?
        .index_select(&rows.as_tensor(dev)?, 2)?
        .index_select(&cols.as_tensor(dev)?, 3)
}

/// The norm of `x` (`[batch, channels, h, w]`), then `skip`'s interior (without `pad` on
/// each side) added when given, then the activation, written through the norm's maps.
pub(crate) fn norm(
    x: &Tensor,
    norm: &Norm<'_>,
    skip: Option<(&Tensor, usize)>,
) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let dev = x.device();
    let flat = x.reshape((b, c, h * w))?;
    let mean = flat.mean_keepdim(2)?;
    let centered = flat.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(2)?;
    let scale = Tensor::from_slice(norm.scale, (1, c, 1), dev)?;
    let shift = Tensor::from_slice(norm.shift, (1, c, 1), dev)?;
    let y = centered
        .broadcast_mul(&(var + EPS)?.sqrt()?.recip()?.broadcast_mul(&scale)?)?
        .broadcast_add(&shift)?
        .reshape((b, c, h, w))?;
    let y = match skip {
        None => y,
        Some((skip, pad)) => (y + skip.narrow(2, pad, h)?.narrow(3, pad, w)?)?,
    };
    let y = match norm.act {
        Activation::Relu => y.relu()?,
        Activation::Identity => y,
        Activation::Sigmoid => candle_nn::ops::sigmoid(&y)?,
    };
    remap(&y, norm.rows, norm.cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn reflection_matches_onnx_reflect_padding() {
        // ONNX/numpy reflect of [0, 1, 2, 3] by 2: [2, 1, 0, 1, 2, 3, 2, 1].
        let m = AxisMap::identity(4).reflect(2);
        assert_eq!(m.src, [2, 1, 0, 1, 2, 3, 2, 1]);
        // Extension to a multiple of 4 then padding: the chain stays one table.
        let m = AxisMap::identity(6).extend(8).reflect(1);
        assert_eq!(m.src, [1, 0, 1, 2, 3, 4, 5, 4, 3, 4]);
        assert_eq!(
            AxisMap::identity(3).upsample2().reflect(1).src,
            [0, 0, 0, 1, 1, 2, 2, 2]
        );
        assert_eq!(AxisMap::identity(5).crop(3).src, [0, 1, 2]);
        // Total even where a single reflection would not reach.
        assert_eq!(AxisMap::identity(1).reflect(2).src, [0; 5]);
        assert_eq!(
            AxisMap::identity(2).reflect(3).src,
            [1, 0, 1, 0, 1, 0, 1, 0]
        );
    }

    #[test]
    fn remapping_pads_like_numpy() {
        let x = Tensor::arange(0f32, 6.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 2, 3))
            .unwrap();
        let (rows, cols) = (
            AxisMap::identity(2).reflect(1),
            AxisMap::identity(3).crop(2),
        );
        let y = remap(&x, &rows, &cols).unwrap();
        let y: Vec<Vec<f32>> = y.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        assert_eq!(y, [[3.0, 4.0], [0.0, 1.0], [3.0, 4.0], [0.0, 1.0]]);
    }

    #[test]
    fn a_normalized_plane_has_the_mixed_mean_and_scale() {
        let x = Tensor::randn(3f32, 2.0, (1, 1, 16, 16), &Device::Cpu).unwrap();
        let (rows, cols) = (AxisMap::identity(16), AxisMap::identity(16));
        let n = Norm {
            scale: &[3.0],
            shift: &[0.5],
            act: Activation::Identity,
            rows: &rows,
            cols: &cols,
        };
        let y = norm(&x, &n, None).unwrap().flatten_all().unwrap();
        let mean = y.mean_all().unwrap().to_scalar::<f32>().unwrap();
        let var = (y - f64::from(mean))
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((mean - 0.5).abs() < 1e-5, "{mean}");
        assert!((var - 9.0).abs() < 1e-2, "{var}");
    }
}
