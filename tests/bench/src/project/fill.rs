//! Pre-fills the interactions topic with the generated log, as fast as the producer goes (as
//! `produce.rs` does: a window of events in flight, delivery reports polled on the sending
//! thread), with Gallery's codec and producer settings. Each event's partition and offset are
//! kept: the baselines write the positions the projectors remember.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use gallery_commands::{ProducerConfig, producer_client_config};
use gallery_schemas::EventCodec;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use super::workload::Generator;

/// Each event's (partition, offset), by its place in the generated log.
pub type Placed = Vec<(i32, i64)>;

struct Deliveries {
    placed: Mutex<Placed>,
    failure: Mutex<Option<String>>,
    done: std::sync::atomic::AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(m) => {
                let mut placed = self.placed.lock().unwrap_or_else(PoisonError::into_inner);
                placed[index] = (m.partition(), m.offset());
            }
            Err((e, _)) => {
                let mut first = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Produces `events` facts of `generator` to `topic`; returns where each landed.
pub async fn fill(
    brokers: &str,
    codec: &EventCodec,
    topic: &str,
    generator: &mut Generator,
    events: u64,
) -> anyhow::Result<Placed> {
    let config = producer_client_config(&ProducerConfig {
        brokers: brokers.to_owned(),
        delivery_timeout: Duration::from_secs(30),
        queue_capacity: ProducerConfig::DEFAULT_QUEUE_CAPACITY,
        linger: Duration::from_millis(ProducerConfig::DEFAULT_LINGER_MS),
    });
    let n = usize::try_from(events)?;
    let context = Deliveries {
        placed: Mutex::new(vec![(-1, -1); n]),
        failure: Mutex::new(None),
        done: 0.into(),
    };
    let producer: BaseProducer<Deliveries> = config.create_with_context(context)?;
    let started = Instant::now();
    const WINDOW: u64 = 50_000;
    for index in 0..n {
        let event = generator.next_event()?;
        let payload = codec.encode(topic, &event).await?;
        let key = event.key();
        loop {
            let done = producer
                .context()
                .done
                .load(std::sync::atomic::Ordering::Relaxed);
            if index as u64 - done >= WINDOW {
                producer.poll(Duration::from_millis(1));
                continue;
            }
            let record = BaseRecord::with_opaque_to(topic, index)
                .key(&key)
                .payload(&payload);
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        producer.poll(Duration::ZERO);
        if index > 0 && index % 200_000 == 0 {
            eprintln!(
                "fill: {index} events in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    producer.flush(Duration::from_secs(60))?;
    let context = producer.context();
    if let Some(failure) = context
        .failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        anyhow::bail!("pre-filling the topic failed: {failure}");
    }
    let placed = std::mem::take(
        &mut *context
            .placed
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    anyhow::ensure!(
        placed.iter().all(|(p, o)| *p >= 0 && *o >= 0),
        "some events of the pre-fill were never acknowledged"
    );
    eprintln!(
        "fill: {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(placed)
}
