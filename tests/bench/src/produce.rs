//! The Kafka baseline: the like events Gallery writes (the same Avro bytes, Confluent-framed,
//! keyed by artwork, each with its own event id, user and artwork) produced straight into the
//! deployment's interactions topic with Gallery's producer settings (idempotent, `acks=all`,
//! lz4), no HTTP. They are encoded before the run (the encoding is Gallery's cost, not
//! Kafka's). A window of events in flight, the
//! delivery reports polled on the sending thread, as Kafka's own `ProducerPerformance` does:
//! what the broker and librdkafka take on this machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use gallery_commands::decide::interactions as rules;
use gallery_commands::{ProducerConfig, producer_client_config};
use gallery_schemas::{ArtworkId, EventCodec, RegistryConfig, Topics, UserId};
use hdrhistogram::Histogram;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};

use crate::latency::{self, Latencies};
use crate::load::{LoadReport, Workload, artwork_name, user_name};

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    registry_url: String,
    #[arg(long)]
    topic_prefix: String,
    /// Events sent and not yet acknowledged, at most.
    #[arg(long)]
    in_flight: usize,
    #[arg(long)]
    seconds: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    #[arg(long)]
    users: u64,
    #[arg(long)]
    artworks: u64,
    /// The producer's `linger.ms` (the command service's `kafka.producer_linger_ms`).
    #[arg(long, default_value_t = ProducerConfig::DEFAULT_LINGER_MS)]
    linger_ms: u64,
    /// Distinct events encoded before the run and sent in turn: many more than a batch
    /// holds, so that compression meets no repeated event within a batch.
    #[arg(long, default_value_t = 262_144)]
    distinct: u64,
}

/// Counts acknowledgements; the latency of those sent within the measured window.
struct Deliveries {
    acked: AtomicU64,
    failed: AtomicU64,
    window: (Instant, Instant),
    measured: AtomicU64,
    histogram: Mutex<Histogram<u64>>,
    first_failure: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Self::DeliveryOpaque) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                let (from, to) = self.window;
                if *sent >= from && *sent < to {
                    self.measured.fetch_add(1, Ordering::Relaxed);
                    let mut h = self
                        .histogram
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    latency::record(&mut h, sent.elapsed());
                }
            }
            Err((e, message)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self
                    .first_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                first.get_or_insert_with(|| format!("{e} (partition {})", message.partition()));
            }
        }
    }
}

/// The framed events and their keys.
fn encode(args: &ProduceArgs, topic: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let codec = EventCodec::new(&RegistryConfig {
        url: args.registry_url.clone(),
        timeout: Duration::from_secs(10),
    })?;
    let workload = Workload {
        users: args.users.max(1),
        artworks: args.artworks.max(1),
    };
    runtime.block_on(async {
        let mut out = Vec::new();
        for i in 0..args.distinct.max(1) {
            let (user, artwork) = workload.pair(i);
            let user = UserId::parse(&user_name(user))?;
            let artwork = ArtworkId::parse(&artwork_name(artwork))?;
            let now = i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis(),
            )?;
            let event = rules::like(&user, &artwork, true, uuid::Uuid::now_v7(), now);
            out.push((event.key(), codec.encode(topic, &event).await?));
        }
        anyhow::Ok(out)
    })
}

pub fn run(args: &ProduceArgs) -> anyhow::Result<()> {
    let topic = Topics::new(args.topic_prefix.clone()).interactions();
    let events = encode(args, &topic)?;
    let config: ClientConfig = producer_client_config(&ProducerConfig {
        brokers: args.brokers.clone(),
        delivery_timeout: Duration::from_secs(10),
        queue_capacity: ProducerConfig::DEFAULT_QUEUE_CAPACITY,
        linger: Duration::from_millis(args.linger_ms),
    });
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.seconds);
    let context = Deliveries {
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        window: (measure_from, end),
        measured: AtomicU64::new(0),
        histogram: Mutex::new(latency::histogram()?),
        first_failure: Mutex::new(None),
    };
    let producer: BaseProducer<Deliveries> = config.create_with_context(context)?;
    let window = u64::try_from(args.in_flight.max(1))?;
    let mut sent: u64 = 0;
    let mut next = events.iter().cycle();
    while Instant::now() < end {
        let done = {
            let c = producer.context();
            c.acked.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed)
        };
        while sent - done < window {
            let Some((key, payload)) = next.next() else {
                break;
            };
            let record = BaseRecord::with_opaque_to(&topic, Box::new(Instant::now()))
                .key(key)
                .payload(payload);
            match producer.send(record) {
                Ok(()) => sent += 1,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => break,
                Err((e, _)) => return Err(e.into()),
            }
        }
        producer.poll(Duration::from_millis(1));
    }
    producer.flush(Duration::from_secs(15))?;
    let c = producer.context();
    let ok = c.measured.load(Ordering::Relaxed);
    let failed = c.failed.load(Ordering::Relaxed);
    let histogram = c.histogram.lock().unwrap_or_else(PoisonError::into_inner);
    let report = LoadReport {
        sent,
        ok,
        failures: if failed > 0 {
            [("delivery failed".to_owned(), failed)].into()
        } else {
            Default::default()
        },
        first_failure: c
            .first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
        window_secs: args.seconds,
        rps: ok as f64 / args.seconds,
        latency: Latencies::of(&histogram),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
