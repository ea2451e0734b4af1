//! The Kafka adapter of the write side: an idempotent producer with `acks=all`.

use std::time::Duration;

use gallery_schemas::{CodecError, Event, EventCodec, Position, Topics};
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::service::{EventPublisher, PublishError, PublishFuture};

/// How the producer talks to Kafka.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub brokers: String,
    /// Upper bound on how long a publish may wait for Kafka before failing.
    pub delivery_timeout: Duration,
}

/// Publishes events to their topic, keyed so that related events stay in order.
pub struct KafkaPublisher {
    producer: FutureProducer,
    codec: EventCodec,
    topics: Topics,
    delivery_timeout: Duration,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl KafkaPublisher {
    pub fn new(
        config: &ProducerConfig,
        codec: EventCodec,
        topics: Topics,
    ) -> Result<Self, KafkaError> {
        let timeout_ms = config.delivery_timeout.as_millis().max(1).to_string();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", &timeout_ms)
            .set("linger.ms", "2")
            .set("compression.type", "lz4")
            .create()?;
        Ok(Self {
            producer,
            codec,
            topics,
            delivery_timeout: config.delivery_timeout,
        })
    }

    fn topic_of(&self, event: &Event) -> String {
        self.topics.of(event.stream())
    }

    async fn send(&self, event: &Event) -> Result<Position, PublishError> {
        let topic = self.topic_of(event);
        let payload = self
            .codec
            .encode(&topic, event)
            .await
            .map_err(|e| match e {
                CodecError::RegistryUnavailable { message } => {
                    PublishError::Unavailable { message }
                }
                other => PublishError::Encode {
                    message: other.to_string(),
                },
            })?;
        let key = event.key();
        let record = FutureRecord::to(&topic).key(&key).payload(&payload);
        let delivered = self
            .producer
            .send(record, self.delivery_timeout)
            .await
            .map_err(|(e, _)| PublishError::Unavailable {
                message: e.to_string(),
            })?;
        Ok(Position {
            topic,
            partition: delivered.partition,
            offset: delivered.offset,
        })
    }
}

impl EventPublisher for KafkaPublisher {
    fn publish<'a>(&'a self, event: &'a Event) -> PublishFuture<'a> {
        Box::pin(self.send(event))
    }
}
