//! The generation backlog measured against the real Kafka: the lag of the GPU workers' group
//! on a fresh generation topic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::TestEnv;
use gallery_commands::{BacklogConfig, BacklogMonitor};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_is_the_workers_lag_on_the_generation_topic() {
    let env = TestEnv::new().await;
    gallery::topics::ensure_topics(&env.config).await.unwrap();
    let topics = env.config.topics();
    let topic = topics.generation();
    let brokers = env.config.kafka.brokers.clone();

    let config = BacklogConfig {
        interval: Duration::from_millis(200),
        ..BacklogConfig::new(brokers.clone(), topics.clone())
    };
    let (monitor, backlog) = BacklogMonitor::new(&config).unwrap();
    assert_eq!(backlog.current(), None, "nothing measured yet");
    assert_eq!(monitor.refresh().await.unwrap(), 0, "an empty topic");

    // 25 requests: 15 on partition 0, 10 on partition 1.
    let producer = common::kafka::producer(&brokers);
    for i in 0..25 {
        let partition = if i < 15 { 0 } else { 1 };
        let key = format!("request-{i}");
        common::kafka::send(
            &producer,
            &topic,
            Some(partition),
            key.as_bytes(),
            b"request",
        )
        .await;
    }
    assert_eq!(monitor.refresh().await.unwrap(), 25, "no commit: all of it");

    // The workers commit 10 on partition 0 and everything on partition 1.
    let group = topics.workers_group();
    let workers: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(&topic, 0, Offset::Offset(10))
        .unwrap();
    commit
        .add_partition_offset(&topic, 1, Offset::Offset(10))
        .unwrap();
    tokio::task::spawn_blocking(move || workers.commit(&commit, CommitMode::Sync))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(monitor.refresh().await.unwrap(), 5);

    // The background monitor keeps the handle current: one more request makes it 6.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(monitor.run(async move {
        let _ = stopped.await;
    }));
    common::kafka::send(&producer, &topic, Some(1), b"one-more", b"request").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while backlog.current() != Some(6) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            backlog.current()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the monitor stops when told")
        .unwrap();
}
