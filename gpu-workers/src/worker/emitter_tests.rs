//! The emitter against the real Kafka of the local stack (`scripts/stack up`;
//! `GALLERY_KAFKA__BROKERS` names another), on a topic of its own.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use super::*;

fn brokers() -> String {
    std::env::var("GALLERY_KAFKA__BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A fresh one-partition topic (`test-*`, as `scripts/stack prune-tests` expects).
async fn topic() -> String {
    let name = format!("test-{}.emitter", uuid::Uuid::new_v4().simple());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap_or_else(|e| panic!("admin client: {e}"));
    let created = admin
        .create_topics(
            &[NewTopic::new(&name, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(15))),
        )
        .await
        .unwrap_or_else(|e| panic!("create {name} (is `scripts/stack up` running?): {e}"));
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    name
}

fn record(payload: &str) -> OutRecord {
    OutRecord {
        to: Destination::Generation { partition: 0 },
        key: Some(b"request".to_vec()),
        payload: Some(payload.as_bytes().to_vec()),
        headers: Vec::new(),
    }
}

/// An abort after the transaction's records went out: librdkafka waits for every record's
/// delivery report, which a `BaseProducer` hands over only when polled. The abort must come
/// back as an abort (the events are then sent again), not fail after its timeout as if the
/// producer were done for, and the next transaction commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_after_records_were_sent_aborts_and_the_next_transaction_commits() {
    let topic = topic().await;
    tokio::task::spawn_blocking(move || {
        let emitter = Emitter::start(&brokers(), &format!("{topic}.txn"), &topic, &topic)
            .unwrap_or_else(|e| panic!("start the emitter: {e}"));
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", format!("{topic}.group"))
            .create()
            .unwrap_or_else(|e| panic!("consumer: {e}"));
        let group = consumer
            .group_metadata()
            .unwrap_or_else(|| panic!("group metadata"));

        emitter
            .producer
            .begin_transaction()
            .unwrap_or_else(|e| panic!("begin: {e}"));
        let sent = Batch {
            records: vec![record("aborted")],
            offsets: Vec::new(),
        };
        emitter
            .fill(&sent, &group)
            .unwrap_or_else(|e| panic!("fill: {e}"));
        let started = std::time::Instant::now();
        let outcome = emitter.abort(KafkaError::Canceled);
        assert!(
            matches!(outcome, TxnError::Aborted(_)),
            "after {:?}: {outcome:?}",
            started.elapsed()
        );

        let next = Batch {
            records: vec![record("committed")],
            offsets: Vec::new(),
        };
        emitter
            .commit(&next, &group)
            .unwrap_or_else(|e| panic!("the next transaction: {e:?}"));
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}
