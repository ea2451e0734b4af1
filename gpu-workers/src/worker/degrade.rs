//! Degradation: while the backlog is above its threshold, jobs run with fewer steps and a
//! smaller size, and their results say so. How much smaller is the rule the command side
//! applies too ([`GenerationSize::degraded`]); this module owns when.

use gallery_schemas::{DegradedLimits, GenerationSize, SIDE_MULTIPLE};

/// The limits a job runs with while the worker is overloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Degradation {
    /// Backlog (held requests plus the consumer lag, in messages) above which jobs degrade.
    pub backlog_threshold: u64,
    /// Most steps of a degraded job.
    pub max_steps: u32,
    /// Longest side, in pixels, of a degraded job (the aspect ratio is kept).
    pub max_side: u32,
}

/// Steps and size a job runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    pub steps: u32,
    pub width: u32,
    pub height: u32,
    /// True when the backlog made anything smaller.
    pub degraded: bool,
}

impl Degradation {
    /// The steps and size of a job asking for `steps` at `width`×`height`, given `backlog`.
    pub fn apply(&self, backlog: u64, steps: u32, width: u32, height: u32) -> Effective {
        if backlog <= self.backlog_threshold {
            return Effective {
                steps,
                width,
                height,
                degraded: false,
            };
        }
        let asked = GenerationSize {
            steps,
            width,
            height,
        };
        let got = asked.degraded(
            DegradedLimits {
                max_steps: self.max_steps,
                max_side: self.max_side,
            },
            SIDE_MULTIPLE,
        );
        Effective {
            steps: got.steps,
            width: got.width,
            height: got.height,
            degraded: got != asked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Degradation = Degradation {
        backlog_threshold: 100,
        max_steps: 10,
        max_side: 256,
    };

    #[test]
    fn below_the_threshold_nothing_changes() {
        let e = D.apply(100, 30, 512, 384);
        assert_eq!(
            e,
            Effective {
                steps: 30,
                width: 512,
                height: 384,
                degraded: false
            }
        );
    }

    #[test]
    fn above_it_steps_and_size_are_capped_keeping_the_aspect_ratio() {
        let e = D.apply(101, 30, 512, 384);
        assert_eq!(
            e,
            Effective {
                steps: 10,
                width: 256,
                height: 192,
                degraded: true
            }
        );
        let tall = D.apply(500, 5, 200, 1000);
        assert_eq!((tall.steps, tall.width, tall.height), (5, 48, 256));
        assert!(tall.degraded);
    }

    #[test]
    fn a_job_already_within_the_caps_is_not_degraded() {
        let e = D.apply(10_000, 8, 128, 128);
        assert_eq!(
            e,
            Effective {
                steps: 8,
                width: 128,
                height: 128,
                degraded: false
            }
        );
    }

    #[test]
    fn sides_never_fall_below_the_step() {
        let e = D.apply(10_000, 8, 8192, 64);
        assert_eq!((e.width, e.height), (256, 8));
    }
}
