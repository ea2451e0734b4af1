//! Looking for a message in the log: a takeover of a dead attempt that had decided its event
//! first asks whether that event is already there, so that an acknowledged command is in the
//! log once, not sent again.
//!
//! Where: a keyed message's partition is a pure function of its key
//! ([`crate::placement::partition_of`]). From when: the first offset whose timestamp is at or
//! after the time the attempt stored its decision, less [`SKEW_MARGIN`] (the message's
//! timestamp is the producer's clock, the decision time Postgres'). To where: the partition's
//! end (high watermark) taken at least [`SETTLE`] after the search began. A message with the
//! same key and the same value (the exact bytes) is the same event: keyed events carry ids
//! derived from the idempotency key, and every copy of an event is byte for byte the same.
//!
//! The search is bounded, by its caller's time and by [`MAX_MESSAGES`]; one that cannot finish
//! is an error. A transient one ([`LookupError::is_transient`]) refuses the retry, which is
//! tried again; after any other the caller sends the event again (every reader applies a copy
//! once).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gallery_schemas::Position;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::placement::partition_of;
use crate::service::Encoded;

/// Searching starts this long before the decision time, for the clocks' disagreement.
pub const SKEW_MARGIN: Duration = Duration::from_secs(30);
/// The partition's end is read no sooner than this after the search began: a request of the
/// dead process that the leader had received but not yet replicated has had this long to be
/// appended and replicated.
pub const SETTLE: Duration = Duration::from_millis(250);
/// At most this many messages are read.
pub const MAX_MESSAGES: u64 = 100_000;

/// Why the log could not be searched to the end.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("kafka: {context} ({topic})")]
    Kafka {
        context: &'static str,
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// The metadata names no partition of the topic.
    #[error("topic {topic} has no partitions")]
    NoPartitions { topic: String },
    /// An empty message key is placed at random.
    #[error("the message key is empty: its partition is random")]
    NoPlacement,
    #[error("not done within {} ms ({read} messages read)", bound.as_millis())]
    TimedOut { bound: Duration, read: u64 },
    #[error("more than {MAX_MESSAGES} messages to read")]
    TooMany,
    #[error("the search thread stopped")]
    Stopped(#[source] tokio::task::JoinError),
}

impl LookupError {
    /// True when the same search may succeed a moment later (Kafka unreachable or slow, as
    /// during a leader election); false when it cannot be done at all.
    pub fn is_transient(&self) -> bool {
        match self {
            LookupError::Kafka { .. } | LookupError::TimedOut { .. } | LookupError::Stopped(_) => {
                true
            }
            LookupError::NoPartitions { .. } | LookupError::NoPlacement | LookupError::TooMany => {
                false
            }
        }
    }
}

/// Where `message` is in the log, if a copy was written at `since` or later (see the module
/// documentation); blocking, for at most `bound`.
pub(crate) fn find(
    brokers: &str,
    message: &Encoded,
    since: SystemTime,
    bound: Duration,
) -> Result<Option<Position>, LookupError> {
    let started = Instant::now();
    let deadline = started + bound;
    let left = || deadline.saturating_duration_since(Instant::now());
    let topic = message.topic.as_str();
    let kafka = |context| {
        move |source| LookupError::Kafka {
            context,
            topic: topic.to_owned(),
            source,
        }
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // Partitions are assigned, never subscribed, and nothing is committed.
        .set("group.id", "gallery-commands-lookup")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // Command topics have no transactions; the generation topic has the painter's, whose
        // open ones must not hold the search back (their messages never match anyway).
        .set("isolation.level", "read_uncommitted")
        .create()
        .map_err(kafka("create the search consumer"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), left())
        .map_err(kafka("read the topic's metadata"))?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    if count == 0 {
        return Err(LookupError::NoPartitions {
            topic: topic.to_owned(),
        });
    }
    let partition = partition_of(message.key.as_bytes(), count).ok_or(LookupError::NoPlacement)?;

    std::thread::sleep(SETTLE.saturating_sub(started.elapsed()).min(left()));
    let (_, end) = consumer
        .fetch_watermarks(topic, partition, left())
        .map_err(kafka("read the partition's end"))?;
    let mut from = TopicPartitionList::new();
    from.add_partition_offset(topic, partition, Offset::Offset(millis(since)))
        .map_err(kafka("name the partition"))?;
    let from = consumer
        .offsets_for_times(from, left())
        .map_err(kafka("find the offset of the decision time"))?;
    let start = match from.find_partition(topic, partition) {
        Some(p) => {
            p.error()
                .map_err(kafka("find the offset of the decision time"))?;
            match p.offset() {
                Offset::Offset(o) => o,
                // No message that late: there is nothing to read.
                _ => end,
            }
        }
        None => end,
    };
    if start >= end {
        return Ok(None);
    }

    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(start))
        .map_err(kafka("name the partition"))?;
    consumer
        .assign(&assignment)
        .map_err(kafka("assign the partition"))?;
    let mut read = 0;
    loop {
        let wait = left();
        if wait.is_zero() {
            return Err(LookupError::TimedOut { bound, read });
        }
        let m = match consumer.poll(wait.min(Duration::from_millis(100))) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(None),
            Some(Err(e)) => return Err(kafka("read the partition")(e)),
            Some(Ok(m)) => m,
        };
        if m.offset() >= end {
            return Ok(None);
        }
        if m.key() == Some(message.key.as_bytes()) && m.payload() == Some(&message.payload[..]) {
            return Ok(Some(Position {
                topic: topic.to_owned(),
                partition,
                offset: m.offset(),
            }));
        }
        read += 1;
        if read >= MAX_MESSAGES {
            return Err(LookupError::TooMany);
        }
        if m.offset() + 1 >= end {
            return Ok(None);
        }
    }
}

/// Milliseconds since the epoch of `since` less [`SKEW_MARGIN`] (0 before the epoch).
fn millis(since: SystemTime) -> i64 {
    since
        .checked_sub(SKEW_MARGIN)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_starts_a_margin_before_the_decision() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(
            millis(at),
            1_700_000_000_123 - i64::try_from(SKEW_MARGIN.as_millis()).unwrap_or(0)
        );
        assert_eq!(millis(UNIX_EPOCH), 0);
    }
}
