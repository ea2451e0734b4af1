//! The scale-down rule as given / when / then, with the sizes the end-to-end tests and the
//! documentation rely on; and as properties over any size and limits.

use super::*;
use proptest::prelude::*;

fn size(steps: u32, width: u32, height: u32) -> GenerationSize {
    GenerationSize {
        steps,
        width,
        height,
    }
}

fn limits(max_steps: u32, max_side: u32) -> DegradedLimits {
    DegradedLimits {
        max_steps,
        max_side,
    }
}

/// The defaults of both sides' configuration: 10 steps, 256 pixels.
const DEFAULT: DegradedLimits = DegradedLimits {
    max_steps: 10,
    max_side: 256,
};

/// Then each size asked for, degraded within `limits`, is the one given beside it.
fn degrades_to(limits: DegradedLimits, cases: &[(GenerationSize, GenerationSize)]) {
    for (asked, got) in cases {
        assert_eq!(asked.degraded(limits, SIDE_MULTIPLE), *got, "{asked:?}");
    }
}

#[test]
fn a_size_within_the_limits_is_unchanged() {
    let within = [size(8, 256, 128), size(10, 128, 128), size(1, 8, 8)];
    degrades_to(DEFAULT, &within.map(|s| (s, s)));
}

#[test]
fn only_the_steps_give_when_the_picture_fits() {
    degrades_to(DEFAULT, &[(size(20, 128, 128), size(10, 128, 128))]);
}

#[test]
fn the_longer_side_is_scaled_to_the_bound_and_the_other_rounded_down() {
    degrades_to(
        DEFAULT,
        &[
            // The command side's end-to-end test: 256 × 512 / 768 = 170.7, down to 168.
            (size(40, 768, 512), size(10, 256, 168)),
            (size(50, 1024, 768), size(10, 256, 192)),
            (size(40, 1024, 512), size(10, 256, 128)),
            (size(30, 512, 2048), size(10, 64, 256)),
            // 256 × 200 / 1000 = 51.2, down to 48.
            (size(5, 200, 1000), size(5, 48, 256)),
        ],
    );
}

#[test]
fn the_painter_s_end_to_end_degradation_is_this_rule() {
    degrades_to(limits(3, 48), &[(size(20, 128, 64), size(3, 48, 24))]);
}

#[test]
fn a_very_thin_picture_keeps_a_side_of_one_multiple() {
    degrades_to(
        DEFAULT,
        &[
            (size(10, 4096, 16), size(10, 256, 8)),
            (size(8, 8192, 64), size(8, 256, 8)),
        ],
    );
}

#[test]
fn limits_below_one_step_or_one_multiple_are_raised_to_them() {
    degrades_to(limits(0, 4), &[(size(20, 64, 64), size(1, 8, 8))]);
}

#[test]
fn a_bound_that_is_not_a_multiple_gives_the_multiple_below_it() {
    assert_eq!(fit(1024, 1024, 100, SIDE_MULTIPLE), (96, 96));
}

#[test]
fn the_multiple_is_the_caller_s() {
    assert_eq!(fit(1024, 512, 256, 64), (256, 128));
    assert_eq!(fit(1024, 400, 256, 64), (256, 64));
    // No multiple at all is a multiple of one.
    assert_eq!(fit(1000, 10, 100, 0), (100, 1));
}

fn any_multiple() -> impl Strategy<Value = u32> {
    prop_oneof![Just(SIDE_MULTIPLE), 1u32..=64]
}

/// Any size a request may carry once its numbers are positive, and a few steps of none.
fn any_size() -> impl Strategy<Value = GenerationSize> {
    (0u32..=500, 1u32..=16_384, 1u32..=16_384).prop_map(|(s, w, h)| size(s, w, h))
}

/// Any limits, including those below one step or one multiple.
fn any_limits() -> impl Strategy<Value = DegradedLimits> {
    (0u32..=100, 0u32..=4096).prop_map(|(steps, side)| limits(steps, side))
}

proptest! {
    /// Whatever is asked for, the degraded picture's longer side is within the bound (raised
    /// to one multiple), and the steps within the cap (raised to one).
    #[test]
    fn the_degraded_size_never_exceeds_the_limits(
        asked in any_size(),
        l in any_limits(),
        multiple in any_multiple(),
    ) {
        let got = asked.degraded(l, multiple);
        prop_assert!(got.width.max(got.height) <= l.max_side.max(multiple));
        prop_assert_eq!(got.steps, asked.steps.min(l.max_steps.max(1)));
    }

    /// A scaled picture keeps the aspect ratio within rounding: each side is the exact scaled
    /// side rounded down to a multiple (or one multiple, when that rounds to nothing), and the
    /// longer side stays the longer.
    #[test]
    fn a_scaled_picture_keeps_its_aspect_ratio_within_one_multiple(
        asked in any_size(),
        l in any_limits(),
        multiple in any_multiple(),
    ) {
        let (width, height) = (asked.width, asked.height);
        let (w, h) = fit(width, height, l.max_side, multiple);
        let bound = u64::from(l.max_side.max(multiple));
        let long = u64::from(width.max(height));
        prop_assume!(long > bound);
        let m = u64::from(multiple);
        for (asked, got) in [(width, w), (height, h)] {
            let (asked, got) = (u64::from(asked), u64::from(got));
            // got ≤ asked × bound / long < got + multiple, unless raised to one multiple.
            prop_assert!(got == m || got * long <= asked * bound, "{asked} -> {got}");
            prop_assert!((got + m) * long > asked * bound, "{asked} -> {got}");
            prop_assert_eq!(got % m, 0);
        }
        prop_assert!(width < height || w >= h);
        prop_assert!(height < width || h >= w);
    }

    /// A picture within the bound is left alone, whatever its sides; one beyond it comes out a
    /// multiple on both sides, never larger than asked (or than one multiple).
    #[test]
    fn fitting_only_ever_shrinks_to_multiples(
        asked in any_size(),
        l in any_limits(),
        multiple in any_multiple(),
    ) {
        let (width, height) = (asked.width, asked.height);
        let (w, h) = fit(width, height, l.max_side, multiple);
        if width.max(height) <= l.max_side.max(multiple) {
            prop_assert_eq!((w, h), (width, height));
        } else {
            prop_assert_eq!((w % multiple, h % multiple), (0, 0));
            prop_assert!(w <= width.max(multiple) && h <= height.max(multiple));
        }
    }

    /// Degrading a degraded size changes nothing: the command side's degraded request is not
    /// degraded again by a painter with the same limits.
    #[test]
    fn degrading_is_idempotent(
        asked in any_size(),
        l in any_limits(),
        multiple in any_multiple(),
    ) {
        let once = asked.degraded(l, multiple);
        prop_assert_eq!(once.degraded(l, multiple), once);
    }
}
