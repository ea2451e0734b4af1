//! The pipeline: prompts and an optional source picture in, a picture out, deterministic
//! for a seed, with progress reports that can stop the run.

use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_transformers::models::stable_diffusion::schedulers::{Scheduler, SchedulerConfig};
use candle_transformers::models::stable_diffusion::unet_2d::UNet2DConditionModel;
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;
use image::RgbImage;
use image::imageops::FilterType;

use super::config::{Defaults, ModelConfig};
use super::error::{Component, DiffusionError, RequestError, Stage};
use super::files::{self, ModelFiles};
use super::latent::{self, PosteriorMean};
use super::text::PromptEncoder;

/// A source picture for image-to-image.
#[derive(Debug, Clone)]
pub struct InitImage {
    /// Any size: it is scaled to cover the requested size and cut to it, centred.
    pub image: RgbImage,
    /// How much to repaint, above 0 and at most 1: the run starts with noise of that level
    /// and takes that share of the steps (at least one).
    pub strength: f64,
}

/// What to paint.
#[derive(Debug, Clone)]
pub struct Generation {
    pub prompt: String,
    /// What to steer away from (used only with guidance).
    pub negative_prompt: String,
    /// The same seed (and everything else) gives the same picture, byte for byte.
    pub seed: u64,
    pub steps: usize,
    pub width: usize,
    pub height: usize,
    /// Classifier-free guidance: above 1 the UNet runs on the prompt and on the negative
    /// prompt and steers by this factor; 1 or less runs it on the prompt alone.
    pub guidance_scale: f64,
    /// `Some` for image-to-image.
    pub init_image: Option<InitImage>,
}

impl Generation {
    /// Text-to-image of `prompt` with the model's defaults.
    pub fn new(prompt: impl Into<String>, seed: u64, defaults: &Defaults) -> Self {
        Self {
            prompt: prompt.into(),
            negative_prompt: String::new(),
            seed,
            steps: defaults.steps,
            width: defaults.width,
            height: defaults.height,
            guidance_scale: defaults.guidance_scale,
            init_image: None,
        }
    }

    /// Makes this image-to-image from `image`.
    pub fn with_init_image(mut self, image: RgbImage, strength: f64) -> Self {
        self.init_image = Some(InitImage { image, strength });
        self
    }
}

/// Where a run is: `step` of `total` denoising steps done (0 right before the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub step: usize,
    pub total: usize,
}

/// A loaded diffusion model: tokenizer, text encoders, UNet and VAE on one device.
/// Generating takes `&self`, so one model serves runs one after another (or on several
/// threads, memory permitting).
#[derive(Debug)]
pub struct DiffusionModel {
    config: ModelConfig,
    device: Device,
    text: PromptEncoder,
    unet: UNet2DConditionModel,
    vae: AutoEncoderKL,
    posterior: PosteriorMean,
}

impl DiffusionModel {
    /// Loads `files` for `config` onto `device` (see [`ModelFiles`] for the layout). Checks
    /// the configuration first; every file is then read in full and converted to the
    /// configuration's dtype.
    pub fn load(
        config: ModelConfig,
        files: &ModelFiles,
        device: &Device,
    ) -> Result<Self, DiffusionError> {
        config.check()?;
        let text = PromptEncoder::load(&config, files, device)?;
        let latent_channels = config.vae.latent_channels;
        let unet = files::build_from_safetensors(
            Component::Unet,
            &files.unet,
            config.dtype,
            device,
            |vb| {
                UNet2DConditionModel::new(
                    vb,
                    latent_channels,
                    latent_channels,
                    false,
                    config.unet.clone(),
                )
            },
        )?;
        let (vae, posterior) = files::build_from_safetensors(
            Component::Vae,
            &files.vae,
            config.dtype,
            device,
            |vb| {
                let posterior = PosteriorMean::new(&vb, &config.vae)?;
                let vae = AutoEncoderKL::new(vb, 3, 3, config.vae.clone())?;
                Ok((vae, posterior))
            },
        )?;
        Ok(Self {
            config,
            device: device.clone(),
            text,
            unet,
            vae,
            posterior,
        })
    }

    /// Loads the standard layout of `dir` ([`ModelFiles::in_dir`]).
    pub fn load_dir(
        config: ModelConfig,
        dir: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self, DiffusionError> {
        let files = ModelFiles::in_dir(dir, &config);
        Self::load(config, &files, device)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Paints `request`. `progress` is called before the first denoising step and after
    /// each one; when it returns `ControlFlow::Break`, the run stops there with
    /// [`DiffusionError::Cancelled`].
    pub fn generate(
        &self,
        request: &Generation,
        mut progress: impl FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<RgbImage, DiffusionError> {
        self.check(request)?;
        let cfg = &self.config;
        let guided = request.guidance_scale > 1.;
        let conditioning = self.conditioning(request, guided)?;

        let mut scheduler = cfg
            .scheduler
            .build(request.steps)
            .map_err(DiffusionError::model(Stage::Denoising))?;
        // Trailing spacing may list one timestep more than asked for when the steps do not
        // divide the training timesteps: the run takes the first `steps`.
        let timesteps: Vec<usize> = scheduler
            .timesteps()
            .iter()
            .copied()
            .take(request.steps)
            .collect();
        if timesteps.is_empty() {
            return Err(RequestError::Steps {
                steps: request.steps,
                max: cfg.scheduler.train_timesteps,
            }
            .into());
        }
        let factor = cfg.vae_factor();
        let shape = (
            1,
            cfg.vae.latent_channels,
            request.height / factor,
            request.width / factor,
        );
        let noise = latent::seeded_noise(request.seed, shape, &self.device, cfg.dtype)
            .map_err(DiffusionError::model(Stage::Noise))?;
        let (mut latents, start) = match &request.init_image {
            None => {
                let latents = (noise * scheduler.init_noise_sigma())
                    .map_err(DiffusionError::model(Stage::Noise))?;
                (latents, 0)
            }
            Some(init) => {
                self.noised_source(init, request, scheduler.as_ref(), &timesteps, noise)?
            }
        };

        let total = timesteps.len() - start;
        if progress(Progress { step: 0, total }).is_break() {
            return Err(DiffusionError::Cancelled { step: 0, total });
        }
        for (index, &timestep) in timesteps[start..].iter().enumerate() {
            latents = self
                .denoise_step(
                    scheduler.as_mut(),
                    &latents,
                    timestep,
                    &conditioning,
                    guided.then_some(request.guidance_scale),
                )
                .map_err(DiffusionError::model(Stage::Denoising))?;
            let step = index + 1;
            if progress(Progress { step, total }).is_break() {
                return Err(DiffusionError::Cancelled { step, total });
            }
        }

        let pixels = (latents / cfg.latent_scale)
            .and_then(|l| self.vae.decode(&l))
            .map_err(DiffusionError::model(Stage::Decoding))?;
        latent::tensor_to_image(&pixels).map_err(DiffusionError::model(Stage::Decoding))
    }

    fn check(&self, request: &Generation) -> Result<(), RequestError> {
        let cfg = &self.config;
        let multiple = cfg.vae_factor();
        let side_ok =
            |side: usize| side >= multiple && side <= cfg.max_side && side.is_multiple_of(multiple);
        if !(side_ok(request.width) && side_ok(request.height)) {
            return Err(RequestError::Size {
                width: request.width,
                height: request.height,
                multiple,
                max: cfg.max_side,
            });
        }
        let max_steps = cfg.scheduler.train_timesteps;
        if !(1..=max_steps).contains(&request.steps) {
            return Err(RequestError::Steps {
                steps: request.steps,
                max: max_steps,
            });
        }
        let scale = request.guidance_scale;
        if !(scale.is_finite() && scale >= 0.) {
            return Err(RequestError::Guidance { scale });
        }
        if let Some(init) = &request.init_image {
            let strength = init.strength;
            if !(strength > 0. && strength <= 1.) {
                return Err(RequestError::Strength { strength });
            }
            let (width, height) = init.image.dimensions();
            if width == 0 || height == 0 {
                return Err(RequestError::EmptyImage { width, height });
            }
        }
        Ok(())
    }

    /// The negative prompt's and the prompt's features, stacked in that order when guided.
    fn conditioning(&self, request: &Generation, guided: bool) -> Result<Tensor, DiffusionError> {
        let prompt = self.text.encode(&request.prompt)?;
        if !guided {
            return Ok(prompt);
        }
        let negative = self.text.encode(&request.negative_prompt)?;
        Tensor::cat(&[negative, prompt], 0).map_err(DiffusionError::model(Stage::TextEncoding))
    }

    /// Image-to-image's start: the source's latents with the noise of the first timestep
    /// that `strength` keeps, and the index of that timestep.
    fn noised_source(
        &self,
        init: &InitImage,
        request: &Generation,
        scheduler: &dyn Scheduler,
        timesteps: &[usize],
        noise: Tensor,
    ) -> Result<(Tensor, usize), DiffusionError> {
        let cfg = &self.config;
        let (width, height) = (request.width as u32, request.height as u32);
        let source = image::DynamicImage::ImageRgb8(init.image.clone())
            .resize_to_fill(width, height, FilterType::CatmullRom)
            .to_rgb8();
        let latents = latent::image_to_tensor(&source, &self.device, cfg.dtype)
            .and_then(|pixels| self.posterior.forward(&pixels))
            .and_then(|mean| mean * cfg.latent_scale)
            .map_err(DiffusionError::model(Stage::ImageEncoding))?;
        let kept = strength_steps(timesteps.len(), init.strength);
        let start = timesteps.len() - kept;
        let noised = scheduler
            .add_noise(&latents, noise, timesteps[start])
            .map_err(DiffusionError::model(Stage::Noise))?;
        Ok((noised, start))
    }

    fn denoise_step(
        &self,
        scheduler: &mut dyn Scheduler,
        latents: &Tensor,
        timestep: usize,
        conditioning: &Tensor,
        guidance: Option<f64>,
    ) -> candle_core::Result<Tensor> {
        let input = match guidance {
            Some(_) => Tensor::cat(&[latents, latents], 0)?,
            None => latents.clone(),
        };
        let input = scheduler.scale_model_input(input, timestep)?;
        let predicted = self.unet.forward(&input, timestep as f64, conditioning)?;
        let noise = match guidance {
            Some(scale) => {
                let unconditional = predicted.narrow(0, 0, 1)?;
                let conditional = predicted.narrow(0, 1, 1)?;
                (&unconditional + ((&conditional - &unconditional)? * scale)?)?
            }
            None => predicted,
        };
        scheduler.step(&noise, timestep, latents)
    }
}

/// How many of `steps` timesteps image-to-image runs at `strength`: the share the
/// strength asks for, rounded down, but at least one.
fn strength_steps(steps: usize, strength: f64) -> usize {
    let share = (steps as f64 * strength).floor() as usize;
    share.clamp(1, steps.max(1))
}

#[cfg(test)]
mod tests {
    use super::strength_steps;

    #[test]
    fn strength_selects_the_last_share_of_the_steps() {
        assert_eq!(strength_steps(20, 0.75), 15);
        assert_eq!(strength_steps(20, 1.), 20);
        assert_eq!(strength_steps(4, 0.1), 1);
        assert_eq!(strength_steps(1, 0.5), 1);
    }
}
