//! The CPU path: the network in channels-last layout, each convolution lowered to matrix
//! products of patches, in bands of output rows.
//!
//! candle's CPU `conv2d` builds its patch matrix element by element and runs one small matrix
//! product per 512 output pixels; on this network that is about ten times slower than
//! onnxruntime. Here activations are channels-last (`[h, w, c]`), so a patch is `k`
//! contiguous runs of `k * c` floats, copied whole, and the product `patches [pixels, k*k*c] x
//! kernel [k*k*c, out]` (candle's `matmul`: the `gemm` crate, AVX-512 when the CPU has it)
//! yields the next channels-last output directly. Layers with few output channels use
//! one-row patches instead (see [`ConvKernel`]).
//!
//! Activations are held as bands of whole rows ([`Rows`]): the bands of a convolution and of
//! a norm's output are computed in parallel, a band's patch matrix stays in the cache, and
//! no buffer is so large that the allocator returns it to the system after each use (which
//! costs a page fault per 4 KiB on the next one). Between two convolutions, one pass computes
//! the norm's statistics, then one writes `act(x * a + b)` (plus the residual) straight into
//! the next convolution's padded, possibly upsampled input through the norm's [`AxisMap`]s.

use std::ops::Range;

use candle_core::{Device, Layout, Storage, Tensor, bail};
use rayon::prelude::*;

use super::ops::{Activation, AxisMap, EPS, Norm};

/// Output pixels per band of a convolution: large enough for an efficient product (each also
/// pays a fixed cost in candle), small enough for the patch matrix (up to 16384 x 288 floats)
/// to stay in the last-level cache. On 2 cores, 16384 was faster than 4096, 8192 and 32768.
const BAND_PIXELS: usize = 16 * 1024;
/// Floats per band of a norm's output (4 MiB).
const BAND_FLOATS: usize = 1024 * 1024;

/// A channels-last activation `[h, w, c]` on the CPU, as bands of whole rows: tensors `[rows,
/// w, c]`, each `band_rows` rows but the last.
#[derive(Debug)]
pub(crate) struct Rows {
    bands: Vec<Tensor>,
    band_rows: usize,
    h: usize,
    w: usize,
    c: usize,
}

/// The rows of a [`Rows`], borrowed from its tensors' storage.
struct RowSlices<'a> {
    bands: Vec<&'a [f32]>,
    band_rows: usize,
    row_len: usize,
}

impl RowSlices<'_> {
    #[inline]
    fn row(&self, i: usize) -> &[f32] {
        let band = self.bands[i / self.band_rows];
        &band[(i % self.band_rows) * self.row_len..][..self.row_len]
    }
}

impl Rows {
    pub(crate) fn dims(&self) -> (usize, usize, usize) {
        (self.h, self.w, self.c)
    }

    /// Runs `f` on the rows' data.
    fn read<R>(&self, f: impl FnOnce(&RowSlices<'_>) -> R) -> candle_core::Result<R> {
        let guards: Vec<_> = self.bands.iter().map(Tensor::storage_and_layout).collect();
        let bands = guards
            .iter()
            .map(|(storage, layout)| cpu_data(storage, layout))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let row_len = self.w * self.c;
        for (i, band) in bands.iter().enumerate() {
            let rows = self.band_rows.min(self.h - i * self.band_rows);
            if band.len() != rows * row_len {
                bail!(
                    "band {i} of {} floats, expected {}",
                    band.len(),
                    rows * row_len
                )
            }
        }
        Ok(f(&RowSlices {
            bands,
            band_rows: self.band_rows,
            row_len,
        }))
    }

    /// `[h, w, c]`, in bands of about [`BAND_FLOATS`], each row written by `fill(row, out)`.
    fn build(
        (h, w, c): (usize, usize, usize),
        fill: impl Fn(usize, &mut [f32]) + Sync,
    ) -> candle_core::Result<Self> {
        let row_len = w * c;
        // At least two bands, which the two halves of the machine can take at once.
        let band_rows = (BAND_FLOATS / row_len.max(1)).clamp(1, h.div_ceil(2).max(1));
        let starts: Vec<usize> = (0..h).step_by(band_rows).collect();
        let bands = starts
            .into_par_iter()
            .map(|start| {
                let rows = band_rows.min(h - start);
                let mut data = vec![0f32; rows * row_len];
                data.par_chunks_mut(row_len)
                    .enumerate()
                    .for_each(|(i, out)| fill(start + i, out));
                Tensor::from_vec(data, (rows, w, c), &Device::Cpu)
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            bands,
            band_rows,
            h,
            w,
            c,
        })
    }
}

/// The contiguous f32 data of a CPU tensor's storage.
fn cpu_data<'s>(storage: &'s Storage, layout: &Layout) -> candle_core::Result<&'s [f32]> {
    let Storage::Cpu(cpu) = storage else {
        bail!("the CPU path got a tensor of another device")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("the CPU path needs contiguous tensors")
    };
    Ok(&cpu.as_slice::<f32>()?[start..end])
}

/// A convolution's weights, laid out for one of two lowerings chosen by its shape.
#[derive(Debug)]
pub(crate) struct ConvKernel {
    k: usize,
    stride: usize,
    out: usize,
    lowering: Lowering,
}

#[derive(Debug)]
enum Lowering {
    /// Patches of `k x k` pixels: `[pixels, k*k*c] x [k*k*c, out]`, the kernel's rows
    /// ordered by kernel row, kernel column, input channel.
    Patches(Tensor),
    /// Patches of one row of `k` pixels against every kernel row at once: `[pixels, k*c] x
    /// [k*c, k*out]`, then output row `y` sums kernel row `ky`'s columns of row `y + ky`.
    /// Per pixel it writes `k*c` patch floats and `k*out` product floats (read again by the
    /// sums) instead of `k*k*c` patch floats, so it moves less when `2 * out < (k - 1) * c`:
    /// the expanding layers (32->8, 8->4, 4->3 channels). Their products also get `k` times
    /// more columns, which `gemm` runs far better than 3 or 4.
    RowSums(Tensor),
}

impl ConvKernel {
    /// The lowering of `weight` (`[out, in, k, k]`) that moves the fewest floats.
    pub(crate) fn new(weight: &Tensor, stride: usize) -> candle_core::Result<Self> {
        let (out, c, k, kw) = weight.dims4()?;
        if k != kw {
            bail!("a {k}x{kw} kernel is not square")
        }
        let lowering = if stride == 1 && 2 * out < (k - 1) * c {
            // [out, c, ky, kx] -> [kx, c, ky, out]
            let rows = weight.permute((3, 1, 2, 0))?.contiguous()?;
            Lowering::RowSums(rows.reshape((k * c, k * out))?)
        } else {
            // [out, c, ky, kx] -> [ky, kx, c, out]
            let rows = weight.permute((2, 3, 1, 0))?.contiguous()?;
            Lowering::Patches(rows.reshape((k * k * c, out))?)
        };
        Ok(Self {
            k,
            stride,
            out,
            lowering,
        })
    }
}

/// The convolution of a padded channels-last input.
pub(crate) fn conv(padded: &Rows, kernel: &ConvKernel) -> candle_core::Result<Rows> {
    let (hp, wp, c) = padded.dims();
    let ConvKernel { k, stride, out, .. } = *kernel;
    if hp < k || wp < k || stride == 0 {
        bail!("a {k}x{k} convolution of a {hp}x{wp}x{c} input")
    }
    let (ho, wo) = ((hp - k) / stride + 1, (wp - k) / stride + 1);
    match &kernel.lowering {
        Lowering::Patches(weights) => products(padded, weights, (k, k, stride), (ho, wo, out)),
        Lowering::RowSums(weights) => {
            // One row of k pixels for every input row, against all kernel rows at once.
            let rows = products(padded, weights, (1, k, 1), (hp, wo, k * out))?;
            row_sums(&rows, k, (ho, wo, out))
        }
    }
}

/// `patches x weights` for `ho x wo` output pixels, each with a patch of `kh x kw` input
/// pixels at `stride`, in bands of [`BAND_PIXELS`].
fn products(
    padded: &Rows,
    weights: &Tensor,
    (kh, kw, stride): (usize, usize, usize),
    (ho, wo, out): (usize, usize, usize),
) -> candle_core::Result<Rows> {
    let c = padded.dims().2;
    let (width, cols) = weights.dims2()?;
    if width != kh * kw * c || cols != out {
        bail!("weights [{width}, {cols}] for {kh}x{kw} patches of {c} channels to {out}")
    }
    // At least two bands, which the two halves of the machine can take at once.
    let band_rows = (BAND_PIXELS / wo).clamp(1, ho.div_ceil(2).max(1));
    let starts: Vec<usize> = (0..ho).step_by(band_rows).collect();
    let bands = padded.read(|input| {
        starts
            .into_par_iter()
            .map(|start| {
                let rows = start..(start + band_rows).min(ho);
                let n = rows.len();
                let patches = im2col(input, rows, (kh, kw, stride, c, wo));
                let patches = Tensor::from_vec(patches, (n * wo, width), &Device::Cpu)?;
                patches.matmul(weights)?.reshape((n, wo, out))
            })
            .collect::<candle_core::Result<Vec<_>>>()
    })??;
    Ok(Rows {
        bands,
        band_rows,
        h: ho,
        w: wo,
        c: out,
    })
}

/// `out[y, x, o] = sum over ky of rows[y + ky, x, ky * out + o]`.
fn row_sums(
    rows: &Rows,
    k: usize,
    (ho, wo, out): (usize, usize, usize),
) -> candle_core::Result<Rows> {
    rows.read(|z| {
        Rows::build((ho, wo, out), |y, dst| {
            for (d, px) in dst
                .chunks_exact_mut(out)
                .zip(z.row(y).chunks_exact(k * out))
            {
                d.copy_from_slice(&px[..out]);
            }
            for ky in 1..k {
                for (d, px) in dst
                    .chunks_exact_mut(out)
                    .zip(z.row(y + ky).chunks_exact(k * out))
                {
                    for (d, &v) in d.iter_mut().zip(&px[ky * out..][..out]) {
                        *d += v;
                    }
                }
            }
        })
    })?
}

/// The patch matrix of output rows `rows`: one row of `kh * kw * c` floats per output pixel,
/// `kh` runs of `kw * c` input floats each. Written once, in order, without zeroing it
/// first (bands of a convolution already run in parallel).
fn im2col(
    input: &RowSlices<'_>,
    rows: Range<usize>,
    (kh, kw, stride, c, wo): (usize, usize, usize, usize, usize),
) -> Vec<f32> {
    let run = kw * c;
    let mut out = Vec::with_capacity(rows.len() * wo * kh * run);
    let step = stride * c;
    for oy in rows {
        let srcs: Vec<&[f32]> = (0..kh).map(|ky| input.row(oy * stride + ky)).collect();
        for ox in 0..wo {
            for src in &srcs {
                out.extend_from_slice(&src[ox * step..ox * step + run]);
            }
        }
    }
    out
}

/// A `[1, c, h, w]` CPU image to channels-last `[rows.len(), cols.len(), c]` through the maps.
pub(crate) fn channels_last(
    image: &Tensor,
    rows: &AxisMap,
    cols: &AxisMap,
) -> candle_core::Result<Rows> {
    let (b, c, h, w) = image.dims4()?;
    if b != 1 || rows.input() != h || cols.input() != w {
        bail!("channels-last remap of a [{b}, {c}, {h}, {w}] tensor")
    }
    let image = image.contiguous()?;
    let (storage, layout) = image.storage_and_layout();
    let input = cpu_data(&storage, layout)?;
    Rows::build((rows.len(), cols.len(), c), |i, out| {
        let r = rows.src()[i] as usize;
        for (px, &col) in out.chunks_exact_mut(c).zip(cols.src()) {
            for (ch, v) in px.iter_mut().enumerate() {
                *v = input[(ch * h + r) * w + col as usize];
            }
        }
    })
}

/// The norm of a channels-last convolution output, then `skip`'s interior (a channels-last
/// input padded by `pad`) added when given, then the activation, written channels-last
/// through the norm's maps.
pub(crate) fn norm(
    x: &Rows,
    norm: &Norm<'_>,
    skip: Option<(&Rows, usize)>,
) -> candle_core::Result<Rows> {
    let (h, w, c) = x.dims();
    check(x, norm)?;
    if let Some((skip, pad)) = skip
        && skip.dims() != (h + 2 * pad, w + 2 * pad, c)
    {
        bail!("residual of shape {:?} for a {h}x{w}x{c} norm", skip.dims())
    }
    let (rows, cols) = (norm.rows.src(), norm.cols.src());
    x.read(|input| {
        let (a, b) = affine(input, x.dims(), norm.scale, norm.shift);
        let out = (norm.rows.len(), norm.cols.len(), c);
        let ctx = RowCtx {
            input,
            c,
            a: &a,
            b: &b,
            cols,
        };
        match skip {
            None => Rows::build(out, |i, dst| {
                ctx.row(norm.act, dst, rows[i] as usize, None);
            }),
            Some((skip, pad)) => skip.read(|skip| {
                Rows::build(out, |i, dst| {
                    let r = rows[i] as usize;
                    let add = &skip.row(r + pad)[pad * c..][..w * c];
                    ctx.row(norm.act, dst, r, Some(add));
                })
            })?,
        }
    })?
}

/// [`norm`] without a residual, written `[1, c, rows.len(), cols.len()]` (the network's
/// output).
pub(crate) fn norm_planar(x: &Rows, norm: &Norm<'_>) -> candle_core::Result<Tensor> {
    let (_, _, c) = x.dims();
    check(x, norm)?;
    let (oh, ow) = (norm.rows.len(), norm.cols.len());
    let out = x.read(|input| {
        let (a, b) = affine(input, x.dims(), norm.scale, norm.shift);
        let mut out = vec![0f32; c * oh * ow];
        out.par_chunks_mut(ow).enumerate().for_each(|(i, dst)| {
            let (ch, r) = (i / oh, norm.rows.src()[i % oh] as usize);
            let src = input.row(r);
            for (v, &col) in dst.iter_mut().zip(norm.cols.src()) {
                *v = norm.act.apply(src[col as usize * c + ch] * a[ch] + b[ch]);
            }
        });
        out
    })?;
    Tensor::from_vec(out, (1, c, oh, ow), &Device::Cpu)
}

fn check(x: &Rows, norm: &Norm<'_>) -> candle_core::Result<()> {
    let (h, w, c) = x.dims();
    if norm.rows.input() != h || norm.cols.input() != w {
        bail!(
            "norm maps for {}x{} applied to {h}x{w}",
            norm.rows.input(),
            norm.cols.input()
        )
    }
    if norm.scale.len() != c || norm.shift.len() != c {
        bail!(
            "norm parameters for {} channels, input has {c}",
            norm.scale.len()
        )
    }
    Ok(())
}

/// What writing one channels-last output row needs.
struct RowCtx<'a> {
    input: &'a RowSlices<'a>,
    c: usize,
    a: &'a [f32],
    b: &'a [f32],
    cols: &'a [u32],
}

impl RowCtx<'_> {
    /// Output row `dst` from input row `r`: `act(x * a + b (+ add))` per pixel of the maps,
    /// with the choice of activation made once per row, not per value.
    fn row(&self, act: Activation, dst: &mut [f32], r: usize, add: Option<&[f32]>) {
        match act {
            Activation::Relu => self.row_with(dst, r, add, |v| Activation::Relu.apply(v)),
            Activation::Identity => self.row_with(dst, r, add, |v| v),
            Activation::Sigmoid => self.row_with(dst, r, add, |v| Activation::Sigmoid.apply(v)),
        }
    }

    #[inline(always)]
    fn row_with(&self, dst: &mut [f32], r: usize, add: Option<&[f32]>, act: impl Fn(f32) -> f32) {
        let c = self.c;
        let src = self.input.row(r);
        match add {
            None => {
                for (px, &col) in dst.chunks_exact_mut(c).zip(self.cols) {
                    let from = &src[col as usize * c..][..c];
                    for (((v, &x), &a), &b) in px.iter_mut().zip(from).zip(self.a).zip(self.b) {
                        *v = act(x * a + b);
                    }
                }
            }
            Some(add) => {
                for (px, &col) in dst.chunks_exact_mut(c).zip(self.cols) {
                    let from = &src[col as usize * c..][..c];
                    let add = &add[col as usize * c..][..c];
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

/// The per-channel `a = scale / sqrt(var + eps)` and `b = shift - mean * a` of a channels-last
/// input, so that the norm is `x * a + b`. One pass over the input: each row's mean and sum
/// of squared deviations in f32 (two passes over a row that is in the cache, vectorized
/// across channels), rows merged in f64 in order (Chan et al.'s pairwise update), so that
/// the result does not depend on how the threads split the rows.
fn affine(
    x: &RowSlices<'_>,
    (h, _, c): (usize, usize, usize),
    scale: &[f32],
    shift: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    // Rows in parallel, merged in row order: the same sums whatever the threads' timing.
    let rows: Vec<Moments> = (0..h)
        .into_par_iter()
        .map(|r| Moments::of_row(x.row(r), c))
        .collect();
    let moments = rows.iter().fold(Moments::new(c), |mut total, row| {
        total.merge(row);
        total
    });
    let n = moments.count.max(1.0);
    let a: Vec<f32> = moments
        .m2
        .iter()
        .zip(scale)
        .map(|(&m2, &g)| g / (m2 / n + EPS).sqrt() as f32)
        .collect();
    let b = shift
        .iter()
        .zip(&a)
        .zip(&moments.mean)
        .map(|((&s, &a), &m)| s - m as f32 * a)
        .collect();
    (a, b)
}

/// Count, mean and sum of squared deviations per channel.
struct Moments {
    count: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    fn new(c: usize) -> Self {
        Self {
            count: 0.0,
            mean: vec![0.0; c],
            m2: vec![0.0; c],
        }
    }

    fn of_row(row: &[f32], c: usize) -> Self {
        let pixels = row.len() / c.max(1);
        let mut sum = vec![0f32; c];
        for px in row.chunks_exact(c) {
            for (s, &v) in sum.iter_mut().zip(px) {
                *s += v;
            }
        }
        let mean: Vec<f32> = sum.iter().map(|&s| s / pixels.max(1) as f32).collect();
        let mut m2 = vec![0f32; c];
        for px in row.chunks_exact(c) {
            for ((s, &v), &m) in m2.iter_mut().zip(px).zip(&mean) {
                *s += (v - m) * (v - m);
            }
        }
        Self {
            count: pixels as f64,
            mean: mean.into_iter().map(f64::from).collect(),
            m2: m2.into_iter().map(f64::from).collect(),
        }
    }

    fn merge(&mut self, other: &Self) {
        let total = self.count + other.count;
        if other.count == 0.0 {
            return;
        }
        let weight = self.count * other.count / total;
        for (((mean, m2), &other_mean), &other_m2) in self
            .mean
            .iter_mut()
            .zip(&mut self.m2)
            .zip(&other.mean)
            .zip(&other.m2)
        {
            let delta = other_mean - *mean;
            *mean += delta * other.count / total;
            *m2 += other_m2 + delta * delta * weight;
        }
        self.count = total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[h, w, c]` channels-last rows of a `[1, c, h, w]` tensor.
    fn rows_of(x: &Tensor) -> Rows {
        let (_, _, h, w) = x.dims4().unwrap();
        channels_last(x, &AxisMap::identity(h), &AxisMap::identity(w)).unwrap()
    }

    /// The `[1, c, h, w]` tensor of channels-last rows.
    fn planar(rows: &Rows) -> Tensor {
        let parts: Vec<Tensor> = rows.bands.clone();
        Tensor::cat(&parts, 0)
            .unwrap()
            .permute((2, 0, 1))
            .unwrap()
            .unsqueeze(0)
            .unwrap()
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
    fn both_lowerings_match_candle_conv2d() {
        let dev = Device::Cpu;
        // (in, out, k, stride): full patches (3x3 stride 1 and 2, 9x9 from 3 channels) and
        // row sums (few output channels).
        for (cin, cout, k, stride) in [
            (8, 8, 3, 1),
            (8, 8, 3, 2),
            (3, 16, 9, 1),
            (8, 4, 3, 1),
            (4, 3, 9, 1),
        ] {
            let x = Tensor::randn(0f32, 1.0, (1, cin, 23, 30), &dev).unwrap();
            let w = Tensor::randn(0f32, 0.2, (cout, cin, k, k), &dev).unwrap();
            let kernel = ConvKernel::new(&w, stride).unwrap();
            let ours = planar(&conv(&rows_of(&x), &kernel).unwrap());
            let theirs = x.conv2d(&w, 0, stride, 1, 1).unwrap();
            let diff = max_diff(&ours, &theirs);
            assert!(diff < 1e-4, "{cin}->{cout} {k}x{k}/{stride}: {diff}");
        }
    }

    #[test]
    fn norms_match_the_composed_norm() {
        let dev = Device::Cpu;
        let x = Tensor::randn(1f32, 2.0, (1, 5, 9, 14), &dev).unwrap();
        let skip = Tensor::randn(0f32, 1.0, (1, 5, 11, 16), &dev).unwrap();
        let scale = [0.5, -1.0, 2.0, 1.5, 1.0];
        let shift = [0.1, 0.2, -0.3, 0.0, 0.7];
        let maps = [
            (
                AxisMap::identity(9).reflect(1),
                AxisMap::identity(14).reflect(1),
            ),
            (
                AxisMap::identity(9).upsample2().reflect(1),
                AxisMap::identity(14).upsample2().reflect(1),
            ),
            (
                AxisMap::identity(9).reflect(4),
                AxisMap::identity(14).reflect(4),
            ),
        ];
        for act in [Activation::Relu, Activation::Identity, Activation::Sigmoid] {
            for (rows, cols) in &maps {
                let n = Norm {
                    scale: &scale,
                    shift: &shift,
                    act,
                    rows,
                    cols,
                };
                let ours = planar(&norm(&rows_of(&x), &n, None).unwrap());
                let theirs = super::super::ops::norm(&x, &n, None).unwrap();
                assert!(max_diff(&ours, &theirs) < 1e-5, "{act:?}");
                let ours = planar(&norm(&rows_of(&x), &n, Some((&rows_of(&skip), 1))).unwrap());
                let theirs = super::super::ops::norm(&x, &n, Some((&skip, 1))).unwrap();
                assert!(max_diff(&ours, &theirs) < 1e-5, "{act:?} with residual");
            }
        }
        let (rows, cols) = (AxisMap::identity(9).crop(7), AxisMap::identity(14).crop(11));
        let n = Norm {
            scale: &scale,
            shift: &shift,
            act: Activation::Sigmoid,
            rows: &rows,
            cols: &cols,
        };
        let ours = norm_planar(&rows_of(&x), &n).unwrap();
        let theirs = super::super::ops::norm(&x, &n, None).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-5);
    }

    #[test]
    fn statistics_stay_accurate_far_from_zero() {
        // A large mean and a small spread: the sums of squares must not cancel.
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 0.01, (1, 2, 300, 301), &dev).unwrap() + 1000.0).unwrap();
        let (rows, cols) = (AxisMap::identity(300), AxisMap::identity(301));
        let n = Norm {
            scale: &[1.0, 1.0],
            shift: &[0.0, 0.0],
            act: Activation::Identity,
            rows: &rows,
            cols: &cols,
        };
        let ours = planar(&norm(&rows_of(&x), &n, None).unwrap());
        let xs = x.to_dtype(candle_core::DType::F64).unwrap();
        let mean = xs.mean_keepdim(3).unwrap().mean_keepdim(2).unwrap();
        let centered = xs.broadcast_sub(&mean).unwrap();
        let std = (centered
            .sqr()
            .unwrap()
            .mean_keepdim(3)
            .unwrap()
            .mean_keepdim(2)
            .unwrap()
            + 1e-5)
            .unwrap()
            .sqrt()
            .unwrap();
        let exact = centered
            .broadcast_div(&std)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        // f32 inputs near 1000 carry about 6e-5 of rounding, 6e-3 of a 0.01 spread.
        assert!(max_diff(&ours, &exact) < 2e-2);
    }

    #[test]
    fn bands_cover_tall_inputs() {
        // More rows than one band holds: rows are found across band boundaries.
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 32, 400, 180), &dev).unwrap();
        let rows = rows_of(&x);
        assert!(rows.bands.len() > 2);
        assert_eq!(max_diff(&planar(&rows), &x), 0.0);
        let w = Tensor::randn(0f32, 0.1, (32, 32, 3, 3), &dev).unwrap();
        let out = conv(&rows, &ConvKernel::new(&w, 1).unwrap()).unwrap();
        assert!(out.bands.len() > 2);
        assert!(max_diff(&planar(&out), &x.conv2d(&w, 0, 1, 1, 1).unwrap()) < 1e-3);
    }
}
