//! A deployment's log read as downstream readers see it (`read_committed`), also on a Kafka
//! cluster whose nodes come and go: questions to the cluster are asked again until one node
//! answers.

use std::collections::HashMap;
use std::time::Duration;

use gallery_schemas::{Event, EventCodec};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use tokio::time::Instant;

use super::TestEnv;

/// Asks `question` of the cluster at `brokers` until it has an answer (`Some`): every 200 ms,
/// for a minute at most. While a node is gone, the metadata may still name it, and what it led
/// has no answer until another node leads.
///
/// The client reads uncommitted (librdkafka's default is `read_committed`), so the watermarks
/// it is given are high watermarks, not last stable offsets: a transaction left open (a mark
/// of a command process killed during a takeover's search, until Kafka aborts it) does not
/// hide what was acknowledged after it.
pub fn ask<T, E: std::fmt::Debug>(
    brokers: &str,
    what: &str,
    question: impl Fn(&BaseConsumer) -> Result<Option<T>, E>,
) -> T {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match question(&consumer) {
            Ok(Some(answer)) => return answer,
            other => assert!(
                Instant::now() < deadline,
                "no answer within a minute: {what}: {:?}",
                other.err()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The end offsets (high watermarks) of `topic`'s partitions: every acknowledged message is
/// below them.
pub fn end_offsets(brokers: &str, topic: &str) -> HashMap<i32, i64> {
    ask(
        brokers,
        &format!("the end offsets of {topic}"),
        |consumer| {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            let ends = metadata.topics()[0]
                .partitions()
                .iter()
                .map(|p| {
                    consumer
                        .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                        .map(|(_, high)| (p.id(), high))
                })
                .collect::<Result<HashMap<_, _>, _>>()?;
            Ok::<_, rdkafka::error::KafkaError>((!ends.is_empty()).then_some(ends))
        },
    )
}

/// One message of the log, decoded.
#[derive(Debug, Clone)]
pub struct Logged {
    pub partition: i32,
    pub offset: i64,
    pub event: Event,
}

/// Every message of `topic` up to its end now, in order per partition, read with
/// `read_committed` (messages of aborted transactions are not there).
pub async fn read(env: &TestEnv, topic: &str) -> Vec<Logged> {
    let codec = EventCodec::new(&env.config.registry()).unwrap();
    let mut out = Vec::new();
    for m in read_raw(&env.config.kafka.brokers, topic) {
        out.push(Logged {
            partition: m.partition,
            offset: m.offset,
            event: codec.decode(Some(&m.value)).await.unwrap(),
        });
    }
    out
}

/// A message of the log, as bytes.
#[derive(Debug, Clone)]
pub struct Raw {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// Every message of `topic` up to its end now, as readers of committed events see it
/// (`read_committed`): transaction markers, and the aborted messages of the painter's
/// transactions and of the takeovers' marks, are skipped. The end is the high watermark, so a
/// transaction still open below it is waited for (Kafka ends it within its timeout), and what
/// was acknowledged after it is read.
pub fn read_raw(brokers: &str, topic: &str) -> Vec<Raw> {
    let ends = end_offsets(brokers, topic);
    let consumer = super::reader_from_start(brokers, topic, ends.keys().copied());
    // The next offset to read; skipped messages are never delivered, so the end is reached
    // when the consumer's position is there.
    let mut next: HashMap<i32, i64> = ends.keys().map(|p| (*p, 0)).collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while next.iter().any(|(p, n)| *n < ends[p]) {
        assert!(Instant::now() < deadline, "read {topic} within 300 s");
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            // Nothing to read: the position may still have passed markers and aborted messages.
            if let Ok(position) = consumer.position() {
                for e in position.elements() {
                    if let (Some(n), rdkafka::Offset::Offset(o)) =
                        (next.get_mut(&e.partition()), e.offset())
                    {
                        *n = (*n).max(o);
                    }
                }
            }
            continue;
        };
        let m = m.unwrap();
        next.insert(m.partition(), m.offset() + 1);
        out.push(Raw {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().unwrap_or_default().to_vec(),
            value: m.payload().unwrap_or_default().to_vec(),
        });
    }
    out
}

/// Every event of `topic` up to its end now (`read_committed`): event id -> the
/// (partition, offset) of each copy.
pub async fn copies(env: &TestEnv, topic: &str) -> HashMap<uuid::Uuid, Vec<(i32, i64)>> {
    let mut out: HashMap<uuid::Uuid, Vec<(i32, i64)>> = HashMap::new();
    for m in read(env, topic).await {
        out.entry(m.event.event_id())
            .or_default()
            .push((m.partition, m.offset));
    }
    out
}
