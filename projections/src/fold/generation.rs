//! Generation jobs, keyed by request id: a request creates the job once; a cancellation ends a
//! job that is still requested. The AI painter's result events will move jobs on (progress,
//! completed, failed) the same way.

use std::collections::HashMap;

use gallery_schemas::{GenerationCancelled, GenerationMode, GenerationRequested};
use uuid::Uuid;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Requested,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Requested => "requested",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "requested" => Some(JobStatus::Requested),
            "cancelled" => Some(JobStatus::Cancelled),
            _ => None,
        }
    }
}

/// The stored name of a mode.
pub fn mode_name(mode: GenerationMode) -> &'static str {
    match mode {
        GenerationMode::TextToImage => "text_to_image",
        GenerationMode::ImageToImage => "image_to_image",
    }
}

/// The columns of `generation_jobs` this fold owns.
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
    pub cancelled_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
enum Fact {
    Requested(Box<GenerationRequested>),
    Cancelled(GenerationCancelled),
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

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    pub fn ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .facts
            .iter()
            .map(|f| match f {
                Fact::Requested(e) => e.request_id,
                Fact::Cancelled(e) => e.request_id,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Applies the batch to the stored jobs it touches; returns the jobs that changed.
    pub fn plan(&self, stored: &HashMap<Uuid, JobRow>) -> Vec<JobRow> {
        let mut jobs = stored.clone();
        for fact in &self.facts {
            match fact {
                Fact::Requested(e) => {
                    jobs.entry(e.request_id).or_insert_with(|| JobRow {
                        request_id: e.request_id,
                        user_id: e.user_id.as_str().to_owned(),
                        mode: mode_name(e.mode).to_owned(),
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
                    });
                }
                Fact::Cancelled(e) => {
                    if let Some(job) = jobs.get_mut(&e.request_id)
                        && job.status == JobStatus::Requested
                    {
                        job.status = JobStatus::Cancelled;
                        job.cancelled_at_ms = Some(e.occurred_at);
                    }
                }
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
mod tests {
    use super::*;
    use gallery_schemas::{StyleName, UserId};

    #[test]
    fn request_then_cancel_in_any_batching_and_replays_change_nothing() {
        let id = Uuid::now_v7();
        let user = UserId::parse("ada").unwrap_or_else(|e| unreachable!("{e}"));
        let requested = GenerationRequested {
            event_id: Uuid::now_v7(),
            request_id: id,
            user_id: user.clone(),
            mode: GenerationMode::TextToImage,
            prompt: None,
            negative_prompt: None,
            style: StyleName::parse("impressionism").unwrap_or_else(|e| unreachable!("{e}")),
            seed: 1,
            steps: 20,
            width: 512,
            height: 512,
            source_image: None,
            degraded: false,
            occurred_at: 1,
        };
        let cancelled = GenerationCancelled {
            event_id: Uuid::now_v7(),
            request_id: id,
            user_id: user,
            occurred_at: 2,
        };
        let mut one = GenerationBatch::default();
        one.add_requested(&requested);
        one.add_cancelled(&cancelled);
        let rows = one.plan(&HashMap::new());
        assert_eq!(rows[0].status, JobStatus::Cancelled);
        let stored: HashMap<Uuid, JobRow> = [(id, rows[0].clone())].into();
        assert!(one.plan(&stored).is_empty(), "a replay changes nothing");

        let mut first = GenerationBatch::default();
        first.add_requested(&requested);
        let mut stored: HashMap<Uuid, JobRow> = first
            .plan(&HashMap::new())
            .into_iter()
            .map(|j| (j.request_id, j))
            .collect();
        let mut second = GenerationBatch::default();
        second.add_cancelled(&cancelled);
        for j in second.plan(&stored) {
            stored.insert(j.request_id, j);
        }
        assert_eq!(stored[&id], rows[0]);
    }
}
