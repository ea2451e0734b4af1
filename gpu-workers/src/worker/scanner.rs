//! Reading a stretch of a partition outside the group: committed messages only, decoded,
//! handed to a visitor. The catch-up on assignment reads the history before the committed
//! offset with one; the lookahead reads ahead of a paused session for cancels with another.

use std::time::{Duration, Instant};

use gallery_schemas::{Event, EventCodec};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::runtime::Handle;

use super::error::WorkerError;

/// How long a watermark request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A consumer that reads stretches of partitions of one topic, one at a time (blocking).
pub struct Scanner {
    consumer: BaseConsumer,
    topic: String,
    codec: EventCodec,
    runtime: Handle,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Scanner {
    /// A scanner of `topic`; `group` only names it (it never joins nor commits). Decoding
    /// runs on `runtime` (the registry client is async).
    pub fn new(
        brokers: &str,
        group: &str,
        topic: &str,
        codec: EventCodec,
        runtime: Handle,
    ) -> Result<Self, WorkerError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            // librdkafka assigns only with a group id; this consumer never joins nor commits.
            .set("group.id", group)
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(WorkerError::kafka("create a scan consumer"))?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            codec,
            runtime,
        })
    }

    /// The first offset and the last stable offset of `partition` (committed data only).
    pub fn watermarks(&self, partition: i32) -> Result<(i64, i64), WorkerError> {
        self.consumer
            .fetch_watermarks(&self.topic, partition, CALL_TIMEOUT)
            .map_err(WorkerError::kafka("fetch watermarks"))
    }

    /// Reads `[start, end)` of `partition`, handing each event and its offset to `visit`
    /// (messages that are no event are passed over); fails when `end` is not reached within
    /// `timeout`, or the registry stays unreachable that long.
    pub fn scan(
        &self,
        partition: i32,
        start: i64,
        end: i64,
        timeout: Duration,
        mut visit: impl FnMut(i64, &Event),
    ) -> Result<(), WorkerError> {
        if start >= end {
            return Ok(());
        }
        let topic = &self.topic;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(WorkerError::kafka("scan position"))?;
        self.consumer
            .assign(&tpl)
            .map_err(WorkerError::kafka("assign the scan"))?;
        let deadline = Instant::now() + timeout;
        let outcome = loop {
            if Instant::now() > deadline {
                break Err(WorkerError::CatchUpTimedOut {
                    partition,
                    end,
                    timeout,
                });
            }
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let offset = m.offset();
                    if offset >= end {
                        break Ok(());
                    }
                    match self.decode(m.payload(), deadline, partition) {
                        Ok(Some(event)) => visit(offset, &event),
                        Ok(None) => {}
                        Err(e) => break Err(e),
                    }
                    if offset + 1 >= end {
                        break Ok(());
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break Ok(()),
                Some(Err(e)) => tracing::warn!(partition, error = %e, "scan: fetch error"),
                None => {
                    // Transaction markers take offsets but are no messages: the position
                    // says whether the scan is past `end`.
                    let past = self.consumer.position().ok().is_some_and(|p| {
                        matches!(
                            p.find_partition(topic, partition).map(|e| e.offset()),
                            Some(Offset::Offset(o)) if o >= end
                        )
                    });
                    if past {
                        break Ok(());
                    }
                }
            }
        };
        let _ = self.consumer.unassign();
        outcome
    }

    /// Decodes a scanned message; waits out a registry outage until `deadline`.
    fn decode(
        &self,
        payload: Option<&[u8]>,
        deadline: Instant,
        partition: i32,
    ) -> Result<Option<Event>, WorkerError> {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.runtime.block_on(self.codec.decode(payload)) {
                Ok(event) => return Ok(Some(event)),
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    tracing::warn!(partition, error = %e, source = ?std::error::Error::source(&e), "scan: registry unavailable; retrying");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) if e.is_transient() => {
                    return Err(WorkerError::Registry {
                        context: "scanning a partition",
                        source: e,
                    });
                }
                // Not an event: nothing a scan needs (the session dead-letters it).
                Err(_) => return Ok(None),
            }
        }
    }
}
