//! The `painter` section of the configuration: the generation worker and its models.
//! Defaults and checks sit next to the fields; a refusal names its key. [`Worker::build`] makes
//! the painter of a role from it.

use std::path::PathBuf;
use std::time::Duration;

use gallery_infra::settings::{Invalid, at_least, between, invalid, name};
use gallery_schemas::{DegradedLimits, Prompt, Topics};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use gallery_schemas::EventCodec;
use object_store::ObjectStore;

use crate::{
    Degradation, DeviceChoice, SourceLimits, TextModel, Worker, WorkerError, WorkerSettings,
    load_painters,
};

/// The `painter` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PainterSettings {
    /// The worker's stable id: its Kafka transactional id (under the topic prefix) and its
    /// static group membership. Unique per live worker; keep it across restarts.
    pub worker_id: String,
    /// The workers' consumer group; unset = `<topic prefix>gpu-workers`, the group whose lag
    /// the command side reads as the generation backlog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Jobs painted at once, each on its own thread.
    pub threads: usize,
    /// Requests held at most (queued and running); the worker stops reading beyond.
    pub max_held: usize,
    /// At most one progress event per job per interval.
    pub progress_interval_ms: u64,
    /// Backlog (held requests plus unread messages) above which jobs are degraded.
    pub backlog_threshold: u64,
    /// Most steps of a degraded job.
    pub degraded_max_steps: u32,
    /// Longest side, in pixels, of a degraded job's picture.
    pub degraded_max_side: u32,
    /// Longest prompt (and negative prompt) a job takes, in characters.
    pub max_prompt_chars: usize,
    /// Messages re-read before the committed offset when taking a partition, to recognise
    /// duplicate requests.
    pub dedup_window: i64,
    /// Longest side of the stored thumbnail, in pixels.
    pub thumbnail_side: u32,
    /// Where the models' weights are (`scripts/models` puts them there).
    pub models_dir: String,
    /// `cpu`, `cuda` or `auto` (a GPU when the build and the machine have one).
    pub device: DeviceChoice,
    /// The text-to-image model, `sd15` or `sdxl-turbo` (weights under `models_dir`); unset,
    /// text-to-image requests fail with `model_unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_to_image: Option<TextModel>,
}

/// Where `scripts/models` puts the weights: `$GALLERY_MODELS_DIR`, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/gallery/models`.
pub fn default_models_dir() -> String {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("GALLERY_MODELS_DIR") {
        return dir.to_string_lossy().into_owned();
    }
    let cache = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(var("HOME").unwrap_or_default()).join(".cache"));
    cache
        .join("gallery")
        .join("models")
        .to_string_lossy()
        .into_owned()
}

impl Default for PainterSettings {
    fn default() -> Self {
        let degraded = DegradedLimits::default();
        Self {
            worker_id: "painter-1".into(),
            group: None,
            threads: 1,
            max_held: 1000,
            progress_interval_ms: 500,
            backlog_threshold: DegradedLimits::DEFAULT_BACKLOG_THRESHOLD,
            degraded_max_steps: degraded.max_steps,
            degraded_max_side: degraded.max_side,
            max_prompt_chars: Prompt::MAX_CHARS,
            dedup_window: 20_000,
            thumbnail_side: 256,
            models_dir: default_models_dir(),
            device: DeviceChoice::Auto,
            text_to_image: None,
        }
    }
}

impl PainterSettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        name("painter.worker_id", &self.worker_id, 1..=100)?;
        if self.group.as_ref().is_some_and(|g| g.trim().is_empty()) {
            return Err(invalid("painter.group", "must not be empty when set"));
        }
        between("painter.threads", self.threads, 1..=64)?;
        between("painter.max_held", self.max_held, 1..=1_000_000)?;
        between(
            "painter.progress_interval_ms",
            self.progress_interval_ms,
            10..=600_000,
        )?;
        at_least("painter.degraded_max_steps", self.degraded_max_steps, 1)?;
        if !(8..=16_384).contains(&self.degraded_max_side) {
            return Err(invalid(
                "painter.degraded_max_side",
                "must be between 8 and 16384 pixels",
            ));
        }
        at_least("painter.max_prompt_chars", self.max_prompt_chars, 1)?;
        at_least("painter.dedup_window", self.dedup_window, 0)?;
        if !(16..=4096).contains(&self.thumbnail_side) {
            return Err(invalid(
                "painter.thumbnail_side",
                "must be between 16 and 4096 pixels",
            ));
        }
        if self.models_dir.trim().is_empty() {
            return Err(invalid("painter.models_dir", "must name a directory"));
        }
        Ok(())
    }

    /// The worker's settings on `brokers`, in the deployment `topics`, taking sources within
    /// `source_limits` (the upload limits).
    pub fn worker_settings(
        &self,
        brokers: String,
        topics: Topics,
        source_limits: SourceLimits,
    ) -> WorkerSettings {
        let group = self.group.clone().unwrap_or_else(|| topics.workers_group());
        WorkerSettings {
            brokers,
            topics,
            worker_id: self.worker_id.clone(),
            group,
            threads: self.threads,
            max_held: self.max_held,
            progress_interval: Duration::from_millis(self.progress_interval_ms),
            commit_interval: Duration::from_secs(1),
            degradation: Degradation {
                backlog_threshold: self.backlog_threshold,
                max_steps: self.degraded_max_steps,
                max_side: self.degraded_max_side,
            },
            max_prompt_chars: self.max_prompt_chars,
            dedup_window: self.dedup_window,
            thumbnail_side: self.thumbnail_side,
            source_limits,
        }
    }
}

/// What a painter shares with the rest of the process.
#[derive(Debug, Clone)]
pub struct PainterDeps {
    pub codec: EventCodec,
    /// Where sources are read and results stored: the process's one image store.
    pub store: Arc<dyn ObjectStore>,
    /// Whether the store keeps each object's content type (as S3 does).
    pub content_types: bool,
}

impl Worker {
    /// The painter of a `painter` role: `worker` (its section on the deployment's brokers and
    /// topics, see [`PainterSettings::worker_settings`]) with the models `settings` names,
    /// loaded from its `models_dir` onto its `device`.
    pub fn build(
        settings: &PainterSettings,
        worker: WorkerSettings,
        deps: PainterDeps,
    ) -> Result<Self, WorkerError> {
        let painters = load_painters(
            std::path::Path::new(&settings.models_dir),
            settings.device,
            settings.text_to_image,
        );
        Worker::new(worker, deps.codec, deps.store, deps.content_types, painters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_make_the_documented_worker() {
        let p = PainterSettings::default();
        assert_eq!(p.validate(), Ok(()));
        let s = p.worker_settings(
            "b:9092".into(),
            Topics::new("gallery."),
            SourceLimits::default(),
        );
        assert_eq!(s.group, "gallery.gpu-workers");
        assert_eq!(s.transactional_id(), "gallery.painter-1");
        assert_eq!((s.threads, s.max_held), (1, 1000));
        assert_eq!(s.max_prompt_chars, Prompt::MAX_CHARS);
        assert_eq!(p.device, DeviceChoice::Auto);
        assert_eq!(p.text_to_image, None);
        let named = PainterSettings {
            group: Some("painters".into()),
            ..PainterSettings::default()
        };
        let s = named.worker_settings(
            String::new(),
            Topics::new("gallery."),
            SourceLimits::default(),
        );
        assert_eq!(s.group, "painters");
    }

    #[test]
    fn a_negative_window_or_no_models_directory_is_refused_with_its_key() {
        let window = PainterSettings {
            dedup_window: -1,
            ..PainterSettings::default()
        };
        assert_eq!(
            window.validate().map_err(|e| e.key),
            Err("painter.dedup_window")
        );
        let models = PainterSettings {
            models_dir: " ".into(),
            ..PainterSettings::default()
        };
        assert_eq!(
            models.validate().map_err(|e| e.key),
            Err("painter.models_dir")
        );
    }
}
