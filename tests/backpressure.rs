//! Back-pressure on the write side against real services: a command fails fast with `503`
//! while Kafka is gone (a private broker, stopped for real) and succeeds again once it is
//! back; a full producer queue refuses at once; a used-up quota answers `429`. Nothing that
//! was refused is written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::private_stack::PrivateKafka;
use common::{App, TestEnv};
use gallery::Roles;
use serde_json::Value;

const COMMANDS: Roles = Roles::COMMANDS;

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
    took: Duration,
}

impl Answer {
    fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

async fn like(app: &App, token: &str, artwork: &str) -> Answer {
    let url = app.commands_url(&format!("/v1/artworks/{artwork}/like"));
    let started = Instant::now();
    let resp = app
        .http
        .put(url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("command request");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        body,
        took: started.elapsed(),
    }
}

fn total(offsets: &HashMap<i32, i64>) -> i64 {
    offsets.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_kafka_fails_commands_fast_and_they_recover_when_it_returns() {
    let mut kafka = tokio::task::spawn_blocking(PrivateKafka::start)
        .await
        .unwrap();
    let mut env = TestEnv::new().await;
    env.config.kafka.brokers = kafka.brokers();
    let app = env.start(COMMANDS).await;
    let ada = env.token("ada");
    let mut accepted = 0_i64;

    let first = like(&app, &ada, "sunflowers").await;
    assert_eq!(first.status, 202, "{}", first.body);
    accepted += 1;

    let mut kafka = tokio::task::spawn_blocking(move || {
        kafka.down();
        kafka
    })
    .await
    .unwrap();

    // Every command while Kafka is gone is refused at once, and none claims success. "At
    // once" is well within the delivery timeout (10 s), which a command waiting on Kafka
    // would take: a quarter of it, for this shared two-core machine, where a refusal has
    // been seen to take 1.9 s under the suite's load (typically milliseconds).
    let fast = env.config.kafka.delivery_timeout() / 4;
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        let answer = like(&app, &ada, &format!("down-{i}")).await;
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert_eq!(answer.code(), Some("UNAVAILABLE"));
        assert_eq!(answer.retry_after, Some(1));
        assert!(answer.took < fast, "a refusal took {:?}", answer.took);
        slowest = slowest.max(answer.took);
    }
    eprintln!("slowest refusal while Kafka was down: {slowest:?}");

    let mut kafka = tokio::task::spawn_blocking(move || {
        kafka.up();
        kafka
    })
    .await
    .unwrap();
    let back = Instant::now();
    loop {
        let answer = like(&app, &ada, "sunflowers").await;
        match answer.status {
            202 => {
                accepted += 1;
                break;
            }
            503 => assert!(answer.took < fast, "{:?}", answer.took),
            other => panic!("unexpected {other}: {}", answer.body),
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "commands were not accepted within 30 s of Kafka's return"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("accepted again {:?} after Kafka answered", back.elapsed());
    for _ in 0..3 {
        let answer = like(&app, &ada, "sunflowers").await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        accepted += 1;
    }

    // Exactly the accepted commands were written.
    let topic = env.config.topics().interactions();
    let written = total(&env.end_offsets(&topic));
    assert_eq!(written, accepted);
    app.stop().await;
    tokio::task::spawn_blocking(move || kafka.down())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_producer_queue_refuses_at_once_and_writes_nothing_refused() {
    let mut env = TestEnv::new().await;
    env.config.kafka.producer_queue_messages = 1;
    let app = std::sync::Arc::new(env.start(COMMANDS).await);
    let topic = env.config.topics().interactions();
    let before = total(&env.end_offsets(&topic));

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let app = app.clone();
        let token = env.token(&format!("visitor-{i}"));
        tasks.spawn(async move { like(&app, &token, "crowded").await });
    }
    let (mut accepted, mut refused) = (0_i64, 0_i64);
    while let Some(answer) = tasks.join_next().await {
        let answer = answer.unwrap();
        match answer.status {
            202 => accepted += 1,
            503 => {
                assert_eq!(answer.code(), Some("UNAVAILABLE"));
                assert_eq!(answer.retry_after, Some(1));
                // At once: well within the delivery timeout a queued command would wait
                // (see the test above for the bound).
                assert!(
                    answer.took < env.config.kafka.delivery_timeout() / 4,
                    "{:?}",
                    answer.took
                );
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    assert!(accepted >= 1, "at least the first command fits the queue");
    assert!(
        refused >= 1,
        "40 concurrent commands cannot fit a queue of 1"
    );
    assert_eq!(total(&env.end_offsets(&topic)) - before, accepted);
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_like_beyond_the_quota_is_429_and_writes_nothing() {
    let mut env = TestEnv::new().await;
    env.config.limits.interactions_per_minute = 3;
    let app = env.start(COMMANDS).await;
    let ada = env.token("ada");
    let topic = env.config.topics().interactions();

    for i in 0..3 {
        let answer = like(&app, &ada, &format!("a{i}")).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
    let before = env.end_offsets(&topic);
    let answer = like(&app, &ada, "a3").await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.code(), Some("RATE_LIMITED"));
    // 3 per minute: the next one is admitted 20 s after the first.
    let retry = answer.retry_after.expect("Retry-After");
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        env.end_offsets(&topic),
        before,
        "a refused command writes nothing"
    );

    // The quota is per user.
    let answer = like(&app, &env.token("bob"), "a3").await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    app.stop().await;
}
