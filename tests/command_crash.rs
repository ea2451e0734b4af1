//! A keyed command whose command service (a `gallery commands` process of its own) dies
//! (SIGKILL) or hangs (SIGSTOP) in the middle of it, retried with the same `Idempotency-Key`
//! on another command service.
//!
//! The command is caught at a chosen point deterministically, by a row the test holds in an
//! open transaction, which the process's next statement waits for:
//!
//! - killed between Kafka's acknowledgement and its stored answer (it waits to record the
//!   comment it posted, whose id the key decides): the retry is answered at once, not when a
//!   claim of a minute expires, finds the event in the log and answers with its id and its
//!   position without sending it again (the log holds it once), and records the comment;
//! - killed after storing the event it decided but before sending it (it waits in storing
//!   it): the retry does not find it in the log, sends it, and the log holds it once;
//! - killed right after claiming its key (it waits for the key's row): the retry is answered
//!   at once and the like is written once;
//! - hung right after claiming its key, so alive and able to write: the retry is refused as in
//!   progress until the producer's delivery timeout (and a second) has passed, then answered;
//!   the hung process, woken, writes nothing;
//! - a claim stored by an earlier version (during a rolling upgrade) keeps that version's rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{App, TestEnv};
use gallery::Roles;
use gallery_commands::idempotency::{IdempotencyKey, Ids};
use gallery_schemas::{Event, EventCodec, UserId};
use serde_json::{Value, json};
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const ARTWORK: &str = "sunflowers";

/// A `gallery commands` process of its own.
struct CommandService {
    child: Child,
    url: String,
}

impl CommandService {
    /// Starts one with the given delivery timeout and waits until it serves.
    async fn start(env: &TestEnv, delivery_timeout_ms: u64) -> Self {
        let port = common::free_port();
        let child = common::gallery_command(env, &["commands"])
            .env("GALLERY_COMMANDS__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "GALLERY_KAFKA__DELIVERY_TIMEOUT_MS",
                delivery_timeout_ms.to_string(),
            )
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn gallery commands");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !reqwest::get(format!("{url}/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(Instant::now() < deadline, "gallery commands did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, url }
    }

    async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        let status = self.child.wait().await.unwrap();
        assert!(!status.success(), "killed, not exited");
    }

    /// Sends `signal` (`-STOP`, `-CONT`).
    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }
}

/// A keyed command: method, path and body.
#[derive(Clone, Copy)]
struct Command {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
}

const LIKE: Command = Command {
    method: "PUT",
    path: "/v1/artworks/sunflowers/like",
    body: None,
};
const COMMENT: Command = Command {
    method: "POST",
    path: "/v1/artworks/sunflowers/comments",
    body: Some("Those yellows!"),
};

/// Sends `command` to `base` with `key`; returns the status and the body (status 0 and the
/// error when the service went away).
async fn send(base: &str, token: &str, key: &str, command: Command) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(command.method.as_bytes()).unwrap();
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{}", command.path))
        .bearer_auth(token)
        .header("Idempotency-Key", key);
    if let Some(body) = command.body {
        request = request.json(&json!({ "body": body }));
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

/// Sends `command` in the background (it is going to wait for the test).
fn spawn_send(base: &str, token: &str, key: &str, command: Command) -> JoinHandle<(u16, Value)> {
    let (base, token, key) = (base.to_owned(), token.to_owned(), key.to_owned());
    tokio::spawn(async move { send(&base, &token, &key, command).await })
}

/// Retries `command` with `key` at `base` until it is answered `202`, every 50 ms while it is
/// `409 IDEMPOTENCY_IN_PROGRESS`; returns the answer and how often it was in progress.
async fn retry_until_accepted(
    base: &str,
    token: &str,
    key: &str,
    command: Command,
) -> (Value, u32) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut in_progress = 0;
    loop {
        match send(base, token, key, command).await {
            (202, body) => return (body, in_progress),
            (409, body) if body["error"]["code"] == "IDEMPOTENCY_IN_PROGRESS" => {
                in_progress += 1;
            }
            other => panic!("unexpected answer to the retry: {other:?}"),
        }
        assert!(Instant::now() < deadline, "no answer within 90 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Retries after a crash: the answer must come promptly, not when the dead attempt's claim
/// expires.
async fn retried_promptly(base: &str, token: &str, key: &str, command: Command) -> Value {
    let started = Instant::now();
    let (answer, in_progress) = retry_until_accepted(base, token, key, command).await;
    let waited = started.elapsed();
    eprintln!("the retry was answered after {waited:?}, {in_progress} times in progress");
    assert!(
        waited < PROMPTLY,
        "the retry waited {waited:?} for a dead attempt"
    );
    answer
}

/// A row held in an open transaction: statements that need it wait until it is let go.
struct Held {
    client: tokio_postgres::Client,
    pid: i32,
}

impl Held {
    /// Inserts a row with `sql` in a transaction left open.
    async fn insert(
        env: &TestEnv,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Self {
        let client = env.db().await;
        let pid = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        client.batch_execute("BEGIN").await.unwrap();
        assert_eq!(client.execute(sql, params).await.unwrap(), 1);
        Self { client, pid }
    }

    /// Waits until another session waits for the held row.
    async fn until_waited_for(&self, db: &tokio_postgres::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let waiting: bool = db
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                                    WHERE $1 = ANY(pg_blocking_pids(pid)))",
                    &[&self.pid],
                )
                .await
                .unwrap()
                .get(0);
            if waiting {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nothing waited for the row within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn let_go(self) {
        self.client.batch_execute("ROLLBACK").await.unwrap();
    }
}

/// Kills `service` while its `request` waits for the `held` row, then lets the row go: the
/// statement that waited was sent before the process died, so it runs even so.
async fn kill_while_waiting(
    db: &tokio_postgres::Client,
    held: Held,
    service: &mut CommandService,
    request: JoinHandle<(u16, Value)>,
) {
    held.until_waited_for(db).await;
    service.kill().await;
    assert_eq!(
        request.await.unwrap().0,
        0,
        "the request died with its service"
    );
    held.let_go().await;
}

/// Holds a claim of `key` (as if another attempt were inserting it).
async fn hold_claim(env: &TestEnv, key: &str) -> Held {
    Held::insert(
        env,
        "INSERT INTO commands.idempotency_keys (user_id, key, request_hash)
         VALUES ('ada', $1, 'held by the test')",
        &[&key],
    )
    .await
}

/// Waits until a claim of `key` is visible (the held one being gone, it is the service's).
async fn until_claimed(db: &tokio_postgres::Client, key: &str) {
    until_row(
        db,
        "EXISTS (SELECT 1 FROM commands.idempotency_keys WHERE key = $1)",
        key,
    )
    .await;
}

/// Waits until `condition` (a SQL boolean of `$1`, the key) holds, for at most 30 s.
async fn until_row(db: &tokio_postgres::Client, condition: &str, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !db
        .query_one(&format!("SELECT {condition}"), &[&key])
        .await
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(
            Instant::now() < deadline,
            "no {condition} for {key} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The ids a keyed command of `user` is given.
fn ids(user: &str, key: &str) -> Ids {
    Ids::keyed(
        &UserId::parse(user).unwrap(),
        &IdempotencyKey::parse(key).unwrap(),
    )
}

/// The messages of the interactions topic that carry event `id`.
async fn copies_of(env: &TestEnv, id: uuid::Uuid) -> Vec<common::log::Raw> {
    let codec = EventCodec::new(&env.config.registry()).unwrap();
    let mut out = Vec::new();
    for m in common::log::read_raw(
        &env.config.kafka.brokers,
        &env.config.topics().interactions(),
    ) {
        let event: Event = codec.decode(Some(&m.value)).await.unwrap();
        if event.event_id() == id {
            out.push(m);
        }
    }
    out
}

/// The one copy of event `id` in the interactions topic, checked against `answer`: the
/// position answered is where it is, the partition the one its key is placed on.
async fn once_as_answered(env: &TestEnv, id: uuid::Uuid, answer: &Value) {
    let copies = copies_of(env, id).await;
    assert_eq!(copies.len(), 1, "the log holds the event once");
    let copy = &copies[0];
    let topic = env.config.topics().interactions();
    assert_eq!(
        answer["position"],
        json!({ "topic": topic, "partition": copy.partition, "offset": copy.offset }),
        "answered with where the event is"
    );
    let partitions = i32::try_from(env.end_offsets(&topic).len()).unwrap();
    assert_eq!(
        gallery_commands::placement::partition_of(&copy.key, partitions),
        Some(copy.partition),
        "the producer placed the key where placement::partition_of says"
    );
}

/// A deployment with one command service in this process (it creates the topics, registers
/// the schemas and migrates before the separate process starts) and one separate process.
async fn setup(delivery_timeout_ms: u64) -> (TestEnv, App, String, CommandService) {
    let mut env = TestEnv::new().await;
    // Retries come every 50 ms, beyond the interactions quota of a real client.
    env.config.limits.interactions_per_minute = 0;
    let app = env.start(Roles::COMMANDS).await;
    let other = app.commands_url("");
    let service = CommandService::start(&env, delivery_timeout_ms).await;
    (env, app, other, service)
}

/// Far longer than a retry may wait in these tests: only the dead process being noticed can
/// answer it in time.
const LONG_DELIVERY_TIMEOUT_MS: u64 = 30_000;
/// A retry after a crash is answered within this (on a loaded machine).
const PROMPTLY: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_between_the_acknowledgement_and_the_answer_the_retry_finds_the_event_in_the_log() {
    let (env, app, other, mut service) = setup(LONG_DELIVERY_TIMEOUT_MS).await;
    let db = env.db().await;
    let ada = env.token("ada");
    let key = "comment-1";
    let (event_id, comment_id) = (ids("ada", key).id("event"), ids("ada", key).id("comment"));
    let topic = env.config.topics().interactions();
    let before = env.end_offsets(&topic);

    // The comment's row, held: the service records it after Kafka acknowledged the event,
    // in the transaction that also stores its answer.
    let held = Held::insert(
        &env,
        "INSERT INTO commands.comments (comment_id, artwork_id, author_id)
         VALUES ($1, $2, 'ada')",
        &[&comment_id, &ARTWORK],
    )
    .await;
    let request = spawn_send(&service.url, &ada, key, COMMENT);
    held.until_waited_for(&db).await;
    assert_ne!(env.end_offsets(&topic), before, "Kafka has the event");
    service.kill().await;
    assert_eq!(
        request.await.unwrap().0,
        0,
        "the request died with its service"
    );
    held.let_go().await;

    let answer = retried_promptly(&other, &ada, key, COMMENT).await;
    assert_eq!(answer["eventId"], event_id.to_string());
    assert_eq!(answer["id"], comment_id.to_string());

    once_as_answered(&env, event_id, &answer).await;

    // The retry recorded the comment (its author may delete it), and replays from now on.
    let (status, replay) = send(&other, &ada, key, COMMENT).await;
    assert_eq!((status, &replay), (202, &answer));
    let deleted = app
        .http
        .delete(app.commands_url(&format!("/v1/artworks/{ARTWORK}/comments/{comment_id}")))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 202);
    app.stop().await;
}

/// Key of the advisory lock the test holds to stop a service in storing its decided event.
const DECISION_LOCK: i64 = 0x6465_6369_6465;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_after_storing_its_event_before_sending_it_the_retry_sends_it_once() {
    let (env, app, other, mut service) = setup(LONG_DELIVERY_TIMEOUT_MS).await;
    let db = env.db().await;
    let ada = env.token("ada");
    let key = "comment-2";
    let event_id = ids("ada", key).id("event");
    // Storing a decided event waits for a lock the test holds (this database is the test's
    // own); the event is sent only once it is stored.
    db.batch_execute(&format!(
        "CREATE FUNCTION commands.wait_for_the_test() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock({DECISION_LOCK}); RETURN NEW; END $$;
         CREATE TRIGGER wait_for_the_test BEFORE UPDATE ON commands.idempotency_keys
         FOR EACH ROW WHEN (OLD.payload IS NULL AND NEW.payload IS NOT NULL)
         EXECUTE FUNCTION commands.wait_for_the_test();"
    ))
    .await
    .unwrap();
    let held = Held::insert(&env, "SELECT pg_advisory_xact_lock($1)", &[&DECISION_LOCK]).await;
    let request = spawn_send(&service.url, &ada, key, COMMENT);
    kill_while_waiting(&db, held, &mut service, request).await;
    // The event is stored, not sent.
    until_row(
        &db,
        "EXISTS (SELECT 1 FROM commands.idempotency_keys WHERE key = $1 AND payload IS NOT NULL)",
        key,
    )
    .await;
    assert!(copies_of(&env, event_id).await.is_empty(), "not sent yet");

    let answer = retried_promptly(&other, &ada, key, COMMENT).await;
    assert_eq!(answer["eventId"], event_id.to_string());
    once_as_answered(&env, event_id, &answer).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_right_after_claiming_its_key_the_retry_is_answered_at_once() {
    let (env, app, other, mut service) = setup(LONG_DELIVERY_TIMEOUT_MS).await;
    let db = env.db().await;
    let ada = env.token("ada");
    let key = "like-1";

    let held = hold_claim(&env, key).await;
    let request = spawn_send(&service.url, &ada, key, LIKE);
    kill_while_waiting(&db, held, &mut service, request).await;
    until_claimed(&db, key).await;

    let answer = retried_promptly(&other, &ada, key, LIKE).await;
    let event_id = ids("ada", key).id("event");
    assert_eq!(answer["eventId"], event_id.to_string());
    assert_eq!(copies_of(&env, event_id).await.len(), 1, "written once");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_attempt_keeps_its_key_until_the_delivery_timeout_has_passed() {
    let delivery_timeout = Duration::from_millis(3_000);
    let (env, app, other, service) =
        setup(u64::try_from(delivery_timeout.as_millis()).unwrap()).await;
    let db = env.db().await;
    let ada = env.token("ada");
    let key = "like-2";

    let held = hold_claim(&env, key).await;
    let request = spawn_send(&service.url, &ada, key, LIKE);
    held.until_waited_for(&db).await;
    service.signal("-STOP");
    let stopped = Instant::now();
    held.let_go().await;
    until_claimed(&db, key).await;

    // Alive, it could still send its event: the key stays its own.
    let (status, body) = send(&other, &ada, key, LIKE).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("IDEMPOTENCY_IN_PROGRESS")),
        "{body}"
    );
    let (answer, in_progress) = retry_until_accepted(&other, &ada, key, LIKE).await;
    let waited = stopped.elapsed();
    eprintln!(
        "the retry was answered {waited:?} after the process hung, {in_progress} times in progress"
    );
    // An attempt may take the producer's delivery timeout and a second.
    let bound = delivery_timeout + Duration::from_secs(1);
    assert!(
        waited > bound - Duration::from_secs(1),
        "taken over after {waited:?}"
    );
    assert!(
        waited < bound + Duration::from_secs(3),
        "answered after {waited:?}"
    );
    let event_id = ids("ada", key).id("event");
    assert_eq!(answer["eventId"], event_id.to_string());

    // Woken up, the hung attempt finds its key taken over and sends nothing.
    service.signal("-CONT");
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), request)
        .await
        .expect("the hung request ends")
        .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("IDEMPOTENCY_IN_PROGRESS")),
        "{body}"
    );
    assert_eq!(copies_of(&env, event_id).await.len(), 1, "written once");
    app.stop().await;
}

/// A claim stored by a version before attempts and leases (during a rolling upgrade) has no
/// owner to ask: it is taken over by that version's rule, once it is a minute old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_an_earlier_version_is_taken_over_by_its_rule() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::COMMANDS).await;
    let base = app.commands_url("");
    let db = env.db().await;
    let ada = env.token("ada");
    let key = "legacy-1";
    let request = json!({"artwork": ARTWORK, "liked": true}).to_string();
    let hash = gallery_commands::idempotency::fingerprint("set_like", request.as_bytes());
    db.execute(
        "INSERT INTO commands.idempotency_keys (user_id, key, request_hash) VALUES ('ada', $1, $2)",
        &[&key, &hash],
    )
    .await
    .unwrap();

    let (status, body) = send(&base, &ada, key, LIKE).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("IDEMPOTENCY_IN_PROGRESS")),
        "{body}"
    );
    db.execute(
        "UPDATE commands.idempotency_keys SET created_at = now() - interval '61 seconds'
         WHERE key = $1",
        &[&key],
    )
    .await
    .unwrap();
    let (status, body) = send(&base, &ada, key, LIKE).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["eventId"], ids("ada", key).id("event").to_string());
    app.stop().await;
}

/// The checks of these tests and of the soak read the log to its high watermark: a mark's
/// transaction left open by a process that died (until Kafka aborts it) holds back readers of
/// committed events, but what was acknowledged after it is read once the transaction ends, and
/// the mark itself is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_read_waits_out_an_open_transaction_and_reads_what_was_acknowledged_after_it() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    use rdkafka::producer::{DefaultProducerContext, NoCustomPartitioner};

    let env = TestEnv::new().await;
    gallery::topics::ensure_topics(&env.config).await.unwrap();
    let topic = env.config.topics().interactions();
    let brokers = &env.config.kafka.brokers;
    let producer = |extra: &[(&str, String)]| {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers).set("acks", "all");
        for (k, v) in extra {
            config.set(*k, v);
        }
        config
            .create::<ThreadedProducer<DefaultProducerContext, NoCustomPartitioner>>()
            .unwrap()
    };
    let send = |p: &ThreadedProducer<_, _>, value: &str| {
        p.send(
            BaseRecord::<[u8], _>::to(&topic)
                .partition(0)
                .payload(value),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        p.flush(Duration::from_secs(30)).unwrap();
    };
    let open = producer(&[(
        "transactional.id",
        format!("test-open-{}", uuid::Uuid::new_v4()),
    )]);
    open.init_transactions(Duration::from_secs(30)).unwrap();
    open.begin_transaction().unwrap();
    send(&open, "held open");
    let plain = producer(&[]);
    send(&plain, "acknowledged after it");

    let aborting = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        open.abort_transaction(Duration::from_secs(30)).unwrap();
    });
    let read = common::log::read_raw(brokers, &topic);
    aborting.join().unwrap();
    let values: Vec<&[u8]> = read.iter().map(|m| m.value.as_slice()).collect();
    assert_eq!(values, [b"acknowledged after it".as_slice()]);
}
