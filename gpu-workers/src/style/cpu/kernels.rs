//! The convolutions' inner loops: one output row at a time, straight from the padded input
//! (no patch matrix), with the accumulators in SIMD registers. `pulp` picks the instruction
//! set at run time (AVX-512, AVX2 + FMA, NEON, or plain floats) and keeps the code safe.
//!
//! Two shapes, chosen by the layer (see `Lowering`):
//!
//! - [`PixelRow`], channels-last (`[h, w, c]`): a tile of `MR` output pixels by 32 output
//!   channels. Per kernel row, a pixel's inputs are one run of `k * c` floats, each
//!   broadcast and multiplied by a row of 32 weights (`NV` vectors).
//! - [`PlaneRow`], rows of planes (`[h, c, w]`), stride 1: a tile of `NB` vectors of
//!   consecutive output pixels by up to 4 output channels, each weight broadcast. For layers
//!   with few output channels (8, 4, 3), which the first shape would leave mostly empty.

use pulp::{Simd, WithSimd};

/// Output channels a [`PixelRow`] tile holds: `NV` vectors of the instruction set's lanes.
pub(super) const PIXEL_GROUP: usize = 32;
/// Output channels of a [`PlaneRow`] tile at most.
const PLANE_GROUP: usize = 4;

/// One output row of a convolution over a padded channels-last input.
pub(super) struct PixelRow<'a> {
    /// The padded input `[hp, wp, c]`.
    pub input: &'a [f32],
    pub wp: usize,
    pub c: usize,
    pub k: usize,
    pub stride: usize,
    /// `[k, k, c, out]`, `out` a multiple of [`PIXEL_GROUP`].
    pub weights: &'a [f32],
    pub out: usize,
    /// The output row `y`, `[wo, out]`.
    pub y: usize,
    pub dst: &'a mut [f32],
}

impl WithSimd for PixelRow<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // Accumulators: MR * NV registers, plus NV of weights and one broadcast.
        match S::F32_LANES {
            16 => self.run::<S, 2, 8>(simd),
            8 => self.run::<S, 4, 2>(simd),
            4 => self.run::<S, 8, 2>(simd),
            2 => self.run::<S, 16, 1>(simd),
            _ => self.run::<S, 32, 1>(simd),
        }
    }
}

impl PixelRow<'_> {
    #[inline(always)]
    fn run<S: Simd, const NV: usize, const MR: usize>(self, simd: S) {
        debug_assert_eq!(NV * S::F32_LANES, PIXEL_GROUP);
        let (kc, row_len) = (self.k * self.c, self.wp * self.c);
        let wo = self.dst.len() / self.out;
        let rows: Vec<&[f32]> = (0..self.k)
            .map(|ky| &self.input[(self.y * self.stride + ky) * row_len..][..row_len])
            .collect();
        let weights = S::as_simd_f32s(self.weights).0;
        let tile = Tile {
            simd,
            rows: &rows,
            weights,
            kc,
            step: self.stride * self.c,
            per_row: self.out / S::F32_LANES,
        };
        for g in 0..self.out / PIXEL_GROUP {
            let mut x = 0;
            while x + MR <= wo {
                tile.pixels::<NV, MR>(x, g, self.dst, self.out);
                x += MR;
            }
            while x < wo {
                tile.pixels::<NV, 1>(x, g, self.dst, self.out);
                x += 1;
            }
        }
    }
}

/// What the tiles of one [`PixelRow`] share.
struct Tile<'a, S: Simd> {
    simd: S,
    /// The `k` input rows of the output row.
    rows: &'a [&'a [f32]],
    /// `[k, k * c, out / lanes]` vectors.
    weights: &'a [S::f32s],
    kc: usize,
    /// Floats between two output pixels' runs.
    step: usize,
    /// Vectors per row of weights.
    per_row: usize,
}

impl<S: Simd> Tile<'_, S> {
    /// Output pixels `x..x + MR`, channels of group `g`.
    #[inline(always)]
    fn pixels<const NV: usize, const MR: usize>(
        &self,
        x: usize,
        g: usize,
        dst: &mut [f32],
        out: usize,
    ) {
        let simd = self.simd;
        let mut acc = [[simd.splat_f32s(0.0); NV]; MR];
        for (ky, row) in self.rows.iter().enumerate() {
            let srcs: [&[f32]; MR] =
                std::array::from_fn(|i| &row[(x + i) * self.step..][..self.kc]);
            let weights = &self.weights[ky * self.kc * self.per_row..][..self.kc * self.per_row];
            for (j, w) in weights.chunks_exact(self.per_row).enumerate() {
                let w = &w[g * NV..][..NV];
                for (acc, src) in acc.iter_mut().zip(&srcs) {
                    let v = simd.splat_f32s(src[j]);
                    for (a, &w) in acc.iter_mut().zip(w) {
                        *a = simd.mul_add_e_f32s(v, w, *a);
                    }
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            let px = &mut dst[(x + i) * out + g * PIXEL_GROUP..][..PIXEL_GROUP];
            for (d, a) in S::as_mut_simd_f32s(px).0.iter_mut().zip(acc) {
                *d = *a;
            }
        }
    }
}

/// One output row of a stride-1 convolution over padded rows of planes.
pub(super) struct PlaneRow<'a> {
    /// The padded input `[hp, c, wp]`.
    pub input: &'a [f32],
    pub wp: usize,
    pub c: usize,
    pub k: usize,
    /// `[out, c, k, k]`, as in the ONNX graph.
    pub weights: &'a [f32],
    /// The output row `y`, `[out, wo]`.
    pub y: usize,
    pub dst: &'a mut [f32],
    pub wo: usize,
}

impl WithSimd for PlaneRow<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        // Accumulators: NB * 4 registers, plus NB of inputs and one broadcast.
        match S::F32_LANES {
            16 | 4 => self.run::<S, 4>(simd),
            8 => self.run::<S, 2>(simd),
            _ => self.run::<S, 4>(simd),
        }
    }
}

impl PlaneRow<'_> {
    #[inline(always)]
    fn run<S: Simd, const NB: usize>(mut self, simd: S) {
        let out = self.dst.len() / self.wo;
        for o in (0..out).step_by(PLANE_GROUP) {
            match (out - o).min(PLANE_GROUP) {
                4 => self.block::<S, NB, 4>(simd, o),
                3 => self.block::<S, NB, 3>(simd, o),
                2 => self.block::<S, NB, 2>(simd, o),
                _ => self.block::<S, NB, 1>(simd, o),
            }
        }
    }

    /// Output channels `o..o + OB`.
    #[inline(always)]
    fn block<S: Simd, const NB: usize, const OB: usize>(&mut self, simd: S, o: usize) {
        let lanes = S::F32_LANES;
        let mut x = 0;
        while x + NB * lanes <= self.wo {
            self.tile::<S, NB, OB>(simd, o, x);
            x += NB * lanes;
        }
        while x + lanes <= self.wo {
            self.tile::<S, 1, OB>(simd, o, x);
            x += lanes;
        }
        for x in x..self.wo {
            self.pixel(o..o + OB, x);
        }
    }

    /// Output pixels `x..x + NB * lanes` of channels `o..o + OB`.
    #[inline(always)]
    fn tile<S: Simd, const NB: usize, const OB: usize>(&mut self, simd: S, o: usize, x: usize) {
        let (k, lanes) = (self.k, S::F32_LANES);
        let span = NB * lanes + k - 1;
        let mut acc = [[simd.splat_f32s(0.0); NB]; OB];
        for i in 0..self.c {
            for ky in 0..k {
                let src = &self.input[((self.y + ky) * self.c + i) * self.wp + x..][..span];
                let w: [&[f32]; OB] = std::array::from_fn(|ob| {
                    &self.weights[(((o + ob) * self.c + i) * k + ky) * k..][..k]
                });
                for kx in 0..k {
                    let v: [S::f32s; NB] = std::array::from_fn(|b| {
                        S::as_simd_f32s(&src[b * lanes + kx..][..lanes]).0[0]
                    });
                    for (acc, w) in acc.iter_mut().zip(&w) {
                        let w = simd.splat_f32s(w[kx]);
                        for (a, &v) in acc.iter_mut().zip(&v) {
                            *a = simd.mul_add_e_f32s(w, v, *a);
                        }
                    }
                }
            }
        }
        for (ob, acc) in acc.iter().enumerate() {
            let row = &mut self.dst[(o + ob) * self.wo + x..][..NB * lanes];
            for (d, a) in S::as_mut_simd_f32s(row).0.iter_mut().zip(acc) {
                *d = *a;
            }
        }
    }

    /// The last pixels of a row, fewer than a vector.
    fn pixel(&mut self, channels: std::ops::Range<usize>, x: usize) {
        let k = self.k;
        for o in channels {
            let mut sum = 0f32;
            for i in 0..self.c {
                for ky in 0..k {
                    let src = &self.input[((self.y + ky) * self.c + i) * self.wp + x..][..k];
                    let w = &self.weights[((o * self.c + i) * k + ky) * k..][..k];
                    sum += src.iter().zip(w).map(|(s, w)| s * w).sum::<f32>();
                }
            }
            self.dst[o * self.wo + x] = sum;
        }
    }
}
