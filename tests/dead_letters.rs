//! A message that is not a valid event goes to the dead-letter topic with its reason and
//! position, and the projector goes on with the next one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::TestEnv;
use gallery::Roles;
use gallery_projections::dead_letter_headers as h;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, Message};

async fn produce_raw(env: &TestEnv, topic: &str, key: &str, payload: &[u8]) -> (i32, i64) {
    let producer = common::kafka::producer(&env.config.kafka.brokers);
    common::kafka::send(&producer, topic, None, key.as_bytes(), payload).await
}

fn header<'a>(m: &'a rdkafka::message::BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    m.headers()?
        .iter()
        .find(|x| x.key == name)
        .and_then(|x| std::str::from_utf8(x.value?).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_messages_are_dead_lettered_and_the_projector_goes_on() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::SERVICES).await;
    let topic = env.config.topics().interactions();
    let ada = env.token("ada");

    // A valid like first, to learn a real frame (magic byte, schema id) for "mona-lisa".
    let first = app.accept_like(&ada, "mona-lisa", true).await;
    env.wait_projected(&topic, first.partition, first.offset)
        .await;

    // Not framed at all.
    let garbage = produce_raw(&env, &topic, "mona-lisa", b"{\"liked\": true}").await;
    // Framed with a registered schema id, but the Avro body is cut short.
    let consumer = common::kafka::reader(&env, "probe");
    consumer.subscribe(&[&topic]).unwrap();
    let frame = loop {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("the valid like is readable")
            .unwrap();
        if m.offset() == first.offset && m.partition() == first.partition {
            break m.payload().unwrap().to_vec();
        }
    };
    let truncated = produce_raw(&env, &topic, "mona-lisa", &frame[..8]).await;

    // A valid unlike by ada and a like by bob after the poison: both must be applied.
    let unlike = app.accept_like(&ada, "mona-lisa", false).await;
    let bob = app.accept_like(&env.token("bob"), "mona-lisa", true).await;
    env.wait_projected(&topic, unlike.partition, unlike.offset)
        .await;
    env.wait_projected(&topic, bob.partition, bob.offset).await;
    assert_eq!(app.artwork_likes(Some(&ada), "mona-lisa").await, (1, false));

    // Both poison messages are on the dead-letter topic, with reason and position.
    let dlq = common::kafka::reader(&env, "dlq-reader");
    dlq.subscribe(&[&env.config.topics().dead_letters()])
        .unwrap();
    let mut found = vec![];
    while found.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(30), dlq.recv())
            .await
            .expect("dead letters arrive")
            .unwrap();
        assert_eq!(header(&m, h::TOPIC), Some(topic.as_str()));
        assert_eq!(header(&m, h::CONSUMER), Some("projection:read-model"));
        let position = (
            header(&m, h::PARTITION).unwrap().parse::<i32>().unwrap(),
            header(&m, h::OFFSET).unwrap().parse::<i64>().unwrap(),
        );
        let reason = header(&m, h::REASON).unwrap().to_owned();
        assert!(!reason.is_empty());
        assert_eq!(m.key(), Some(&b"mona-lisa"[..]));
        found.push((position, reason, m.payload().map(<[u8]>::to_vec)));
    }
    found.sort_by_key(|(p, _, _)| *p);
    assert_eq!(found[0].0, garbage);
    assert!(found[0].1.contains("magic byte"), "reason: {}", found[0].1);
    assert_eq!(found[0].2.as_deref(), Some(&b"{\"liked\": true}"[..]));
    assert_eq!(found[1].0, truncated);
    assert_eq!(found[1].2.as_deref(), Some(&frame[..8]));

    // A rebuild replays the poison too, but does not dead-letter it a second time.
    let out = common::gallery_command(&env, &["projections", "rebuild"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "rebuild failed: {out:?}");
    let letters: i64 = env
        .end_offsets(&env.config.topics().dead_letters())
        .values()
        .sum();
    assert_eq!(letters, 2, "each invalid message dead-lettered once");
    app.stop().await;
}
