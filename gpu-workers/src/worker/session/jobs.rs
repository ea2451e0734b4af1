//! The session's jobs once held: started on free paint threads in fair order (a job
//! identical to one running waits for it and takes its result), their reports turned into
//! `GenerationStarted`, `GenerationProgressed` and the terminal event, and the job metrics.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{JobState, Outgoing, Session};
use crate::metrics as m;
use crate::worker::events::{self, CompletedHow};
use crate::worker::job::{self, JobSpec, Outcome, Report, Update};
use crate::worker::painter::FailureCode;
use crate::worker::plan::Plan;

impl Session {
    /// Starts queued jobs while paint threads are free, in fair order; a job identical to
    /// one running waits for it.
    pub(super) fn dispatch(&mut self) {
        while self.tasks.len() < self.shared.settings.threads {
            let (jobs, flights) = (&self.jobs, &self.flights);
            let next = self.queue.pop_next(|id| {
                jobs.get(id)
                    .and_then(|j| j.plan.as_ref())
                    .is_some_and(|p| !flights.contains_key(&p.cache_key))
            });
            let Some(id) = next else {
                return;
            };
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            let Some(plan) = &job.plan else {
                continue;
            };
            self.seq += 1;
            let seq = self.seq;
            let cancel = Arc::new(AtomicBool::new(false));
            job.state = JobState::Running {
                seq,
                cancel: cancel.clone(),
            };
            self.flights.insert(plan.cache_key.clone(), seq);
            self.tasks.insert(seq, (id, plan.cache_key.clone()));
            tracing::info!(request = %id, user = %job.request.user_id, "job dispatched");
            let spec = JobSpec {
                seq,
                params: plan.params.clone(),
                source: plan.source.clone(),
                cache_key: plan.cache_key.clone(),
                painter: plan.painter.clone(),
                cancel,
            };
            tokio::spawn(job::run(
                self.shared.env.clone(),
                spec,
                self.updates_tx.clone(),
            ));
        }
    }

    pub(super) fn on_update(&mut self, update: Update) {
        let Some((id, key)) = self.tasks.get(&update.seq).cloned() else {
            return;
        };
        if let Report::Finished(_) = &update.report {
            self.tasks.remove(&update.seq);
            if self.flights.get(&key) == Some(&update.seq) {
                self.flights.remove(&key);
            }
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let current = matches!(&job.state, JobState::Running { seq, .. } if *seq == update.seq);
        if !current {
            return;
        }
        let Some(plan) = &job.plan else {
            return;
        };
        let (partition, offset) = (job.partition, job.offset);
        let (event, terminal) = match update.report {
            Report::Started => (
                events::started(&job.request, &self.transactional_id, plan.painter.model()),
                false,
            ),
            Report::Progress { step, steps } => {
                (events::progressed(&job.request, step, steps), false)
            }
            Report::Finished(outcome) => {
                let event = match outcome {
                    Outcome::Completed {
                        manifest,
                        cache_hit,
                        duration_ms,
                    } => {
                        tracing::info!(request = %id, cache_hit, duration_ms, "completed");
                        count_completed(plan, cache_hit, duration_ms);
                        let how = CompletedHow {
                            cache_hit,
                            degraded: plan.degraded,
                            duration_ms,
                        };
                        events::completed(&job.request, &manifest, how)
                    }
                    Outcome::Failed(rejection) => {
                        tracing::info!(request = %id, code = %rejection.code, reason = %rejection.reason, "failed");
                        count_failure(rejection.code);
                        events::failed(&job.request, &rejection)
                    }
                    Outcome::Cancelled { step } => {
                        tracing::info!(request = %id, step, "cancelled while running");
                        count_finished("cancelled");
                        events::cancel_confirmed(&job.request, step)
                    }
                };
                job.state = JobState::Finished;
                (event, true)
            }
        };
        self.pending.push(Outgoing {
            partition,
            offset,
            request: id,
            event,
            terminal,
        });
    }
}

pub(super) fn count_finished(outcome: &'static str) {
    metrics::counter!(m::JOBS_FINISHED, "outcome" => outcome).increment(1);
}

pub(super) fn count_failure(code: FailureCode) {
    count_finished("failed");
    metrics::counter!(m::JOBS_FAILED, "code" => code.as_str()).increment(1);
}

fn count_completed(plan: &Plan, cache_hit: bool, duration_ms: i64) {
    count_finished("completed");
    if plan.degraded {
        metrics::counter!(m::DEGRADED).increment(1);
    }
    if cache_hit {
        metrics::counter!(m::CACHE_HITS).increment(1);
        return;
    }
    // Milliseconds as seconds: exact enough for a histogram.
    #[allow(clippy::cast_precision_loss)]
    let seconds = duration_ms.max(0) as f64 / 1000.0;
    metrics::histogram!(m::PAINT_SECONDS, "mode" => plan.params.mode.name()).record(seconds);
}
