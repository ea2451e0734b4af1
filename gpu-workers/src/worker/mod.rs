//! The generation worker: consumes `GenerationRequested` and `GenerationCancelled` from the
//! generation topic, runs painters on dedicated threads, and emits `GenerationStarted`,
//! throttled `GenerationProgressed` and exactly one terminal event per request
//! (`GenerationCompleted`, `GenerationFailed` or `GenerationCancelConfirmed`).
//!
//! # Exactly one terminal event per request
//!
//! 1. **One transactional producer per worker.** Its `transactional.id` is the worker's
//!    stable id (under the deployment's topic prefix). Starting it (`init_transactions`)
//!    aborts whatever the previous incarnation left open and fences it: a zombie can no
//!    longer commit. One session task runs the transactions one after another; each carries
//!    every pending event (started, progress, terminals) **and the consumer's offsets**, sent
//!    with the consumer's group metadata, so a member of a stale group generation cannot
//!    commit either (KIP-447). Readers use `read_committed`: an aborted transaction's events
//!    are never seen, a committed one's events and offsets are seen together.
//! 2. **The committed offset is a low-water mark** ([`ledger`]): per partition, the offset
//!    of the oldest held request whose terminal is neither committed nor in the transaction
//!    being committed, else the next offset to read. So a request below the committed offset
//!    always has a committed terminal, and one at or above it may or may not.
//! 3. **Catch-up before work** ([`history`]). A terminal goes to its request's partition
//!    (same key, explicit partition), after the request. When a worker is given a partition,
//!    its rebalance callback fetches the committed offset (with `read_committed` this waits
//!    while a transaction carrying offsets of the partition is open), then scans the
//!    partition up to its last stable offset, recording every request that already has a
//!    terminal, before a single message of the partition reaches the session. Those requests
//!    are skipped when read again; so is a request id seen before (a retried command), within
//!    a window of messages scanned before the committed offset.
//! 4. **Revocation drops everything of the partition**: held and running jobs and their
//!    pending events; nothing more is written for it. A transaction already under way either
//!    commits before the new owner fetches the offsets (which then wait for it, and its
//!    terminals are below the last stable offset the new owner scans) or is fenced by the new
//!    group generation and aborted. Static membership (`group.instance.id` = the worker id)
//!    gives a restarted worker its partitions back without a rebalance.
//! 5. **A failed transaction**: when abortable, it is aborted and its events are sent again
//!    (minus those of partitions revoked meanwhile); when fatal or fenced, the session is torn
//!    down and a new one starts from the committed offsets, exactly like after a crash.
//!
//! A message that is not a generation event is dead-lettered the same way: its copy goes to
//! the dead-letter topic in the transaction that commits the offsets past it, so it is
//! dead-lettered once whatever happens to the worker.
//!
//! A crash (or SIGKILL) at any point leaves either a committed transaction (its terminals and
//! the offsets past them) or nothing of it; the next owner redoes exactly the requests at or
//! above the committed offset that have no committed terminal. Results are content-addressed
//! and stored put-if-absent, and painters are deterministic, so a re-run stores no new
//! object.

mod busy;
pub mod cache_key;
mod consumer;
pub mod degrade;
pub mod diffusion_painter;
mod emitter;
mod error;
mod events;
pub mod history;
pub mod ids;
pub mod images;
mod job;
pub mod ledger;
mod lookahead;
pub mod models;
pub mod painter;
mod plan;
mod pool;
mod scanner;
pub mod scheduler;
mod session;
pub mod store;
pub mod style_painter;
pub mod throttle;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gallery_infra::Backoff;
use gallery_schemas::{EventCodec, Topics};
use object_store::ObjectStore;
use tokio::sync::mpsc::unbounded_channel;

pub use degrade::Degradation;
pub use diffusion_painter::DiffusionPainter;
pub use error::WorkerError;
pub use images::SourceLimits;
pub use models::{DeviceChoice, TextModel, load_painters};
pub use painter::{
    FailureCode, PaintError, PaintJob, PaintParams, Painter, Painters, Progress, Rejection,
};
pub use style_painter::StylePainter;

use consumer::{ConsumerSettings, Poller};
use emitter::Emitter;
use job::JobEnv;
use pool::PaintPool;
use session::{Session, Shared};
use store::ResultStore;

/// How often the utilisation and device gauges are sampled.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples the paint threads' utilisation and the device's memory into their gauges, every
/// [`GAUGE_INTERVAL`], until aborted.
async fn sample_gauges(busy: Arc<busy::BusyClock>, device: Option<candle_core::Device>) {
    use crate::metrics as m;
    metrics::gauge!(m::THREADS).set(busy.threads() as f64);
    if let Some(device) = &device {
        let info = crate::device::describe(device);
        metrics::gauge!(
            m::DEVICE_INFO,
            "kind" => info.kind,
            "ordinal" => info.ordinal.to_string(),
            "name" => info.name,
        )
        .set(1.0);
    }
    let mut utilisation = busy::Utilisation::new();
    let mut tick = tokio::time::interval(GAUGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(share) = utilisation.sample(&busy, std::time::Instant::now()) {
            metrics::gauge!(m::UTILISATION).set(share);
        }
        if let Some(memory) = device.as_ref().and_then(crate::device::memory) {
            // Bytes as a float gauge: exact up to 2^53 bytes.
            #[allow(clippy::cast_precision_loss)]
            {
                metrics::gauge!(m::DEVICE_MEMORY_USED).set(memory.used_bytes as f64);
                metrics::gauge!(m::DEVICE_MEMORY_TOTAL).set(memory.total_bytes as f64);
            }
        }
    }
}

/// Aborts a task when dropped (the gauge sampler ends with the worker).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub brokers: String,
    pub topics: Topics,
    /// The worker's stable id: its transactional id (under the topic prefix) and its static
    /// group member id. Two live workers must not share it.
    pub worker_id: String,
    /// The consumer group of the workers on the generation topic.
    pub group: String,
    /// Jobs running at once, each on its own paint thread.
    pub threads: usize,
    /// Requests held at most (queued and running); beyond, the partitions are paused.
    pub max_held: usize,
    /// At most one progress event per job per interval.
    pub progress_interval: Duration,
    /// How often offsets are committed when no event is due.
    pub commit_interval: Duration,
    pub degradation: Degradation,
    /// Longest prompt (and negative prompt) a job takes, in characters.
    pub max_prompt_chars: usize,
    /// Messages scanned before the committed offset on assignment: a duplicate request
    /// within that window is recognised.
    pub dedup_window: i64,
    /// Longest side of the stored thumbnail, in pixels.
    pub thumbnail_side: u32,
    pub source_limits: SourceLimits,
}

impl WorkerSettings {
    /// The defaults (of the `painter` section), for `worker_id` on `brokers`, in the
    /// deployment `topics`.
    pub fn new(brokers: String, topics: Topics, worker_id: String) -> Self {
        crate::settings::PainterSettings {
            worker_id,
            ..crate::settings::PainterSettings::default()
        }
        .worker_settings(brokers, topics, SourceLimits::default())
    }

    /// The producer's `transactional.id`: the worker id under the deployment's prefix, so
    /// deployments sharing a cluster never fence each other.
    pub fn transactional_id(&self) -> String {
        format!("{}{}", self.topics.prefix(), self.worker_id)
    }
}

/// A generation worker. Cheap to start; [`Worker::run`] does the work.
#[derive(Debug)]
pub struct Worker {
    shared: Arc<Shared>,
}

impl Worker {
    /// A worker storing results in `store` (`content_types`: keep each object's content type,
    /// as S3 can), painting with `painters`.
    pub fn new(
        settings: WorkerSettings,
        codec: EventCodec,
        store: Arc<dyn ObjectStore>,
        content_types: bool,
        painters: Painters,
    ) -> Result<Self, WorkerError> {
        let pool = PaintPool::new(settings.threads).map_err(WorkerError::Threads)?;
        let env = Arc::new(JobEnv {
            pool,
            store: ResultStore::new(store, content_types),
            source_limits: settings.source_limits,
            progress_interval: settings.progress_interval,
            thumbnail_side: settings.thumbnail_side,
        });
        Ok(Self {
            shared: Arc::new(Shared {
                settings,
                codec,
                painters,
                env,
            }),
        })
    }

    /// Runs sessions until `shutdown` resolves; a failed session is followed by a new one
    /// from the committed offsets, after a pause.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let shutdown = std::pin::pin!(shutdown);
        let mut shutdown = shutdown;
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let settings = &self.shared.settings;
        tracing::info!(
            worker = %settings.transactional_id(),
            group = %settings.group,
            threads = settings.threads,
            "painter starting"
        );
        let gauges = tokio::spawn(sample_gauges(
            self.shared.env.pool.busy().clone(),
            self.shared.painters.device().cloned(),
        ));
        let _gauges = AbortOnDrop(gauges);
        loop {
            let opened = tokio::select! {
                () = shutdown.as_mut() => return,
                opened = self.open() => opened,
            };
            match opened {
                Ok(session) => match session.run(&mut shutdown).await {
                    Ok(()) => {
                        tracing::info!("painter stopped");
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, source = ?std::error::Error::source(&e), pause = ?backoff.pause(), "painter session failed; starting again from the committed offsets")
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, source = ?std::error::Error::source(&e), pause = ?backoff.pause(), "painter session could not start")
                }
            }
            if !backoff.wait(shutdown.as_mut()).await {
                return;
            }
        }
    }

    /// A new producer (fencing the previous incarnation), then the consumer.
    async fn open(&self) -> Result<Session, WorkerError> {
        let settings = &self.shared.settings;
        let topic = settings.topics.generation();
        let (brokers, transactional_id) = (settings.brokers.clone(), settings.transactional_id());
        let emitter = {
            let topic = topic.clone();
            let dead_letters = settings.topics.dead_letters();
            tokio::task::spawn_blocking(move || {
                Emitter::start(&brokers, &transactional_id, &topic, &dead_letters)
            })
            .await
            .map_err(WorkerError::Task)??
        };
        let (tx, rx) = unbounded_channel();
        let poller = Poller::start(
            ConsumerSettings {
                brokers: settings.brokers.clone(),
                topic,
                group: settings.group.clone(),
                instance_id: settings.transactional_id(),
                dedup_window: settings.dedup_window,
            },
            self.shared.codec.clone(),
            tx,
        )?;
        Ok(Session::new(self.shared.clone(), poller, emitter, rx))
    }
}
