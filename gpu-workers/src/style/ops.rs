//! The cheap operations around the convolutions: reflect padding, nearest x2 upsampling,
//! cropping (all three as one index map per axis), and the conditional instance norm with its
//! activation and residual addition.
//!
//! On the CPU, the norm of a convolution's output and everything up to the next convolution's
//! padded input is one fused pass (a candle custom op): statistics per plane, then a single
//! write of `act(x * a + b)` (plus the residual) straight into the padded, possibly upsampled
//! layout the next convolution reads. On other devices the same steps are composed from
//! candle's tensor ops (`index_select`, reductions, broadcasts); a test checks that both
//! agree.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

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
    fn apply(self, v: f32) -> f32 {
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
pub(crate) fn remap(
    x: &Tensor,
    rows: &AxisMap,
    cols: &AxisMap,
    fused: bool,
) -> candle_core::Result<Tensor> {
    if fused {
        x.contiguous()?.apply_op1_no_bwd(&Remap { rows, cols })
    } else {
        let dev = x.device();
        x.contiguous()?
            .index_select(&rows.as_tensor(dev)?, 2)?
            .index_select(&cols.as_tensor(dev)?, 3)
    }
}

/// The norm of `x`, then `skip` (its interior, without `skip_pad` on each side) added after
/// the norm's affine when given, then the activation, written through the norm's maps.
pub(crate) fn norm(
    x: &Tensor,
    norm: &Norm<'_>,
    skip: Option<(&Tensor, usize)>,
    fused: bool,
) -> candle_core::Result<Tensor> {
    if fused {
        let x = x.contiguous()?;
        let op = FusedNorm { norm, skip_pad: 0 };
        match skip {
            None => x.apply_op1_no_bwd(&op),
            Some((skip, pad)) => {
                let op = FusedNorm {
                    norm,
                    skip_pad: pad,
                };
                x.apply_op2_no_bwd(&skip.contiguous()?, &op)
            }
        }
    } else {
        composed_norm(x, norm, skip)
    }
}

fn composed_norm(
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
    remap(&y, norm.rows, norm.cols, false)
}

/// `[batch, channels, height, width]`.
type Dims4 = (usize, usize, usize, usize);

/// The contiguous f32 data of a CPU tensor argument, and its four dimensions.
fn plane_data<'s>(
    storage: &'s CpuStorage,
    layout: &Layout,
) -> candle_core::Result<(&'s [f32], Dims4)> {
    let data = storage.as_slice::<f32>()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("style ops need contiguous tensors")
    };
    Ok((&data[start..end], layout.shape().dims4()?))
}

fn check_maps(rows: &AxisMap, cols: &AxisMap, h: usize, w: usize) -> candle_core::Result<()> {
    if rows.input != h || cols.input != w {
        bail!(
            "index maps for {}x{} applied to {h}x{w}",
            rows.input,
            cols.input
        )
    }
    Ok(())
}

struct Remap<'a> {
    rows: &'a AxisMap,
    cols: &'a AxisMap,
}

impl CustomOp1 for Remap<'_> {
    fn name(&self) -> &'static str {
        "style-remap"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (data, (b, c, h, w)) = plane_data(storage, layout)?;
        check_maps(self.rows, self.cols, h, w)?;
        let (oh, ow) = (self.rows.len(), self.cols.len());
        let mut out = vec![0f32; b * c * oh * ow];
        out.par_chunks_mut(oh * ow)
            .zip(data.par_chunks(h * w))
            .for_each(|(dst, src)| {
                for (dst_row, &r) in dst.chunks_exact_mut(ow).zip(&self.rows.src) {
                    let src_row = &src[r as usize * w..][..w];
                    for (d, &col) in dst_row.iter_mut().zip(&self.cols.src) {
                        *d = src_row[col as usize];
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, oh, ow))))
    }
}

struct FusedNorm<'a> {
    norm: &'a Norm<'a>,
    skip_pad: usize,
}

impl FusedNorm<'_> {
    fn run(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        skip: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (data, (b, c, h, w)) = plane_data(x, x_layout)?;
        let Norm {
            scale,
            shift,
            act,
            rows,
            cols,
        } = *self.norm;
        check_maps(rows, cols, h, w)?;
        if scale.len() != c || shift.len() != c {
            bail!(
                "norm parameters for {} channels, input has {c}",
                scale.len()
            )
        }
        let (sh, sw) = (h + 2 * self.skip_pad, w + 2 * self.skip_pad);
        let skip = match skip {
            None => None,
            Some((s, l)) => {
                let (s, dims) = plane_data(s, l)?;
                if dims != (b, c, sh, sw) {
                    bail!("residual of shape {dims:?}, expected {:?}", (b, c, sh, sw))
                }
                Some(s)
            }
        };
        let (oh, ow) = (rows.len(), cols.len());
        let mut out = vec![0f32; b * c * oh * ow];
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(plane, dst)| {
                let src = &data[plane * h * w..][..h * w];
                let (mean, var) = mean_var(src);
                let a = scale[plane % c] / (f64::from(var) + EPS).sqrt() as f32;
                let bias = shift[plane % c] - mean * a;
                let skip = skip.map(|s| &s[plane * sh * sw..][..sh * sw]);
                for (dst_row, &r) in dst.chunks_exact_mut(ow).zip(&rows.src) {
                    let r = r as usize;
                    let src_row = &src[r * w..][..w];
                    match skip {
                        None => {
                            for (d, &col) in dst_row.iter_mut().zip(&cols.src) {
                                *d = act.apply(src_row[col as usize] * a + bias);
                            }
                        }
                        Some(skip) => {
                            let p = self.skip_pad;
                            let skip_row = &skip[(r + p) * sw + p..][..w];
                            for (d, &col) in dst_row.iter_mut().zip(&cols.src) {
                                let col = col as usize;
                                *d = act.apply(src_row[col] * a + bias + skip_row[col]);
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, oh, ow))))
    }
}

impl CustomOp1 for FusedNorm<'_> {
    fn name(&self) -> &'static str {
        "style-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(storage, layout, None)
    }
}

impl CustomOp2 for FusedNorm<'_> {
    fn name(&self) -> &'static str {
        "style-norm-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(s1, l1, Some((s2, l2)))
    }
}

/// Mean and (population) variance of a plane: blocks summed in eight f32 lanes (which the
/// compiler vectorizes), blocks added up in f64, two passes for an accurate variance.
fn mean_var(xs: &[f32]) -> (f32, f32) {
    const BLOCK: usize = 1024;
    let n = xs.len().max(1) as f64;
    let sum: f64 = xs
        .chunks(BLOCK)
        .map(|block| f64::from(lanes_sum(block, |v| v)))
        .sum();
    let mean = (sum / n) as f32;
    let sq: f64 = xs
        .chunks(BLOCK)
        .map(|block| f64::from(lanes_sum(block, |v| (v - mean) * (v - mean))))
        .sum();
    (mean, (sq / n) as f32)
}

#[inline(always)]
fn lanes_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail
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
    fn statistics_are_accurate_over_large_planes() {
        let xs: Vec<f32> = (0..300_001).map(|i| 1000.0 + (i % 7) as f32).collect();
        let (mean, var) = mean_var(&xs);
        let n = xs.len() as f64;
        let m: f64 = xs.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let v: f64 = xs.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / n;
        assert!((f64::from(mean) - m).abs() < 1e-4, "{mean} vs {m}");
        assert!((f64::from(var) - v).abs() < 1e-4, "{var} vs {v}");
    }

    fn pseudo_random(shape: (usize, usize, usize, usize), seed: u32) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let data: Vec<f32> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 10_000) as f32 / 2_500.0 - 2.0
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn fused_and_composed_remaps_agree() {
        let x = pseudo_random((2, 3, 7, 5), 1);
        let rows = AxisMap::identity(7).extend(8).reflect(4);
        let cols = AxisMap::identity(5).upsample2().reflect(1);
        let fused = remap(&x, &rows, &cols, true).unwrap();
        assert_eq!(fused.dims(), [2, 3, 16, 12]);
        assert_eq!(
            max_diff(&fused, &remap(&x, &rows, &cols, false).unwrap()),
            0.0
        );
        // A strided (transposed) input is read through its layout.
        let xt = x.transpose(2, 3).unwrap();
        let (r, c) = (AxisMap::identity(5).reflect(2), AxisMap::identity(7));
        let fused = remap(&xt, &r, &c, true).unwrap();
        assert_eq!(max_diff(&fused, &remap(&xt, &r, &c, false).unwrap()), 0.0);
    }

    #[test]
    fn fused_and_composed_norms_agree() {
        let x = pseudo_random((2, 4, 6, 10), 2);
        let skip = pseudo_random((2, 4, 8, 12), 3);
        let scale = [0.5, -1.0, 2.0, 1.5];
        let shift = [0.1, 0.2, -0.3, 0.0];
        for act in [Activation::Relu, Activation::Identity, Activation::Sigmoid] {
            for (rows, cols) in [
                (
                    AxisMap::identity(6).reflect(1),
                    AxisMap::identity(10).reflect(1),
                ),
                (
                    AxisMap::identity(6).upsample2().reflect(1),
                    AxisMap::identity(10).upsample2().reflect(1),
                ),
                (AxisMap::identity(6).crop(5), AxisMap::identity(10).crop(7)),
            ] {
                let n = Norm {
                    scale: &scale,
                    shift: &shift,
                    act,
                    rows: &rows,
                    cols: &cols,
                };
                let fused = norm(&x, &n, None, true).unwrap();
                let composed = norm(&x, &n, None, false).unwrap();
                assert!(max_diff(&fused, &composed) < 1e-5, "{act:?}");
                let fused = norm(&x, &n, Some((&skip, 1)), true).unwrap();
                let composed = norm(&x, &n, Some((&skip, 1)), false).unwrap();
                assert!(max_diff(&fused, &composed) < 1e-5, "{act:?} with residual");
            }
        }
    }

    #[test]
    fn a_normalized_plane_has_the_mixed_mean_and_scale() {
        let x = pseudo_random((1, 1, 16, 16), 4);
        let (rows, cols) = (AxisMap::identity(16), AxisMap::identity(16));
        let n = Norm {
            scale: &[3.0],
            shift: &[0.5],
            act: Activation::Identity,
            rows: &rows,
            cols: &cols,
        };
        let y = norm(&x, &n, None, true).unwrap().flatten_all().unwrap();
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
