//! Looking for a message in the log: a takeover of a dead attempt that had decided its event
//! first asks whether that event is already there, so that an acknowledged command is in the
//! log once, not sent again.
//!
//! Where: a keyed message's partition is a pure function of its key
//! ([`crate::placement::partition_of`]). From when: the first offset whose timestamp is at or
//! after the time the attempt stored its decision, less [`SKEW_MARGIN`] (the message's
//! timestamp is the producer's clock, the decision time Postgres'). To where: a mark the search
//! appends to the partition itself, at least [`SETTLE`] after the search began ([`Marks`]).
//! A message with the same key and the same value (the exact bytes) is the same event: keyed
//! events carry ids derived from the idempotency key, and every copy of an event is byte for
//! byte the same.
//!
//! Why a mark and not the partition's high watermark: a consumer reads only below the high
//! watermark, which stands still while an in-sync follower does not fetch (a broker that died
//! and has not yet been dropped from the in-sync replicas, a new leader whose followers have
//! not caught up after an election). The dead attempt's message may be appended above it
//! then, to be committed a moment later: a search that stopped at the high watermark missed
//! it, and the takeover appended a copy right after it (the soak found such pairs on adjacent
//! offsets). The mark is written with `acks=all`, so once it is acknowledged the high
//! watermark has passed it, and with it every message the leader had appended before.
//!
//! The search is bounded, by its caller's time and by [`MAX_MESSAGES`]; one that cannot finish
//! is an error. A transient one ([`LookupError::is_transient`]) refuses the retry, which is
//! tried again; after any other the caller sends the event again (every reader applies a copy
//! once).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gallery_schemas::Position;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::placement::partition_of;
use crate::ports::Encoded;

/// Searching starts this long before the decision time, for the clocks' disagreement.
pub const SKEW_MARGIN: Duration = Duration::from_secs(30);
/// The mark is appended no sooner than this after the search began: a request of the dead
/// process that the leader had received but not yet appended has had this long to be appended.
pub const SETTLE: Duration = Duration::from_millis(250);
/// A mark's transaction, left open by a process that died while marking, is aborted by Kafka
/// after this long; until then `read_committed` readers of its partition wait at it.
pub const MARK_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(20);
/// The header of a mark's record (whose value is empty, never an event).
pub const MARK_HEADER: &str = "gallery-search-mark";
/// Idle mark producers kept for later searches.
const KEEP_IDLE: usize = 4;
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
    marks: &Marks,
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
        .set("bootstrap.servers", &marks.brokers)
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
    let end = marks.mark(topic, partition, &left)?;
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

/// Producers that mark how far a search reads: each appends an empty record (with the header
/// [`MARK_HEADER`]) to the partition inside a Kafka transaction and aborts it once the record
/// is acknowledged by every in-sync replica. Its offset is then below the high watermark, and
/// so is every message the leader appended before it. Readers with `read_committed` (every
/// projector, the painter, the soak's and the tests' log readers) never see a mark; a reader
/// with `read_uncommitted` sees empty records with that header, which it skips.
///
/// Each producer has a transactional id of its own (`gallery-commands-mark-<uuid>`): marks run
/// side by side, each on a producer taken from the idle ones or made for it. A mark that fails
/// (the partition takes no write within the search's time, as while its leader is elected)
/// fails the search; its transaction is then aborted in the background, and Kafka aborts one
/// left open by a process that died after [`MARK_TRANSACTION_TIMEOUT`].
pub(crate) struct Marks {
    brokers: String,
    idle: Arc<Mutex<Vec<MarkProducer>>>,
}

type MarkProducer = BaseProducer<MarkContext>;

/// Keeps the delivery report of a producer's last mark.
#[derive(Default)]
struct MarkContext {
    delivered: Mutex<Option<KafkaResult<i64>>>,
}

impl ClientContext for MarkContext {}

impl ProducerContext for MarkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let offset = match result {
            Ok(m) => Ok(m.offset()),
            Err((e, _)) => Err(e.clone()),
        };
        *self
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(offset);
    }
}

impl Marks {
    pub(crate) fn new(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Marks `topic`/`partition` (see [`Marks`]) and returns the mark's offset.
    fn mark(
        &self,
        topic: &str,
        partition: i32,
        left: &dyn Fn() -> Duration,
    ) -> Result<i64, LookupError> {
        let kafka = |context| {
            move |source| LookupError::Kafka {
                context,
                topic: topic.to_owned(),
                source,
            }
        };
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let producer = match idle {
            Some(p) => p,
            None => {
                let producer: MarkProducer = ClientConfig::new()
                    .set("bootstrap.servers", &self.brokers)
                    .set(
                        "transactional.id",
                        format!("gallery-commands-mark-{}", uuid::Uuid::new_v4().simple()),
                    )
                    .set(
                        "transaction.timeout.ms",
                        MARK_TRANSACTION_TIMEOUT.as_millis().to_string(),
                    )
                    .create_with_context(MarkContext::default())
                    .map_err(kafka("create a mark producer"))?;
                producer
                    .init_transactions(left())
                    .map_err(kafka("start a mark producer's transactions"))?;
                producer
            }
        };
        let marked =
            mark_with(&producer, topic, partition, left).map_err(kafka("mark the partition"));
        if marked.is_ok() {
            keep(&self.idle, producer);
        } else {
            // Its transaction may still be open, holding back readers of committed events:
            // it is aborted on a thread of its own, as soon as the partition takes it, while
            // the search answers now. A producer that cannot abort is dropped.
            let idle = self.idle.clone();
            let aborting = std::thread::Builder::new()
                .name("mark-abort".into())
                .spawn(move || {
                    if producer.abort_transaction(MARK_TRANSACTION_TIMEOUT).is_ok() {
                        keep(&idle, producer);
                    }
                });
            if let Err(e) = aborting {
                tracing::warn!(error = %e, "no thread to abort a failed mark's transaction; Kafka aborts it after its timeout");
            }
        }
        marked
    }
}

/// Keeps `producer` for a later mark, unless enough are kept.
fn keep(idle: &Mutex<Vec<MarkProducer>>, producer: MarkProducer) {
    let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
    if idle.len() < KEEP_IDLE {
        idle.push(producer);
    }
}

fn mark_with(
    producer: &MarkProducer,
    topic: &str,
    partition: i32,
    left: &dyn Fn() -> Duration,
) -> KafkaResult<i64> {
    producer.begin_transaction()?;
    *producer
        .context()
        .delivered
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = None;
    let record = BaseRecord::<(), [u8]>::to(topic)
        .partition(partition)
        .payload(&[])
        .headers(OwnedHeaders::new().insert(Header {
            key: MARK_HEADER,
            value: Some("the end of a takeover's search"),
        }));
    producer.send(record).map_err(|(e, _)| e)?;
    producer.flush(left())?;
    let delivered = producer
        .context()
        .delivered
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let offset = delivered.unwrap_or(Err(KafkaError::Flush(
        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
    )))?;
    producer.abort_transaction(left())?;
    Ok(offset)
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
