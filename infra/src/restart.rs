//! Restarting a long-running session (a projector's, the painter's) after it fails: a pause
//! that doubles from a first value up to a bound, cut short when the process is asked to stop.
//! Every restart loop of Gallery takes its pauses from here.

use std::future::Future;
use std::pin::{Pin, pin};
use std::time::Duration;

/// The pause before the next restart.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Pauses of `first`, then twice as long each time, never longer than `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The pause [`Backoff::wait`] waits next.
    pub fn pause(&self) -> Duration {
        self.next
    }

    /// The next pause is the first again (the session got somewhere).
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Waits the pause, then doubles the next one; `false` when `stop` resolved first.
    pub async fn wait<S: Future<Output = ()> + ?Sized>(&mut self, stop: Pin<&mut S>) -> bool {
        let waited = tokio::select! {
            () = stop => false,
            () = tokio::time::sleep(self.next) => true,
        };
        self.next = self.next.saturating_mul(2).min(self.max);
        waited
    }
}

/// When a failed session starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// After the backoff's pause.
    AfterPause,
    /// At once, with the backoff reset (the failure is a planned hand-over, not a fault).
    AtOnce,
}

/// Runs `session` again and again until `stop` resolves. `failed` sees each error with the
/// pause that would follow and says when to start again; a session that returns `Ok` starts
/// again after the pause too. When `stop` resolves the session is dropped where it stands, so
/// this is for sessions whose effects are atomic (each batch commits whole or not at all).
pub async fn until_stopped<E, Fut>(
    mut backoff: Backoff,
    stop: impl Future<Output = ()>,
    mut session: impl FnMut() -> Fut,
    mut failed: impl FnMut(&E, Duration) -> Restart,
) where
    Fut: Future<Output = Result<(), E>>,
{
    let mut stop = pin!(stop);
    loop {
        let ended = tokio::select! {
            () = stop.as_mut() => return,
            ended = session() => ended,
        };
        if let Err(e) = ended
            && failed(&e, backoff.pause()) == Restart::AtOnce
        {
            backoff.reset();
            continue;
        }
        if !backoff.wait(stop.as_mut()).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;

    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn pauses_double_up_to_the_bound_and_reset() {
        let mut backoff = Backoff::new(FIRST, MAX);
        let mut waited = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            assert!(backoff.wait(pin!(std::future::pending())).await);
            waited.push(started.elapsed().as_millis());
        }
        assert_eq!(waited, [200, 400, 800, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.pause(), FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_cuts_the_pause_short() {
        let mut backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let started = Instant::now();
        let stop = tokio::time::sleep(Duration::from_secs(1));
        assert!(!backoff.wait(pin!(stop)).await);
        assert_eq!(started.elapsed().as_secs(), 1);
    }

    /// Starts of a session that fails with the numbers given, then runs until dropped.
    async fn starts(failures: Vec<u32>, at_once: u32, stop_after: Duration) -> Vec<u128> {
        let began = Instant::now();
        let starts = Mutex::new(Vec::new());
        let failures = Mutex::new(failures.into_iter());
        until_stopped(
            Backoff::new(FIRST, MAX),
            tokio::time::sleep(stop_after),
            || {
                starts.lock().unwrap().push(began.elapsed().as_millis());
                let next = failures.lock().unwrap().next();
                async move {
                    match next {
                        Some(n) => Err(n),
                        None => std::future::pending().await,
                    }
                }
            },
            |e: &u32, _| {
                if *e == at_once {
                    Restart::AtOnce
                } else {
                    Restart::AfterPause
                }
            },
        )
        .await;
        starts.into_inner().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_session_starts_again_after_growing_pauses_until_stopped() {
        let started = starts(vec![1, 2, 3], 0, Duration::from_secs(10)).await;
        assert_eq!(started, [0, 200, 600, 1400]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hand_over_starts_again_at_once_and_resets_the_pause() {
        let started = starts(vec![1, 2, 9, 3], 9, Duration::from_secs(10)).await;
        assert_eq!(started, [0, 200, 600, 600, 800]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_a_running_session() {
        let started = starts(vec![], 0, Duration::from_secs(3)).await;
        assert_eq!(started, [0]);
    }
}
