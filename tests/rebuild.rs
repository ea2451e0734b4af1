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
    gallery_projections::migrate(&mut client).await.unwrap();
    // Back to the old layout: the tables in `public`, no views, no pointer.
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

    let live = gallery_projections::migrate(&mut client).await.unwrap();
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
