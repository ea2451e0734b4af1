//! The transactional producer: one per worker, `transactional.id` from the worker's stable
//! id, so a restarted worker fences its previous incarnation when it initialises. Each
//! transaction carries a batch of events and the consumer's offsets (with the consumer's
//! group metadata, so a member of a stale group generation cannot commit: KIP-447).
//! librdkafka's transactional calls block; they run on blocking threads.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::error::WorkerError;

/// How long the broker lets a transaction stay open before aborting it. Short, so that a
/// worker that died mid-transaction holds its partitions' offsets back briefly when another
/// worker takes them over (a restart with the same id aborts it at once).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one transactional call may block.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The first pause before a retried request to the coordinators (librdkafka doubles it on
/// each retry, up to its `retry.backoff.max.ms`); Kafka's Java producer waits 20 ms on
/// `CONCURRENT_TRANSACTIONS`.
const RETRY_BACKOFF_MS: &str = "10";
/// Commits retried in place on a retriable error before the transaction is aborted.
const COMMIT_ATTEMPTS: u32 = 3;

/// How long each wait for delivery reports lasts while a transaction settles.
const SETTLE_POLL: Duration = Duration::from_millis(1);

/// One message of a transaction.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub to: Destination,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, String)>,
}

/// Where a message of a transaction goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The generation topic, on the partition of the request it answers.
    Generation { partition: i32 },
    /// The dead-letter topic (partitioned by key).
    DeadLetters,
}

/// Everything one transaction writes.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub records: Vec<OutRecord>,
    /// Next offset to read, per partition of the consumed topic.
    pub offsets: Vec<(i32, i64)>,
}

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// Aborted: nothing of it is visible; the events may be sent again.
    #[error("transaction aborted")]
    Aborted(#[source] KafkaError),
    /// The consumer is not a group member right now (rebalancing): nothing was sent.
    #[error("the consumer has no group membership to commit offsets with")]
    NotInGroup,
    /// The producer cannot go on (fenced, or a fatal error): tear the session down.
    #[error("transactional producer failed")]
    Fatal(#[source] KafkaError),
}

/// The worker's transactional producer.
pub struct Emitter {
    producer: BaseProducer,
    topic: String,
    dead_letters: String,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("topic", &self.topic)
            .field("dead_letters", &self.dead_letters)
            .finish_non_exhaustive()
    }
}

impl Emitter {
    /// Creates the producer and initialises transactions (blocking): any transaction the
    /// previous incarnation with the same id left open is aborted, and it is fenced.
    pub fn start(
        brokers: &str,
        transactional_id: &str,
        topic: &str,
        dead_letters: &str,
    ) -> Result<Self, WorkerError> {
        let timeout_ms = TRANSACTION_TIMEOUT.as_millis().to_string();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("transactional.id", transactional_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("transaction.timeout.ms", &timeout_ms)
            .set("message.timeout.ms", &timeout_ms)
            .set("linger.ms", "2")
            // A transaction begun right after the previous commit finds the coordinator still
            // completing that one (`CONCURRENT_TRANSACTIONS`) and is retried after this
            // backoff, doubling: librdkafka's 100 ms default held every back-to-back terminal
            // event (a job's `Completed` right after its `Started`) 100 to 200 ms.
            .set("retry.backoff.ms", RETRY_BACKOFF_MS)
            .create()
            .map_err(WorkerError::kafka("create the transactional producer"))?;
        producer
            .init_transactions(CALL_TIMEOUT)
            .map_err(|source| WorkerError::Transaction {
                context: "init transactions",
                source,
            })?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            dead_letters: dead_letters.to_owned(),
        })
    }

    /// Writes `batch` and its offsets in one transaction (blocking).
    pub fn commit(&self, batch: &Batch, group: &ConsumerGroupMetadata) -> Result<(), TxnError> {
        let began = std::time::Instant::now();
        self.producer.begin_transaction().map_err(TxnError::Fatal)?;
        let filling = std::time::Instant::now();
        let offsets_took = match self.fill(batch, group) {
            Ok(took) => took,
            Err(e) => return Err(self.abort(e)),
        };
        let settling = std::time::Instant::now();
        if let Err(e) = self.settle() {
            return Err(self.abort(e));
        }
        let committing = std::time::Instant::now();
        let mut attempt = 1;
        loop {
            match self.producer.commit_transaction(CALL_TIMEOUT) {
                Ok(()) => {
                    // Where a transaction's time goes, call by call (each is a wait on the
                    // broker): `send_offsets_to_transaction` and `commit_transaction`.
                    tracing::debug!(
                        records = batch.records.len(),
                        begin_us = (filling - began).as_micros(),
                        send_us = (settling - filling)
                            .saturating_sub(offsets_took)
                            .as_micros(),
                        offsets_us = offsets_took.as_micros(),
                        acked_us = (committing - settling).as_micros(),
                        commit_us = committing.elapsed().as_micros(),
                        "transaction timed"
                    );
                    return Ok(());
                }
                Err(KafkaError::Transaction(e))
                    if e.is_retriable() && !e.txn_requires_abort() && attempt < COMMIT_ATTEMPTS =>
                {
                    tracing::warn!(error = %e, attempt, "commit failed; retrying");
                    attempt += 1;
                }
                Err(e) => return Err(self.abort(e)),
            }
        }
    }

    /// Sends `batch`'s records and offsets into the open transaction; returns how long the
    /// offsets took.
    fn fill(&self, batch: &Batch, group: &ConsumerGroupMetadata) -> Result<Duration, KafkaError> {
        for r in &batch.records {
            let mut record: BaseRecord<'_, [u8], [u8]> = match r.to {
                Destination::Generation { partition } => {
                    BaseRecord::to(&self.topic).partition(partition)
                }
                Destination::DeadLetters => BaseRecord::to(&self.dead_letters),
            };
            if let Some(key) = &r.key {
                record = record.key(key.as_slice());
            }
            if let Some(payload) = &r.payload {
                record = record.payload(payload.as_slice());
            }
            if !r.headers.is_empty() {
                let headers = r
                    .headers
                    .iter()
                    .fold(OwnedHeaders::new(), |h, (key, value)| {
                        h.insert(Header {
                            key,
                            value: Some(value.as_str()),
                        })
                    });
                record = record.headers(headers);
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        self.producer.poll(Duration::from_millis(50));
                        record = back;
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in &batch.offsets {
            offsets.add_partition_offset(&self.topic, *partition, Offset::Offset(*next))?;
        }
        let started = std::time::Instant::now();
        if offsets.count() > 0 {
            self.producer
                .send_offsets_to_transaction(&offsets, group, CALL_TIMEOUT)?;
        }
        Ok(started.elapsed())
    }

    /// Waits until every message of the open transaction is acknowledged and reported,
    /// serving the reports each millisecond. `commit_transaction` flushes first too, but
    /// rust-rdkafka's flush polls 100 ms at a time and its poll returns only at its deadline,
    /// so a report that came a millisecond in still cost 100 ms: every commit took 100 ms.
    /// Once this returns, that flush has nothing left to wait for.
    fn settle(&self) -> Result<(), KafkaError> {
        let deadline = std::time::Instant::now() + CALL_TIMEOUT;
        loop {
            match self.producer.flush(Duration::ZERO) {
                Ok(()) => return Ok(()),
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                    if std::time::Instant::now() < deadline =>
                {
                    self.producer.poll(SETTLE_POLL);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Aborts after `cause`; fatal when the producer itself is done for.
    fn abort(&self, cause: KafkaError) -> TxnError {
        if let KafkaError::Transaction(e) = &cause
            && e.is_fatal()
        {
            return TxnError::Fatal(cause);
        }
        // librdkafka's abort waits until every message of the transaction is reported, and a
        // BaseProducer hands reports over only when polled (its commit_transaction flushes
        // first; its abort_transaction does not): unpolled, the abort waits out its timeout
        // and fails, and the session is torn down for a mere abort. So the queued messages
        // are taken back and the reports of those in flight served first.
        self.producer.purge(PurgeConfig::default().queue());
        if let Err(e) = self.producer.flush(CALL_TIMEOUT) {
            tracing::warn!(error = %e, cause = %cause, "messages still unreported before the abort");
        }
        match self.producer.abort_transaction(CALL_TIMEOUT) {
            Ok(()) => TxnError::Aborted(cause),
            Err(e) => {
                tracing::error!(error = %e, cause = %cause, "abort failed");
                TxnError::Fatal(e)
            }
        }
    }
}

#[cfg(test)]
#[path = "emitter_tests.rs"]
mod tests;
