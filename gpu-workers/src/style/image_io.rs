//! Pictures to input tensors and output tensors back to pictures.

use candle_core::{DType, Device, Tensor};
use image::{DynamicImage, RgbImage};

use super::error::{Result, StyleError};

/// `[1, 3, h, w]` float32 in 0..1 (a byte `v` becomes `v / 255`), channels red, green, blue.
pub fn image_to_tensor(image: &RgbImage, device: &Device) -> Result<Tensor> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let plane = w * h;
    let mut data = vec![0f32; 3 * plane];
    for (i, px) in image.pixels().enumerate() {
        for (c, &v) in px.0.iter().enumerate() {
            data[c * plane + i] = f32::from(v) / 255.0;
        }
    }
    Ok(Tensor::from_vec(data, (1, 3, h, w), device)?)
}

/// [`image_to_tensor`] of any picture; transparent pixels are laid over white first (a
/// transparent pixel's colour is otherwise arbitrary).
pub fn dynamic_image_to_tensor(image: &DynamicImage, device: &Device) -> Result<Tensor> {
    if !image.color().has_alpha() {
        return image_to_tensor(&image.to_rgb8(), device);
    }
    let rgba = image.to_rgba8();
    let rgb = RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over_white = |v: u8| {
            let (v, a) = (u32::from(v), u32::from(a));
            ((v * a + 255 * (255 - a) + 127) / 255) as u8
        };
        image::Rgb([over_white(r), over_white(g), over_white(b)])
    });
    image_to_tensor(&rgb, device)
}

/// The picture of a `[1, 3, h, w]` or `[3, h, w]` float tensor (any device): values clamped
/// to 0..1, then scaled to 0..255 and rounded.
pub fn tensor_to_image(tensor: &Tensor) -> Result<RgbImage> {
    let bad = || StyleError::BadImageTensor {
        dims: tensor.dims().to_vec(),
        dtype: tensor.dtype().as_str().to_owned(),
    };
    let (h, w) = match *tensor.dims() {
        [1, 3, h, w] | [3, h, w] => (h, w),
        _ => return Err(bad()),
    };
    if !tensor.dtype().is_float() {
        return Err(bad());
    }
    let (Ok(width), Ok(height)) = (u32::try_from(w), u32::try_from(h)) else {
        return Err(bad());
    };
    let data: Vec<f32> = tensor
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let plane = h * w;
    let mut bytes = Vec::with_capacity(3 * plane);
    for i in 0..plane {
        for c in 0..3 {
            let v = data[c * plane + i];
            // NaN becomes 0: `clamp` keeps NaN, and `as u8` maps NaN to 0.
            bytes.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    RgbImage::from_raw(width, height, bytes).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RgbImage {
        RgbImage::from_fn(5, 3, |x, y| {
            image::Rgb([(x * 50) as u8, (y * 100) as u8, 255 - (x + y) as u8])
        })
    }

    #[test]
    fn pixels_become_planes_scaled_to_one() {
        let img = sample();
        let t = image_to_tensor(&img, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), [1, 3, 3, 5]);
        let planes = t.squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        // Pixel (x = 4, y = 2): red 200, green 200, blue 249.
        assert_eq!(planes[0][2][4], 200.0 / 255.0);
        assert_eq!(planes[1][2][4], 200.0 / 255.0);
        assert_eq!(planes[2][2][4], 249.0 / 255.0);
        assert_eq!(planes[2][0][0], 1.0);
    }

    #[test]
    fn pictures_round_trip_exactly() {
        let img = sample();
        let t = image_to_tensor(&img, &Device::Cpu).unwrap();
        assert_eq!(tensor_to_image(&t).unwrap(), img);
        assert_eq!(tensor_to_image(&t.squeeze(0).unwrap()).unwrap(), img);
    }

    #[test]
    fn out_of_range_values_are_clamped_and_rounded() {
        let t = Tensor::new(
            &[
                [[-0.5f32, 0.5, 2.0]],
                [[f32::NAN, 0.998, 0.002]],
                [[1.0, 0.0, 0.25]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let img = tensor_to_image(&t).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [128, 254, 0]);
        assert_eq!(img.get_pixel(2, 0).0, [255, 1, 64]);
    }

    #[test]
    fn wrong_shapes_are_refused() {
        for dims in [
            vec![2, 3, 4, 4],
            vec![1, 4, 4, 4],
            vec![4, 4],
            vec![1, 1, 3, 4, 4],
        ] {
            let t = Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap();
            assert!(matches!(
                tensor_to_image(&t),
                Err(StyleError::BadImageTensor { .. })
            ));
        }
        let t = Tensor::zeros((3, 4, 4), DType::U8, &Device::Cpu).unwrap();
        assert!(matches!(
            tensor_to_image(&t),
            Err(StyleError::BadImageTensor { .. })
        ));
    }

    #[test]
    fn transparency_is_laid_over_white() {
        let rgba = image::RgbaImage::from_fn(2, 1, |x, _| {
            if x == 0 {
                image::Rgba([0, 0, 0, 0])
            } else {
                image::Rgba([0, 100, 200, 255])
            }
        });
        let t = dynamic_image_to_tensor(&DynamicImage::ImageRgba8(rgba), &Device::Cpu).unwrap();
        let img = tensor_to_image(&t).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [0, 100, 200]);
    }
}
