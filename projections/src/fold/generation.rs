//! Generation jobs, keyed by request id: what was asked, and where the AI painter is with it.
//!
//! A job is created once by its request and then moved on by the user's cancellation and the
//! workers' result events, in log order (they share the request's partition):
//!
//! | status       | reached by                                                          |
//! | ------------ | ------------------------------------------------------------------- |
//! | `requested`  | `GenerationRequested`                                               |
//! | `running`    | `GenerationStarted` (or a first `GenerationProgressed`)             |
//! | `cancelling` | the user cancelled a running job: the worker has not confirmed yet  |
//! | `cancelled`  | the user cancelled before any start, or the worker confirmed a cancel |
//! | `completed`  | `GenerationCompleted`                                               |
//! | `failed`     | `GenerationFailed`                                                  |
//!
//! The user's `GenerationCancelled` is a request: a job not started yet shows `cancelled` at
//! once (as before the workers existed), a running one `cancelling`. Only the worker's terminal
//! event (`Completed`, `Failed`, `CancelConfirmed`) is final: it sets `finished_at`, and from
//! then on nothing moves the job, neither a late or replayed `Started`/`Progressed` nor a
//! second terminal. Before that, a worker's event wins over the user's request: a job the user
//! cancelled before it started but that a worker picked up anyway shows `cancelling` while it
//! runs, and ends as the worker says (a worker may finish before it reads the cancellation).
//!
//! `Started` and `Progressed` repeat after a worker crash (same event ids): a repeated
//! `Started` changes nothing (the first start time and model stay), and progress is the last
//! `Progressed` in log order, so a restarted run shows its steps again from the beginning.
//! Every field is either set by the first event of its kind or by the last one, so folding the
//! same events again (a batch replayed, the log replayed over its own result) changes nothing.

use std::collections::HashMap;

pub use gallery_schemas::JobStatus;
use gallery_schemas::{
    GenerationCancelConfirmed, GenerationCancelled, GenerationCompleted, GenerationFailed,
    GenerationProgressed, GenerationRequested, GenerationStarted, ImageRef,
};
use uuid::Uuid;

/// A result image in object storage, as the read model keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    /// Content-addressed object key, e.g. `images/sha256/<hex>.png`.
    pub key: String,
    pub content_type: String,
    pub width: i32,
    pub height: i32,
    pub size_bytes: i64,
}

impl From<&ImageRef> for StoredImage {
    fn from(i: &ImageRef) -> Self {
        StoredImage {
            key: i.key.clone(),
            content_type: i.content_type.clone(),
            width: i.width,
            height: i.height,
            size_bytes: i.size_bytes,
        }
    }
}

/// Step `step` of `steps` was done at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub step: i32,
    pub steps: i32,
    pub at_ms: i64,
}

/// What a completed job produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    /// The picture as PNG.
    pub image: StoredImage,
    pub webp: StoredImage,
    pub thumbnail: StoredImage,
    /// Served from the workers' result cache, without inference.
    pub cache_hit: bool,
    /// Fewer steps or a smaller size than asked because the backlog was high.
    pub degraded: bool,
    /// Steps actually run.
    pub steps: i32,
    pub duration_ms: i64,
}

/// Why a job failed: a stable machine-readable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub reason: String,
}

/// A row of `generation_jobs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub request_id: Uuid,
    pub user_id: String,
    pub mode: String,
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub style: String,
    pub seed: i64,
    pub steps: i32,
    pub width: i32,
    pub height: i32,
    pub source_image_key: Option<String>,
    pub degraded: bool,
    pub status: JobStatus,
    pub requested_at_ms: i64,
    /// When cancellation was first asked for (or, without a request, confirmed).
    pub cancelled_at_ms: Option<i64>,
    /// When a worker's terminal event arrived; set once, and the job is final from then on.
    pub finished_at_ms: Option<i64>,
    /// The model running (then having run) the job.
    pub model: Option<String>,
    /// When a worker first started it.
    pub started_at_ms: Option<i64>,
    pub progress: Option<Progress>,
    pub result: Option<Box<JobResult>>,
    pub failure: Option<Failure>,
}

impl JobRow {
    /// A new job, as its request describes it.
    pub fn requested(e: &GenerationRequested) -> Self {
        JobRow {
            request_id: e.request_id,
            user_id: e.user_id.as_str().to_owned(),
            mode: e.mode.name().to_owned(),
            prompt: e.prompt.as_ref().map(|p| p.as_str().to_owned()),
            negative_prompt: e.negative_prompt.as_ref().map(|p| p.as_str().to_owned()),
            style: e.style.as_str().to_owned(),
            seed: e.seed,
            steps: e.steps,
            width: e.width,
            height: e.height,
            source_image_key: e.source_image.as_ref().map(|i| i.key.clone()),
            degraded: e.degraded,
            status: JobStatus::Requested,
            requested_at_ms: e.occurred_at,
            cancelled_at_ms: None,
            finished_at_ms: None,
            model: None,
            started_at_ms: None,
            progress: None,
            result: None,
            failure: None,
        }
    }

    /// Whether a worker's terminal event has ended the job: nothing moves it any more.
    pub fn is_final(&self) -> bool {
        self.finished_at_ms.is_some()
    }

    /// A worker is at it: the first start (or progress) moves a waiting job on.
    fn run(&mut self, at_ms: i64) {
        match self.status {
            JobStatus::Requested => self.status = JobStatus::Running,
            // The user cancelled before the start, but a worker runs it: the cancellation is
            // still pending until the worker ends the job.
            JobStatus::Cancelled => self.status = JobStatus::Cancelling,
            _ => {}
        }
        self.started_at_ms.get_or_insert(at_ms);
    }

    fn cancel_requested(&mut self, e: &GenerationCancelled) {
        let next = match self.status {
            JobStatus::Requested => JobStatus::Cancelled,
            JobStatus::Running => JobStatus::Cancelling,
            _ => return,
        };
        self.status = next;
        self.cancelled_at_ms.get_or_insert(e.occurred_at);
    }

    fn started(&mut self, e: &GenerationStarted) {
        self.run(e.occurred_at);
        if self.model.is_none() {
            self.model = Some(e.model.clone());
        }
    }

    fn progressed(&mut self, e: &GenerationProgressed) {
        self.run(e.occurred_at);
        self.progress = Some(Progress {
            step: e.step,
            steps: e.steps,
            at_ms: e.occurred_at,
        });
    }

    fn completed(&mut self, e: &GenerationCompleted) {
        self.status = JobStatus::Completed;
        self.finished_at_ms = Some(e.occurred_at);
        self.model = Some(e.model.clone());
        self.progress = Some(Progress {
            step: e.steps,
            steps: e.steps,
            at_ms: e.occurred_at,
        });
        self.result = Some(Box::new(JobResult {
            image: StoredImage::from(&e.image),
            webp: StoredImage::from(&e.webp),
            thumbnail: StoredImage::from(&e.thumbnail),
            cache_hit: e.cache_hit,
            degraded: e.degraded,
            steps: e.steps,
            duration_ms: e.duration_ms,
        }));
    }

    fn failed(&mut self, e: &GenerationFailed) {
        self.status = JobStatus::Failed;
        self.finished_at_ms = Some(e.occurred_at);
        self.failure = Some(Failure {
            code: e.code.clone(),
            reason: e.reason.clone(),
        });
    }

    fn cancel_confirmed(&mut self, e: &GenerationCancelConfirmed) {
        self.status = JobStatus::Cancelled;
        self.finished_at_ms = Some(e.occurred_at);
        self.cancelled_at_ms.get_or_insert(e.occurred_at);
        if e.step > 0 || self.progress.is_some() {
            let steps = self.progress.map_or(self.steps, |p| p.steps);
            self.progress = Some(Progress {
                step: e.step,
                steps,
                at_ms: e.occurred_at,
            });
        }
    }

    /// Moves the job on by one of its later events. A final job does not move.
    fn apply(&mut self, fact: &Fact) {
        if self.is_final() {
            return;
        }
        match fact {
            Fact::Requested(_) => {}
            Fact::Cancelled(e) => self.cancel_requested(e),
            Fact::Started(e) => self.started(e),
            Fact::Progressed(e) => self.progressed(e),
            Fact::Completed(e) => self.completed(e),
            Fact::Failed(e) => self.failed(e),
            Fact::CancelConfirmed(e) => self.cancel_confirmed(e),
        }
    }
}

#[derive(Debug, Clone)]
enum Fact {
    Requested(Box<GenerationRequested>),
    Cancelled(GenerationCancelled),
    Started(GenerationStarted),
    Progressed(GenerationProgressed),
    Completed(Box<GenerationCompleted>),
    Failed(GenerationFailed),
    CancelConfirmed(GenerationCancelConfirmed),
}

impl Fact {
    fn request_id(&self) -> Uuid {
        match self {
            Fact::Requested(e) => e.request_id,
            Fact::Cancelled(e) => e.request_id,
            Fact::Started(e) => e.request_id,
            Fact::Progressed(e) => e.request_id,
            Fact::Completed(e) => e.request_id,
            Fact::Failed(e) => e.request_id,
            Fact::CancelConfirmed(e) => e.request_id,
        }
    }
}

/// Generation events of one batch, in log order.
#[derive(Debug, Default)]
pub struct GenerationBatch {
    facts: Vec<Fact>,
}

impl GenerationBatch {
    pub fn add_requested(&mut self, e: &GenerationRequested) {
        self.facts.push(Fact::Requested(Box::new(e.clone())));
    }

    pub fn add_cancelled(&mut self, e: &GenerationCancelled) {
        self.facts.push(Fact::Cancelled(e.clone()));
    }

    pub fn add_started(&mut self, e: &GenerationStarted) {
        self.facts.push(Fact::Started(e.clone()));
    }

    pub fn add_progressed(&mut self, e: &GenerationProgressed) {
        self.facts.push(Fact::Progressed(e.clone()));
    }

    pub fn add_completed(&mut self, e: &GenerationCompleted) {
        self.facts.push(Fact::Completed(Box::new(e.clone())));
    }

    pub fn add_failed(&mut self, e: &GenerationFailed) {
        self.facts.push(Fact::Failed(e.clone()));
    }

    pub fn add_cancel_confirmed(&mut self, e: &GenerationCancelConfirmed) {
        self.facts.push(Fact::CancelConfirmed(e.clone()));
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    /// The jobs the batch is about, sorted.
    pub fn ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self.facts.iter().map(Fact::request_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Applies the batch, in order, to the stored jobs it touches; returns the jobs that
    /// changed, by request id. Events of a job whose request is unknown (it was never written,
    /// or dead-lettered) are left out: there is no job to move.
    pub fn plan(&self, stored: &HashMap<Uuid, JobRow>) -> Vec<JobRow> {
        let mut jobs = stored.clone();
        for fact in &self.facts {
            if let Fact::Requested(e) = fact {
                jobs.entry(e.request_id)
                    .or_insert_with(|| JobRow::requested(e));
            } else if let Some(job) = jobs.get_mut(&fact.request_id()) {
                job.apply(fact);
            }
        }
        let mut changed: Vec<JobRow> = jobs
            .into_values()
            .filter(|j| stored.get(&j.request_id) != Some(j))
            .collect();
        changed.sort_by_key(|j| j.request_id);
        changed
    }
}

#[cfg(test)]
#[path = "generation_tests.rs"]
mod tests;
