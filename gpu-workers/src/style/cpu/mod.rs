//! The CPU path: each convolution computed straight from its padded input, one output row
//! per task, with SIMD kernels (see [`kernels`]); each norm's moments taken per output row
//! while the row is in the cache; then one pass writing the norm, residual and activation
//! into the next layer's padded (possibly upsampled) input through the norm's maps.
//!
//! There is no patch matrix: candle's CPU `conv2d` builds one element by element, about ten
//! times slower than onnxruntime; products of copied patches (`k * k * c` floats per output
//! pixel, 243 at the first layer) with candle's `matmul` took 1.2 to 1.4 times
//! onnxruntime's time, more than half of it spent on the copies, page faults of fresh
//! buffers and zeroing rather than on the products. Here an output tile's inputs are read
//! from the padded input itself, and every buffer comes from a [`Pool`] that the network
//! keeps across runs.
//!
//! Activations are channels-last (`[h, w, c]`) for the layers with 32 output channels, whose
//! kernels vectorize across output channels, and rows of planes (`[h, c, w]`) for the
//! expanding layers (8, 4 and 3 output channels), whose kernels vectorize across pixels;
//! each norm writes the layout of the layer after it.

mod kernels;
mod norm;
mod pool;

use std::fmt;

use candle_core::{Device, Tensor, bail};
use rayon::prelude::*;

use self::kernels::{PIXEL_GROUP, PixelRow, PlaneRow};
use self::norm::{Moments, RowMoments, Target, View};
use self::pool::Buf;
pub(crate) use self::pool::{Buffers, Pool};
use super::ops::{AxisMap, Norm};

/// How an activation's floats are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `[h, w, c]`.
    ChannelsLast,
    /// `[h, c, w]`: each row, channel after channel.
    Planes,
}

/// An activation on the CPU, in a buffer of the run's pool.
#[derive(Debug)]
pub(crate) struct Act<'p> {
    data: Buf<'p>,
    h: usize,
    w: usize,
    c: usize,
    layout: Layout,
}

impl Act<'_> {
    pub(crate) fn dims(&self) -> (usize, usize, usize) {
        (self.h, self.w, self.c)
    }

    fn view(&self) -> View<'_> {
        View {
            data: &self.data,
            w: self.w,
            c: self.c,
            layout: self.layout,
        }
    }
}

/// A convolution's output and its moments per channel.
#[derive(Debug)]
pub(crate) struct Conv<'p> {
    act: Act<'p>,
    moments: Moments,
}

/// A convolution's weights, laid out for its kernel.
pub(crate) struct ConvKernel {
    k: usize,
    stride: usize,
    c: usize,
    out: usize,
    lowering: Lowering,
}

enum Lowering {
    /// Channels-last, vectorized across output channels (a multiple of [`PIXEL_GROUP`]):
    /// weights `[ky, kx, c, out]`.
    Pixels(Vec<f32>),
    /// Rows of planes, stride 1, vectorized across pixels: weights `[out, c, ky, kx]`.
    Planes(Vec<f32>),
}

impl fmt::Debug for ConvKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.lowering {
            Lowering::Pixels(_) => "pixels",
            Lowering::Planes(_) => "planes",
        };
        write!(
            f,
            "ConvKernel({kind}, {}x{} {}->{}, stride {})",
            self.k, self.k, self.c, self.out, self.stride
        )
    }
}

impl ConvKernel {
    /// The kernel of `weight` (`[out, c, k, k]`): rows of planes for a stride-1 layer with
    /// fewer output channels than a pixel tile holds, channels-last otherwise.
    pub(crate) fn new(weight: &Tensor, stride: usize) -> candle_core::Result<Self> {
        let (out, c, k, kw) = weight.dims4()?;
        if k != kw || stride == 0 {
            bail!("a {k}x{kw} kernel at stride {stride}")
        }
        let lowering = if stride == 1 && out < PIXEL_GROUP {
            Lowering::Planes(weight.flatten_all()?.to_vec1()?)
        } else if out % PIXEL_GROUP == 0 {
            // [out, c, ky, kx] -> [ky, kx, c, out]
            Lowering::Pixels(weight.permute((2, 3, 1, 0))?.flatten_all()?.to_vec1()?)
        } else {
            bail!("no CPU kernel for {out} output channels at stride {stride}")
        };
        Ok(Self {
            k,
            stride,
            c,
            out,
            lowering,
        })
    }

    /// The layout of the input the kernel reads.
    pub(crate) fn layout(&self) -> Layout {
        match self.lowering {
            Lowering::Pixels(_) => Layout::ChannelsLast,
            Lowering::Planes(_) => Layout::Planes,
        }
    }
}

/// A `[1, c, h, w]` CPU image through the maps, in `layout`.
pub(crate) fn enter<'p>(
    image: &Tensor,
    (rows, cols): (&AxisMap, &AxisMap),
    layout: Layout,
    pool: &'p Pool,
) -> candle_core::Result<Act<'p>> {
    let (b, c, h, w) = image.dims4()?;
    if b != 1 || rows.input() != h || cols.input() != w {
        bail!("a [{b}, {c}, {h}, {w}] image through maps of {h}x{w}")
    }
    let image = image.contiguous()?;
    let (storage, l) = image.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        bail!("the CPU path got a tensor of another device")
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("the CPU path needs contiguous tensors")
    };
    let input = &cpu.as_slice::<f32>()?[start..end];
    let (ho, wo) = (rows.len(), cols.len());
    let mut data = pool.take(ho * wo * c);
    data.par_chunks_mut(wo * c)
        .enumerate()
        .for_each(|(i, out)| {
            let r = rows.src()[i] as usize;
            for ch in 0..c {
                let src = &input[(ch * h + r) * w..][..w];
                let cols = cols.src().iter().map(|&col| src[col as usize]);
                match layout {
                    Layout::ChannelsLast => {
                        for (v, x) in out[ch..].iter_mut().step_by(c).zip(cols) {
                            *v = x;
                        }
                    }
                    Layout::Planes => {
                        for (v, x) in out[ch * wo..][..wo].iter_mut().zip(cols) {
                            *v = x;
                        }
                    }
                }
            }
        });
    Ok(Act {
        data,
        h: ho,
        w: wo,
        c,
        layout,
    })
}

/// The convolution of a padded input, with its moments.
pub(crate) fn conv<'p>(
    x: &Act<'_>,
    kernel: &ConvKernel,
    pool: &'p Pool,
) -> candle_core::Result<Conv<'p>> {
    let ConvKernel {
        k,
        stride,
        c,
        out,
        ref lowering,
    } = *kernel;
    let (hp, wp) = (x.h, x.w);
    if x.c != c || x.layout != kernel.layout() || hp < k || wp < k {
        bail!("{kernel:?} of a {hp}x{wp}x{} {:?} input", x.c, x.layout)
    }
    let (ho, wo) = ((hp - k) / stride + 1, (wp - k) / stride + 1);
    let layout = kernel.layout();
    let mut data = pool.take(ho * wo * out);
    let arch = pulp::Arch::new();
    let input: &[f32] = &x.data;
    let rows: Vec<Moments> = data
        .par_chunks_mut(wo * out)
        .enumerate()
        .map(|(y, dst)| {
            match lowering {
                Lowering::Pixels(weights) => arch.dispatch(PixelRow {
                    input,
                    wp,
                    c,
                    k,
                    stride,
                    weights,
                    out,
                    y,
                    dst: &mut *dst,
                }),
                Lowering::Planes(weights) => arch.dispatch(PlaneRow {
                    input,
                    wp,
                    c,
                    k,
                    weights,
                    y,
                    dst: &mut *dst,
                    wo,
                }),
            }
            arch.dispatch(RowMoments {
                row: dst,
                c: out,
                layout,
            })
        })
        .collect();
    // Merged in row order: the same sums whatever the threads' timing.
    let moments = rows.iter().fold(Moments::new(out), |mut total, row| {
        total.merge(row);
        total
    });
    Ok(Conv {
        act: Act {
            data,
            h: ho,
            w: wo,
            c: out,
            layout,
        },
        moments,
    })
}

/// The norm of a convolution's output, then `skip`'s interior (the block's padded input,
/// padded by `pad`) added when given, then the activation, written through the norm's maps
/// in `layout` (the next layer's).
pub(crate) fn norm<'p>(
    x: &Conv<'_>,
    norm: &Norm<'_>,
    skip: Option<(&Act<'_>, usize)>,
    layout: Layout,
    pool: &'p Pool,
) -> candle_core::Result<Act<'p>> {
    let (h, w, c) = check(x, norm)?;
    if let Some((skip, pad)) = skip
        && (skip.dims() != (h + 2 * pad, w + 2 * pad, c) || skip.layout != x.act.layout)
    {
        bail!(
            "residual {:?} {:?} for a {h}x{w}x{c} {:?} norm",
            skip.dims(),
            skip.layout,
            x.act.layout
        )
    }
    let (a, b) = x.moments.affine(norm.scale, norm.shift);
    let (ho, wo) = (norm.rows.len(), norm.cols.len());
    let mut data = pool.take(ho * wo * c);
    let skip = skip.map(|(s, pad)| (s.view(), pad));
    norm::write(
        x.act.view(),
        (&a, &b),
        norm,
        skip,
        Target::Input(layout),
        &mut data,
    );
    Ok(Act {
        data,
        h: ho,
        w: wo,
        c,
        layout,
    })
}

/// [`norm()`] without a residual, written `[1, c, rows, cols]`: the network's output.
pub(crate) fn output(x: &Conv<'_>, norm: &Norm<'_>) -> candle_core::Result<Tensor> {
    let (_, _, c) = check(x, norm)?;
    let (a, b) = x.moments.affine(norm.scale, norm.shift);
    let (ho, wo) = (norm.rows.len(), norm.cols.len());
    let mut out = vec![0f32; c * ho * wo];
    norm::write(x.act.view(), (&a, &b), norm, None, Target::Output, &mut out);
    Tensor::from_vec(out, (1, c, ho, wo), &Device::Cpu)
}

fn check(x: &Conv<'_>, norm: &Norm<'_>) -> candle_core::Result<(usize, usize, usize)> {
    let (h, w, c) = x.act.dims();
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
    Ok((h, w, c))
}

#[cfg(test)]
mod tests;
