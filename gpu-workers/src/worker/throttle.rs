//! At most one progress event per interval per job: a fast model reports fifty steps a
//! second, and each report is a Kafka message every reader must handle.

use std::time::{Duration, Instant};

/// Decides which steps of one job are reported.
#[derive(Debug, Clone)]
pub struct Throttle {
    interval: Duration,
    last: Instant,
}

impl Throttle {
    /// A job that started at `started`: its first report comes an interval later, so a job
    /// shorter than the interval reports no progress at all (its terminal event says it).
    pub fn new(interval: Duration, started: Instant) -> Self {
        Self {
            interval,
            last: started,
        }
    }

    /// Whether to report the step completed at `now`; a reported step starts the next
    /// interval.
    pub fn ready(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last) >= self.interval {
            self.last = now;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_report_per_interval() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Throttle::new(Duration::from_millis(100), t0);
        // Steps every 30 ms for a second.
        let reported: Vec<u64> = (1..=33)
            .map(|i| i * 30)
            .filter(|n| t.ready(ms(*n)))
            .collect();
        assert_eq!(reported.first(), Some(&120));
        assert!(reported.windows(2).all(|w| w[1] - w[0] >= 100));
        assert!(reported.len() >= 7 && reported.len() <= 10, "{reported:?}");
    }

    #[test]
    fn a_short_job_reports_nothing() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_millis(500), t0);
        assert!(!t.ready(t0 + Duration::from_millis(10)));
        assert!(!t.ready(t0 + Duration::from_millis(499)));
        assert!(t.ready(t0 + Duration::from_millis(500)));
    }
}
