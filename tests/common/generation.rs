//! Generation requests produced straight to Kafka, the worker's events read back with a
//! `read_committed` consumer, a small deterministic painter, and a worker run in-process.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use gallery::Config;
use gallery_gpu_workers::{
    FailureCode, PaintError, PaintJob, PaintParams, Painter, Painters, Progress, Rejection, Worker,
    WorkerSettings,
};
use gallery_schemas::{
    CodecError, Event, EventCodec, GenerationCancelled, GenerationMode, GenerationRequested,
    ImageRef, Prompt, StyleName, UserId,
};
use image::RgbImage;
use object_store::ObjectStore;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use uuid::Uuid;

/// Produces generation requests and cancellations as the command side would.
pub struct Requests {
    producer: FutureProducer,
    codec: EventCodec,
    pub topic: String,
}

impl Requests {
    pub fn new(config: &Config) -> Self {
        let producer = super::kafka::producer(&config.kafka.brokers);
        Self {
            producer,
            codec: EventCodec::new(&config.registry()).unwrap(),
            topic: config.topics().generation(),
        }
    }

    /// Sends `event` keyed by `request`; returns (partition, offset).
    pub async fn send(&self, request: Uuid, event: &Event) -> (i32, i64) {
        self.send_to(None, request, event).await
    }

    /// Sends `event` keyed by `request` to `partition` (else the key's).
    pub async fn send_to(
        &self,
        partition: Option<i32>,
        request: Uuid,
        event: &Event,
    ) -> (i32, i64) {
        let bytes = self.codec.encode(&self.topic, event).await.unwrap();
        let key = request.to_string();
        let mut record = FutureRecord::to(&self.topic).key(&key).payload(&bytes);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        (delivery.partition, delivery.offset)
    }

    /// Sends raw bytes (not an event) keyed by `request`; returns (partition, offset).
    pub async fn send_raw(&self, request: Uuid, payload: Vec<u8>) -> (i32, i64) {
        let key = request.to_string();
        let delivery = self
            .producer
            .send(
                FutureRecord::to(&self.topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        (delivery.partition, delivery.offset)
    }

    pub async fn request(&self, request: &GenerationRequested) -> (i32, i64) {
        self.send(request.request_id, &request.clone().into()).await
    }

    pub async fn cancel(&self, request: &GenerationRequested) {
        let cancel = GenerationCancelled {
            event_id: Uuid::now_v7(),
            request_id: request.request_id,
            user_id: request.user_id.clone(),
            occurred_at: now_ms(),
        };
        self.send(request.request_id, &cancel.into()).await;
    }
}

pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp() * 1000
}

/// A text-to-image request of `user`.
pub fn text_request(
    user: &str,
    prompt: &str,
    style: &str,
    steps: i32,
    side: i32,
) -> GenerationRequested {
    GenerationRequested {
        event_id: Uuid::now_v7(),
        request_id: Uuid::now_v7(),
        user_id: UserId::parse(user).unwrap(),
        mode: GenerationMode::TextToImage,
        prompt: Some(Prompt::parse(prompt).unwrap()),
        negative_prompt: None,
        style: StyleName::parse(style).unwrap(),
        seed: 7,
        steps,
        width: side,
        height: side,
        source_image: None,
        degraded: false,
        occurred_at: now_ms(),
    }
}

/// An image-to-image request of `user` for `source`.
pub fn photo_request(
    user: &str,
    source: ImageRef,
    style: &str,
    steps: i32,
    side: i32,
) -> GenerationRequested {
    GenerationRequested {
        mode: GenerationMode::ImageToImage,
        prompt: None,
        source_image: Some(source),
        ..text_request(user, "unused", style, steps, side)
    }
}

/// An event read back and where it was.
#[derive(Debug, Clone)]
pub struct Seen {
    pub partition: i32,
    pub offset: i64,
    pub event: Event,
}

impl Seen {
    pub fn request(&self) -> Option<Uuid> {
        Some(match &self.event {
            Event::GenerationRequested(e) => e.request_id,
            Event::GenerationCancelled(e) => e.request_id,
            Event::GenerationStarted(e) => e.request_id,
            Event::GenerationProgressed(e) => e.request_id,
            Event::GenerationCompleted(e) => e.request_id,
            Event::GenerationFailed(e) => e.request_id,
            Event::GenerationCancelConfirmed(e) => e.request_id,
            _ => return None,
        })
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self.event,
            Event::GenerationCompleted(_)
                | Event::GenerationFailed(_)
                | Event::GenerationCancelConfirmed(_)
        )
    }
}

/// Everything committed on the generation topic, read from the start with
/// `isolation.level=read_committed`, as any downstream reader sees it.
pub struct Results {
    consumer: StreamConsumer,
    codec: EventCodec,
    pub seen: Vec<Seen>,
}

impl Results {
    pub fn new(config: &Config) -> Self {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka.brokers)
            // Assigned by hand, never committed: the group only names the client.
            .set("group.id", format!("reader-{}", Uuid::new_v4()))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let topic = config.topics().generation();
        let mut tpl = TopicPartitionList::new();
        for p in 0..config.kafka.partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        Self {
            consumer,
            codec: EventCodec::new(&config.registry()).unwrap(),
            seen: Vec::new(),
        }
    }

    /// Reads until `done(&seen)` holds; panics after `timeout`.
    pub async fn until(&mut self, timeout: Duration, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; seen: {:#?}",
                self.summary()
            );
            let next = {
                let mut stream = self.consumer.stream();
                tokio::time::timeout(left.min(Duration::from_millis(200)), stream.next()).await
            };
            if let Ok(Some(Ok(m))) = next {
                let (partition, offset) = (m.partition(), m.offset());
                let decoded = self.codec.decode(m.payload()).await;
                self.keep(partition, offset, decoded);
            }
        }
    }

    /// Keeps a decoded event; poison put on the topic by a test is the worker's business, not
    /// the reader's.
    fn keep(&mut self, partition: i32, offset: i64, decoded: Result<Event, CodecError>) {
        if let Ok(event) = decoded {
            self.seen.push(Seen {
                partition,
                offset,
                event,
            });
        }
    }

    /// Reads for `quiet` more (to see that nothing else comes).
    pub async fn settle(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        while tokio::time::Instant::now() < deadline {
            let next = {
                let mut stream = self.consumer.stream();
                tokio::time::timeout(Duration::from_millis(100), stream.next()).await
            };
            if let Ok(Some(Ok(m))) = next {
                let (partition, offset) = (m.partition(), m.offset());
                let decoded = self.codec.decode(m.payload()).await;
                self.keep(partition, offset, decoded);
            }
        }
    }

    /// The events about `request`, in order.
    pub fn of(&self, request: Uuid) -> Vec<&Event> {
        self.seen
            .iter()
            .filter(|s| s.request() == Some(request))
            .map(|s| &s.event)
            .collect()
    }

    pub fn terminals(&self, request: Uuid) -> Vec<&Event> {
        self.seen
            .iter()
            .filter(|s| s.request() == Some(request) && s.is_terminal())
            .map(|s| &s.event)
            .collect()
    }

    /// Whether a `GenerationStarted` of `request` was read.
    pub fn has_started(&self, request: Uuid) -> bool {
        self.of(request)
            .iter()
            .any(|e| matches!(e, Event::GenerationStarted(_)))
    }

    pub fn has_terminal(&self, request: Uuid) -> bool {
        !self.terminals(request).is_empty()
    }

    /// Terminal events per request.
    pub fn terminal_counts(&self) -> BTreeMap<Uuid, usize> {
        let mut out = BTreeMap::new();
        for s in self.seen.iter().filter(|s| s.is_terminal()) {
            *out.entry(s.request().unwrap()).or_insert(0) += 1;
        }
        out
    }

    fn summary(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|s| format!("{}@{} {}", s.partition, s.offset, s.event.record_name()))
            .collect()
    }
}

/// The one terminal of `request`, asserting there is exactly one.
pub fn only_terminal(results: &Results, request: Uuid) -> Event {
    let terminals = results.terminals(request);
    assert_eq!(
        terminals.len(),
        1,
        "one terminal for {request}: {terminals:#?}"
    );
    terminals[0].clone()
}

/// A deterministic painter made of image arithmetic: each step blends the picture a little
/// toward its style's colour, then waits `step_delay`. Styles: `warm`, `cool`.
#[derive(Debug)]
pub struct StepPainter {
    pub calls: AtomicUsize,
    pub step_delay: Duration,
}

impl StepPainter {
    pub fn new(step_delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            step_delay,
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn colour(style: &str) -> Option<[u32; 3]> {
        match style {
            "warm" => Some([230, 120, 40]),
            "cool" => Some([40, 110, 220]),
            _ => None,
        }
    }
}

impl Painter for StepPainter {
    fn model(&self) -> &str {
        "test-steps"
    }

    fn weights_digest(&self) -> &str {
        "5d41402abc4b2a76b9719d911017c592aa5d41402abc4b2a76b9719d911017c5"
    }

    fn scheduler(&self) -> &str {
        "linear"
    }

    fn validate(&self, params: &PaintParams) -> Result<(), Rejection> {
        Self::colour(&params.style).map(drop).ok_or_else(|| {
            Rejection::new(
                FailureCode::UnknownStyle,
                format!("unknown style {:?}; known: warm, cool", params.style),
            )
        })
    }

    fn paint(&self, job: &PaintJob, progress: Progress<'_>) -> Result<RgbImage, PaintError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let p = &job.params;
        let colour = Self::colour(&p.style).unwrap_or([0, 0, 0]);
        let seed = p.seed as u32;
        let mut img = match &job.source {
            Some(src) => image::imageops::resize(
                src,
                p.width,
                p.height,
                image::imageops::FilterType::Nearest,
            ),
            None => RgbImage::from_fn(p.width, p.height, |x, y| {
                let v = x
                    .wrapping_mul(31)
                    .wrapping_add(y.wrapping_mul(17))
                    .wrapping_add(seed);
                image::Rgb([(v % 251) as u8, (v / 3 % 241) as u8, (v / 7 % 239) as u8])
            }),
        };
        for step in 1..=p.steps {
            for px in img.pixels_mut() {
                for (channel, target) in px.0.iter_mut().zip(colour) {
                    *channel = ((u32::from(*channel) * 7 + target) / 8) as u8;
                }
            }
            std::thread::sleep(self.step_delay);
            if let ControlFlow::Break(()) = progress(step, p.steps) {
                return Err(PaintError::Cancelled { step });
            }
        }
        Ok(img)
    }
}

/// A worker running in this process until stopped.
pub struct RunningWorker {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningWorker {
    pub fn start(
        config: &Config,
        settings: WorkerSettings,
        store: Arc<dyn ObjectStore>,
        painters: Painters,
    ) -> Self {
        let codec = EventCodec::new(&config.registry()).unwrap();
        let worker = Worker::new(settings, codec, store, false, painters).unwrap();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(worker.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Self { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap();
    }
}

/// Test settings: fast progress and commits.
pub fn worker_settings(config: &Config) -> WorkerSettings {
    WorkerSettings {
        progress_interval: Duration::from_millis(100),
        commit_interval: Duration::from_millis(200),
        ..config.painter_settings()
    }
}

/// Painters with `painter` for both modes.
pub fn both(painter: Arc<StepPainter>) -> Painters {
    Painters::new(Ok(painter.clone()), Ok(painter))
}

/// Every object under the store's directory (relative keys), without the files a write
/// killed before its rename left behind (`<key>#<n>`, see [`staged`]), which readers of the
/// store never see.
pub fn objects(dir: &std::path::Path) -> Vec<String> {
    let mut all = files(dir);
    all.retain(|key| !key.contains('#'));
    all
}

/// The staging files of writes killed before their rename (`<key>#<n>`).
pub fn staged(dir: &std::path::Path) -> Vec<String> {
    let mut all = files(dir);
    all.retain(|key| key.contains('#'));
    all
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

/// The style network's weights under `models_dir`; panics, saying what to run, when
/// `scripts/models` has not put them there.
pub fn require_style_weights(models_dir: &str) {
    let weights = std::path::Path::new(models_dir)
        .join("multistyle26")
        .join("model.safetensors");
    assert!(
        weights.is_file(),
        "{} is missing: run scripts/models first",
        weights.display()
    );
}
