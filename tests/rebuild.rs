//! `gallery projections rebuild`: the log replayed into a new generation of the read model
//! while the old one keeps serving, then an atomic switch. Queries never fail on the way; the
//! rebuilt tables equal the old ones at the same offsets; GraphQL answers from the new
//! generation afterwards; the live projector follows the switch and keeps applying.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::facts::{FactProducer, Kind, Lcg, Produced, Truth, assert_tables_match};
use common::{App, TestEnv, gallery_command};
use gallery::Roles;
use serde_json::json;

const TABLES: &[&str] = &[
    "users",
    "exhibitions",
    "artworks",
    "artwork_stats",
    "artwork_likes",
    "artwork_favorites",
    "like_buckets",
    "artwork_views",
    "view_buckets",
    "comments",
    "generation_jobs",
    "set_event_positions",
    "projection_offsets",
];

/// One checksum per table of `schema`.
async fn checksums(db: &tokio_postgres::Client, schema: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for table in TABLES {
        let row = db
            .query_one(&format!("SELECT count(*)::text || ':' || COALESCE(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM {schema}.{table} t"), &[])
            .await
            .unwrap();
        out.insert((*table).to_owned(), row.get(0));
    }
    out
}

async fn live_schema(db: &tokio_postgres::Client) -> String {
    db.query_one(
        "SELECT schema_name FROM public.read_model_current WHERE name = 'read-model'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// GraphQL's like count of `artwork`, or why it failed.
async fn like_count(app: &App, artwork: &str) -> Result<i64, String> {
    let resp = app
        .http
        .post(app.graphql_url())
        .json(&json!({
            "query": "query($id: ID!) { artwork(id: $id) { likeCount } }",
            "variables": {"id": artwork},
        }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    body["data"]["artwork"]["likeCount"]
        .as_i64()
        .ok_or_else(|| body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_replays_into_a_new_generation_and_switches_without_downtime() {
    let env = TestEnv::new().await;
    let app = Arc::new(env.start(Roles::SERVICES).await);
    let producer = FactProducer::new(&env.config);
    let mut rng = Lcg::from_clock();
    let facts = (0..2000).map(|_| rng.fact(80, 12)).collect();
    let mut produced: Vec<Produced> = producer.send_all(facts, 200).await;
    env.wait_everything_projected().await;
    let db = env.db().await;
    assert_eq!(live_schema(&db).await, "read_v1");

    // Queries all along: none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reader = {
        let (app, stop) = (app.clone(), stop.clone());
        let (answered, failed) = (answered.clone(), failed.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                match like_count(&app, &format!("art-{}", i % 12)).await {
                    Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("query failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // The projections named in the read model's notifications during the rebuild.
    let announced = {
        let url = env.config.postgres.url.expose().to_owned();
        let (client, mut connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listen = tokio::spawn(async move {
            let mut names = std::collections::BTreeSet::new();
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            let mut stop = std::pin::pin!(rx);
            loop {
                tokio::select! {
                    _ = &mut stop => return names,
                    m = futures::StreamExt::next(&mut messages) => match m {
                        Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                            if let Some(p) = n.payload().lines().next() {
                                names.insert(p.to_owned());
                            }
                        }
                        Some(_) => {}
                        None => return names,
                    },
                }
            }
        });
        client.batch_execute("LISTEN read_model").await.unwrap();
        (client, tx, listen)
    };

    let out = gallery_command(&env, &["projections", "rebuild"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rebuild failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("from read_v1 to read_v2"), "{stdout}");
    // The replay announced itself under its generation, never as the live read model (a
    // reader waiting for an offset would take it for the live one's).
    let (client, stop_listening, listen) = announced;
    stop_listening.send(()).unwrap();
    let names = listen.await.unwrap();
    drop(client);
    assert!(names.contains("p read-model@read_v2"), "{names:?}");
    assert!(!names.contains("p read-model"), "{names:?}");
    assert_eq!(live_schema(&db).await, "read_v2");

    // Nothing was produced meanwhile: both generations stand at the same offsets, row for row.
    let (old, new) = (
        checksums(&db, "read_v1").await,
        checksums(&db, "read_v2").await,
    );
    assert!(
        old["artwork_likes"].starts_with(|c: char| c != '0'),
        "{old:?}"
    );
    assert_eq!(new, old, "the rebuilt tables equal the live ones");

    // GraphQL reads the new generation: a change made to the old one does not show.
    let truth = Truth::of(&produced);
    db.execute(
        "UPDATE read_v1.artwork_stats SET like_count = like_count + 1000 WHERE artwork_id = 'art-0'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        like_count(&app, "art-0").await,
        Ok(truth.count(Kind::Like, "art-0"))
    );

    // The live projector follows the switch: new events land in the new generation only.
    let old_offsets = checksums(&db, "read_v1").await["projection_offsets"].clone();
    let facts = (0..300).map(|_| rng.fact(80, 12)).collect();
    produced.extend(producer.send_all(facts, 100).await);
    env.wait_everything_projected().await;
    let truth = Truth::of(&produced);
    assert_tables_match(&db, "read_v2", &truth).await;
    for a in 0..12 {
        let artwork = format!("art-{a}");
        assert_eq!(
            like_count(&app, &artwork).await,
            Ok(truth.count(Kind::Like, &artwork))
        );
    }
    assert_eq!(
        checksums(&db, "read_v1").await["projection_offsets"],
        old_offsets,
        "the old generation no longer moves"
    );

    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "queries failed");
    assert!(
        answered.load(Ordering::Relaxed) > 20,
        "queries ran all along"
    );

    // The old generation is kept for a rollback until `gc` drops it.
    let out = gallery_command(&env, &["projections", "gc"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "dropped read_v1"
    );
    let left: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'read\\_v%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1);
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_while_events_flow_ends_equal_to_the_ground_truth() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::PROJECTIONS).await;
    let producer = Arc::new(FactProducer::new(&env.config));
    let mut rng = Lcg::from_clock();
    let facts = (0..1500).map(|_| rng.fact(50, 8)).collect();
    let mut produced = producer.send_all(facts, 200).await;

    // Facts keep flowing during the whole rebuild, and a little after.
    let stop = Arc::new(AtomicBool::new(false));
    let flow = {
        let (producer, stop) = (producer.clone(), stop.clone());
        let mut rng = Lcg(rng.next(u64::MAX));
        tokio::spawn(async move {
            let mut produced = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let facts = (0..50).map(|_| rng.fact(50, 8)).collect();
                produced.extend(producer.send_all(facts, 50).await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            produced
        })
    };
    let out = gallery_command(&env, &["projections", "rebuild", "--max-lag", "50"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "rebuild failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The live projector waited for the switch a moment, not for a catch-up of unknown length.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let locked_ms: u128 = stdout
        .split("the pointer was locked for ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no lock time in {stdout}"));
    eprintln!("the switch held the pointer for {locked_ms} ms");
    assert!(
        locked_ms <= gallery_projections::SWITCH_WINDOW.as_millis(),
        "{stdout}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    produced.extend(flow.await.unwrap());
    env.wait_everything_projected().await;

    let db = env.db().await;
    assert_eq!(live_schema(&db).await, "read_v2");
    assert_tables_match(&db, "read_v2", &Truth::of(&produced)).await;
    assert_tables_match(&db, "public", &Truth::of(&produced)).await;
    app.stop().await;
}

#[tokio::test]
async fn a_read_model_from_before_generations_moves_into_the_first_one() {
    let env = TestEnv::new().await;
    let (mut client, connection) =
        tokio_postgres::connect(env.config.postgres.url.expose(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    gallery_projections::migrate(&mut client, &env.config.topics())
        .await
        .unwrap();
    // Back to the old layout: the tables in `public`, no views, no pointer; and back to the
    // migrations of then (migration 4 and its table came after generations).
    client
        .batch_execute(
            "DROP VIEW public.set_event_positions;
             DROP TABLE read_v1.set_event_positions;
             DELETE FROM read_v1.schema_migrations WHERE version >= 4;",
        )
        .await
        .unwrap();
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'read_v1'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut sql = String::new();
    for t in &tables {
        sql.push_str(&format!("DROP VIEW IF EXISTS public.{t};"));
    }
    for t in &tables {
        sql.push_str(&format!("ALTER TABLE read_v1.{t} SET SCHEMA public;"));
    }
    sql.push_str(
        "DROP TABLE public.read_model_current, public.read_model_generations;
         DROP SCHEMA read_v1;
         INSERT INTO public.artwork_stats (artwork_id, like_count) VALUES ('kept', 7);",
    );
    client.batch_execute(&sql).await.unwrap();

    let live = gallery_projections::migrate(&mut client, &env.config.topics())
        .await
        .unwrap();
    assert_eq!(live.to_string(), "read_v1");
    let row = client
        .query_one(
            "SELECT like_count FROM read_v1.artwork_stats WHERE artwork_id = 'kept'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 7);
    let row = client
        .query_one(
            "SELECT like_count FROM public.artwork_stats WHERE artwork_id = 'kept'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 7, "through the view");
    let positions: i64 = client
        .query_one("SELECT count(*) FROM public.set_event_positions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(positions, 0, "migration 4 applied in the first generation");
    let tables_left_in_public: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY($1)",
            &[&tables],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables_left_in_public, 0);
}

/// The same database used by another deployment (its own topic prefix).
fn other_deployment(env: &TestEnv) -> TestEnv {
    let mut config = env.config.clone();
    config.kafka.topic_prefix = format!("test-{}.", uuid::Uuid::new_v4().simple());
    TestEnv {
        config,
        db_name: env.db_name.clone(),
    }
}

/// A live projector with some likes and favorites projected.
async fn live_read_model(env: &TestEnv) -> (App, FactProducer) {
    let app = env.start(Roles::PROJECTIONS).await;
    let producer = FactProducer::new(&env.config);
    let mut rng = Lcg::from_clock();
    let facts = (0..300).map(|_| rng.fact(30, 6)).collect();
    producer.send_all(facts, 100).await;
    env.wait_everything_projected().await;
    (app, producer)
}

/// Runs `gallery projections rebuild` with `args` while facts keep flowing, each round of
/// which the live projector must apply within 30 s (it could not while a switch held the
/// pointer); returns the rebuild's output and how long it ran. Fails when it runs for more
/// than `bound`.
async fn rebuild_within(
    env: &TestEnv,
    producer: &FactProducer,
    args: &[&str],
    bound: Duration,
) -> (std::process::Output, Duration) {
    let mut command = vec!["projections", "rebuild"];
    command.extend_from_slice(args);
    let started = std::time::Instant::now();
    let rebuild = gallery_command(env, &command).output();
    tokio::pin!(rebuild);
    let mut rng = Lcg::from_clock();
    loop {
        let facts = (0..20).map(|_| rng.fact(30, 6)).collect();
        producer.send_all(facts, 20).await;
        tokio::time::timeout(Duration::from_secs(30), env.wait_everything_projected())
            .await
            .unwrap_or_else(|_| panic!("the live projector stood still for 30 s"));
        tokio::select! {
            out = &mut rebuild => return (out.unwrap(), started.elapsed()),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        assert!(
            started.elapsed() < bound,
            "the rebuild still ran after {bound:?}"
        );
    }
}

/// Stored offsets of the live generation (`read_v1`), for `topic`'s (partition, next offset).
async fn live_offsets(db: &tokio_postgres::Client, topic: &str, offsets: &[(i32, i64)]) {
    for (partition, next) in offsets {
        db.execute(
            "INSERT INTO read_v1.projection_offsets (projection, topic, partition, next_offset)
             VALUES ('read-model', $1, $2, $3)",
            &[&topic, partition, next],
        )
        .await
        .unwrap();
    }
}

/// A rebuild with a 20 s timeout fails well within it, naming `reason`, while the live
/// projector keeps applying; the live generation stays. Returns what it printed.
async fn rebuild_fails_fast(env: &TestEnv, producer: &FactProducer, reason: &str) -> String {
    let (out, took) = rebuild_within(
        env,
        producer,
        &["--follow-timeout-secs", "20"],
        Duration::from_secs(120),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(reason), "{stderr}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_eq!(live_schema(&env.db().await).await, "read_v1");
    stderr
}

async fn generation_states(db: &tokio_postgres::Client) -> Vec<(String, String)> {
    db.query(
        "SELECT schema_name, state FROM public.read_model_generations ORDER BY number",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_another_deployment_wrote_into_is_refused_and_never_blocks_the_live_projector() {
    let env = TestEnv::new().await;
    let (app, producer) = live_read_model(&env).await;
    let db = env.db().await;
    let recorded: String = db
        .query_one("SELECT topic_prefix FROM public.read_model_deployment", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, env.config.kafka.topic_prefix);

    // Another deployment on the same database is refused by every role, naming both prefixes.
    let other = other_deployment(&env);
    for roles in [Roles::PROJECTIONS, Roles::QUERY_API, Roles::COMMANDS] {
        let refused = gallery::start(&other.config, roles).await.err();
        let message =
            common::error_chain(&refused.expect("another deployment's database is refused"));
        assert!(
            message.contains(&env.config.kafka.topic_prefix)
                && message.contains(&other.config.kafka.topic_prefix),
            "{message}"
        );
    }
    for command in [&["projections", "rebuild"][..], &["projections", "gc"][..]] {
        let out = gallery_command(&other, command).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command:?}: {stderr}");
        assert!(stderr.contains(&env.config.kafka.topic_prefix), "{stderr}");
    }

    // A database both deployments wrote into before the prefix was recorded: the other one's
    // offsets name topics this deployment's rebuild never reads. The rebuild is refused at
    // once, well within its timeout, and the live projector goes on meanwhile.
    let foreign = other.config.topics().interactions();
    db.execute("DELETE FROM public.read_model_deployment", &[])
        .await
        .unwrap();
    live_offsets(&db, &foreign, &[(0, 5), (1, 3)]).await;
    let stderr = rebuild_fails_fast(&env, &producer, &foreign).await;
    assert!(stderr.contains("another deployment"), "{stderr}");
    // Every other role of this deployment refuses it too, now.
    let refused = gallery::start(&env.config, Roles::QUERY_API).await.err();
    let message =
        common::error_chain(&refused.expect("a database holding another deployment's topics"));
    assert!(message.contains(&foreign), "{message}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_whose_targets_it_cannot_read_stops_before_locking_within_its_timeout() {
    let env = TestEnv::new().await;
    let (app, producer) = live_read_model(&env).await;
    let db = env.db().await;
    // The live generation's offsets name a partition the rebuild does not read (as after a
    // partition was added to the topic during the rebuild): a target it would wait for
    // forever, holding the pointer the live projector's batches wait on.
    let topic = env.config.topics().interactions();
    live_offsets(&db, &topic, &[(99, 5)]).await;
    rebuild_fails_fast(&env, &producer, &format!("{topic}/99")).await;
    assert_eq!(
        generation_states(&db).await,
        vec![
            ("read_v1".to_owned(), "live".to_owned()),
            ("read_v2".to_owned(), "failed".to_owned())
        ]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switch_that_cannot_lock_ends_within_the_timeout_and_gc_tells_abandoned_generations() {
    let env = TestEnv::new().await;
    let (app, producer) = live_read_model(&env).await;
    let db = env.db().await;
    // A batch that never ends holds the pointer (FOR SHARE), so no switch can lock it.
    let mut holder = env.db().await;
    let hold = holder.transaction().await.unwrap();
    hold.query_one(
        "SELECT schema_name FROM public.read_model_current WHERE name = 'read-model' FOR SHARE",
        &[],
    )
    .await
    .unwrap();

    // A rebuild that waits for the lock: gc keeps its generation and says so.
    let mut waiting = gallery_command(
        &env,
        &["projections", "rebuild", "--follow-timeout-secs", "300"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while generation_states(&db).await.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no generation built");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gc = || async {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            gallery_command(&env, &["projections", "gc"]).output(),
        )
        .await
        .expect("gc ends")
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(
        gc().await,
        "no generation to drop\nkept read_v2: a rebuild is building it"
    );
    // Killed, it leaves its generation `building`, held by nobody: gc drops it and says so.
    waiting.start_kill().unwrap();
    waiting.wait().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = gc().await;
        if report == "dropped read_v2 (abandoned: still building, but no rebuild holds it)" {
            break;
        }
        // The killed process' connection may take a moment to end.
        assert_eq!(
            report,
            "no generation to drop\nkept read_v2: a rebuild is building it"
        );
        assert!(std::time::Instant::now() < deadline, "never abandoned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Another rebuild ends within its timeout, with the reason, and the live projector goes
    // on meanwhile.
    let (out, took) = rebuild_within(
        &env,
        &producer,
        &["--follow-timeout-secs", "8"],
        Duration::from_secs(120),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("did not finish within the rebuild's timeout"),
        "{stderr}"
    );
    eprintln!("the rebuild gave up after {took:?}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    hold.rollback().await.unwrap();
    assert_eq!(live_schema(&db).await, "read_v1");
    assert_eq!(
        generation_states(&db).await,
        vec![
            ("read_v1".to_owned(), "live".to_owned()),
            ("read_v2".to_owned(), "failed".to_owned())
        ]
    );
    assert_eq!(gc().await, "dropped read_v2");
    app.stop().await;
}
