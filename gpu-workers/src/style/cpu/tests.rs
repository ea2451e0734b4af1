use super::*;
use crate::style::ops::{self, Activation};

/// `x` (`[1, c, h, w]`) as an activation in `layout`.
fn act<'p>(x: &Tensor, layout: Layout, pool: &'p Pool) -> Act<'p> {
    let (_, _, h, w) = x.dims4().unwrap();
    let maps = (&AxisMap::identity(h), &AxisMap::identity(w));
    enter(x, maps, layout, pool).unwrap()
}

/// `x` as a convolution's output: the activation and its moments, as [`conv`] takes them.
fn conv_output<'p>(x: &Tensor, layout: Layout, pool: &'p Pool) -> Conv<'p> {
    let act = act(x, layout, pool);
    let mut moments = Moments::new(act.c);
    for row in act.data.chunks_exact(act.w * act.c) {
        moments.merge(&Moments::of_row(row, act.c, layout));
    }
    Conv { act, moments }
}

/// The `[1, c, h, w]` tensor of an activation.
fn planar(x: &Act<'_>) -> Tensor {
    let (h, w, c) = x.dims();
    let t = Tensor::from_slice(&x.data[..], h * w * c, &Device::Cpu).unwrap();
    match x.layout {
        Layout::ChannelsLast => t.reshape((h, w, c)).unwrap().permute((2, 0, 1)).unwrap(),
        Layout::Planes => t.reshape((h, c, w)).unwrap().permute((1, 0, 2)).unwrap(),
    }
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
fn both_kernels_match_candle_conv2d() {
    let dev = Device::Cpu;
    let pool = Pool::default();
    // (in, out, k, stride): pixel tiles (3x3 stride 1 and 2, 9x9 from 3 channels, two
    // groups of 32 outputs) and plane tiles (few outputs: blocks of 4 and of 3).
    for (cin, cout, k, stride) in [
        (8, 32, 3, 1),
        (8, 32, 3, 2),
        (3, 32, 9, 1),
        (5, 64, 3, 2),
        (32, 8, 3, 1),
        (8, 4, 3, 1),
        (4, 3, 9, 1),
        (3, 6, 3, 1),
    ] {
        // Widths with full tiles and every kind of remainder.
        for (h, w) in [(23, 30), (12, 77), (11, 150)] {
            let x = Tensor::randn(0f32, 1.0, (1, cin, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 0.2, (cout, cin, k, k), &dev).unwrap();
            let kernel = ConvKernel::new(&wt, stride).unwrap();
            let input = act(&x, kernel.layout(), &pool);
            let ours = planar(&conv(&input, &kernel, &pool).unwrap().act);
            let theirs = x.conv2d(&wt, 0, stride, 1, 1).unwrap();
            let diff = max_diff(&ours, &theirs);
            assert!(
                diff < 1e-4,
                "{cin}->{cout} {k}x{k}/{stride} on {h}x{w}: {diff}"
            );
        }
    }
}

#[test]
fn a_convolution_s_moments_are_its_output_s() {
    let dev = Device::Cpu;
    let pool = Pool::default();
    for (cout, stride) in [(32, 2), (4, 1)] {
        let x = Tensor::randn(0f32, 1.0, (1, 6, 17, 40), &dev).unwrap();
        let wt = Tensor::randn(0.1f32, 0.2, (cout, 6, 3, 3), &dev).unwrap();
        let kernel = ConvKernel::new(&wt, stride).unwrap();
        let out = conv(&act(&x, kernel.layout(), &pool), &kernel, &pool).unwrap();
        let y = planar(&out.act);
        let again = conv_output(&y, kernel.layout(), &pool);
        assert_eq!(out.moments, again.moments);
    }
}

#[test]
fn norms_match_the_composed_norm_in_every_layout() {
    let dev = Device::Cpu;
    let pool = Pool::default();
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
    let layouts = [Layout::ChannelsLast, Layout::Planes];
    for act in [Activation::Relu, Activation::Identity, Activation::Sigmoid] {
        for (rows, cols) in &maps {
            let n = Norm {
                scale: &scale,
                shift: &shift,
                act,
                rows,
                cols,
            };
            let theirs = ops::norm(&x, &n, None).unwrap();
            let theirs_skip = ops::norm(&x, &n, Some((&skip, 1))).unwrap();
            for from in layouts {
                let conv = conv_output(&x, from, &pool);
                let skip = self::act(&skip, from, &pool);
                for to in layouts {
                    let how = format!("{act:?} {from:?} -> {to:?}");
                    let ours = planar(&norm(&conv, &n, None, to, &pool).unwrap());
                    assert!(max_diff(&ours, &theirs) < 1e-5, "{how}");
                    let ours = planar(&norm(&conv, &n, Some((&skip, 1)), to, &pool).unwrap());
                    assert!(max_diff(&ours, &theirs_skip) < 1e-5, "{how} with residual");
                }
            }
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
    let theirs = ops::norm(&x, &n, None).unwrap();
    for from in layouts {
        let ours = output(&conv_output(&x, from, &pool), &n).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-5, "output from {from:?}");
    }
}

#[test]
fn images_enter_in_either_layout() {
    let dev = Device::Cpu;
    let pool = Pool::default();
    let x = Tensor::randn(0f32, 1.0, (1, 3, 10, 13), &dev).unwrap();
    let (rows, cols) = (
        AxisMap::identity(10).extend(12).reflect(4),
        AxisMap::identity(13).extend(16).reflect(4),
    );
    let theirs = ops::remap(&x, &rows, &cols).unwrap();
    for layout in [Layout::ChannelsLast, Layout::Planes] {
        let ours = planar(&enter(&x, (&rows, &cols), layout, &pool).unwrap());
        assert_eq!(max_diff(&ours, &theirs), 0.0, "{layout:?}");
    }
}

#[test]
fn statistics_stay_accurate_far_from_zero() {
    // A large mean and a small spread: the sums of squares must not cancel.
    let dev = Device::Cpu;
    let pool = Pool::default();
    let x = (Tensor::randn(0f32, 0.01, (1, 2, 300, 301), &dev).unwrap() + 1000.0).unwrap();
    let (rows, cols) = (AxisMap::identity(300), AxisMap::identity(301));
    let n = Norm {
        scale: &[1.0, 1.0],
        shift: &[0.0, 0.0],
        act: Activation::Identity,
        rows: &rows,
        cols: &cols,
    };
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
    for layout in [Layout::ChannelsLast, Layout::Planes] {
        let conv = conv_output(&x, layout, &pool);
        let ours = planar(&norm(&conv, &n, None, layout, &pool).unwrap());
        // f32 inputs near 1000 carry about 6e-5 of rounding, 6e-3 of a 0.01 spread.
        assert!(max_diff(&ours, &exact) < 2e-2, "{layout:?}");
    }
}

#[test]
fn mismatched_inputs_are_errors_not_panics() {
    let dev = Device::Cpu;
    let pool = Pool::default();
    let wt = Tensor::randn(0f32, 0.2, (32, 4, 3, 3), &dev).unwrap();
    let kernel = ConvKernel::new(&wt, 1).unwrap();
    let x = Tensor::randn(0f32, 1.0, (1, 4, 8, 8), &dev).unwrap();
    assert!(conv(&act(&x, Layout::Planes, &pool), &kernel, &pool).is_err());
    let small = Tensor::randn(0f32, 1.0, (1, 4, 2, 8), &dev).unwrap();
    assert!(conv(&act(&small, Layout::ChannelsLast, &pool), &kernel, &pool).is_err());
    let odd = Tensor::randn(0f32, 0.2, (12, 4, 3, 3), &dev).unwrap();
    assert!(ConvKernel::new(&odd, 2).is_err());
}

/// A convolution's output computed with the instruction set `simd`.
fn conv_with<S: pulp::Simd>(simd: S, x: &Act<'_>, kernel: &ConvKernel) -> Vec<f32> {
    let (k, stride, c, out) = (kernel.k, kernel.stride, kernel.c, kernel.out);
    let (ho, wo) = ((x.h - k) / stride + 1, (x.w - k) / stride + 1);
    let mut result = vec![0f32; ho * wo * out];
    for (y, dst) in result.chunks_exact_mut(wo * out).enumerate() {
        match &kernel.lowering {
            Lowering::Pixels(weights) => simd.vectorize(PixelRow {
                input: &x.data,
                wp: x.w,
                c,
                k,
                stride,
                weights,
                out,
                y,
                dst,
            }),
            Lowering::Planes(weights) => simd.vectorize(PlaneRow {
                input: &x.data,
                wp: x.w,
                c,
                k,
                weights,
                y,
                dst,
                wo,
            }),
        }
    }
    result
}

#[test]
fn every_instruction_set_computes_the_same_convolutions() {
    let dev = Device::Cpu;
    let pool = Pool::default();
    for (cin, cout, k, stride) in [(3, 32, 9, 1), (8, 32, 3, 2), (32, 8, 3, 1), (4, 3, 9, 1)] {
        let x = Tensor::randn(0f32, 1.0, (1, cin, 19, 83), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.2, (cout, cin, k, k), &dev).unwrap();
        let kernel = ConvKernel::new(&wt, stride).unwrap();
        let input = act(&x, kernel.layout(), &pool);
        let expected = conv(&input, &kernel, &pool).unwrap();
        let mut outputs = vec![("scalar", conv_with(pulp::Scalar::new(), &input, &kernel))];
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(simd) = pulp::x86::V3::try_new() {
                outputs.push(("avx2", conv_with(simd, &input, &kernel)));
            }
            if let Some(simd) = pulp::x86::V4::try_new() {
                outputs.push(("avx512", conv_with(simd, &input, &kernel)));
            }
        }
        for (name, output) in outputs {
            let diff = output
                .iter()
                .zip(&expected.act.data[..])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                diff < 1e-4,
                "{name}, {cin}->{cout} {k}x{k}/{stride}: {diff}"
            );
        }
    }
}
