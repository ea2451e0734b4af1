//! How busy the paint threads are: each thread marks when a task starts and ends; a sample
//! is the share of the threads' time since the previous sample spent in tasks, counting the
//! part of a task still running (so a minute-long job shows while it runs, not after).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The paint threads' busy time.
#[derive(Debug)]
pub struct BusyClock {
    threads: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Busy time of the tasks finished so far.
    finished: Duration,
    /// When each thread's current task started.
    running: Vec<Option<Instant>>,
}

impl BusyClock {
    pub fn new(threads: usize) -> Self {
        Self {
            threads,
            state: Mutex::new(State {
                finished: Duration::ZERO,
                running: vec![None; threads],
            }),
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Thread `thread` starts a task at `at`.
    pub fn start(&self, thread: usize, at: Instant) {
        self.with(|s| {
            if let Some(slot) = s.running.get_mut(thread) {
                *slot = Some(at);
            }
        });
    }

    /// Thread `thread` finished its task at `at`.
    pub fn stop(&self, thread: usize, at: Instant) {
        self.with(|s| {
            if let Some(started) = s.running.get_mut(thread).and_then(Option::take) {
                s.finished += at.saturating_duration_since(started);
            }
        });
    }

    /// Busy time of all threads up to `now`, running tasks included.
    pub fn busy_until(&self, now: Instant) -> Duration {
        self.with(|s| {
            s.running
                .iter()
                .flatten()
                .map(|started| now.saturating_duration_since(*started))
                .sum::<Duration>()
                + s.finished
        })
    }
}

/// Turns busy-time readings into utilisation: the share of the threads' time between two
/// readings that was spent painting.
#[derive(Debug)]
pub struct Utilisation {
    last: Option<(Instant, Duration)>,
}

impl Utilisation {
    pub fn new() -> Self {
        Self { last: None }
    }

    /// The utilisation since the previous sample (0 to 1), or `None` for the first sample.
    pub fn sample(&mut self, clock: &BusyClock, now: Instant) -> Option<f64> {
        let busy = clock.busy_until(now);
        let previous = self.last.replace((now, busy));
        let (then, busy_then) = previous?;
        let wall = now.saturating_duration_since(then).as_secs_f64() * clock.threads() as f64;
        if wall <= 0.0 {
            return None;
        }
        let worked = busy.saturating_sub(busy_then).as_secs_f64();
        Some((worked / wall).clamp(0.0, 1.0))
    }
}

impl Default for Utilisation {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn finished_and_running_tasks_both_count() {
        let clock = BusyClock::new(2);
        let t0 = Instant::now();
        clock.start(0, t0);
        clock.stop(0, t0 + secs(3));
        clock.start(1, t0 + secs(1));
        assert_eq!(clock.busy_until(t0 + secs(5)), secs(3) + secs(4));
        // A stop without a start (or for a thread that does not exist) changes nothing.
        clock.stop(0, t0 + secs(6));
        clock.start(7, t0);
        assert_eq!(clock.busy_until(t0 + secs(5)), secs(7));
    }

    #[test]
    fn utilisation_is_the_share_of_thread_time_spent_painting() {
        let clock = BusyClock::new(2);
        let mut u = Utilisation::new();
        let t0 = Instant::now();
        assert_eq!(
            u.sample(&clock, t0),
            None,
            "the first sample has no interval"
        );
        // One of two threads busy for the whole 10 s interval: a half.
        clock.start(0, t0);
        assert_eq!(u.sample(&clock, t0 + secs(10)), Some(0.5));
        // Both busy for the next 10 s (the first task still running): all of it.
        clock.start(1, t0 + secs(10));
        assert_eq!(u.sample(&clock, t0 + secs(20)), Some(1.0));
        // Both stop 5 s into the next interval: a half; then idle: nothing.
        clock.stop(0, t0 + secs(25));
        clock.stop(1, t0 + secs(25));
        assert_eq!(u.sample(&clock, t0 + secs(30)), Some(0.5));
        assert_eq!(u.sample(&clock, t0 + secs(40)), Some(0.0));
    }
}
