//! Generation requests: text-to-image and image-to-image, within limits, and cancellation.

use gallery_schemas::{
    DegradedLimits, Event, GenerationCancelled, GenerationMode, GenerationRequested,
    GenerationSize, ImageRef, Prompt, SIDE_MULTIPLE, StyleName, UserId,
};
use uuid::Uuid;

use super::{Refusal, in_range};
use crate::auth::Principal;

/// Bounds of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min_steps: i32,
    pub max_steps: i32,
    pub default_steps: i32,
    pub min_side: i32,
    pub max_side: i32,
    pub default_side: i32,
    /// Sides must be a multiple of this (the VAE's downsampling factor).
    pub side_multiple: i32,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            min_steps: 1,
            max_steps: 50,
            default_steps: 20,
            min_side: 64,
            max_side: 1024,
            default_side: 512,
            side_multiple: SIDE_MULTIPLE as i32,
        }
    }
}

/// How the request is admitted, given the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Normal,
    /// Scale down to at most these steps and side, and mark the request degraded.
    Degraded {
        max_steps: i32,
        max_side: i32,
    },
}

/// A request as asked for; `None` takes the default.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub style: String,
    pub seed: Option<i64>,
    pub steps: Option<i32>,
    pub width: Option<i32>,
    pub height: Option<i32>,
}

/// A request's parameters, checked and with the defaults and the admission applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    mode: GenerationMode,
    prompt: Option<Prompt>,
    negative_prompt: Option<Prompt>,
    style: StyleName,
    seed: Option<i64>,
    steps: i32,
    width: i32,
    height: i32,
    degraded: bool,
}

/// Checks a request before anything is stored; `has_photo` tells whether a source photo came
/// with it.
pub fn check(
    mode: GenerationMode,
    params: &Params,
    has_photo: bool,
    bounds: &Bounds,
    admission: Admission,
) -> Result<Checked, Refusal> {
    let prompt = params
        .prompt
        .clone()
        .filter(|p| !p.is_empty())
        .map(Prompt::parse)
        .transpose()
        .map_err(Refusal::text("prompt"))?;
    let negative_prompt = params
        .negative_prompt
        .clone()
        .filter(|p| !p.is_empty())
        .map(Prompt::parse)
        .transpose()
        .map_err(Refusal::text("negativePrompt"))?;
    let style = StyleName::parse(params.style.clone()).map_err(Refusal::text("style"))?;
    match mode {
        GenerationMode::TextToImage if prompt.is_none() => {
            return Err(Refusal::Rule {
                field: "prompt",
                rule: "is required for text-to-image",
            });
        }
        GenerationMode::ImageToImage if !has_photo => {
            return Err(Refusal::Rule {
                field: "photo",
                rule: "is required for image-to-image",
            });
        }
        GenerationMode::TextToImage if has_photo => {
            return Err(Refusal::Rule {
                field: "photo",
                rule: "is only for image-to-image",
            });
        }
        _ => {}
    }
    let steps = params.steps.unwrap_or(bounds.default_steps);
    in_range(
        "steps",
        i64::from(steps),
        i64::from(bounds.min_steps),
        i64::from(bounds.max_steps),
    )?;
    let sides = [
        ("width", params.width.unwrap_or(bounds.default_side)),
        ("height", params.height.unwrap_or(bounds.default_side)),
    ];
    for (field, side) in sides {
        in_range(
            field,
            i64::from(side),
            i64::from(bounds.min_side),
            i64::from(bounds.max_side),
        )?;
        if side % bounds.side_multiple != 0 {
            return Err(Refusal::Rule {
                field,
                rule: "must be a multiple of 8",
            });
        }
    }
    let asked = (steps, sides[0].1, sides[1].1);
    let (steps, width, height) = match admission {
        Admission::Normal => asked,
        Admission::Degraded {
            max_steps,
            max_side,
        } => degrade(asked, max_steps, max_side, bounds.side_multiple),
    };
    // Marked degraded only when something had to give.
    let degraded = (steps, width, height) != asked;
    Ok(Checked {
        mode,
        prompt,
        negative_prompt,
        style,
        seed: params.seed,
        steps,
        width,
        height,
        degraded,
    })
}

/// Steps and sides, already within the bounds, scaled down by the one rule the painter
/// applies too ([`GenerationSize::degraded`]).
fn degrade(
    (steps, width, height): (i32, i32, i32),
    max_steps: i32,
    max_side: i32,
    multiple: i32,
) -> (i32, i32, i32) {
    let unsigned = |n: i32| u32::try_from(n).unwrap_or(0);
    let asked = GenerationSize {
        steps: unsigned(steps),
        width: unsigned(width),
        height: unsigned(height),
    };
    let limits = DegradedLimits {
        max_steps: unsigned(max_steps),
        max_side: unsigned(max_side),
    };
    let got = asked.degraded(limits, unsigned(multiple));
    // Never above what was asked, or one step, or one multiple: all of them fit an i32.
    let signed = |n: u32, asked: i32| i32::try_from(n).unwrap_or(asked);
    (
        signed(got.steps, steps),
        signed(got.width, width),
        signed(got.height, height),
    )
}

/// The request event of checked parameters; `random_seed` stands in for a missing seed.
pub fn request(
    who: &Principal,
    checked: Checked,
    source_image: Option<ImageRef>,
    request_id: Uuid,
    random_seed: i64,
    event_id: Uuid,
    now: i64,
) -> Event {
    GenerationRequested {
        event_id,
        request_id,
        user_id: who.user.clone(),
        mode: checked.mode,
        prompt: checked.prompt,
        negative_prompt: checked.negative_prompt,
        style: checked.style,
        seed: checked.seed.unwrap_or(random_seed),
        steps: checked.steps,
        width: checked.width,
        height: checked.height,
        source_image,
        degraded: checked.degraded,
        occurred_at: now,
    }
    .into()
}

/// What the write side knows about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestState {
    pub user: UserId,
    pub cancelled: bool,
}

pub fn cancel(
    who: &Principal,
    state: Option<&RequestState>,
    request_id: Uuid,
    event_id: Uuid,
    now: i64,
) -> Result<Event, Refusal> {
    let state = state.ok_or(Refusal::NotFound {
        what: "generation request",
    })?;
    if state.user != who.user && !who.is_admin() {
        return Err(Refusal::Forbidden {
            reason: "only the requester or an admin may cancel a generation",
        });
    }
    if state.cancelled {
        return Err(Refusal::Conflict {
            reason: "the generation is already cancelled",
        });
    }
    Ok(GenerationCancelled {
        event_id,
        request_id,
        user_id: who.user.clone(),
        occurred_at: now,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gallery_schemas::Role;

    fn ada() -> Principal {
        Principal::new(
            UserId::parse("ada").unwrap_or_else(|e| unreachable!("{e}")),
            Role::Visitor,
        )
    }

    fn t2i(params: &Params, admission: Admission) -> Result<GenerationRequested, Refusal> {
        let checked = check(
            GenerationMode::TextToImage,
            params,
            false,
            &Bounds::default(),
            admission,
        )?;
        match request(&ada(), checked, None, Uuid::nil(), 99, Uuid::nil(), 0) {
            Event::GenerationRequested(r) => Ok(r),
            _ => unreachable!("a request"),
        }
    }

    fn params() -> Params {
        Params {
            prompt: Some("a lighthouse at dusk".into()),
            style: "impressionism".into(),
            ..Params::default()
        }
    }

    #[test]
    fn defaults_fill_in_and_a_missing_seed_is_random() {
        let r = t2i(&params(), Admission::Normal).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (r.steps, r.width, r.height, r.seed, r.degraded),
            (20, 512, 512, 99, false)
        );
    }

    #[test]
    fn text_to_image_needs_a_prompt() {
        let mut p = params();
        p.prompt = None;
        assert!(matches!(
            t2i(&p, Admission::Normal),
            Err(Refusal::Rule {
                field: "prompt",
                ..
            })
        ));
    }

    #[test]
    fn steps_and_sides_are_bounded() {
        let mut p = params();
        p.steps = Some(51);
        assert!(matches!(
            t2i(&p, Admission::Normal),
            Err(Refusal::OutOfRange { field: "steps", .. })
        ));
        let mut p = params();
        p.width = Some(2048);
        assert!(matches!(
            t2i(&p, Admission::Normal),
            Err(Refusal::OutOfRange { field: "width", .. })
        ));
        let mut p = params();
        p.height = Some(500);
        assert!(matches!(
            t2i(&p, Admission::Normal),
            Err(Refusal::Rule {
                field: "height",
                ..
            })
        ));
    }

    #[test]
    fn a_degraded_admission_scales_down_and_marks_it() {
        let mut p = params();
        p.steps = Some(40);
        p.width = Some(1024);
        p.height = Some(512);
        let r = t2i(
            &p,
            Admission::Degraded {
                max_steps: 10,
                max_side: 256,
            },
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (r.steps, r.width, r.height, r.degraded),
            (10, 256, 128, true)
        );
    }

    #[test]
    fn a_degraded_admission_marks_only_what_had_to_give() {
        let limits = Admission::Degraded {
            max_steps: 10,
            max_side: 256,
        };
        let mut p = params();
        p.steps = Some(8);
        p.width = Some(256);
        p.height = Some(128);
        let r = t2i(&p, limits).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (r.steps, r.width, r.height, r.degraded),
            (8, 256, 128, false)
        );
        p.steps = Some(20);
        let r = t2i(&p, limits).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (r.steps, r.width, r.height, r.degraded),
            (10, 256, 128, true)
        );
    }

    #[test]
    fn only_the_requester_cancels_and_only_once() {
        let mine = RequestState {
            user: ada().user,
            cancelled: false,
        };
        assert!(cancel(&ada(), Some(&mine), Uuid::nil(), Uuid::nil(), 0).is_ok());
        let bob = Principal::new(
            UserId::parse("bob").unwrap_or_else(|e| unreachable!("{e}")),
            Role::Visitor,
        );
        assert!(matches!(
            cancel(&bob, Some(&mine), Uuid::nil(), Uuid::nil(), 0),
            Err(Refusal::Forbidden { .. })
        ));
        let done = RequestState {
            user: ada().user,
            cancelled: true,
        };
        assert!(matches!(
            cancel(&ada(), Some(&done), Uuid::nil(), Uuid::nil(), 0),
            Err(Refusal::Conflict { .. })
        ));
        assert!(matches!(
            cancel(&ada(), None, Uuid::nil(), Uuid::nil(), 0),
            Err(Refusal::NotFound { .. })
        ));
    }
}
