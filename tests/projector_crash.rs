//! The chaos test of the counting invariant: thousands of like, unlike, favorite and
//! unfavorite facts from hundreds of users over dozens of artworks, a tenth of them produced
//! twice (the same bytes again), while the projector process is killed with SIGKILL at random
//! moments and restarted. Afterwards every count and every user's likes and favorites equal
//! the ground truth computed from the produced facts, and no count was ever negative on the
//! way (polled during the run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::TestEnv;
use common::facts::{Encoded, FactProducer, Lcg, Produced, Truth, assert_tables_match};
use tokio::process::Child;

const FACTS: usize = 3000;
const USERS: u64 = 200;
const ARTWORKS: u64 = 30;
const KILLS: usize = 7;

/// A stable instance name (Kafka static membership): the restarted projector gets the
/// partitions back at once instead of after the killed one's session timeout.
/// Batches of at most 1000 messages (the default when this test was written): a backlog in
/// several transactions, for the kills to land between.
fn spawn_projector(env: &TestEnv) -> Child {
    common::spawn_projector(
        env,
        &[
            ("GALLERY_PROJECTIONS__INSTANCE_ID", "projector-0"),
            ("GALLERY_PROJECTIONS__MAX_BATCH", "1000"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_projector_with_duplicates_ends_equal_to_the_ground_truth() {
    let env = Arc::new(TestEnv::new().await);
    gallery::topics::ensure_topics(&env.config).await.unwrap();
    let producer = FactProducer::new(&env.config);
    let mut rng = Lcg::from_clock();

    // Never negative: sample the smallest count while everything runs.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = common::sample_smallest_count(env.clone(), stop.clone());

    // The producer: 30 rounds of 100 facts, a tenth of them again byte for byte a little
    // later in the stream, over several seconds.
    let production = {
        let mut rng = Lcg(rng.next(u64::MAX));
        tokio::spawn(async move {
            let mut produced: Vec<Produced> = Vec::with_capacity(FACTS * 11 / 10);
            let mut sent: Vec<Encoded> = Vec::with_capacity(FACTS);
            let mut duplicates = 0;
            let rounds = 30;
            for _ in 0..rounds {
                let mut batch = Vec::with_capacity(FACTS / rounds + 20);
                for _ in 0..FACTS / rounds {
                    batch.push(producer.encode(rng.fact(USERS, ARTWORKS)).await);
                    if !sent.is_empty() && rng.next(10) == 0 {
                        let back = rng.next(sent.len().min(200) as u64) as usize;
                        batch.push(sent[sent.len() - 1 - back].clone());
                        duplicates += 1;
                    }
                }
                let acks = futures::future::join_all(batch.iter().map(|e| producer.send(e))).await;
                produced.extend(acks);
                sent.extend(batch);
                tokio::time::sleep(Duration::from_millis(100 + rng.next(200))).await;
            }
            (produced, duplicates, producer.topic.clone())
        })
    };

    // The killer: each time the projector is applying (its offsets moved since it started),
    // a random moment later, SIGKILL, and start another.
    let mut projector = spawn_projector(&env);
    let (mut kills, mut kills_mid_work) = (0, 0);
    while kills < KILLS {
        let at_start = env.projected_count().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while env.projected_count().await == at_start && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.next(250))).await;
        projector.start_kill().unwrap();
        assert!(
            !projector.wait().await.unwrap().success(),
            "killed, not exited"
        );
        kills += 1;
        let applied = env.projected_count().await;
        if applied > at_start && !production.is_finished() {
            kills_mid_work += 1;
        }
        projector = spawn_projector(&env);
    }
    let (produced, duplicates, topic) = production.await.unwrap();
    eprintln!(
        "{} facts ({duplicates} sent twice); {kills_mid_work} of {kills} kills landed while the projector applied and facts flowed",
        produced.len()
    );
    assert!(duplicates >= FACTS / 20, "about a tenth sent twice");
    assert!(
        kills_mid_work >= KILLS / 2,
        "SIGKILLs should land while the projector is applying"
    );

    let mut highest: HashMap<i32, i64> = HashMap::new();
    for p in &produced {
        let h = highest.entry(p.partition).or_insert(-1);
        *h = (*h).max(p.offset);
    }
    env.wait_all_projected(&topic, &highest).await;
    stop.store(true, Ordering::Relaxed);
    let (samples, smallest) = poller.await.unwrap();
    projector.start_kill().unwrap();
    projector.wait().await.unwrap();

    eprintln!("{samples} samples of the smallest count, the smallest {smallest}");
    assert!(samples > 10, "the poller saw the counts during the run");
    assert!(smallest >= 0, "a count went negative: {smallest}");
    let truth = Truth::of(&produced);
    assert_tables_match(&env.db().await, "public", &truth).await;
}
