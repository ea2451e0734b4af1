//! Latency histograms (microseconds, three significant digits) and their summary.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The longest latency a histogram holds exactly (longer ones are recorded as this).
const HIGHEST_US: u64 = 60_000_000;

/// An empty histogram of latencies in microseconds, 1 µs to a minute.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, HIGHEST_US, 3)?)
}

/// Records one latency.
pub fn record(h: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.clamp(1, HIGHEST_US));
}

/// The percentiles a table shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latencies {
    /// (percentile, milliseconds) of p50, p99, p99.9 and the maximum (as 100), to plot.
    pub fn percentile_points(&self) -> Vec<(f64, f64)> {
        [
            (50.0, self.p50_us),
            (99.0, self.p99_us),
            (99.9, self.p999_us),
            (100.0, self.max_us),
        ]
        .into_iter()
        .map(|(p, us)| (p, us as f64 / 1000.0))
        .collect()
    }

    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// The monotonic clock in nanoseconds: one clock for every process of the machine, so that a
/// time taken in one process compares with a time taken in another.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(t.tv_nsec()).unwrap_or(0)
    })
}

/// A histogram as its recorded values and their counts, to carry between processes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recorded(pub Vec<(u64, u64)>);

impl Recorded {
    pub fn of(h: &Histogram<u64>) -> Self {
        Self(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    #[cfg(test)]
    pub fn histogram(&self) -> anyhow::Result<Histogram<u64>> {
        let mut h = histogram()?;
        self.add_to(&mut h)?;
        Ok(h)
    }

    pub fn add_to(&self, h: &mut Histogram<u64>) -> anyhow::Result<()> {
        for (value, count) in &self.0 {
            h.record_n(*value, *count)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = histogram().unwrap();
        for ms in 1..=1000u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let l = Latencies::of(&h);
        assert_eq!(l.count, 1000);
        // Three significant digits: within 0.1 %.
        let near = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(near(l.p50_us, 500_000), "{l:?}");
        assert!(near(l.p99_us, 990_000), "{l:?}");
        assert!(near(l.p999_us, 999_000), "{l:?}");
        assert!(near(l.max_us, 1_000_000), "{l:?}");
        assert_eq!(Latencies::of(&histogram().unwrap()), Latencies::default());
    }

    #[test]
    fn a_recorded_histogram_comes_back_whole() {
        let mut h = histogram().unwrap();
        for ms in [1u64, 5, 5, 250, 3_000] {
            record(&mut h, Duration::from_millis(ms));
        }
        let back = Recorded::of(&h).histogram().unwrap();
        assert_eq!(Latencies::of(&back), Latencies::of(&h));
        let a = monotonic_ns();
        assert!(monotonic_ns() >= a && a > 0);
    }

    #[test]
    fn latencies_beyond_the_bounds_are_clamped_not_lost() {
        let mut h = histogram().unwrap();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(3600));
        assert_eq!(h.len(), 2);
        assert!(h.max() >= HIGHEST_US);
    }
}
