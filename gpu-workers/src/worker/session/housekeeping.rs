//! The session's housekeeping on every tick: a stalled message tried again, the partitions
//! paused while the most requests allowed are held (and resumed below three quarters of
//! that), a look ahead for cancels while paused, and the partitions' histories pruned.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::task::{JoinError, JoinHandle};
use uuid::Uuid;

use super::{JobState, Session};
use crate::metrics as m;
use crate::worker::lookahead;

/// How often the partitions' histories are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// How often a paused session looks ahead for cancels of the requests it holds.
const LOOKAHEAD_EVERY: Duration = Duration::from_secs(1);

pub(super) async fn wait_lookahead(
    task: &mut Option<JoinHandle<Vec<Uuid>>>,
) -> Result<Vec<Uuid>, JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// Starts a look ahead for cancels of the requests held and not finished.
    fn look_ahead(&mut self) {
        self.last_lookahead = Instant::now();
        let held: HashSet<Uuid> = self
            .jobs
            .iter()
            .filter(|(_, job)| !matches!(job.state, JobState::Finished))
            .map(|(id, _)| *id)
            .collect();
        if held.is_empty() {
            return;
        }
        let from: Vec<(i32, i64)> = self
            .partitions
            .iter()
            .map(|(p, s)| (*p, s.ledger.next()))
            .collect();
        let scanner = self.poller.lookahead.clone();
        self.lookahead = Some(tokio::task::spawn_blocking(move || {
            lookahead::cancels(&scanner, &from, &held)
        }));
    }

    pub(super) fn on_lookahead(&mut self, found: Result<Vec<Uuid>, JoinError>) {
        self.lookahead = None;
        match found {
            Ok(cancelled) => {
                for id in cancelled {
                    tracing::info!(request = %id, "a cancel read ahead while paused");
                    self.on_cancel(id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "the lookahead failed"),
        }
    }

    pub(super) async fn on_tick(&mut self) {
        if let Some(record) = self.stalled.take() {
            self.on_record(record).await;
        }
        let max_held = self.shared.settings.max_held;
        let held = self.jobs.len();
        metrics::gauge!(m::HELD).set(held as f64);
        metrics::gauge!(m::RUNNING).set(self.tasks.len() as f64);
        if held >= max_held {
            if !self.paused {
                tracing::info!(
                    held,
                    "holding the most requests allowed; pausing the partitions"
                );
            }
            self.paused = true;
            // Again on every tick, for partitions assigned since.
            self.poller.set_paused(true);
        } else if self.paused && held <= max_held * 3 / 4 {
            tracing::info!(held, "resuming the partitions");
            self.paused = false;
            self.poller.set_paused(false);
        }
        if self.paused
            && self.lookahead.is_none()
            && self.last_lookahead.elapsed() >= LOOKAHEAD_EVERY
        {
            self.look_ahead();
        }
        if self.last_prune.elapsed() >= PRUNE_EVERY {
            self.last_prune = Instant::now();
            let window = self.shared.settings.dedup_window;
            for state in self.partitions.values_mut() {
                state.history.prune(state.ledger.low_water(), window);
            }
        }
    }
}
