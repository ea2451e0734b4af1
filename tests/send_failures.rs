//! A keyed command whose send fails in a way that may still write it, retried with the same
//! `Idempotency-Key`, against the real Kafka, registry and Postgres. The faults come from a
//! publisher wrapped around the real one:
//!
//! - a send reported failed while its request is appended later (as when a leader dies with
//!   the request in hand and the next leader has it): the retry is refused as in progress
//!   for as long as a send may be in flight, then finds the late message in the log and
//!   answers with its position; the log holds the event once (a takeover at once would have
//!   searched before it landed and sent it again);
//! - a takeover whose search of the log fails (Kafka unreachable or slow during an election):
//!   that retry is refused as unavailable and sends nothing; the next one searches again and
//!   finds the event; the log holds it once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::TestEnv;
use gallery::Roles;
use gallery_commands::idempotency::{IdempotencyKey, Ids};
use gallery_commands::{
    Accepted, CommandError, Commands, Context, DecodeFuture, EncodeFuture, Encoded, EventPublisher,
    FindFuture, KafkaPublisher, LookupError, Principal, ProducerConfig, PublishError,
    PublishFuture,
};
use gallery_schemas::{ArtworkId, Event, EventCodec, Position, Role, UserId};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The producer's delivery timeout here: a send may be in flight for this and a second.
const DELIVERY_TIMEOUT: Duration = Duration::from_millis(2_000);

/// The real publisher, with faults on demand.
#[derive(Debug)]
struct Faulty {
    inner: Arc<KafkaPublisher>,
    /// Sends still to be reported failed at once, their message written `late` afterwards.
    late_sends: AtomicU32,
    late: Duration,
    /// The late writes, to wait for.
    landing: Mutex<Vec<JoinHandle<Result<Position, PublishError>>>>,
    /// Searches still to fail as they do while Kafka does not answer.
    failing_searches: AtomicU32,
}

impl Faulty {
    fn new(inner: KafkaPublisher, late: Duration) -> Self {
        Self {
            inner: Arc::new(inner),
            late_sends: AtomicU32::new(0),
            late,
            landing: Mutex::new(Vec::new()),
            failing_searches: AtomicU32::new(0),
        }
    }

    /// Waits until every late write has landed; returns where.
    async fn landed(&self) -> Vec<Position> {
        let handles: Vec<_> = std::mem::take(&mut *self.landing.lock().unwrap());
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap().expect("the late write lands"));
        }
        out
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

impl EventPublisher for Faulty {
    fn encode<'a>(&'a self, event: &'a Event) -> EncodeFuture<'a> {
        self.inner.encode(event)
    }

    fn send<'a>(&'a self, message: &'a Encoded) -> PublishFuture<'a> {
        if !take_one(&self.late_sends) {
            return self.inner.send(message);
        }
        let (inner, message, late) = (self.inner.clone(), message.clone(), self.late);
        self.landing.lock().unwrap().push(tokio::spawn(async move {
            tokio::time::sleep(late).await;
            inner.send(&message).await
        }));
        Box::pin(async move {
            // No acknowledgement: the broker appends the request later.
            Err(PublishError::NoAcknowledgement { waited: late })
        })
    }

    fn decode<'a>(&'a self, message: &'a Encoded) -> DecodeFuture<'a> {
        self.inner.decode(message)
    }

    fn max_in_flight(&self) -> Duration {
        self.inner.max_in_flight()
    }

    fn find<'a>(&'a self, message: &'a Encoded, since: SystemTime) -> FindFuture<'a> {
        if take_one(&self.failing_searches) {
            return Box::pin(async {
                Err(LookupError::TimedOut {
                    bound: DELIVERY_TIMEOUT,
                    read: 0,
                })
            });
        }
        self.inner.find(message, since)
    }
}

/// A deployment whose command role created the topics, registered the schemas and migrated
/// the database, and a write side of the test's own over `Faulty`.
async fn setup(late: Duration) -> (TestEnv, common::App, Commands, Arc<Faulty>) {
    let env = TestEnv::new().await;
    let app = env.start(Roles::COMMANDS).await;
    let publisher = KafkaPublisher::new(
        &ProducerConfig {
            brokers: env.config.kafka.brokers.clone(),
            delivery_timeout: DELIVERY_TIMEOUT,
            queue_capacity: 1000,
            linger: ProducerConfig::DEFAULT_LINGER,
        },
        EventCodec::new(&env.config.registry()).unwrap(),
        env.config.topics(),
    )
    .unwrap();
    let faulty = Arc::new(Faulty::new(publisher, late));
    let pool = gallery::app::pg_pool(&env.config).unwrap();
    let commands = Commands::new(faulty.clone(), pool);
    (env, app, commands, faulty)
}

/// What the retries of a keyed like met before one was accepted.
#[derive(Debug, Default)]
struct Retries {
    in_progress: u32,
    unavailable: u32,
    accepted: Option<Accepted>,
    /// From the first retry to the accepted one.
    waited: Duration,
}

/// Retries the like every 100 ms (for at most 30 s) until it is accepted.
async fn retry_like(commands: &Commands, who: &Principal, key: &IdempotencyKey) -> Retries {
    let artwork = ArtworkId::parse("sunflowers").unwrap();
    let cx = Context {
        who,
        key: Some(key),
    };
    let mut seen = Retries::default();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        match commands.set_like(&cx, &artwork, true).await {
            Ok(done) => {
                seen.accepted = Some(done);
                seen.waited = started.elapsed();
                return seen;
            }
            Err(CommandError::IdempotencyInProgress) => seen.in_progress += 1,
            Err(e) if e.code() == "UNAVAILABLE" => seen.unavailable += 1,
            Err(e) => panic!("a retry was refused with {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no retry accepted within 30 s: {seen:?}");
}

/// The first attempt: its send is reported failed, as unavailable (503).
async fn first_attempt_fails(commands: &Commands, who: &Principal, key: &IdempotencyKey) {
    let artwork = ArtworkId::parse("sunflowers").unwrap();
    let cx = Context {
        who,
        key: Some(key),
    };
    let err = commands.set_like(&cx, &artwork, true).await.unwrap_err();
    assert_eq!(
        (err.status().as_u16(), err.code()),
        (503, "UNAVAILABLE"),
        "{err:?}"
    );
}

/// The log holds event `id` once, where `answer` says.
async fn once_where_answered(env: &TestEnv, id: uuid::Uuid, answer: &Accepted) {
    let topic = env.config.topics().interactions();
    let copies = common::log::copies(env, &topic).await;
    let at = copies.get(&id).cloned().unwrap_or_default();
    assert_eq!(at.len(), 1, "event {id} in the log at {at:?}");
    assert_eq!(answer.event_id, id);
    assert_eq!(
        (
            answer.position.topic.as_str(),
            answer.position.partition,
            answer.position.offset
        ),
        (topic.as_str(), at[0].0, at[0].1),
        "the answer names the copy in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_reported_failed_that_lands_later_is_found_by_the_retry_not_sent_again() {
    // The message lands 1.5 s after its send is reported failed, well within the 3 s a send
    // may be in flight.
    let (env, app, commands, faulty) = setup(Duration::from_millis(1_500)).await;
    let ada = Principal::new(UserId::parse("ada").unwrap(), Role::Visitor);
    let key = IdempotencyKey::parse("like-late").unwrap();
    let event_id = Ids::keyed(&ada.user, &key).id("event");

    faulty.late_sends.store(1, Ordering::Release);
    first_attempt_fails(&commands, &ada, &key).await;
    let retries = retry_like(&commands, &ada, &key).await;
    let landed = faulty.landed().await;
    assert_eq!(landed.len(), 1, "the first attempt's message was written");

    assert!(
        retries.in_progress > 0,
        "retries are refused while the failed send may still land: {retries:?}"
    );
    let in_flight = faulty.max_in_flight();
    assert!(
        retries.waited + Duration::from_millis(500) >= in_flight,
        "the first retry answered after {:?}, sooner than a send may be in flight ({in_flight:?})",
        retries.waited
    );
    let answer = retries.accepted.unwrap();
    once_where_answered(&env, event_id, &answer).await;
    assert_eq!(answer.position, landed[0], "answered with the late copy");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_takeover_whose_search_fails_sends_nothing_and_the_next_retry_finds_the_event() {
    // The message is written at once, though its send is reported failed; then the takeover's
    // first search fails.
    let (env, app, commands, faulty) = setup(Duration::ZERO).await;
    let ada = Principal::new(UserId::parse("ada").unwrap(), Role::Visitor);
    let key = IdempotencyKey::parse("like-search").unwrap();
    let event_id = Ids::keyed(&ada.user, &key).id("event");

    faulty.late_sends.store(1, Ordering::Release);
    faulty.failing_searches.store(1, Ordering::Release);
    first_attempt_fails(&commands, &ada, &key).await;
    let landed = faulty.landed().await;
    assert_eq!(landed.len(), 1, "the first attempt's message was written");

    let retries = retry_like(&commands, &ada, &key).await;
    assert_eq!(
        faulty.failing_searches.load(Ordering::Acquire),
        0,
        "a takeover searched"
    );
    assert_eq!(
        retries.unavailable, 1,
        "the retry whose search failed is refused as unavailable: {retries:?}"
    );
    let answer = retries.accepted.unwrap();
    once_where_answered(&env, event_id, &answer).await;
    assert_eq!(answer.position, landed[0]);
    app.stop().await;
}
