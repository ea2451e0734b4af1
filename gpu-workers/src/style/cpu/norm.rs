//! The conditional instance norm on the CPU: each convolution output row's moments (taken
//! while the row is still in the cache, see `conv`), merged in row order; then one pass that
//! writes `act(x * a + b (+ residual))` through the norm's maps into the next layer's padded
//! input, in the layout that layer reads, or into the network's output.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::super::ops::{Activation, EPS, Norm};
use super::Layout;

/// Count, mean and sum of squared deviations per channel.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Moments {
    count: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    pub(super) fn new(c: usize) -> Self {
        Self {
            count: 0.0,
            mean: vec![0.0; c],
            m2: vec![0.0; c],
        }
    }

    /// The moments of one row of `c` channels in `layout`: per channel, the mean and then
    /// the squared deviations in f32 (the row is in the cache; channels-last rows are
    /// vectorized across channels, planes by [`sum_by_lanes`]), as f64.
    #[inline(always)]
    pub(super) fn of_row(row: &[f32], c: usize, layout: Layout) -> Self {
        let pixels = row.len() / c.max(1);
        let n = pixels.max(1) as f32;
        let (mean, m2) = match layout {
            Layout::ChannelsLast => {
                let mut sum = vec![0f32; c];
                for px in row.chunks_exact(c) {
                    for (s, &v) in sum.iter_mut().zip(px) {
                        *s += v;
                    }
                }
                let mean: Vec<f32> = sum.iter().map(|&s| s / n).collect();
                let mut m2 = vec![0f32; c];
                for px in row.chunks_exact(c) {
                    for ((s, &v), &m) in m2.iter_mut().zip(px).zip(&mean) {
                        *s += (v - m) * (v - m);
                    }
                }
                (mean, m2)
            }
            Layout::Planes => row
                .chunks_exact(pixels.max(1))
                .map(|plane| {
                    let mean = sum_by_lanes(plane, |v| v) / n;
                    let m2 = sum_by_lanes(plane, |v| (v - mean) * (v - mean));
                    (mean, m2)
                })
                .unzip(),
        };
        Self {
            count: pixels as f64,
            mean: mean.into_iter().map(f64::from).collect(),
            m2: m2.into_iter().map(f64::from).collect(),
        }
    }

    /// Chan et al.'s pairwise update.
    pub(super) fn merge(&mut self, other: &Self) {
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

    /// The per-channel `a = scale / sqrt(var + eps)` and `b = shift - mean * a`, so that the
    /// norm is `x * a + b`.
    pub(super) fn affine(&self, scale: &[f32], shift: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let n = self.count.max(1.0);
        let a: Vec<f32> = self
            .m2
            .iter()
            .zip(scale)
            .map(|(&m2, &g)| g / (m2 / n + EPS).sqrt() as f32)
            .collect();
        let b = shift
            .iter()
            .zip(&a)
            .zip(&self.mean)
            .map(|((&s, &a), &m)| s - m as f32 * a)
            .collect();
        (a, b)
    }
}

/// The sum of `f` over `values` in 16 interleaved partial sums (which vectorize, where one
/// running sum waits on each addition), then those summed.
#[inline(always)]
fn sum_by_lanes(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut sums = [0f32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (s, &v) in sums.iter_mut().zip(chunk) {
            *s += f(v);
        }
    }
    sums.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

/// An activation's floats and shape, borrowed.
#[derive(Debug, Clone, Copy)]
pub(super) struct View<'a> {
    pub data: &'a [f32],
    pub w: usize,
    pub c: usize,
    pub layout: Layout,
}

impl View<'_> {
    /// Offsets of row `r`, and the strides of a column and of a channel.
    #[inline]
    fn row(&self, r: usize) -> (usize, usize, usize) {
        match self.layout {
            Layout::ChannelsLast => (r * self.w * self.c, self.c, 1),
            Layout::Planes => (r * self.c * self.w, 1, self.w),
        }
    }
}

/// Where a norm writes, `[rows, cols, c]` or `[rows, c, cols]` (the next layer's input), or
/// `[c, rows, cols]` (the network's output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Input(Layout),
    Output,
}

/// The norm `x * a + b`, then `skip`'s interior (the block input, padded by `pad`) added,
/// then the activation, written to `dst` through the norm's maps in `target`'s layout.
pub(super) fn write(
    x: View<'_>,
    (a, b): (&[f32], &[f32]),
    norm: &Norm<'_>,
    skip: Option<(View<'_>, usize)>,
    target: Target,
    dst: &mut [f32],
) {
    let pass = Pass {
        x,
        a,
        b,
        rows: norm.rows.src(),
        cols: norm.cols.src(),
        skip,
    };
    match norm.act {
        Activation::Relu => pass.run(target, dst, |v| Activation::Relu.apply(v)),
        Activation::Identity => pass.run(target, dst, |v| v),
        Activation::Sigmoid => pass.run(target, dst, |v| Activation::Sigmoid.apply(v)),
    }
}

/// One output row of a [`Pass`] under `pulp`'s dispatch: inlined into code compiled for the
/// widest instruction set the CPU has, so that its plain loops are vectorized with it (the
/// crate itself is compiled for the baseline, SSE2 on x86-64). A closure would not do: a
/// large one is not inlined, and then keeps the baseline.
struct Row<'a, F> {
    pass: &'a Pass<'a>,
    target: Target,
    i: usize,
    out: &'a mut [f32],
    act: &'a F,
}

impl<F: Fn(f32) -> f32> WithSimd for Row<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        self.pass.row(self.target, self.i, self.out, self.act);
    }
}

/// [`Moments::of_row`] under `pulp`'s dispatch, like [`Row`].
pub(super) struct RowMoments<'a> {
    pub row: &'a [f32],
    pub c: usize,
    pub layout: Layout,
}

impl WithSimd for RowMoments<'_> {
    type Output = Moments;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) -> Moments {
        Moments::of_row(self.row, self.c, self.layout)
    }
}

/// What writing one output row needs.
struct Pass<'a> {
    x: View<'a>,
    a: &'a [f32],
    b: &'a [f32],
    rows: &'a [u32],
    cols: &'a [u32],
    skip: Option<(View<'a>, usize)>,
}

impl Pass<'_> {
    /// Output rows in parallel, the activation chosen once, each row's loops compiled for
    /// the widest instruction set (see [`Row`]).
    #[inline(always)]
    fn run(&self, target: Target, dst: &mut [f32], act: impl Fn(f32) -> f32 + Sync) {
        let arch = pulp::Arch::new();
        let chunk = match target {
            Target::Input(_) => self.cols.len() * self.x.c,
            Target::Output => self.cols.len(),
        };
        dst.par_chunks_mut(chunk).enumerate().for_each(|(i, out)| {
            arch.dispatch(Row {
                pass: self,
                target,
                i,
                out,
                act: &act,
            });
        });
    }

    /// Output row `i` of `target`: in `[c, rows, cols]`, the row of one channel.
    #[inline(always)]
    fn row(&self, target: Target, i: usize, out: &mut [f32], act: &impl Fn(f32) -> f32) {
        let (c, cols) = (self.x.c, self.cols.len());
        match target {
            Target::Input(Layout::ChannelsLast) if self.x.layout == Layout::ChannelsLast => {
                self.channels_last(i, out, act);
            }
            Target::Input(Layout::ChannelsLast) => {
                for ch in 0..c {
                    self.channel_row(i, ch, &mut out[ch..], c, act);
                }
            }
            Target::Input(Layout::Planes) => {
                for (ch, out) in out.chunks_exact_mut(cols).enumerate() {
                    self.channel_row(i, ch, out, 1, act);
                }
            }
            Target::Output => {
                let rows = self.rows.len();
                self.channel_row(i % rows, i / rows, out, 1, act);
            }
        }
    }

    /// Output row `i`, channels-last from channels-last: whole pixels at a time, vectorized
    /// across channels.
    #[inline(always)]
    fn channels_last(&self, i: usize, dst: &mut [f32], act: &impl Fn(f32) -> f32) {
        let (x, c) = (&self.x, self.x.c);
        let r = self.rows[i] as usize;
        let src = &x.data[r * x.w * c..][..x.w * c];
        match self.skip {
            None => {
                for (px, &col) in dst.chunks_exact_mut(c).zip(self.cols) {
                    let from = &src[col as usize * c..][..c];
                    for (((v, &x), &a), &b) in px.iter_mut().zip(from).zip(self.a).zip(self.b) {
                        *v = act(x * a + b);
                    }
                }
            }
            Some((skip, pad)) => {
                let add = &skip.data[((r + pad) * skip.w + pad) * c..][..x.w * c];
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

    /// Output row `i` of channel `ch`, from either layout, every `stride`-th float of `dst`.
    #[inline(always)]
    fn channel_row(
        &self,
        i: usize,
        ch: usize,
        dst: &mut [f32],
        stride: usize,
        act: &impl Fn(f32) -> f32,
    ) {
        let r = self.rows[i] as usize;
        let (base, col_stride, ch_stride) = self.x.row(r);
        let src = &self.x.data[base + ch * ch_stride..];
        let (a, b) = (self.a[ch], self.b[ch]);
        match self.skip {
            None => {
                for (v, &col) in dst.iter_mut().step_by(stride).zip(self.cols) {
                    *v = act(src[col as usize * col_stride] * a + b);
                }
            }
            Some((skip, pad)) => {
                let (base, col_stride_s, ch_stride_s) = skip.row(r + pad);
                let add = &skip.data[base + pad * col_stride_s + ch * ch_stride_s..];
                for (v, &col) in dst.iter_mut().step_by(stride).zip(self.cols) {
                    let col = col as usize;
                    *v = act(src[col * col_stride] * a + b + add[col * col_stride_s]);
                }
            }
        }
    }
}
