//! The Kafka adapter of the write side: an idempotent producer with `acks=all` that fails
//! fast when Kafka cannot take an event.
//!
//! Back-pressure, in order: while every broker is known to be down, a publish is refused
//! before anything is queued; a full producer queue refuses at once (zero queue timeout);
//! otherwise the publish waits for the acknowledgement, at most the delivery timeout.
//! Broker reachability comes from librdkafka's error callback and a metadata probe: the
//! callback's `AllBrokersDown` marks Kafka down at once; a transport failure (a connection
//! lost or refused) wakes the probe, and a failed probe then marks Kafka down; a successful
//! probe marks it up again. The probe also runs every [`PROBE_EVERY`], so a returning Kafka
//! is noticed within a second. Probes that merely go unanswered, with every connection
//! intact, mark Kafka down only once they have failed for [`UNANSWERED_FOR`]: a busy machine
//! (a CPU-bound process beside the broker, a garbage-collecting broker) delays answers for a
//! moment without losing a broker, and refusing commands then would be a false alarm. The
//! probe runs on a thread of its own, never behind the async runtime's tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use gallery_schemas::{CodecError, Event, EventCodec, Position, Topics};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};

use crate::lookup::{LookupError, Marks};
use crate::ports::{
    DecodeFuture, EncodeFuture, Encoded, EventPublisher, FindFuture, PublishError, PublishFuture,
};
use gallery_schemas::settings::KafkaSettings;

/// How often the health probe asks Kafka for metadata.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long one probe may wait for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long probes must go unanswered, with no connection failing, before Kafka counts as
/// down.
pub const UNANSWERED_FOR: Duration = Duration::from_secs(3);

/// What the probe concludes from its answers (pure, so it is tested without a broker).
#[derive(Debug, Default)]
struct Verdict {
    /// Since when the probes have failed, and how many in a row.
    failing: Option<(Instant, u32)>,
}

impl Verdict {
    /// Takes one probe's outcome; true when Kafka is to be marked down. A failed probe
    /// after a connection failed is enough; unanswered probes alone need two in a row
    /// spanning [`UNANSWERED_FOR`].
    fn failed(&mut self, now: Instant, transport_failed: bool) -> bool {
        let (since, count) = self.failing.get_or_insert((now, 0));
        *count = count.saturating_add(1);
        transport_failed || (*count >= 2 && now.duration_since(*since) >= UNANSWERED_FOR)
    }

    fn answered(&mut self) {
        self.failing = None;
    }
}

/// How the producer talks to Kafka.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub brokers: String,
    /// Upper bound on how long a publish may wait for Kafka before failing.
    pub delivery_timeout: Duration,
    /// Events the producer may hold unacknowledged; one more is refused at once.
    pub queue_capacity: u32,
    /// How long an event may wait for others to share its batch (`linger.ms`).
    pub linger: Duration,
}

impl ProducerConfig {
    /// librdkafka's default queue capacity.
    pub const DEFAULT_QUEUE_CAPACITY: u32 = KafkaSettings::DEFAULT_QUEUE_MESSAGES;
    /// The default `linger.ms`: a command's event waits at most this long for company.
    pub const DEFAULT_LINGER_MS: u64 = KafkaSettings::DEFAULT_LINGER_MS;
    pub const DEFAULT_LINGER: Duration = Duration::from_millis(Self::DEFAULT_LINGER_MS);
}

/// Whether the producer can currently reach a broker. Shared by the client context (which
/// hears about failures first) and the probe (which hears about recoveries).
#[derive(Debug, Default)]
pub struct BrokerHealth {
    down: AtomicBool,
    /// A connection failed since the last probe: one failed probe is then enough.
    transport_failed: AtomicBool,
    /// Set to wake the probe early.
    wake: Mutex<bool>,
    woken: Condvar,
}

impl BrokerHealth {
    /// True while every broker is known to be unreachable.
    pub fn all_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Records the new state; returns true when it changed.
    fn set_down(&self, down: bool) -> bool {
        self.down.swap(down, Ordering::AcqRel) != down
    }

    fn wake_probe(&self) {
        *self.wake.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.woken.notify_all();
    }

    /// Sleeps until woken or `timeout` passes.
    fn wait_for_probe(&self, timeout: Duration) {
        let guard = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut woken, _) = self
            .woken
            .wait_timeout_while(guard, timeout, |woken| !*woken)
            .unwrap_or_else(PoisonError::into_inner);
        *woken = false;
    }
}

/// Listens to librdkafka's client-level errors.
#[derive(Debug, Clone)]
struct HealthContext {
    health: Arc<BrokerHealth>,
}

impl ClientContext for HealthContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            if self.health.set_down(true) {
                tracing::warn!(reason, "all Kafka brokers are down; refusing commands");
            }
            self.health.wake_probe();
        } else if code == Some(RDKafkaErrorCode::BrokerTransportFailure) {
            tracing::debug!(reason, "Kafka connection failed; probing");
            self.health.transport_failed.store(true, Ordering::Release);
            self.health.wake_probe();
        } else {
            tracing::debug!(error = %error, reason, "Kafka client error");
        }
    }
}

type Inner = FutureProducer<HealthContext>;

/// The producer's librdkafka settings: idempotent, `acks=all`, lz4, a bounded queue. Shared
/// with the benchmark's Kafka baseline, so that it measures the very same producer.
pub fn producer_client_config(config: &ProducerConfig) -> ClientConfig {
    let timeout_ms = config.delivery_timeout.as_millis().max(1).to_string();
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", crate::placement::PARTITIONER)
        .set("message.timeout.ms", &timeout_ms)
        .set("linger.ms", config.linger.as_millis().to_string())
        .set("compression.type", "lz4")
        .set(
            "queue.buffering.max.messages",
            config.queue_capacity.max(1).to_string(),
        )
        // Notice a returning broker within a second, not librdkafka's default 10 s.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000");
    client
}

/// Publishes events to their topic, keyed so that related events stay in order.
pub struct KafkaPublisher {
    producer: Inner,
    codec: EventCodec,
    topics: Topics,
    health: Arc<BrokerHealth>,
    delivery_timeout: Duration,
    stop_probe: Arc<AtomicBool>,
    /// For the searches of the log (see [`crate::lookup`]).
    marks: Arc<Marks>,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher")
            .field("topics", &self.topics)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl Drop for KafkaPublisher {
    fn drop(&mut self) {
        self.stop_probe.store(true, Ordering::Release);
        self.health.wake_probe();
    }
}

impl KafkaPublisher {
    pub fn new(
        config: &ProducerConfig,
        codec: EventCodec,
        topics: Topics,
    ) -> Result<Self, KafkaError> {
        let health = Arc::new(BrokerHealth::default());
        let producer = Inner::from_config_and_context(
            &producer_client_config(config),
            HealthContext {
                health: health.clone(),
            },
        )?;
        let stop_probe = Arc::new(AtomicBool::new(false));
        let probe = Probe {
            producer: producer.clone(),
            health: health.clone(),
            topic: topics.interactions(),
            stop: stop_probe.clone(),
        };
        thread::Builder::new()
            .name("kafka-health".into())
            .spawn(move || probe.run())
            .map_err(|e| KafkaError::ClientCreation(format!("health probe thread: {e}")))?;
        Ok(Self {
            producer,
            codec,
            topics,
            health,
            delivery_timeout: config.delivery_timeout,
            stop_probe,
            marks: Arc::new(Marks::new(&config.brokers)),
        })
    }

    /// Broker reachability as the producer sees it.
    pub fn health(&self) -> Arc<BrokerHealth> {
        self.health.clone()
    }

    async fn encode(&self, event: &Event) -> Result<Encoded, PublishError> {
        if self.health.all_down() {
            return Err(PublishError::BrokersDown);
        }
        let topic = self.topics.of(event.stream());
        let payload = self
            .codec
            .encode(&topic, event)
            .await
            .map_err(codec_error)?;
        Ok(Encoded {
            topic,
            key: event.key(),
            payload,
        })
    }

    async fn decode(&self, message: &Encoded) -> Result<Event, PublishError> {
        self.codec
            .decode(Some(&message.payload))
            .await
            .map_err(codec_error)
    }

    /// The outer bound on waiting for one acknowledgement.
    fn acknowledgement_bound(&self) -> Duration {
        self.delivery_timeout.saturating_add(Duration::from_secs(1))
    }

    async fn send(&self, message: &Encoded) -> Result<Position, PublishError> {
        if self.health.all_down() {
            return Err(PublishError::BrokersDown);
        }
        let Encoded {
            topic,
            key,
            payload,
        } = message;
        let record = FutureRecord::to(topic).key(key).payload(payload);
        let delivery = self.producer.send_result(record).map_err(|(e, _)| {
            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
                PublishError::QueueFull
            } else {
                PublishError::Kafka(e)
            }
        })?;
        // librdkafka reports every message within `message.timeout.ms`; the outer bound only
        // guards against a report that never comes.
        let bound = self.acknowledgement_bound();
        let delivered = match tokio::time::timeout(bound, delivery).await {
            Ok(Ok(Ok(delivered))) => delivered,
            Ok(Ok(Err((e, _)))) => {
                // Taken back out of the queue by a purge (every broker down) is no proof
                // that it was never written: the queue holds messages waiting for a retry
                // too, whose first request may have been appended.
                return Err(PublishError::Kafka(e));
            }
            Ok(Err(_canceled)) => {
                return Err(PublishError::ProducerClosed);
            }
            Err(_elapsed) => {
                return Err(PublishError::NoAcknowledgement { waited: bound });
            }
        };
        Ok(Position {
            topic: topic.clone(),
            partition: delivered.partition,
            offset: delivered.offset,
        })
    }
}

fn codec_error(e: CodecError) -> PublishError {
    if e.is_transient() {
        PublishError::Registry(e)
    } else {
        PublishError::Encode(e)
    }
}

impl EventPublisher for KafkaPublisher {
    fn encode<'a>(&'a self, event: &'a Event) -> EncodeFuture<'a> {
        Box::pin(self.encode(event))
    }

    fn send<'a>(&'a self, message: &'a Encoded) -> PublishFuture<'a> {
        Box::pin(self.send(message))
    }

    fn decode<'a>(&'a self, message: &'a Encoded) -> DecodeFuture<'a> {
        Box::pin(self.decode(message))
    }

    /// librdkafka fails a message not acknowledged within `message.timeout.ms` (the delivery
    /// timeout), and the outer bound a second later gives up on a report that never comes.
    fn max_in_flight(&self) -> Duration {
        self.acknowledgement_bound()
    }

    /// Searches the message's partition on a consumer of its own, on a blocking thread, for
    /// at most the delivery timeout.
    fn find<'a>(&'a self, message: &'a Encoded, since: SystemTime) -> FindFuture<'a> {
        let marks = self.marks.clone();
        let message = message.clone();
        let bound = self.delivery_timeout;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || crate::lookup::find(&marks, &message, since, bound))
                .await
                .map_err(LookupError::Stopped)?
        })
    }
}

/// Asks Kafka for metadata every [`PROBE_EVERY`] and when woken: an answer means a broker is
/// reachable. No answer after a failed connection, or twice in a row, means Kafka is down.
struct Probe {
    producer: Inner,
    health: Arc<BrokerHealth>,
    topic: String,
    stop: Arc<AtomicBool>,
}

impl Probe {
    fn run(self) {
        let mut was_down = false;
        let mut verdict = Verdict::default();
        while !self.stop.load(Ordering::Acquire) {
            // Connection failures reported so far are what this probe confirms or clears.
            let transport_failed = self.health.transport_failed.swap(false, Ordering::AcqRel);
            match self
                .producer
                .client()
                .fetch_metadata(Some(&self.topic), PROBE_TIMEOUT)
            {
                Ok(_) => {
                    verdict.answered();
                    if self.health.set_down(false) {
                        tracing::info!("Kafka is reachable again; accepting commands");
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "Kafka health probe failed");
                    // A connection that failed before or during this probe confirms it.
                    let transport_failed = transport_failed
                        || self.health.transport_failed.swap(false, Ordering::AcqRel);
                    if verdict.failed(Instant::now(), transport_failed)
                        && self.health.set_down(true)
                    {
                        tracing::warn!(error = %e, "Kafka does not answer; refusing commands");
                    }
                }
            }
            let down = self.health.all_down();
            if down && !was_down {
                // Fail the queued events now rather than at the delivery timeout; in-flight
                // ones keep waiting for their acknowledgement. A queued event may be one
                // waiting for a retry, written by its first request: a purged send counts as
                // one that may have written (`PublishError::surely_unwritten`).
                self.producer
                    .purge(PurgeConfig::default().queue().non_blocking());
            }
            was_down = down;
            self.health.wait_for_probe(PROBE_EVERY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reports_only_changes() {
        let h = BrokerHealth::default();
        assert!(!h.all_down());
        assert!(h.set_down(true));
        assert!(!h.set_down(true));
        assert!(h.all_down());
        assert!(h.set_down(false));
        assert!(!h.all_down());
    }

    #[test]
    fn a_failed_connection_confirms_at_once() {
        let mut v = Verdict::default();
        assert!(v.failed(Instant::now(), true));
    }

    #[test]
    fn unanswered_probes_need_to_persist_before_kafka_counts_as_down() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut v = Verdict::default();
        // A busy second: probes time out, then one is answered.
        for ms in [0, 750, 1500, 2250] {
            assert!(
                !v.failed(at(ms), false),
                "down after {ms} ms of slow answers"
            );
        }
        v.answered();
        assert!(!v.failed(at(3000), false), "the count starts again");
        assert!(!v.failed(at(5500), false));
        assert!(v.failed(at(6000), false), "3 s of silence is an outage");
    }
}
