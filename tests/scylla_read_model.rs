//! The Scylla read model (Apache Cassandra locally): the same interactions give the same
//! GraphQL answers from Postgres and from Scylla; a SIGKILLed projector with duplicated events
//! ends at the ground truth; a replay from earlier offsets rewrites the same values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::facts::{Fact, FactProducer, Kind};
use common::scylla::{offsets, projected_count, session, wait_projected, with_scylla};
use common::{Accepted, App, TestEnv, ws};
use gallery::Roles;
use gallery::config::ReadStore;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use scylla::client::session::Session;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Sends a command, asserting a 202; returns its body.
async fn send(app: &App, method: &str, path: &str, token: Option<&str>, body: Value) -> Value {
    let body = (method == "POST").then_some(body);
    let (status, body) = common::send(app, method, path, token, None, body).await;
    assert_eq!(status, 202, "{method} {path}: {body}");
    body
}

/// Likes, favorites, comments (one deleted) and views on two artworks by three users.
async fn interactions(env: &TestEnv, app: &App, a0: &str, a1: &str) {
    let (ada, bob, cy) = (env.token("ada"), env.token("bob"), env.token("cy"));
    let marks = [
        ("PUT", format!("/v1/artworks/{a0}/like"), &ada),
        ("PUT", format!("/v1/artworks/{a1}/like"), &ada),
        ("PUT", format!("/v1/artworks/{a0}/like"), &bob),
        ("DELETE", format!("/v1/artworks/{a0}/like"), &bob),
        ("PUT", format!("/v1/artworks/{a0}/like"), &bob),
        ("PUT", format!("/v1/artworks/{a1}/like"), &cy),
        ("DELETE", format!("/v1/artworks/{a1}/like"), &cy),
        ("DELETE", format!("/v1/artworks/{a0}/like"), &cy),
        ("PUT", format!("/v1/artworks/{a0}/favorite"), &bob),
        ("PUT", format!("/v1/artworks/{a1}/favorite"), &bob),
        ("DELETE", format!("/v1/artworks/{a1}/favorite"), &bob),
        ("PUT", format!("/v1/artworks/{a1}/favorite"), &ada),
        ("PUT", format!("/v1/artworks/{a0}/favorite"), &ada),
    ];
    for (method, path, token) in &marks {
        send(app, method, path, Some(token), Value::Null).await;
        tokio::time::sleep(Duration::from_millis(3)).await; // distinct times: a stable order
    }
    let mut ids = vec![];
    for (i, token) in [&ada, &ada, &bob, &ada].into_iter().enumerate() {
        let body = send(
            app,
            "POST",
            &format!("/v1/artworks/{a0}/comments"),
            Some(token),
            json!({"body": format!("comment {i}")}),
        )
        .await;
        ids.push(body["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    send(
        app,
        "POST",
        &format!("/v1/artworks/{a1}/comments"),
        Some(&cy),
        json!({"body": "lovely"}),
    )
    .await;
    send(
        app,
        "DELETE",
        &format!("/v1/artworks/{a0}/comments/{}", ids[1]),
        Some(&ada),
        Value::Null,
    )
    .await;
    for token in [Some(&ada), None, Some(&bob)] {
        send(
            app,
            "POST",
            &format!("/v1/artworks/{a0}/views"),
            token.map(String::as_str),
            json!({}),
        )
        .await;
    }
    send(
        app,
        "POST",
        &format!("/v1/artworks/{a1}/views"),
        None,
        json!({}),
    )
    .await;
}

const QUERY: &str = "query($a0: ID!, $a1: ID!) {
  a0: artwork(id: $a0) { ...counts }
  a1: artwork(id: $a1) { ...counts }
  none: artwork(id: \"nobody-touched-it\") { ...counts }
}
fragment counts on Artwork {
  id likeCount viewerHasLiked viewerHasFavorited stats { likes favorites comments views }
  comments(first: 10) { edges { cursor node { id author body postedAt } } pageInfo { hasNextPage endCursor } }
}";

const POPULAR: &str = "{
  likes: popularArtworks(window: LAST_24_HOURS, by: LIKES) { score artwork { id } }
  views: popularArtworks(window: LAST_7_DAYS, by: VIEWS) { score artwork { id } } }";

const VIEWER: &str = "{ viewer { id
  likes(first: 10) { edges { cursor node { at artwork { id } } } pageInfo { hasNextPage endCursor } }
  favorites(first: 10) { edges { cursor node { at artwork { id } } } pageInfo { hasNextPage endCursor } } } }";

const COMMENT_PAGE: &str = "query($id: ID!, $after: String) { artwork(id: $id) {
  comments(first: 1, after: $after) { edges { cursor node { id body } } pageInfo { hasNextPage endCursor } } } }";

const MARK_PAGE: &str = "query($after: String) { viewer {
  favorites(first: 1, after: $after) { edges { cursor node { artwork { id } } } pageInfo { hasNextPage endCursor } } } }";

async fn answer(app: &App, token: Option<&str>, query: &str, vars: Value) -> Value {
    let body = app.graphql(token, query, vars).await;
    assert!(body.get("errors").is_none(), "graphql errors: {body}");
    body["data"].clone()
}

/// Walks a connection page by page; returns every page.
async fn walk(
    app: &App,
    token: Option<&str>,
    query: &str,
    vars: Value,
    path: &[&str],
) -> Vec<Value> {
    let mut pages = vec![];
    let mut after = Value::Null;
    loop {
        let mut v = vars.clone();
        v["after"] = after;
        let mut page = answer(app, token, query, v).await;
        for p in path {
            page = page[*p].clone();
        }
        pages.push(page.clone());
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            return pages;
        }
        after = page["pageInfo"]["endCursor"].clone();
        assert!(pages.len() < 20, "pagination does not end");
    }
}

/// Commands, both projectors (the read store is Scylla) and GraphQL over Scylla; and GraphQL
/// over Postgres, the same deployment otherwise.
async fn both_stores(env: &TestEnv) -> (App, App) {
    let app = env.start(Roles::SERVICES).await;
    (app, postgres_reader(env).await)
}

/// GraphQL over Postgres, the same deployment as `env` otherwise.
async fn postgres_reader(env: &TestEnv) -> App {
    let mut pg_config = env.config.clone();
    pg_config.read.store = ReadStore::Postgres;
    let pg_env = TestEnv {
        config: pg_config,
        db_name: env.db_name.clone(),
    };
    pg_env.start(Roles::QUERY_API).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_and_scylla_give_the_same_answers() {
    let env = with_scylla(TestEnv::new().await);
    let (app, pg_app) = both_stores(&env).await;

    let (a0, a1) = ("sunflowers", "irises");
    interactions(&env, &app, a0, a1).await;
    env.wait_everything_projected().await;
    let cql = session(&env).await;
    wait_projected(&env, &cql).await;

    let vars = json!({"a0": a0, "a1": a1});
    for user in [Some("ada"), Some("bob"), Some("cy"), None] {
        let token = user.map(|u| env.token(u));
        let t = token.as_deref();
        let from_scylla = answer(&app, t, QUERY, vars.clone()).await;
        let from_pg = answer(&pg_app, t, QUERY, vars.clone()).await;
        assert_eq!(from_scylla, from_pg, "artworks as {user:?} sees them");
        if t.is_some() {
            let from_scylla = answer(&app, t, VIEWER, json!({})).await;
            let from_pg = answer(&pg_app, t, VIEWER, json!({})).await;
            assert_eq!(from_scylla, from_pg, "the viewer {user:?}");
            let pages = walk(&app, t, MARK_PAGE, json!({}), &["viewer", "favorites"]).await;
            let pg_pages = walk(&pg_app, t, MARK_PAGE, json!({}), &["viewer", "favorites"]).await;
            assert_eq!(pages, pg_pages, "{user:?}'s favorites page by page");
        }
    }
    let pages = walk(
        &app,
        None,
        COMMENT_PAGE,
        json!({"id": a0}),
        &["artwork", "comments"],
    )
    .await;
    let pg_pages = walk(
        &pg_app,
        None,
        COMMENT_PAGE,
        json!({"id": a0}),
        &["artwork", "comments"],
    )
    .await;
    assert_eq!(pages, pg_pages, "comments page by page");
    assert_eq!(pages.len(), 3, "three comments not deleted, one a page");
    let popular = answer(&app, None, POPULAR, json!({})).await;
    assert_eq!(
        popular,
        answer(&pg_app, None, POPULAR, json!({})).await,
        "the most popular artworks"
    );
    assert_eq!(
        popular["likes"],
        json!([{"score": 2, "artwork": {"id": a0}}, {"score": 1, "artwork": {"id": a1}}])
    );
    assert_eq!(
        popular["views"],
        json!([{"score": 3, "artwork": {"id": a0}}, {"score": 1, "artwork": {"id": a1}}])
    );
    // They are Scylla's: without Postgres' buckets, only the Postgres reader loses them.
    env.db()
        .await
        .batch_execute("DELETE FROM like_buckets; DELETE FROM view_buckets")
        .await
        .unwrap();
    assert_eq!(answer(&app, None, POPULAR, json!({})).await, popular);
    assert_eq!(
        answer(&pg_app, None, POPULAR, json!({})).await,
        json!({"likes": [], "views": []})
    );

    // The answers are the expected ones, and they are Scylla's.
    let ada = env.token("ada");
    let seen = answer(&app, Some(&ada), QUERY, vars).await;
    assert_eq!(
        seen["a0"]["stats"],
        json!({"likes": 2, "favorites": 2, "comments": 3, "views": 3})
    );
    assert_eq!(
        seen["a1"]["stats"],
        json!({"likes": 1, "favorites": 1, "comments": 1, "views": 1})
    );
    let ks = &env.config.scylla.keyspace;
    let stored = cql
        .query_unpaged(
            format!("SELECT likes, comments FROM {ks}.artwork_state WHERE artwork_id = ? LIMIT 1"),
            (a0,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<(Option<i64>, Option<i64>)>()
        .unwrap();
    assert_eq!(stored, (Some(2), Some(3)), "the counts stored in Scylla");
    pg_app.stop().await;
    app.stop().await;
}

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
        .env("GALLERY_READ_STORE", "scylla")
        // Static membership: a restarted projector gets its partitions back at once.
        .env("GALLERY_PROJECTIONS__INSTANCE_ID", "projector-0")
        .env("GALLERY_SCYLLA__KEYSPACE", &env.config.scylla.keyspace)
        .env("GALLERY_SCYLLA__NODES", &env.config.scylla.nodes)
        // A round's backlog (110 messages) in many small batches, for a kill to land
        // between them however fast each is applied.
        .env("GALLERY_PROJECTIONS__MAX_BATCH", "1000")
        .env("GALLERY_PROJECTIONS__SCYLLA_MAX_BATCH", "10")
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

/// Produces an exact copy (key and payload) of the message at `partition`/`offset` again, to
/// the same partition, as a producer retry would; returns the copy's offset.
async fn produce_again(env: &TestEnv, topic: &str, partition: i32, offset: i64) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.config.kafka.brokers)
        .set(
            "group.id",
            format!("{}copier", env.config.kafka.topic_prefix),
        )
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let (key, payload) = loop {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) if m.offset() == offset => {
                break (m.key().unwrap().to_vec(), m.payload().unwrap().to_vec());
            }
            Some(_) => {}
            None => panic!("no message at {topic}/{partition}@{offset}"),
        }
    };
    let producer = common::kafka::producer(&env.config.kafka.brokers);
    let (_, copy) = common::kafka::send(&producer, topic, Some(partition), &key, &payload).await;
    copy
}

/// (artwork, user) -> liked, and every artwork's likes, as stored in Scylla.
async fn scylla_likes(
    env: &TestEnv,
    cql: &Session,
) -> (BTreeMap<(String, String), bool>, BTreeMap<String, i64>) {
    let ks = &env.config.scylla.keyspace;
    let mut states = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let Ok(result) = cql
        .query_unpaged(
            format!("SELECT artwork_id, user_id, liked, likes FROM {ks}.artwork_state"),
            (),
        )
        .await
    else {
        return (states, counts); // killed before it created its tables
    };
    let rows = result.into_rows_result().unwrap();
    for row in rows
        .rows::<(String, Option<String>, Option<bool>, Option<i64>)>()
        .unwrap()
    {
        let (a, u, liked, likes) = row.unwrap();
        if let (Some(u), Some(l)) = (u, liked) {
            states.insert((a.clone(), u), l);
        }
        counts.insert(a, likes.unwrap_or(0));
    }
    (states, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_scylla_projector_with_duplicates_ends_at_the_ground_truth() {
    let env = with_scylla(TestEnv::new().await);
    let app = Arc::new(env.start(Roles::COMMANDS).await);
    let cql = session(&env).await;
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
    let topic = env.config.topics().interactions();

    // (user, artwork, liked, offset, a copy?) of every fact in the topic, copies included.
    let mut facts: Vec<(String, String, bool, i64, bool)> = Vec::new();
    let mut kills_with_work_pending = 0;
    for batch in ops.chunks(100) {
        let mut produced: Vec<(String, String, bool, Accepted)> = Vec::new();
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
        // Some events of the round once more, as a producer retry would write them.
        for _ in 0..10 {
            let (user, artwork, liked, accepted) =
                produced[rng.next(produced.len() as u64) as usize].clone();
            let offset = produce_again(&env, &topic, accepted.partition, accepted.offset).await;
            facts.push((user, artwork, liked, offset, true));
        }
        for (user, artwork, liked, accepted) in produced {
            facts.push((user, artwork, liked, accepted.offset, false));
        }
        // The projector starts behind by a round and is killed at a random point of its
        // start-up or catch-up.
        // The projector starts behind by a round; once it has stored its first batch, it is
        // killed at a random point of its catch-up.
        let start = projected_count(&env, &cql).await;
        let mut projector = spawn_projector(&env);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while projected_count(&env, &cql).await == start {
            assert!(tokio::time::Instant::now() < deadline, "no progress");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.next(40))).await;
        projector.start_kill().unwrap();
        let status = projector.wait().await.unwrap();
        assert!(!status.success(), "killed, not exited");
        let projected = projected_count(&env, &cql).await;
        eprintln!("killed at {projected} of {} messages", facts.len());
        if projected < facts.len() as i64 {
            kills_with_work_pending += 1;
        }
        let (_, counts) = scylla_likes(&env, &cql).await;
        assert!(
            counts.values().all(|c| *c >= 0),
            "a negative count: {counts:?}"
        );
    }
    let mut projector = spawn_projector(&env);
    eprintln!("{kills_with_work_pending} of 6 kills landed with events still unapplied");
    assert!(
        kills_with_work_pending >= 1,
        "at least one SIGKILL should land while events were still unapplied"
    );

    // Ground truth: the latest fact per (artwork, user) by offset; a copy (the same event again)
    // changes nothing.
    let mut latest: BTreeMap<(String, String), (i64, bool)> = BTreeMap::new();
    for (user, artwork, liked, offset, _) in facts.iter().filter(|f| !f.4) {
        let entry = latest
            .entry((artwork.clone(), user.clone()))
            .or_insert((-1, false));
        if *offset > entry.0 {
            *entry = (*offset, *liked);
        }
    }
    wait_projected(&env, &cql).await;
    projector.start_kill().unwrap();

    let (states, counts) = scylla_likes(&env, &cql).await;
    for artwork in artworks {
        let expected = latest
            .iter()
            .filter(|((a, _), (_, liked))| a == artwork && *liked)
            .count() as i64;
        assert_eq!(
            counts.get(artwork).copied().unwrap_or(0),
            expected,
            "likes of {artwork}"
        );
    }
    let truth: BTreeMap<(String, String), bool> =
        latest.into_iter().map(|(k, (_, l))| (k, l)).collect();
    assert_eq!(states, truth, "each user's latest like state");
    // The hourly net likes copied for the popularity reads add up to the counts (every fact
    // of this test happened within its last hours).
    let ks = &env.config.scylla.keyspace;
    let rows = cql
        .query_unpaged(
            format!("SELECT artwork_id, net_likes FROM {ks}.popular_hours"),
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let mut net: BTreeMap<String, i64> = BTreeMap::new();
    for row in rows.rows::<(String, Option<i64>)>().unwrap() {
        let (artwork, likes) = row.unwrap();
        *net.entry(artwork).or_insert(0) += likes.unwrap_or(0);
    }
    for artwork in artworks {
        assert_eq!(
            net.get(artwork).copied().unwrap_or(0),
            counts.get(artwork).copied().unwrap_or(0),
            "net likes of {artwork} over the hours"
        );
    }
    // The users' lists agree with the states.
    let rows = cql
        .query_unpaged(
            format!("SELECT user_id, mark, artwork_id FROM {ks}.user_marks"),
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let mut listed: Vec<(String, String)> = Vec::new();
    for row in rows.rows::<(String, String, String)>().unwrap() {
        let (user, mark, artwork) = row.unwrap();
        assert_eq!(mark, "like");
        listed.push((artwork, user));
    }
    listed.sort();
    let liked: Vec<(String, String)> = truth
        .iter()
        .filter(|(_, l)| **l)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(listed, liked, "every liked pair listed once, nothing else");
    Arc::into_inner(app).unwrap().stop().await;
}

/// Every row of the interaction tables, with the write times of their cells, as text.
async fn snapshot(env: &TestEnv, cql: &Session, except: &str) -> Vec<String> {
    let ks = &env.config.scylla.keyspace;
    let mut out = vec![];
    for q in [
        "SELECT artwork_id, user_id, likes, favorites, comments, views, next_offset, writetime(likes),
                like_hours, view_hours,
                liked, like_event, liked_at_ms, writetime(liked), favorited, writetime(favorited)
         FROM {ks}.artwork_state",
        "SELECT artwork_id, user_id, mark, at_ms FROM {ks}.user_marks",
        "SELECT artwork_id, comment_id, body, writetime(body) FROM {ks}.artwork_comments",
        "SELECT artwork_id, comment_id, posted_offset, deleted_offset, writetime(deleted_offset)
         FROM {ks}.comments",
        "SELECT artwork_id, event_id, view_offset, writetime(view_offset) FROM {ks}.artwork_views",
        // Values only: a replay copies an artwork's current hours, stamped with its offset.
        "SELECT hour_ms, artwork_id, net_likes, views FROM {ks}.popular_hours",
    ] {
        let rows = cql
            .query_unpaged(q.replace("{ks}", ks), ())
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        for row in rows.rows::<scylla::value::Row>().unwrap() {
            let row = row.unwrap();
            let text = format!("{:?}", row.columns);
            if !text.contains(except) {
                out.push(text);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_from_earlier_offsets_rewrites_the_same_values() {
    let env = with_scylla(TestEnv::new().await);
    let app = env.start(Roles::SERVICES).await;
    interactions(&env, &app, "sunflowers", "irises").await;
    let cql = session(&env).await;
    wait_projected(&env, &cql).await;
    let before = snapshot(&env, &cql, "the-marker").await;
    assert!(
        before.len() > 20,
        "the tables hold the interactions: {before:?}"
    );
    app.stop().await;

    // Back to the beginning of every partition, then the projector again.
    let ks = &env.config.scylla.keyspace;
    let stored = offsets(&env, &cql).await;
    assert!(!stored.is_empty());
    for (topic, partition) in stored.keys() {
        cql.query_unpaged(
            format!(
                "UPDATE {ks}.projection_offsets SET next_offset = 0
                 WHERE projection = 'read-model' AND topic = ? AND partition = ?"
            ),
            (topic, partition),
        )
        .await
        .unwrap();
    }
    assert_eq!(projected_count(&env, &cql).await, 0);
    let app = env.start(Roles::SERVICES).await;
    // A like after the replayed ones, so that reaching it means the replay is done.
    let marker = app.accept_like(&env.token("ada"), "the-marker", true).await;
    wait_projected(&env, &cql).await;
    assert!(offsets(&env, &cql).await[&(marker.topic.clone(), marker.partition)] > marker.offset);
    let after = snapshot(&env, &cql, "the-marker").await;
    assert_eq!(after, before, "values and write times after the replay");
    let (_, counts) = scylla_likes(&env, &cql).await;
    assert_eq!(counts.get("the-marker"), Some(&1));
    assert_eq!(counts.get("sunflowers"), Some(&2));
    app.stop().await;
}

/// `user`'s likes and favorites as GraphQL answers them: (artwork id, at) newest first.
async fn viewer_lists(app: &App, env: &TestEnv, user: &str) -> (Value, Value) {
    let token = env.token(user);
    let data = answer(app, Some(&token), VIEWER, json!({})).await;
    let entries = |list: &str| {
        let edges = data["viewer"][list]["edges"].as_array().cloned().unwrap();
        Value::Array(
            edges
                .iter()
                .map(|e| json!([e["node"]["artwork"]["id"], e["node"]["at"]]))
                .collect(),
        )
    };
    (entries("likes"), entries("favorites"))
}

/// The GraphQL `at` of a time in ms.
fn at(ms: i64) -> Value {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    json!(
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    )
}

/// "`user` set `kind`(`artwork`) = `on`".
fn fact(kind: Kind, artwork: &str, user: &str, on: bool) -> Fact {
    Fact {
        kind,
        artwork: artwork.to_owned(),
        user: user.to_owned(),
        on,
    }
}

/// Facts produced straight to Kafka as given events: an event id again is what a command
/// re-sent after the command service died between Kafka's acknowledgement and its answer
/// writes (with another time when the retry took it again).
struct Log<'e> {
    env: &'e TestEnv,
    cql: Session,
    producer: FactProducer,
}

impl<'e> Log<'e> {
    async fn new(env: &'e TestEnv) -> Self {
        Log {
            env,
            cql: session(env).await,
            producer: FactProducer::new(&env.config),
        }
    }

    /// Sends `f` as the event `id` at `at` (ms).
    async fn send(&self, f: Fact, id: uuid::Uuid, at: i64) {
        let encoded = self.producer.encode_as(f, id, at).await;
        self.producer.send(&encoded).await;
    }

    /// Waits until both projectors have applied everything sent.
    async fn projected(&self) {
        self.env.wait_everything_projected().await;
        wait_projected(self.env, &self.cql).await;
    }

    /// Every entry of Scylla's users' lists: (user, mark, at, artwork), sorted.
    async fn scylla_marks(&self) -> Vec<(String, String, i64, String)> {
        let ks = &self.env.config.scylla.keyspace;
        let rows = self
            .cql
            .query_unpaged(
                format!("SELECT user_id, mark, at_ms, artwork_id FROM {ks}.user_marks"),
                (),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        let mut marks: Vec<(String, String, i64, String)> = rows
            .rows::<(String, String, i64, String)>()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        marks.sort();
        marks
    }
}

/// Asserts each user's lists from Postgres are the expected ones, and that Scylla gives the
/// same lists and the same artworks (counts, the viewer's marks) as Postgres.
async fn assert_lists(
    env: &TestEnv,
    app: &App,
    pg_app: &App,
    expected: &[(&str, Value, Value)],
    vars: &Value,
) {
    for (user, likes, favorites) in expected {
        let from_scylla = viewer_lists(app, env, user).await;
        let from_pg = viewer_lists(pg_app, env, user).await;
        assert_eq!(
            from_pg,
            (likes.clone(), favorites.clone()),
            "{user}'s lists from Postgres"
        );
        assert_eq!(from_scylla, from_pg, "{user}'s lists from Scylla");
        let token = env.token(user);
        assert_eq!(
            answer(app, Some(&token), QUERY, vars.clone()).await,
            answer(pg_app, Some(&token), QUERY, vars.clone()).await,
            "the artworks as {user} sees them"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_written_twice_with_other_times_changes_nothing_in_either_store() {
    let env = with_scylla(TestEnv::new().await);
    let (app, pg_app) = both_stores(&env).await;
    let log = Log::new(&env).await;
    // Each event as the log can hold it: once, then again with the same id and another time
    // (a command re-sent after the command service died between Kafka's acknowledgement and
    // its answer), in a batch of its own or in the same one.
    let t0 = common::generation::now_ms() - 3 * 3_600_000;
    let hour = 3_600_000;
    let projected = || log.projected();
    let send = |f: Fact, id: uuid::Uuid, at: i64| log.send(f, id, at);

    // ada: a like, its copy an hour later, then an unlike: no entry may be left behind.
    let id = uuid::Uuid::now_v7();
    send(fact(Kind::Like, "sunflowers", "ada", true), id, t0).await;
    projected().await;
    send(fact(Kind::Like, "sunflowers", "ada", true), id, t0 + hour).await;
    projected().await;
    let unlike = uuid::Uuid::now_v7();
    send(
        fact(Kind::Like, "sunflowers", "ada", false),
        unlike,
        t0 + 2 * hour,
    )
    .await;
    // bob: a favorite, its copy, taken back, given again: listed once, at its last time.
    let id = uuid::Uuid::now_v7();
    send(fact(Kind::Favorite, "sunflowers", "bob", true), id, t0).await;
    projected().await;
    send(
        fact(Kind::Favorite, "sunflowers", "bob", true),
        id,
        t0 + hour,
    )
    .await;
    projected().await;
    let (off, on) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    send(
        fact(Kind::Favorite, "sunflowers", "bob", false),
        off,
        t0 + 2 * hour,
    )
    .await;
    send(
        fact(Kind::Favorite, "sunflowers", "bob", true),
        on,
        t0 + 2 * hour + 5,
    )
    .await;
    // cy: a like and its copy back to back (one batch, likely): kept at the first time.
    let id = uuid::Uuid::now_v7();
    send(fact(Kind::Like, "irises", "cy", true), id, t0 + 10).await;
    send(fact(Kind::Like, "irises", "cy", true), id, t0 + hour + 10).await;
    // dan: a favorite and its copy in batches of their own: kept at the first time.
    let id = uuid::Uuid::now_v7();
    send(fact(Kind::Favorite, "irises", "dan", true), id, t0 + 20).await;
    projected().await;
    send(
        fact(Kind::Favorite, "irises", "dan", true),
        id,
        t0 + hour + 20,
    )
    .await;
    projected().await;

    let expected = [
        ("ada", json!([]), json!([])),
        (
            "bob",
            json!([]),
            json!([["sunflowers", at(t0 + 2 * hour + 5)]]),
        ),
        ("cy", json!([["irises", at(t0 + 10)]]), json!([])),
        ("dan", json!([]), json!([["irises", at(t0 + 20)]])),
    ];
    let vars = json!({"a0": "sunflowers", "a1": "irises"});
    assert_lists(&env, &app, &pg_app, &expected, &vars).await;
    // Nothing else in Scylla's lists: no entry at a copy's time.
    assert_eq!(
        log.scylla_marks().await,
        vec![
            (
                "bob".into(),
                "favorite".into(),
                t0 + 2 * hour + 5,
                "sunflowers".into()
            ),
            ("cy".into(), "like".into(), t0 + 10, "irises".into()),
            ("dan".into(), "favorite".into(), t0 + 20, "irises".into()),
        ]
    );
    pg_app.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keyspace_of_another_deployment_is_refused() {
    let env = with_scylla(TestEnv::new().await);
    env.start(Roles::PROJECTIONS).await.stop().await;
    // Another deployment (its own topics and database) on the same keyspace.
    let mut other = TestEnv::new().await;
    other.config.read.store = ReadStore::Scylla;
    other.config.scylla.keyspace = env.config.scylla.keyspace.clone();
    for roles in [Roles::PROJECTIONS, Roles::QUERY_API] {
        let refused = gallery::start(&other.config, roles).await.err();
        let message = common::error_chain(&refused.expect("another deployment's keyspace"));
        assert!(
            message.contains("keyspace")
                && message.contains(&env.config.kafka.topic_prefix)
                && message.contains(&other.config.kafka.topic_prefix),
            "{message}"
        );
    }
    // Its own deployment still starts.
    env.start(Roles::QUERY_API).await.stop().await;
}

/// The log holds like e1, unlike e2, then e1 again: a like whose answer was lost in a command
/// service crash, retried (the same event id) after the user took it back. The copy changes
/// nothing in either store, whenever it comes, and a rebuild of the Postgres read model ends
/// the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_of_an_older_fact_after_a_newer_one_changes_nothing_in_either_store_nor_after_a_rebuild()
 {
    let env = with_scylla(TestEnv::new().await);
    let (app, pg_app) = both_stores(&env).await;
    let log = Log::new(&env).await;
    let t0 = common::generation::now_ms() - 3 * 3_600_000;
    let hour = 3_600_000;
    let id = uuid::Uuid::now_v7;

    // ada: like, unlike, each in a batch of its own, then the like again, byte for byte.
    let liked = id();
    log.send(fact(Kind::Like, "sunflowers", "ada", true), liked, t0)
        .await;
    log.projected().await;
    log.send(
        fact(Kind::Like, "sunflowers", "ada", false),
        id(),
        t0 + hour,
    )
    .await;
    log.projected().await;
    log.send(fact(Kind::Like, "sunflowers", "ada", true), liked, t0)
        .await;
    log.projected().await;
    // bob: favorite, unfavorite and the favorite again at another time, back to back (one
    // batch, likely).
    let favorited = id();
    let bob = |on| fact(Kind::Favorite, "sunflowers", "bob", on);
    log.send(bob(true), favorited, t0).await;
    log.send(bob(false), id(), t0 + hour).await;
    log.send(bob(true), favorited, t0 + 2 * hour).await;
    // cy: like, unlike, like again, then the unlike again: still liked, at the last like's time.
    let unliked = id();
    let cy = |on| fact(Kind::Like, "irises", "cy", on);
    log.send(cy(true), id(), t0 + 10).await;
    log.send(cy(false), unliked, t0 + 20).await;
    log.send(cy(true), id(), t0 + 30).await;
    log.projected().await;
    log.send(cy(false), unliked, t0 + hour + 20).await;
    // dan: a like, and nothing else.
    log.send(fact(Kind::Like, "irises", "dan", true), id(), t0 + 40)
        .await;
    log.projected().await;

    let expected = [
        ("ada", json!([]), json!([])),
        ("bob", json!([]), json!([])),
        ("cy", json!([["irises", at(t0 + 30)]]), json!([])),
        ("dan", json!([["irises", at(t0 + 40)]]), json!([])),
    ];
    let vars = json!({"a0": "sunflowers", "a1": "irises"});
    let counts = |data: &Value| {
        [&data["a0"], &data["a1"]]
            .map(|a| (a["likeCount"].clone(), a["stats"]["favorites"].clone()))
    };
    let right = [(json!(0), json!(0)), (json!(2), json!(0))];
    assert_lists(&env, &app, &pg_app, &expected, &vars).await;
    assert_eq!(
        counts(&answer(&pg_app, None, QUERY, vars.clone()).await),
        right
    );
    assert_eq!(
        log.scylla_marks().await,
        vec![
            ("cy".into(), "like".into(), t0 + 30, "irises".into()),
            ("dan".into(), "like".into(), t0 + 40, "irises".into()),
        ]
    );

    // A rebuild replays the log into a new generation: the same answers, from a query API
    // that never saw the old one, and every event remembered at the same position.
    pg_app.stop().await;
    let report = gallery::app::rebuild_read_model(
        &env.config,
        &gallery_projections::RebuildOptions::default(),
    )
    .await
    .unwrap();
    let pg_app = postgres_reader(&env).await;
    assert_lists(&env, &app, &pg_app, &expected, &vars).await;
    assert_eq!(
        counts(&answer(&pg_app, None, QUERY, vars.clone()).await),
        right
    );
    let db = env.db().await;
    let positions = |generation: String| {
        let db = &db;
        async move {
            let rows = db
                .query(
                    &format!(
                        "SELECT artwork_id, mark, event_id::text, topic, partition, message_offset
                         FROM {generation}.set_event_positions ORDER BY 1, 2, 3"
                    ),
                    &[],
                )
                .await
                .unwrap();
            rows.iter()
                .map(|r| {
                    let row: (String, String, String, String, i32, i64) =
                        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
                    row
                })
                .collect::<Vec<_>>()
        }
    };
    let before = positions(report.from.to_string()).await;
    assert_eq!(before.len(), 8, "one position per event: {before:?}");
    assert_eq!(positions(report.to.to_string()).await, before);
    pg_app.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_of_one_hot_artwork_passes_in_rounds_under_the_batch_size_limit() {
    let env = with_scylla(TestEnv::new().await);
    gallery::topics::ensure_topics(&env.config).await.unwrap();
    let log = Log::new(&env).await;
    // A thousand likes of one artwork before the projector starts: its first batch holds them
    // all, applied in ten rounds of a hundred, each reading what the one before wrote.
    let likes: Vec<Fact> = (0..1000)
        .map(|u| fact(Kind::Like, "the-hit", &format!("fan-{u}"), true))
        .collect();
    log.producer.send_all(likes, 64).await;
    let app = env.start(Roles::PROJECTIONS).await;
    log.projected().await;
    let (states, counts) = scylla_likes(&env, &log.cql).await;
    assert_eq!(counts.get("the-hit"), Some(&1000));
    assert_eq!(states.values().filter(|liked| **liked).count(), 1000);
    assert_eq!(log.scylla_marks().await.len(), 1000, "every fan lists it");
    app.stop().await;
}

/// A `graphql-transport-ws` connection watching `artworkStats { likes }` of `artwork`.
struct Watcher(ws::Socket);

impl Watcher {
    async fn new(app: &App, artwork: &str) -> Self {
        let mut socket = ws::connect(app, None).await;
        let query = "subscription($id: ID!) { artworkStats(id: $id) { likes } }";
        ws::send(
            &mut socket,
            json!({"id": "1", "type": "subscribe",
                   "payload": {"query": query, "variables": {"id": artwork}}}),
        )
        .await;
        Self(socket)
    }

    /// The next count it is told within `within`, if any.
    async fn next_likes(&mut self, within: Duration) -> Option<i64> {
        let message = ws::receive_within(&mut self.0, within).await?;
        assert_eq!(message["type"], "next", "{message}");
        let likes = &message["payload"]["data"]["artworkStats"]["likes"];
        Some(likes.as_i64().unwrap_or_else(|| panic!("{message}")))
    }
}

/// With the interactions read from Scylla, what the query API serves follows the Scylla
/// projector, not only the Postgres one. Here the Postgres projector runs alone at first: a
/// like it has applied is not in Scylla yet, so a read with the like's consistency token
/// waits (and times out) rather than answer without it, and the cached count and the
/// subscription stay at 0. Once the Scylla projector runs, its announcement refreshes the
/// cache and the subscription at once (not after the cache's 60 s), and the token is reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_from_scylla_follow_the_scylla_projector_not_only_the_postgres_one() {
    let mut env = with_scylla(TestEnv::new().await);
    env.config.query_api.consistency_timeout_ms = 1_500;
    let mut postgres_only = env.config.clone();
    postgres_only.read.store = ReadStore::Postgres;
    let writer = TestEnv {
        config: postgres_only,
        db_name: env.db_name.clone(),
    };
    let commands = writer.start(Roles::COMMANDS).await;
    let postgres_projector = writer.start(Roles::PROJECTIONS).await;
    let reader = env.start(Roles::QUERY_API).await;
    let artwork = "sunflowers";

    let mut watcher = Watcher::new(&reader, artwork).await;
    assert_eq!(watcher.next_likes(Duration::from_secs(30)).await, Some(0));
    assert_eq!(reader.artwork_likes(None, artwork).await.0, 0);
    let liked = commands.accept_like(&env.token("ada"), artwork, true).await;
    env.wait_projected(&liked.topic, liked.partition, liked.offset)
        .await;

    let like_count = || {
        reader.graphql_after(
            None,
            Some(&liked),
            "query($id: ID!) { artwork(id: $id) { likeCount } }",
            json!({"id": artwork}),
        )
    };
    let body = like_count().await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "CONSISTENCY_TIMEOUT",
        "Postgres has the like, Scylla not yet: {body}"
    );
    // The Postgres projector's announcement re-read Scylla, which had nothing new.
    assert_eq!(reader.artwork_likes(None, artwork).await.0, 0);
    assert_eq!(watcher.next_likes(Duration::from_secs(2)).await, None);

    let scylla_projector = env.start(Roles::PROJECTIONS).await;
    // The projector starts (joins its group, reads from its start) within a few waits.
    let mut answered = Value::Null;
    for _ in 0..20 {
        answered = like_count().await;
        if answered.get("errors").is_none() {
            break;
        }
    }
    assert_eq!(
        answered["data"]["artwork"]["likeCount"], 1,
        "the token is reached once Scylla has the like: {answered}"
    );
    assert_eq!(
        watcher.next_likes(Duration::from_secs(20)).await,
        Some(1),
        "the subscription is told when Scylla applies the like"
    );
    assert_eq!(reader.artwork_likes(None, artwork).await.0, 1, "cached");

    for app in [reader, scylla_projector, postgres_projector, commands] {
        app.stop().await;
    }
}
