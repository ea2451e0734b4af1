//! How a request will run, decided when it is held: the painter of its mode, its parameters
//! with the worker's limits applied (scaled down while the backlog is high, by the rule the
//! command side applies too), its source photo and its result cache key; or the rejection
//! that ends it in `GenerationFailed`. Pure: no I/O, no clock; the session measures the
//! backlog and hands it in.

use std::sync::Arc;

use gallery_schemas::{GenerationMode, GenerationRequested, ImageRef};

use super::WorkerSettings;
use super::cache_key::{CacheInputs, cache_key};
use super::images::check_reference;
use super::painter::{FailureCode, PaintParams, Painter, Painters, Rejection};

/// How a held request will run.
#[derive(Debug)]
pub(super) struct Plan {
    pub params: PaintParams,
    pub source: Option<ImageRef>,
    /// Degraded by the command side, by the worker's backlog, or both.
    pub degraded: bool,
    pub cache_key: String,
    pub painter: Arc<dyn Painter>,
}

/// Checks `request` and decides how it runs, given the `backlog` it joins (itself included).
pub(super) fn plan(
    request: &GenerationRequested,
    settings: &WorkerSettings,
    painters: &Painters,
    backlog: u64,
) -> Result<Plan, Rejection> {
    let painter = painters.for_mode(request.mode)?.clone();
    let max = settings.max_prompt_chars;
    for (what, text) in [
        ("prompt", &request.prompt),
        ("negative prompt", &request.negative_prompt),
    ] {
        let chars = text.as_ref().map_or(0, |t| t.as_str().chars().count());
        if chars > max {
            return Err(Rejection::new(
                FailureCode::InvalidPrompt,
                format!("the {what} is {chars} characters long; the painter reads at most {max}"),
            ));
        }
    }
    let source = match request.mode {
        GenerationMode::ImageToImage => {
            let source = request.source_image.clone().ok_or_else(|| {
                Rejection::new(
                    FailureCode::InvalidImage,
                    "an image-to-image request needs a source image",
                )
            })?;
            check_reference(&source, &settings.source_limits)?;
            Some(source)
        }
        GenerationMode::TextToImage => None,
    };
    let positive = |value: i32, what: &str| {
        u32::try_from(value).ok().filter(|v| *v > 0).ok_or_else(|| {
            Rejection::new(
                FailureCode::UnsupportedMode,
                format!("{what} must be positive, not {value}"),
            )
        })
    };
    let effective = settings.degradation.apply(
        backlog,
        positive(request.steps, "steps")?,
        positive(request.width, "width")?,
        positive(request.height, "height")?,
    );
    let params = PaintParams {
        mode: request.mode,
        prompt: request.prompt.as_ref().map(|p| p.as_str().to_owned()),
        negative_prompt: request
            .negative_prompt
            .as_ref()
            .map(|p| p.as_str().to_owned()),
        style: request.style.as_str().to_owned(),
        seed: request.seed,
        steps: effective.steps,
        width: effective.width,
        height: effective.height,
    };
    painter.validate(&params)?;
    let cache_key = cache_key(&CacheInputs {
        model: painter.model(),
        weights_digest: painter.weights_digest(),
        scheduler: painter.scheduler(),
        params: &params,
        source_sha256: source.as_ref().map(|s| s.sha256.as_str()),
    });
    Ok(Plan {
        params,
        source,
        degraded: request.degraded || effective.degraded,
        cache_key,
        painter,
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
