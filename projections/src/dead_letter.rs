//! Dead letters: a message a consumer cannot process is copied, unchanged, to the
//! dead-letter topic with why and where it came from in headers, and the consumer goes on.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::error::ProjectionError;

pub use gallery_schemas::dead_letter_headers as headers;

/// One message that could not be processed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: String,
}

/// Writes dead letters durably (idempotent producer, `acks=all`).
pub struct DeadLetterSink {
    producer: FutureProducer,
    topic: String,
    consumer: String,
}

impl std::fmt::Debug for DeadLetterSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterSink")
            .field("topic", &self.topic)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl DeadLetterSink {
    pub fn new(brokers: &str, topic: String, consumer: String) -> Result<Self, ProjectionError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .map_err(ProjectionError::kafka("create dead-letter producer"))?;
        Ok(Self {
            producer,
            topic,
            consumer,
        })
    }

    /// Sends `letter` and waits until Kafka has it.
    pub async fn send(&self, letter: &DeadLetter) -> Result<(), ProjectionError> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: headers::REASON,
                value: Some(letter.reason.as_str()),
            })
            .insert(Header {
                key: headers::TOPIC,
                value: Some(letter.topic.as_str()),
            })
            .insert(Header {
                key: headers::PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: headers::OFFSET,
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: headers::CONSUMER,
                value: Some(self.consumer.as_str()),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = &letter.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = &letter.payload {
            record = record.payload(p.as_slice());
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| ProjectionError::Kafka {
                context: "send dead letter",
                source: e,
            })?;
        tracing::warn!(
            topic = %letter.topic, partition = letter.partition, offset = letter.offset,
            reason = %letter.reason, "message dead-lettered"
        );
        Ok(())
    }
}
