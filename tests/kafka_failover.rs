//! Gallery on a three-node Kafka cluster of the test's own (`scripts/stack up kafka-cluster`,
//! replication 3, `min.insync.replicas=2`) while a broker dies by SIGKILL:
//!
//! - likes flow from many concurrent clients through the HTTP API while the leader of the
//!   interactions partition is killed: every answer is `202` or `503 UNAVAILABLE` with
//!   `Retry-After` (the commands caught by the election are refused), likes are accepted
//!   again once a new leader is elected and go on while the killed node comes back, and every
//!   like answered `202` is in the log (read with `read_committed`) exactly once, where its
//!   answer said;
//! - the painter's transactions go on through the loss of the coordinator of its
//!   transactions, and then of the leader of the generation partition, each killed while jobs
//!   run: every request ends in exactly one terminal event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use common::generation::{Requests, Results, RunningWorker, StepPainter, both, text_request};
use common::log::ask;
use common::private_stack::PrivateCluster;
use common::{App, TestEnv};
use gallery::Roles;
use gallery_commands::{EventPublisher, KafkaPublisher, ProducerConfig};
use gallery_schemas::{ArtworkId, Event, EventCodec, LikeSet, UserId};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer as _;
use serde_json::Value;
use tokio::time::Instant;

/// Concurrent clients, each liking and unliking as one user.
const CLIENTS: usize = 16;
/// Commands one client sends at most.
const MAX_PER_CLIENT: usize = 10_000;
/// Likes accepted before the kill, and likes sent after it and accepted, before the run ends.
const BEFORE: usize = 200;
const AFTER: usize = 300;

/// One answered command.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    code: Option<String>,
    event_id: Option<uuid::Uuid>,
    /// (partition, offset) the `202` named.
    position: Option<(i32, i64)>,
    sent: Instant,
    took: Duration,
}

/// Starts the cluster (blocking: it runs `scripts/stack`) and a deployment on it.
async fn deployment(partitions: i32) -> (PrivateCluster, TestEnv) {
    let cluster = tokio::task::spawn_blocking(PrivateCluster::start)
        .await
        .unwrap();
    let mut env = TestEnv::new().await;
    env.config.kafka.brokers = cluster.brokers();
    env.config.kafka.replication_factor = 3;
    env.config.kafka.partitions = partitions;
    (cluster, env)
}

/// The node leading `partition` of `topic` (a topic of three replicas).
fn leader(brokers: &str, topic: &str, partition: i32) -> i32 {
    let what = format!("the leader of {topic}/{partition}");
    let (leader, replicas) = ask(brokers, &what, |consumer| {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let found = metadata.topics()[0]
            .partitions()
            .iter()
            .find(|p| p.id() == partition && p.leader() >= 0)
            .map(|p| (p.leader(), p.replicas().len()));
        Ok::<_, rdkafka::error::KafkaError>(found)
    });
    assert_eq!(replicas, 3, "three replicas of {topic}/{partition}");
    leader
}

/// The `min.insync.replicas` of `topic`, as the brokers have it.
async fn min_insync_replicas(brokers: &str, topic: &str) -> String {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    resource
        .get("min.insync.replicas")
        .and_then(|e| e.value.clone())
        .unwrap()
}

/// Topics of another deployment on the cluster, made as an earlier version made them
/// (`min.insync.replicas=1`), are named by `weaker_than_configured` (which `ensure_topics` warns
/// of: it never changes a topic that exists).
async fn older_topics_are_named(env: &TestEnv) {
    let mut older = env.config.clone();
    older.kafka.topic_prefix = format!("{}older.", env.config.kafka.topic_prefix);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &older.kafka.brokers)
        .create()
        .unwrap();
    let names = older.topics().all();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(name, 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "1")
        })
        .collect();
    for created in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .unwrap()
    {
        created.unwrap();
    }
    gallery::topics::ensure_topics(&older).await.unwrap();
    let weaker = gallery::topics::weaker_than_configured(&older)
        .await
        .unwrap();
    let expected: Vec<(String, i32)> = names.into_iter().map(|n| (n, 1)).collect();
    assert_eq!(weaker, expected, "the earlier version's topics, untouched");
}

/// What the clients share: when to stop, whether the leader was killed, and how many likes
/// were accepted before the kill and, of those sent after it, since.
#[derive(Default)]
struct Traffic {
    stop: AtomicBool,
    killed: AtomicBool,
    accepted_before: AtomicUsize,
    accepted_after: AtomicUsize,
}

/// One client: likes and unlikes artworks as `user` until told to stop, at most
/// [`MAX_PER_CLIENT`] times, one command at a time.
async fn client(app: Arc<App>, token: String, index: usize, traffic: Arc<Traffic>) -> Vec<Answer> {
    let http = reqwest::Client::builder()
        // Generous: an answer may wait for a leader election and the delivery timeout.
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut answers = Vec::new();
    for i in 0..MAX_PER_CLIENT {
        if traffic.stop.load(Ordering::Relaxed) {
            break;
        }
        let url = app.commands_url(&format!("/v1/artworks/art-{}/like", (index + i) % 8));
        let request = if i % 3 == 2 {
            http.delete(url)
        } else {
            http.put(url)
        };
        let after_kill = traffic.killed.load(Ordering::Relaxed);
        let sent = Instant::now();
        let response = request
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("client {index}: no answer to command {i}: {e}");
            });
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == 202 {
            let counter = if after_kill {
                &traffic.accepted_after
            } else {
                &traffic.accepted_before
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        answers.push(Answer {
            status,
            retry_after,
            code: body["error"]["code"].as_str().map(str::to_owned),
            event_id: body["eventId"].as_str().map(|s| s.parse().unwrap()),
            position: body["position"]["offset"].as_i64().map(|o| {
                let p = body["position"]["partition"].as_i64().unwrap();
                (i32::try_from(p).unwrap(), o)
            }),
            sent,
            took: sent.elapsed(),
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    answers
}

/// Waits until `counter` reaches `n`; panics after `timeout`.
async fn until_counted(counter: &AtomicUsize, n: usize, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while counter.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "only {} {what} within {timeout:?}",
            counter.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn likes_answered_202_survive_the_interactions_leaders_death_exactly_once() {
    // One partition: every like goes through the leader that dies.
    let (cluster, mut env) = deployment(1).await;
    env.config.limits.interactions_per_minute = 0;
    // Shorter than any election (a dead node is fenced after its 9 s session timeout), so
    // that commands caught by it are refused rather than answered late.
    env.config.kafka.delivery_timeout_ms = 3_000;
    let app = Arc::new(env.start(Roles::COMMANDS).await);
    let topic = env.config.topics().interactions();
    assert_eq!(
        min_insync_replicas(&env.config.kafka.brokers, &topic).await,
        "2",
        "an acknowledged like must be on two brokers"
    );
    assert_eq!(
        gallery::topics::weaker_than_configured(&env.config)
            .await
            .unwrap(),
        [],
        "every topic of the deployment asks two in-sync replicas"
    );
    older_topics_are_named(&env).await;

    let traffic = Arc::new(Traffic::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (app, traffic) = (app.clone(), traffic.clone());
            let token = env.token(&format!("visitor-{i}"));
            tokio::spawn(client(app, token, i, traffic))
        })
        .collect();

    until_counted(
        &traffic.accepted_before,
        BEFORE,
        Duration::from_secs(120),
        "likes accepted",
    )
    .await;
    let victim = leader(&env.config.kafka.brokers, &topic, 0);
    traffic.killed.store(true, Ordering::Relaxed);
    let killed_at = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.kill(victim);
        cluster
    })
    .await
    .unwrap();
    eprintln!("killed node {victim}, the leader of {topic}/0");
    // Likes are accepted again once another node leads.
    until_counted(
        &traffic.accepted_after,
        AFTER,
        Duration::from_secs(180),
        "likes sent after the kill accepted",
    )
    .await;
    // The node comes back (and catches up) while likes flow: nothing changes for them.
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.up();
        cluster
    })
    .await
    .unwrap();
    let back = traffic.accepted_after.load(Ordering::Relaxed);
    until_counted(
        &traffic.accepted_after,
        back + AFTER,
        Duration::from_secs(180),
        "likes accepted after the node came back",
    )
    .await;
    traffic.stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for c in clients {
        answers.extend(c.await.unwrap());
    }
    Arc::into_inner(app).unwrap().stop().await;
    let new_leader = leader(&env.config.kafka.brokers, &topic, 0);
    assert_ne!(new_leader, victim);

    // Every answer is a 202 or a 503 that tells the client to retry.
    let mut refused = 0;
    let mut slowest = Duration::ZERO;
    for a in &answers {
        slowest = slowest.max(a.took);
        match a.status {
            202 => {}
            503 => {
                assert_eq!(a.code.as_deref(), Some("UNAVAILABLE"), "{a:?}");
                assert_eq!(a.retry_after.as_deref(), Some("1"), "{a:?}");
                refused += 1;
            }
            _ => panic!("neither 202 nor 503: {a:?}"),
        }
    }
    let ok: Vec<&Answer> = answers.iter().filter(|a| a.status == 202).collect();
    let in_flight = ok
        .iter()
        .filter(|a| a.sent <= killed_at && a.sent + a.took > killed_at)
        .count();
    eprintln!(
        "{} commands: {} accepted ({in_flight} of them in flight at the kill), {refused} \
         refused with 503; slowest answer {slowest:?}; node {new_leader} leads now",
        answers.len(),
        ok.len()
    );
    assert!(refused >= 1, "commands during the election were refused");

    // Every 202 is in the log once, where its answer said.
    let log = common::log::copies(&env, &topic).await;
    for a in &ok {
        let id = a.event_id.expect("a 202 names its event");
        let copies = log.get(&id).map_or(&[][..], Vec::as_slice);
        assert_eq!(copies, [a.position.unwrap()], "event {id} answered {a:?}");
    }
    let written: usize = log.values().map(Vec::len).sum();
    eprintln!(
        "{written} events in the log, {} of them of commands answered 503",
        written - ok.len()
    );
    assert!(written - ok.len() <= refused, "no event from nowhere");
    drop(cluster);
}

/// Generation requests sent before the first kill.
const REQUESTS: usize = 24;

/// The node coordinating the transactions of `transactional_id`: the leader of its partition
/// of the transaction state log, `abs(hashCode(id)) % partitions` as Kafka computes it (Java's
/// `String.hashCode` over UTF-16 units).
fn transaction_coordinator(brokers: &str, transactional_id: &str) -> i32 {
    const STATE_LOG: &str = "__transaction_state";
    // transaction.state.log.num.partitions in scripts/stack.d/kafka.sh.
    const STATE_PARTITIONS: i32 = 10;
    let hash = transactional_id.encode_utf16().fold(0_i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    leader(brokers, STATE_LOG, abs % STATE_PARTITIONS)
}

/// Kills node `victim` with SIGKILL, saying why it was chosen.
async fn kill_node(cluster: PrivateCluster, victim: i32, why: &str) -> PrivateCluster {
    eprintln!("killing node {victim}, {why}");
    tokio::task::spawn_blocking(move || {
        cluster.kill(victim);
        cluster
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_painters_transactions_survive_the_loss_of_a_broker_with_one_terminal_each() {
    let (cluster, env) = deployment(1).await;
    // The worker's metrics, to tell how its transactions fared.
    let metrics = gallery::metrics::recorder().unwrap();
    gallery::topics::ensure_topics(&env.config).await.unwrap();
    let brokers = env.config.kafka.brokers.clone();
    let store = gallery_commands::MediaStore::open(&env.config.media)
        .unwrap()
        .object_store();
    // About a second a job: the kills land while jobs run and transactions are open.
    let painter = StepPainter::new(Duration::from_millis(40));
    let settings = common::generation::worker_settings(&env.config);
    let transactional_id = settings.transactional_id();
    let worker = RunningWorker::start(&env.config, settings, store, both(painter.clone()));
    let sender = Requests::new(&env.config);
    let mut results = Results::new(&env.config);
    let requests: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let style = if i % 2 == 0 { "warm" } else { "cool" };
            let mut r = text_request(&format!("user-{}", i % 4), "a quiet harbour", style, 20, 64);
            // A picture of its own each, never one from the result cache.
            r.seed = i as i64;
            r
        })
        .collect();
    for r in &requests {
        sender.request(r).await;
    }
    let ids: Vec<uuid::Uuid> = requests.iter().map(|r| r.request_id).collect();
    let finished = |n: usize| {
        let ids = ids.clone();
        move |r: &Results| ids.iter().filter(|id| r.has_terminal(**id)).count() >= n
    };

    // First the coordinator of the painter's transactions dies, then (once it is back) the
    // leader of the generation partition, each while jobs run.
    results
        .until(Duration::from_secs(120), "4 requests finished", finished(4))
        .await;
    let coordinator = transaction_coordinator(&brokers, &transactional_id);
    let cluster = kill_node(
        cluster,
        coordinator,
        "the coordinator of the painter's transactions",
    )
    .await;
    results
        .until(
            Duration::from_secs(180),
            "10 requests finished",
            finished(10),
        )
        .await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.up();
        cluster
    })
    .await
    .unwrap();
    let generation = env.config.topics().generation();
    let victim = leader(&brokers, &generation, 0);
    let cluster = kill_node(cluster, victim, "the leader of the generation partition").await;
    results
        .until(
            Duration::from_secs(300),
            "every request finished",
            finished(REQUESTS),
        )
        .await;
    // Long enough for a second terminal, were there one, to show.
    results.settle(Duration::from_secs(5)).await;
    worker.stop().await;

    let counts = results.terminal_counts();
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "exactly one terminal for {id}");
        let terminal = results.terminals(*id)[0];
        assert!(
            matches!(terminal, gallery_schemas::Event::GenerationCompleted(_)),
            "{id} did not complete: {terminal:#?}"
        );
    }
    assert_eq!(counts.len(), REQUESTS, "no terminal for anything else");
    let text = metrics.render();
    let transactions = |result: &str| {
        let series = format!(
            "{}{{result=\"{result}\"}}",
            gallery_gpu_workers::metrics::TRANSACTIONS
        );
        common::sample(&text, &series).unwrap_or(0.0)
    };
    eprintln!(
        "{REQUESTS} requests, one completion each; {} paint runs; transactions: {} committed, \
         {} aborted and sent again, {} failed for good (the session started again)",
        painter.calls(),
        transactions("committed"),
        transactions("aborted"),
        transactions("fatal"),
    );
    assert!(painter.calls() >= REQUESTS, "every request was painted");
    drop(cluster);
}

/// Resumes a paused node when dropped, so that a failing assertion leaves no node stopped.
struct Paused<'a> {
    cluster: &'a PrivateCluster,
    node: i32,
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.cluster.resume(self.node);
    }
}

/// Pauses (SIGSTOP) a follower of `topic`/0: the leader keeps it in sync until the cluster
/// drops it (`replica.lag.time.max.ms`, 30 s), and holds every `acks=all` write meanwhile.
fn pause_a_follower<'a>(cluster: &'a PrivateCluster, topic: &str) -> Paused<'a> {
    let leader = leader(&cluster.brokers(), topic, 0);
    let follower = *PrivateCluster::NODES
        .iter()
        .find(|n| **n != leader)
        .unwrap();
    eprintln!("pausing node {follower}, a follower of {topic}/0 (led by {leader})");
    cluster.pause(follower);
    Paused {
        cluster,
        node: follower,
    }
}

/// The command service's publisher on the cluster, with `delivery_timeout`.
fn publisher(
    cluster: &PrivateCluster,
    env: &TestEnv,
    delivery_timeout: Duration,
) -> Arc<KafkaPublisher> {
    Arc::new(
        KafkaPublisher::new(
            &ProducerConfig {
                brokers: cluster.brokers(),
                delivery_timeout,
                queue_capacity: 1000,
                linger: ProducerConfig::DEFAULT_LINGER,
            },
            EventCodec::new(&env.config.registry()).unwrap(),
            env.config.topics(),
        )
        .unwrap(),
    )
}

/// A like of `user`'s, a new event.
fn like(user: &str) -> Event {
    Event::LikeSet(LikeSet {
        event_id: uuid::Uuid::new_v4(),
        user_id: UserId::parse(user).unwrap(),
        artwork_id: ArtworkId::parse("sunflowers").unwrap(),
        liked: true,
        occurred_at: time::OffsetDateTime::now_utc().unix_timestamp() * 1000,
    })
}

/// Room for a search to wait for the cluster to drop a paused follower.
const SEARCH_THROUGH_A_STALL: Duration = Duration::from_secs(60);

/// A takeover's search finds an event that the partition's leader holds above its high
/// watermark: a follower that stops answering (SIGSTOP) stays in sync for the leader until
/// the cluster drops it, and until then the high watermark stands still, so an event sent
/// meanwhile is appended but not yet readable. A search that read to the high watermark
/// missed it and the takeover sent it again (the soak found those copies on adjacent offsets);
/// the search reads to a mark of its own, acknowledged by every in-sync replica, instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeovers_search_finds_an_event_held_above_the_high_watermark() {
    let (cluster, env) = deployment(1).await;
    // Creates the topics and registers the schemas.
    let _app = env.start(Roles::COMMANDS).await;
    let publisher = publisher(&cluster, &env, SEARCH_THROUGH_A_STALL);
    let topic = env.config.topics().interactions();
    // The producer knows the partition's leader before the follower stops.
    let first = like("warm");
    let warm = publisher.publish(&first).await.unwrap();
    // And the cluster's transaction log (created on first use, for the search's marks) is up:
    // created while a broker is stopped, it may wait for that broker until the controller
    // fences it, longer than a search under load waits. A producer of the test's own brings it
    // up, so that the search's marks start as in a running deployment.
    let brokers = env.config.kafka.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set(
                "transactional.id",
                format!("test-warm-{}", uuid::Uuid::new_v4().simple()),
            )
            .create()
            .unwrap();
        producer.init_transactions(SEARCH_THROUGH_A_STALL).unwrap();
    })
    .await
    .unwrap();
    let held = like("held");
    let message = publisher.encode(&held).await.unwrap();

    let paused = pause_a_follower(&cluster, &topic);
    let since = SystemTime::now();
    let sending = {
        let (publisher, message) = (publisher.clone(), message.clone());
        tokio::spawn(async move { publisher.send(&message).await })
    };
    // The leader appends the event at once and holds its acknowledgement.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !sending.is_finished(),
        "the send waits for the paused follower: {:?}",
        sending.await
    );
    let searched = Instant::now();
    let found = publisher.find(&message, since).await.unwrap();
    eprintln!("searched for {:?}", searched.elapsed());
    let sent = sending.await.unwrap().unwrap();
    drop(paused);
    assert_eq!(
        found,
        Some(sent.clone()),
        "the search found the event the leader held (sent at {sent:?})"
    );

    // The marks are invisible to readers of committed events: the log holds the two likes.
    let copies = common::log::copies(&env, &topic).await;
    assert_eq!(
        copies,
        [
            (first.event_id(), vec![(warm.partition, warm.offset)]),
            (held.event_id(), vec![(sent.partition, sent.offset)]),
        ]
        .into_iter()
        .collect(),
        "the log read with read_committed"
    );
}
