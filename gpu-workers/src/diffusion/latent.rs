//! Between pixels and latents: seeded noise, pictures as tensors, and the VAE encoder's
//! posterior mean (candle's VAE only offers a sample drawn with the device's unseeded RNG).

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, VarBuilder};
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{
    DownEncoderBlock2D, DownEncoderBlock2DConfig, UNetMidBlock2D, UNetMidBlock2DConfig,
};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKLConfig;
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Standard normal noise of `shape`, the same for the same seed on every machine: ChaCha8
/// seeded with `seed`, values drawn in row-major order as `f32`.
pub(crate) fn seeded_noise(
    seed: u64,
    shape: (usize, usize, usize, usize),
    device: &Device,
    dtype: DType,
) -> candle_core::Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let count = shape.0 * shape.1 * shape.2 * shape.3;
    let values: Vec<f32> = (0..count)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Tensor::from_vec(values, shape, device)?.to_dtype(dtype)
}

/// A picture as the VAE takes it: `(1, 3, height, width)`, values in [-1, 1].
pub(crate) fn image_to_tensor(
    image: &RgbImage,
    device: &Device,
    dtype: DType,
) -> candle_core::Result<Tensor> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let values: Vec<f32> = image
        .as_raw()
        .iter()
        .map(|&v| f32::from(v) / 127.5 - 1.)
        .collect();
    Tensor::from_vec(values, (height, width, 3), device)?
        .permute((2, 0, 1))?
        .unsqueeze(0)?
        .to_dtype(dtype)
}

/// The VAE's output `(1, 3, height, width)` in [-1, 1] as a picture (clamped, rounded).
pub(crate) fn tensor_to_image(pixels: &Tensor) -> candle_core::Result<RgbImage> {
    let (_, channels, height, width) = pixels.dims4()?;
    if channels != 3 {
        return Err(candle_core::Error::UnexpectedShape {
            msg: "the VAE must decode to 3 channels".to_owned(),
            expected: (1, 3, height, width).into(),
            got: pixels.shape().clone(),
        });
    }
    let bytes = ((pixels.to_dtype(DType::F32)? + 1.)? * 127.5)?
        .clamp(0f32, 255f32)?
        .round()?
        .to_dtype(DType::U8)?
        .squeeze(0)?
        .permute((1, 2, 0))?
        .flatten_all()?
        .to_vec1::<u8>()?;
    let too_large = || candle_core::Error::Msg(format!("a {width}x{height} picture is too large"));
    let width = u32::try_from(width).map_err(|_| too_large())?;
    let height = u32::try_from(height).map_err(|_| too_large())?;
    RgbImage::from_raw(width, height, bytes).ok_or_else(too_large)
}

/// The encoder half of the VAE, ending in the posterior's mean: the same weights (under
/// `encoder.` and `quant_conv.`) and layers as diffusers' `AutoencoderKL` encoder.
#[derive(Debug)]
pub(crate) struct PosteriorMean {
    conv_in: Conv2d,
    down_blocks: Vec<DownEncoderBlock2D>,
    mid_block: UNetMidBlock2D,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
    latent_channels: usize,
}

impl PosteriorMean {
    /// `vae` is the builder of the whole VAE file.
    pub(crate) fn new(vae: &VarBuilder, config: &AutoEncoderKLConfig) -> candle_core::Result<Self> {
        let vb = vae.pp("encoder");
        let padded = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let channels = &config.block_out_channels;
        let (Some(&first), Some(&last)) = (channels.first(), channels.last()) else {
            return Err(candle_core::Error::Msg("the VAE has no blocks".to_owned()));
        };
        let conv_in = candle_nn::conv2d(3, first, 3, padded, vb.pp("conv_in"))?;
        let mut down_blocks = Vec::with_capacity(channels.len());
        let mut in_channels = first;
        for (index, &out_channels) in channels.iter().enumerate() {
            let block = DownEncoderBlock2D::new(
                vb.pp("down_blocks").pp(index.to_string()),
                in_channels,
                out_channels,
                DownEncoderBlock2DConfig {
                    num_layers: config.layers_per_block,
                    resnet_eps: 1e-6,
                    resnet_groups: config.norm_num_groups,
                    output_scale_factor: 1.,
                    add_downsample: index + 1 < channels.len(),
                    downsample_padding: 0,
                },
            )?;
            down_blocks.push(block);
            in_channels = out_channels;
        }
        let mid_block = UNetMidBlock2D::new(
            vb.pp("mid_block"),
            last,
            None,
            UNetMidBlock2DConfig {
                num_layers: 1,
                resnet_eps: 1e-6,
                resnet_groups: Some(config.norm_num_groups),
                attn_num_head_channels: None,
                output_scale_factor: 1.,
            },
        )?;
        let conv_norm_out =
            candle_nn::group_norm(config.norm_num_groups, last, 1e-6, vb.pp("conv_norm_out"))?;
        let moments = 2 * config.latent_channels;
        let conv_out = candle_nn::conv2d(last, moments, 3, padded, vb.pp("conv_out"))?;
        let quant_conv = config
            .use_quant_conv
            .then(|| {
                candle_nn::conv2d(
                    moments,
                    moments,
                    1,
                    Conv2dConfig::default(),
                    vae.pp("quant_conv"),
                )
            })
            .transpose()?;
        Ok(Self {
            conv_in,
            down_blocks,
            mid_block,
            conv_norm_out,
            conv_out,
            quant_conv,
            latent_channels: config.latent_channels,
        })
    }

    /// The posterior mean of `pixels` `(1, 3, h, w)`: `(1, latent_channels, h / f, w / f)`.
    pub(crate) fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = self.conv_in.forward(pixels)?;
        for block in &self.down_blocks {
            xs = block.forward(&xs)?;
        }
        let xs = self.mid_block.forward(&xs, None)?;
        let xs = candle_nn::ops::silu(&self.conv_norm_out.forward(&xs)?)?;
        let mut moments = self.conv_out.forward(&xs)?;
        if let Some(quant_conv) = &self.quant_conv {
            moments = quant_conv.forward(&moments)?;
        }
        // Mean first, log-variance second.
        moments.narrow(1, 0, self.latent_channels)
    }
}
