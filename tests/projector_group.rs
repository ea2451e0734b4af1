//! Projector instances share the partitions through a consumer group and stay exactly-once in
//! effect across its rebalances: a second instance joining, one killed with SIGKILL (its
//! partitions move on when its session times out), a third joining and one leaving cleanly,
//! all while facts flow. Kafka's committed group offsets are set far ahead of the read model
//! before the first instance starts: they are advisory, so nothing may be skipped because of
//! them. Afterwards every count and every user's list equals the ground truth.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::TestEnv;
use common::facts::{FactProducer, Lcg, Produced, Truth, assert_tables_match};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::process::Child;

const ROUNDS: usize = 60;
const PER_ROUND: usize = 50;
const USERS: u64 = 150;
const ARTWORKS: u64 = 24;
/// Partitions of the four topics the projector reads (the test deployment has 3 each).
const PARTITIONS: usize = 12;

fn spawn_projector(env: &TestEnv) -> Child {
    common::spawn_projector(env, &[("GALLERY_PROJECTIONS__SESSION_TIMEOUT_MS", "6000")])
}

fn terminate(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {pid}");
}

/// Partitions per member of `group`, from the assignments the group's leader handed out.
fn members(env: &TestEnv, group: &str) -> Vec<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.config.kafka.brokers)
        .create()
        .unwrap();
    let Ok(list) = consumer.fetch_group_list(Some(group), Duration::from_secs(5)) else {
        return Vec::new();
    };
    let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
        return Vec::new();
    };
    if info.state() != "Stable" {
        return Vec::new();
    }
    info.members()
        .iter()
        .map(|m| m.assignment().map_or(0, assigned_partitions))
        .collect()
}

/// How many partitions a consumer-protocol assignment holds: version (i16), then per topic
/// its name (i16 length, bytes) and its partitions (i32 count, i32 each).
fn assigned_partitions(bytes: &[u8]) -> usize {
    let i16_at = |at: usize| i16::from_be_bytes([bytes[at], bytes[at + 1]]) as usize;
    let i32_at = |at: usize| {
        i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
    };
    if bytes.len() < 6 {
        return 0;
    }
    let topics = i32_at(2);
    let (mut at, mut partitions) = (6, 0);
    for _ in 0..topics {
        at += 2 + i16_at(at);
        let n = i32_at(at);
        partitions += n;
        at += 4 + 4 * n;
    }
    partitions
}

/// Waits until the group is stable with one member per entry of `want` (partition counts in
/// any order; `None` means at least one partition).
async fn wait_members(env: &TestEnv, group: &str, count: usize, all: Option<usize>) -> Vec<usize> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let members = members(env, group);
        let spread = members.len() == count
            && members.iter().all(|p| *p > 0)
            && all.is_none_or(|all| members.iter().sum::<usize>() == all);
        if spread {
            return members;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "group {group} never had {count} members sharing the partitions (last seen {members:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_progress(env: &TestEnv) {
    let at_start = env.projected_count().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while env.projected_count().await == at_start {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projection made no progress in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projectors_share_partitions_and_stay_exact_across_rebalances() {
    let env = Arc::new(TestEnv::new().await);
    gallery::topics::ensure_topics(&env.config).await.unwrap();
    let group = format!(
        "{}projection-read-model-{}",
        env.config.kafka.topic_prefix, env.db_name
    );
    let producer = Arc::new(FactProducer::new(&env.config));
    let mut rng = Lcg::from_clock();

    // A first round, then Kafka's group offsets at its end: a consumer that trusted them
    // would never fold these facts.
    let mut first = Vec::new();
    for _ in 0..PER_ROUND {
        first.push(rng.fact(USERS, ARTWORKS));
    }
    let mut produced: Vec<Produced> = producer.send_all(first, 16).await;
    {
        let ends = env.end_offsets(&producer.topic);
        let mut tpl = TopicPartitionList::new();
        for (p, end) in &ends {
            tpl.add_partition_offset(&producer.topic, *p, Offset::Offset(*end))
                .unwrap();
        }
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &env.config.kafka.brokers)
            .set("group.id", &group)
            .create()
            .unwrap();
        consumer.commit(&tpl, CommitMode::Sync).unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let poller = common::sample_smallest_count(env.clone(), stop.clone());
    let production = {
        let producer = producer.clone();
        let mut rng = Lcg(rng.next(u64::MAX));
        tokio::spawn(async move {
            let mut produced = Vec::new();
            for _ in 1..ROUNDS {
                let facts = (0..PER_ROUND).map(|_| rng.fact(USERS, ARTWORKS)).collect();
                produced.extend(producer.send_all(facts, 16).await);
                tokio::time::sleep(Duration::from_millis(300 + rng.next(300))).await;
            }
            produced
        })
    };

    // One instance takes every partition; a second one joining gets a share.
    let mut a = spawn_projector(&env);
    wait_members(&env, &group, 1, Some(PARTITIONS)).await;
    wait_progress(&env).await;
    let mut b = spawn_projector(&env);
    let shared = wait_members(&env, &group, 2, Some(PARTITIONS)).await;
    eprintln!("two instances share the partitions: {shared:?}");

    // SIGKILL one while it applies: the other takes over its partitions.
    wait_progress(&env).await;
    a.start_kill().unwrap();
    a.wait().await.unwrap();
    wait_members(&env, &group, 1, Some(PARTITIONS)).await;
    wait_progress(&env).await;

    // A third one joins; the survivor leaves cleanly.
    let mut c = spawn_projector(&env);
    wait_members(&env, &group, 2, Some(PARTITIONS)).await;
    wait_progress(&env).await;
    terminate(&b);
    assert!(b.wait().await.unwrap().success(), "a clean exit on SIGTERM");
    wait_members(&env, &group, 1, Some(PARTITIONS)).await;
    assert!(
        !production.is_finished(),
        "the rebalances should happen while facts flow"
    );

    produced.extend(production.await.unwrap());
    let mut highest: HashMap<i32, i64> = HashMap::new();
    for p in &produced {
        let h = highest.entry(p.partition).or_insert(-1);
        *h = (*h).max(p.offset);
    }
    env.wait_all_projected(&producer.topic, &highest).await;
    stop.store(true, Ordering::Relaxed);
    let (samples, smallest) = poller.await.unwrap();
    assert!(samples > 10, "the poller saw the counts during the run");
    c.start_kill().unwrap();
    c.wait().await.unwrap();

    assert!(smallest >= 0, "a count went negative: {smallest}");
    assert_tables_match(&env.db().await, "public", &Truth::of(&produced)).await;
}
