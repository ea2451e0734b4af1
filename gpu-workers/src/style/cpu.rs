//! The CPU path: the network in channels-last layout, each convolution lowered to patches and
//! one matrix product per band of output rows.
//!
//! candle's CPU `conv2d` builds its patch matrix element by element and runs one small matrix
//! product per 512 output pixels; on this network that is about ten times slower than
//! onnxruntime. Here a convolution's input is kept channels-last (`[h, w, c]`), so each row
//! of the patch matrix is `k` contiguous runs of `k * c` floats, copied whole; the product
//! `patches [pixels, k*k*c] x kernel [k*k*c, out]` is candle's `matmul` (the `gemm` crate,
//! AVX-512 when the CPU has it) and yields the next channels-last output directly. Bands of
//! output rows keep the patch matrix in cache.
//!
//! Between two convolutions, one pass (a candle custom op) computes the norm's statistics,
//! then writes `act(x * a + b)` (plus the residual) straight into the next convolution's
//! padded, possibly upsampled input through the norm's [`AxisMap`]s.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use super::ops::{Activation, AxisMap, EPS, Norm};

/// Output pixels per band of a convolution: the patch matrix of a band (up to 16384 x 324
/// floats) stays in the last-level cache, and the product is still large enough for `gemm`.
const BAND_PIXELS: usize = 16 * 1024;

/// A convolution of a channels-last padded input `[hp, wp, c]` with `kernel` laid out
/// `[k * k * c, out]` (rows ordered by kernel row, kernel column, input channel): returns
/// `[ho * wo, out]`, channels-last.
pub(crate) fn conv(
    padded: &Tensor,
    kernel: &Tensor,
    k: usize,
    stride: usize,
) -> candle_core::Result<Tensor> {
    let (hp, wp, _) = padded.dims3()?;
    if hp < k || wp < k || stride == 0 {
        bail!("a {k}x{k} convolution of a {hp}x{wp} input")
    }
    let (ho, wo) = ((hp - k) / stride + 1, (wp - k) / stride + 1);
    let band_rows = (BAND_PIXELS / wo).max(1);
    let mut bands = Vec::with_capacity(ho.div_ceil(band_rows));
    for y0 in (0..ho).step_by(band_rows) {
        let rows = y0..(y0 + band_rows).min(ho);
        let patches = padded.apply_op1_no_bwd(&Im2Col {
            k,
            stride,
            rows,
            wo,
        })?;
        bands.push(patches.matmul(kernel)?);
    }
    if bands.len() == 1 {
        return Ok(bands.swap_remove(0));
    }
    Tensor::cat(&bands, 0)
}

/// A `[1, c, h, w]` image to the channels-last `[rows.len(), cols.len(), c]` through the maps.
pub(crate) fn channels_last(
    image: &Tensor,
    rows: &AxisMap,
    cols: &AxisMap,
) -> candle_core::Result<Tensor> {
    image
        .contiguous()?
        .apply_op1_no_bwd(&ChannelsLast { rows, cols })
}

/// The norm of a channels-last convolution output `x` (`[h * w, c]`, of an `h x w` image),
/// then `skip`'s interior (a channels-last `[h + 2 pad, w + 2 pad, c]`) added when given,
/// then the activation, written channels-last through the norm's maps:
/// `[rows.len(), cols.len(), c]`. With `planar`, written `[1, c, rows.len(), cols.len()]`
/// instead (the network's output).
pub(crate) fn norm(
    x: &Tensor,
    (h, w): (usize, usize),
    norm: &Norm<'_>,
    skip: Option<(&Tensor, usize)>,
    planar: bool,
) -> candle_core::Result<Tensor> {
    let op = NormPass {
        norm,
        h,
        w,
        skip_pad: skip.map_or(0, |(_, pad)| pad),
        planar,
    };
    let x = x.contiguous()?;
    match skip {
        None => x.apply_op1_no_bwd(&op),
        Some((skip, _)) => x.apply_op2_no_bwd(&skip.contiguous()?, &op),
    }
}

/// The contiguous f32 data of a CPU tensor argument.
fn data<'s>(storage: &'s CpuStorage, layout: &Layout) -> candle_core::Result<&'s [f32]> {
    let data = storage.as_slice::<f32>()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("style ops need contiguous tensors")
    };
    Ok(&data[start..end])
}

struct Im2Col {
    k: usize,
    stride: usize,
    rows: std::ops::Range<usize>,
    wo: usize,
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "style-im2col"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = data(storage, layout)?;
        let (hp, wp, c) = layout.shape().dims3()?;
        let Self { k, stride, wo, .. } = *self;
        let last_row = (self.rows.end.max(1) - 1) * stride + k;
        if last_row > hp || (wo - 1) * stride + k > wp {
            bail!("patches beyond a {hp}x{wp} input")
        }
        let run = k * c;
        let width = k * run;
        let mut out = vec![0f32; self.rows.len() * wo * width];
        type Copy = fn(&mut [f32], &[f32], (usize, usize), usize, usize);
        let copy: Copy = match run {
            24 => copy_runs::<24>,
            27 => copy_runs::<27>,
            36 => copy_runs::<36>,
            96 => copy_runs::<96>,
            _ => copy_runs_any,
        };
        out.par_chunks_mut(wo * width)
            .zip(self.rows.clone())
            .for_each(|(dst, oy)| {
                for ky in 0..k {
                    let src = &input[(oy * stride + ky) * wp * c..][..wp * c];
                    copy(dst, src, (ky * run, run), width, stride * c);
                }
            });
        Ok((
            CpuStorage::F32(out),
            Shape::from((self.rows.len() * wo, width)),
        ))
    }
}

/// For every patch `i` (a `width`-long chunk of `dst`), copies the `run` floats at
/// `src[i * step..]` to `offset` in the patch. `RUN` is `run` known at compile time (the
/// network's run lengths), so the copy becomes a few vector moves instead of a `memcpy` call.
fn copy_runs<const RUN: usize>(
    dst: &mut [f32],
    src: &[f32],
    (offset, _run): (usize, usize),
    width: usize,
    step: usize,
) {
    for (i, patch) in dst.chunks_exact_mut(width).enumerate() {
        patch[offset..offset + RUN].copy_from_slice(&src[i * step..i * step + RUN]);
    }
}

fn copy_runs_any(
    dst: &mut [f32],
    src: &[f32],
    (offset, run): (usize, usize),
    width: usize,
    step: usize,
) {
    for (i, patch) in dst.chunks_exact_mut(width).enumerate() {
        patch[offset..offset + run].copy_from_slice(&src[i * step..i * step + run]);
    }
}

struct ChannelsLast<'a> {
    rows: &'a AxisMap,
    cols: &'a AxisMap,
}

impl CustomOp1 for ChannelsLast<'_> {
    fn name(&self) -> &'static str {
        "style-channels-last"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = data(storage, layout)?;
        let (b, c, h, w) = layout.shape().dims4()?;
        if b != 1 || self.rows.input() != h || self.cols.input() != w {
            bail!("channels-last remap of a [{b}, {c}, {h}, {w}] tensor")
        }
        let (oh, ow) = (self.rows.len(), self.cols.len());
        let mut out = vec![0f32; oh * ow * c];
        out.par_chunks_mut(ow * c)
            .zip(self.rows.src())
            .for_each(|(dst, &r)| {
                for (px, &col) in dst.chunks_exact_mut(c).zip(self.cols.src()) {
                    for (ch, v) in px.iter_mut().enumerate() {
                        *v = input[(ch * h + r as usize) * w + col as usize];
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((oh, ow, c))))
    }
}

struct NormPass<'a> {
    norm: &'a Norm<'a>,
    h: usize,
    w: usize,
    skip_pad: usize,
    planar: bool,
}

impl NormPass<'_> {
    fn run(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        skip: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = data(x, x_layout)?;
        let (n, c) = x_layout.shape().dims2()?;
        let Norm {
            scale,
            shift,
            act,
            rows,
            cols,
        } = *self.norm;
        let (h, w) = (self.h, self.w);
        if n != h * w || rows.input() != h || cols.input() != w {
            bail!(
                "norm of {n} pixels as {h}x{w}, maps for {}x{}",
                rows.input(),
                cols.input()
            )
        }
        if scale.len() != c || shift.len() != c {
            bail!(
                "norm parameters for {} channels, input has {c}",
                scale.len()
            )
        }
        let skip = match skip {
            None => None,
            Some((s, l)) => {
                let dims = l.shape().dims3()?;
                let want = (h + 2 * self.skip_pad, w + 2 * self.skip_pad, c);
                if dims != want {
                    bail!("residual of shape {dims:?}, expected {want:?}")
                }
                Some(data(s, l)?)
            }
        };
        let (a, b) = affine(input, c, scale, shift);
        let (oh, ow) = (rows.len(), cols.len());
        let mut out = vec![0f32; oh * ow * c];
        if self.planar {
            out.par_chunks_mut(oh * ow)
                .enumerate()
                .for_each(|(ch, plane)| {
                    for (dst, &r) in plane.chunks_exact_mut(ow).zip(rows.src()) {
                        let src = &input[r as usize * w * c..][..w * c];
                        for (v, &col) in dst.iter_mut().zip(cols.src()) {
                            *v = act.apply(src[col as usize * c + ch] * a[ch] + b[ch]);
                        }
                    }
                });
            return Ok((CpuStorage::F32(out), Shape::from((1, c, oh, ow))));
        }
        let ctx = RowCtx {
            input,
            skip,
            skip_pad: self.skip_pad,
            w,
            c,
            a: &a,
            b: &b,
            cols: cols.src(),
        };
        out.par_chunks_mut(ow * c)
            .zip(rows.src())
            .for_each(|(dst, &r)| match act {
                Activation::Relu => ctx.row(dst, r as usize, |v| v.max(0.0)),
                Activation::Identity => ctx.row(dst, r as usize, |v| v),
                Activation::Sigmoid => ctx.row(dst, r as usize, |v| 1.0 / (1.0 + (-v).exp())),
            });
        Ok((CpuStorage::F32(out), Shape::from((oh, ow, c))))
    }
}

/// What writing one channels-last output row needs.
struct RowCtx<'a> {
    input: &'a [f32],
    skip: Option<&'a [f32]>,
    skip_pad: usize,
    w: usize,
    c: usize,
    a: &'a [f32],
    b: &'a [f32],
    cols: &'a [u32],
}

impl RowCtx<'_> {
    #[inline(always)]
    fn row(&self, dst: &mut [f32], r: usize, act: impl Fn(f32) -> f32) {
        let (w, c) = (self.w, self.c);
        let src = &self.input[r * w * c..][..w * c];
        match self.skip {
            None => {
                for (px, &col) in dst.chunks_exact_mut(c).zip(self.cols) {
                    let from = &src[col as usize * c..][..c];
                    for (((v, &x), &a), &b) in px.iter_mut().zip(from).zip(self.a).zip(self.b) {
                        *v = act(x * a + b);
                    }
                }
            }
            Some(skip) => {
                let p = self.skip_pad;
                let sw = w + 2 * p;
                let skip = &skip[((r + p) * sw + p) * c..][..w * c];
                for (px, &col) in dst.chunks_exact_mut(c).zip(self.cols) {
                    let from = &src[col as usize * c..][..c];
                    let add = &skip[col as usize * c..][..c];
                    for ((((v, &x), &s), &a), &b) in
                        px.iter_mut().zip(from).zip(add).zip(self.a).zip(self.b)
                    {
                        *v = act(x * a + b + s);
                    }
                }
            }
        }
    }
}

impl CustomOp1 for NormPass<'_> {
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

impl CustomOp2 for NormPass<'_> {
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

/// The per-channel `a = scale / sqrt(var + eps)` and `b = shift - mean * a` of a channels-last
/// `[pixels, c]` input, so that the norm is `x * a + b`. Sums run in f32 over blocks of
/// pixels (vectorized across channels) and in f64 across blocks; the variance takes a second
/// pass around the mean.
fn affine(x: &[f32], c: usize, scale: &[f32], shift: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let pixels = (x.len() / c.max(1)).max(1) as f64;
    let zero = vec![0f32; c];
    let mean: Vec<f32> = channel_sums(x, c, &zero, |v, _| v)
        .into_iter()
        .map(|s| (s / pixels) as f32)
        .collect();
    let var = channel_sums(x, c, &mean, |v, m| (v - m) * (v - m));
    let a: Vec<f32> = var
        .iter()
        .zip(scale)
        .map(|(&v, &g)| g / (v / pixels + EPS).sqrt() as f32)
        .collect();
    let b = shift
        .iter()
        .zip(&a)
        .zip(&mean)
        .map(|((&s, &a), &m)| s - m * a)
        .collect();
    (a, b)
}

/// Per channel, the sum over pixels of `f(value, center[channel])`.
fn channel_sums(
    x: &[f32],
    c: usize,
    center: &[f32],
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Vec<f64> {
    const BLOCK: usize = 512;
    x.par_chunks(BLOCK * c)
        .map(|block| {
            let mut acc = vec![0f32; c];
            for px in block.chunks_exact(c) {
                for ((s, &v), &m) in acc.iter_mut().zip(px).zip(center) {
                    *s += f(v, m);
                }
            }
            acc.into_iter().map(f64::from).collect::<Vec<_>>()
        })
        .reduce(
            || vec![0f64; c],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                a
            },
        )
}
