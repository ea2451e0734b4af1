//! The projector process killed with SIGKILL while likes flow, and restarted: every count
//! ends equal to the number of distinct likers, nothing applied twice or lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{Accepted, TestEnv};
use gallery::Roles;
use tokio::process::{Child, Command};

fn spawn_projector(env: &TestEnv) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gallery"))
        .arg("projections")
        .env("GALLERY_POSTGRES__URL", env.config.postgres.url.expose())
        .env("GALLERY_KAFKA__BROKERS", &env.config.kafka.brokers)
        .env(
            "GALLERY_KAFKA__TOPIC_PREFIX",
            &env.config.kafka.topic_prefix,
        )
        .env("GALLERY_REGISTRY__URL", &env.config.registry.url)
        .env("GALLERY_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gallery projections")
}

/// A small deterministic generator, so a failure can be replayed from its seed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_projector_restarts_without_losing_or_doubling_likes() {
    let env = TestEnv::new().await;
    let app = Arc::new(env.start(Roles::COMMANDS).await);
    let artworks = ["water-lilies", "the-kiss", "nighthawks"];
    let users: Vec<(String, String)> = (0..60)
        .map(|i| {
            let u = format!("u{i}");
            let t = env.token(&u);
            (u, t)
        })
        .collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let mut rng = Lcg(seed);
    let ops: Vec<(usize, usize, bool)> = (0..600)
        .map(|_| {
            (
                rng.next(60) as usize,
                rng.next(3) as usize,
                rng.next(3) != 0,
            )
        })
        .collect();

    let mut projector = spawn_projector(&env);
    let mut produced: Vec<(String, String, bool, Accepted)> = Vec::new();
    let mut kills_with_work_pending = 0;
    for (round, batch) in ops.chunks(100).enumerate() {
        // 20 users at a time; one user's commands go in order, like a real client.
        for chunk in batch.chunks(20) {
            let mut set = tokio::task::JoinSet::new();
            for &(u, a, liked) in chunk {
                let app = app.clone();
                let (user, token) = users[u].clone();
                let artwork = artworks[a].to_owned();
                set.spawn(async move {
                    let accepted = app.accept_like(&token, &artwork, liked).await;
                    (user, artwork, liked, accepted)
                });
            }
            while let Some(r) = set.join_next().await {
                produced.push(r.unwrap());
            }
        }
        // Let the projector get going (or not), then kill it without warning.
        tokio::time::sleep(Duration::from_millis(rng.next(300) + 20 * round as u64)).await;
        projector.start_kill().unwrap();
        let status = projector.wait().await.unwrap();
        assert!(!status.success(), "killed, not exited");
        if env.projected_count().await < produced.len() as i64 {
            kills_with_work_pending += 1;
        }
        projector = spawn_projector(&env);
    }
    eprintln!("{kills_with_work_pending} of 6 kills landed with events still unapplied");
    assert!(
        kills_with_work_pending >= 1,
        "at least one SIGKILL should land while events were still unapplied"
    );

    // Ground truth from the produced facts: the latest per (artwork, user) by offset.
    let mut latest: BTreeMap<(String, String), (i64, bool)> = BTreeMap::new();
    let mut highest: HashMap<i32, i64> = HashMap::new();
    let mut topic = String::new();
    for (user, artwork, liked, accepted) in produced {
        let entry = latest.entry((artwork, user)).or_insert((-1, false));
        if accepted.offset > entry.0 {
            *entry = (accepted.offset, liked);
        }
        let h = highest.entry(accepted.partition).or_insert(-1);
        *h = (*h).max(accepted.offset);
        topic = accepted.topic;
    }
    env.wait_all_projected(&topic, &highest).await;
    projector.start_kill().unwrap();

    let db = env.db().await;
    for artwork in artworks {
        let expected = latest
            .iter()
            .filter(|((a, _), (_, liked))| a == artwork && *liked)
            .count() as i64;
        let row = db
            .query_opt(
                "SELECT like_count FROM artwork_stats WHERE artwork_id = $1",
                &[&artwork],
            )
            .await
            .unwrap();
        let count: i64 = row.map_or(0, |r| r.get(0));
        assert_eq!(count, expected, "like count of {artwork}");
    }
    let rows = db
        .query("SELECT artwork_id, user_id, liked FROM artwork_likes", &[])
        .await
        .unwrap();
    let stored: BTreeMap<(String, String), bool> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let truth: BTreeMap<(String, String), bool> = latest
        .into_iter()
        .map(|(k, (_, liked))| (k, liked))
        .collect();
    assert_eq!(stored, truth, "each user's latest like state");
    Arc::into_inner(app).unwrap().stop().await;
}
