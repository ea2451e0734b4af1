//! Kafka clients of the tests: a producer of raw messages and a reader of a deployment's
//! topics, configured once.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::TestEnv;

/// A producer to the Kafka at `brokers`, as the command side writes: idempotent, each message
/// acknowledged by every in-sync replica.
pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap()
}

/// Sends `payload` with `key` to `topic`, on `partition` or the one the key is placed on, and
/// returns where it landed.
pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: &[u8],
    payload: &[u8],
) -> (i32, i64) {
    let mut record = FutureRecord::to(topic).key(key).payload(payload);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    let d = producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    (d.partition, d.offset)
}

/// A reader of `env`'s topics, to subscribe: from the earliest offset, committed events only,
/// in a group of its own (`<topic prefix><name>`) that commits nothing, so a reader made again
/// reads from the start again.
pub fn reader(env: &TestEnv, name: &str) -> StreamConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", &env.config.kafka.brokers)
        .set(
            "group.id",
            format!("{}{name}", env.config.kafka.topic_prefix),
        )
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}
