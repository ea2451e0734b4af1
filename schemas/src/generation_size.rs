//! The cost of a generation, its steps and its picture's size, and the one rule by which it is
//! scaled down while the painter is overloaded. The command side degrades a request before it
//! is written; the painter degrades a job it holds; both apply [`GenerationSize::degraded`].
//! Pure: no I/O, no clock.

/// Sides of a generated picture are multiples of this: the diffusion models' VAE downsamples
/// by 8, so a side must divide into whole latent cells.
pub const SIDE_MULTIPLE: u32 = 8;

/// Steps and size of a generation: what its cost depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationSize {
    pub steps: u32,
    pub width: u32,
    pub height: u32,
}

/// The most a degraded generation runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DegradedLimits {
    /// Most steps (at least 1 is always allowed).
    pub max_steps: u32,
    /// Longest side, in pixels (at least the side multiple is always allowed).
    pub max_side: u32,
}

impl DegradedLimits {
    /// The backlog (messages) from which the painter counts as overloaded, by default: the
    /// command side's threshold and the painter's start from the same figure.
    pub const DEFAULT_BACKLOG_THRESHOLD: u64 = 200;
}

impl Default for DegradedLimits {
    /// Ten steps and 256 pixels: a degraded request costs a small fraction of a full one.
    fn default() -> Self {
        Self {
            max_steps: 10,
            max_side: 256,
        }
    }
}

impl GenerationSize {
    /// This size within `limits`: the steps capped at `max_steps`, and the picture scaled
    /// down by [`fit`]. A size already within them comes back unchanged, so a caller tells
    /// whether anything had to give by comparing the two.
    pub fn degraded(self, limits: DegradedLimits, multiple: u32) -> Self {
        let (width, height) = fit(self.width, self.height, limits.max_side, multiple);
        Self {
            steps: self.steps.min(limits.max_steps.max(1)),
            width,
            height,
        }
    }
}

/// Scales `width`×`height` down so that its longer side is at most `max_side`, keeping the
/// aspect ratio: each side is multiplied by `max_side / longer side`, rounded down to a
/// multiple of `multiple`, and never less than `multiple`. A `max_side` below `multiple` is
/// raised to it; a picture already within `max_side` is left as it is.
pub fn fit(width: u32, height: u32, max_side: u32, multiple: u32) -> (u32, u32) {
    let multiple = multiple.max(1);
    let max_side = max_side.max(multiple);
    let long = width.max(height);
    if long <= max_side {
        return (width, height);
    }
    let scale = |side: u32| {
        let exact = u64::from(side) * u64::from(max_side) / u64::from(long);
        let snapped = (exact / u64::from(multiple)).max(1) * u64::from(multiple);
        // At most `max_side`: the exact side is at most that, and snapping only lowers it.
        u32::try_from(snapped).unwrap_or(max_side)
    };
    (scale(width), scale(height))
}

#[cfg(test)]
#[path = "generation_size_tests.rs"]
mod tests;
