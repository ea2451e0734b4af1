//! The AI painter's results, end to end: worker events produced to Kafka (as a worker writes
//! them) are projected into generation jobs; GraphQL shows their progress, result and failure,
//! with signed image URLs that serve the stored bytes; the job subscription follows a run
//! live; a rebuild of the read model with result events in the log gives identical tables.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{App, TestEnv, future, gallery_command, png, post_form, ws};
use gallery::Roles;
use gallery_schemas::{
    Event, EventCodec, GenerationCancelConfirmed, GenerationCancelled, GenerationCompleted,
    GenerationFailed, GenerationMode, GenerationProgressed, GenerationRequested, GenerationStarted,
    ImageRef, Role, StyleName, UserId,
};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use uuid::Uuid;

/// Writes generation events as a worker does: Confluent-framed Avro, keyed by request id.
struct Worker {
    producer: FutureProducer,
    codec: EventCodec,
    topic: String,
}

impl Worker {
    fn new(env: &TestEnv) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &env.config.kafka.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .unwrap();
        Self {
            producer,
            codec: EventCodec::new(&env.config.registry()).unwrap(),
            topic: env.config.topics().generation(),
        }
    }

    /// Sends `event` and waits for Kafka's acknowledgement; returns (partition, offset).
    async fn send(&self, event: &Event) -> (i32, i64) {
        let bytes = self.codec.encode(&self.topic, event).await.unwrap();
        let key = event.key();
        let record = FutureRecord::to(&self.topic)
            .key(key.as_str())
            .payload(bytes.as_slice());
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        (delivery.partition, delivery.offset)
    }

    /// Sends `event` and waits until the read model has applied it.
    async fn send_projected(&self, env: &TestEnv, event: &Event) {
        let (partition, offset) = self.send(event).await;
        env.wait_projected(&self.topic, partition, offset).await;
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn requested(id: Uuid, who: &str) -> Event {
    Event::GenerationRequested(GenerationRequested {
        event_id: Uuid::now_v7(),
        request_id: id,
        user_id: user(who),
        mode: GenerationMode::TextToImage,
        prompt: None,
        negative_prompt: None,
        style: StyleName::parse("impressionism").unwrap(),
        seed: 7,
        steps: 20,
        width: 512,
        height: 512,
        source_image: None,
        degraded: false,
        occurred_at: now_ms(),
    })
}

fn started(id: Uuid, who: &str) -> Event {
    Event::GenerationStarted(GenerationStarted {
        event_id: Uuid::now_v7(),
        request_id: id,
        user_id: user(who),
        worker: "gallery-gpu-worker-0".into(),
        model: "multistyle26".into(),
        occurred_at: now_ms(),
    })
}

fn progressed(id: Uuid, who: &str, step: i32, steps: i32) -> Event {
    Event::GenerationProgressed(GenerationProgressed {
        event_id: Uuid::now_v7(),
        request_id: id,
        user_id: user(who),
        step,
        steps,
        occurred_at: now_ms(),
    })
}

/// The three images of a result, as a worker stored them.
struct Images {
    png: (ImageRef, Vec<u8>),
    webp: (ImageRef, Vec<u8>),
    thumbnail: (ImageRef, Vec<u8>),
}

fn completed(id: Uuid, who: &str, images: &Images) -> Event {
    Event::GenerationCompleted(GenerationCompleted {
        event_id: Uuid::now_v7(),
        request_id: id,
        user_id: user(who),
        model: "multistyle26".into(),
        weights_digest: "0f".repeat(32),
        image: images.png.0.clone(),
        webp: images.webp.0.clone(),
        thumbnail: images.thumbnail.0.clone(),
        cache_hit: false,
        degraded: true,
        steps: 20,
        width: images.png.0.width,
        height: images.png.0.height,
        duration_ms: 4321,
        occurred_at: now_ms(),
    })
}

fn failed(id: Uuid, who: &str) -> Event {
    Event::GenerationFailed(GenerationFailed {
        event_id: Uuid::now_v7(),
        request_id: id,
        user_id: user(who),
        code: "model_unavailable".into(),
        reason: "the weights of multistyle26 could not be loaded".into(),
        occurred_at: now_ms(),
    })
}

fn cancel_confirmed(id: Uuid, who: &str, step: i32) -> Event {
    Event::GenerationCancelConfirmed(GenerationCancelConfirmed {
        event_id: Uuid::now_v7(),
        request_id: id,
        user_id: user(who),
        step,
        occurred_at: now_ms(),
    })
}

fn cancelled(id: Uuid, who: &str) -> Event {
    Event::GenerationCancelled(GenerationCancelled {
        event_id: Uuid::now_v7(),
        request_id: id,
        user_id: user(who),
        occurred_at: now_ms(),
    })
}

/// An image encoded as `format`, stored in the deployment's media store (where workers put
/// their results); returns its reference and bytes.
async fn store_image(
    env: &TestEnv,
    side: u32,
    format: image::ImageFormat,
    shade: u8,
) -> (ImageRef, Vec<u8>) {
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        image::Rgb([(x * 3 % 256) as u8, (y * 5 % 256) as u8, shade])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    let bytes = out.into_inner();
    let store = gallery_commands::MediaStore::open(&env.config.media).unwrap();
    let image = store
        .put_image(bytes.clone().into(), &env.config.media.limits)
        .await
        .unwrap();
    (image, bytes)
}

async fn stored_images(env: &TestEnv) -> Images {
    Images {
        png: store_image(env, 96, image::ImageFormat::Png, 1).await,
        webp: store_image(env, 96, image::ImageFormat::WebP, 1).await,
        thumbnail: store_image(env, 48, image::ImageFormat::Png, 2).await,
    }
}

const JOB: &str = "query($id: ID!) { generation(id: $id) {
    id status model startedAt finishedAt cancelledAt
    progress { step steps fraction updatedAt }
    result {
        image { url key width height contentType sizeBytes }
        webp { url key width height contentType sizeBytes }
        thumbnail { url key width height contentType sizeBytes }
        cacheHit degraded steps model durationMs
    }
    failure { code reason } } }";

async fn job(app: &App, token: &str, id: Uuid) -> Value {
    let body = app.graphql(Some(token), JOB, json!({"id": id})).await;
    assert!(body.get("errors").is_none(), "{body}");
    body["data"]["generation"].clone()
}

/// Asks for a text-to-image generation through GraphQL, with a chosen request id.
async fn request(app: &App, token: &str, id: Uuid) {
    let body = app
        .graphql(
            Some(token),
            "mutation($input: TextToImageInput!) { requestTextToImage(input: $input) { id } }",
            json!({"input": {"prompt": "a harbour at dawn", "style": "impressionism", "requestId": id}}),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
}

async fn cancel(app: &App, token: &str, id: Uuid) {
    let body = app
        .graphql(
            Some(token),
            "mutation($id: ID!) { cancelGeneration(requestId: $id) { eventId } }",
            json!({"id": id}),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
}

/// The API's origin, for relative media URLs.
fn origin(app: &App) -> String {
    app.graphql_url().trim_end_matches("/graphql").to_owned()
}

/// GET a media URL (relative to the API), with an optional `If-None-Match`.
async fn fetch(app: &App, url: &str, if_none_match: Option<&str>) -> reqwest::Response {
    assert!(url.starts_with("/media/"), "a relative media URL: {url}");
    let mut req = app.http.get(format!("{}{url}", origin(app)));
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    req.send().await.unwrap()
}

/// Fetches `url` and checks it serves exactly `bytes` as `image`, cacheably.
async fn assert_serves(app: &App, url: &str, image: &ImageRef, bytes: &[u8]) {
    let resp = fetch(app, url, None).await;
    assert_eq!(resp.status(), 200, "{url}");
    let headers = resp.headers().clone();
    assert_eq!(headers["content-type"], image.content_type.as_str());
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let etag = format!("\"{}\"", image.sha256);
    assert_eq!(headers["etag"], etag.as_str());
    assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes, "{url}");
    let again = fetch(app, url, Some(&etag)).await;
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());
}

/// `(status, error.code)` of a refused media request.
async fn refusal(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_results_show_in_graphql_with_signed_urls_serving_the_stored_bytes() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::SERVICES).await;
    let worker = Worker::new(&env);
    let ada = env.token("ada");

    // Requested, started, two steps, completed; late and repeated events after it.
    let id = Uuid::new_v4();
    request(&app, &ada, id).await;
    env.wait_everything_projected().await;
    assert_eq!(job(&app, &ada, id).await["status"], "REQUESTED");
    worker.send_projected(&env, &started(id, "ada")).await;
    worker
        .send_projected(&env, &progressed(id, "ada", 5, 20))
        .await;
    let running = job(&app, &ada, id).await;
    assert_eq!(running["status"], "RUNNING", "{running}");
    assert_eq!(running["model"], "multistyle26");
    assert!(running["startedAt"].is_string());
    assert_eq!(running["progress"]["step"], 5);
    assert_eq!(running["progress"]["steps"], 20);
    assert_eq!(running["progress"]["fraction"], 0.25);
    assert!(running["result"].is_null() && running["finishedAt"].is_null());

    let images = stored_images(&env).await;
    let done = completed(id, "ada", &images);
    worker.send_projected(&env, &done).await;
    worker
        .send_projected(&env, &progressed(id, "ada", 3, 20))
        .await;
    worker.send_projected(&env, &started(id, "ada")).await;
    worker.send_projected(&env, &done).await;
    let job_now = job(&app, &ada, id).await;
    assert_eq!(job_now["status"], "COMPLETED", "{job_now}");
    assert!(job_now["finishedAt"].is_string());
    assert_eq!(
        (&job_now["progress"]["step"], &job_now["progress"]["steps"]),
        (&json!(20), &json!(20)),
        "a late step does not move a completed job"
    );
    let result = &job_now["result"];
    assert_eq!(
        (
            &result["cacheHit"],
            &result["degraded"],
            &result["steps"],
            &result["model"],
            &result["durationMs"]
        ),
        (
            &json!(false),
            &json!(true),
            &json!(20),
            &json!("multistyle26"),
            &json!(4321)
        )
    );
    for (field, (image, bytes)) in [
        ("image", &images.png),
        ("webp", &images.webp),
        ("thumbnail", &images.thumbnail),
    ] {
        let shown = &result[field];
        assert_eq!(shown["key"], image.key.as_str());
        assert_eq!(shown["contentType"], image.content_type.as_str());
        assert_eq!(
            (&shown["width"], &shown["height"], &shown["sizeBytes"]),
            (
                &json!(image.width),
                &json!(image.height),
                &json!(image.size_bytes)
            )
        );
        assert_serves(&app, shown["url"].as_str().unwrap(), image, bytes).await;
    }
    assert_eq!(result["webp"]["contentType"], "image/webp");

    // Refused: tampered, expired, unsigned, outside the image prefix, unknown.
    let url = result["image"]["url"].as_str().unwrap().to_owned();
    let mut tampered = url.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        refusal(fetch(&app, &tampered, None).await).await,
        (403, "INVALID_SIGNATURE".into())
    );
    let other_key = url.replace(images.png.0.key.as_str(), images.thumbnail.0.key.as_str());
    assert_eq!(
        refusal(fetch(&app, &other_key, None).await).await,
        (403, "INVALID_SIGNATURE".into()),
        "a signature is for one key"
    );
    let urls =
        gallery_query_api::MediaUrls::new(&env.config.query_api.media_url_settings()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let expired = urls.url_at(&images.png.0.key, now - 3 * 3600);
    assert_eq!(
        refusal(fetch(&app, &expired, None).await).await,
        (403, "URL_EXPIRED".into())
    );
    let unsigned = format!("/media/{}", images.png.0.key);
    assert_eq!(
        refusal(fetch(&app, &unsigned, None).await).await,
        (403, "INVALID_SIGNATURE".into())
    );
    assert_eq!(
        refusal(fetch(&app, &urls.url("accounts/secrets.png"), None).await).await,
        (400, "INVALID_INPUT".into())
    );
    let unknown = format!("images/sha256/{}.png", "ab".repeat(32));
    assert_eq!(
        refusal(fetch(&app, &urls.url(&unknown), None).await).await,
        (404, "NOT_FOUND".into())
    );

    // A failure.
    let broken = Uuid::new_v4();
    request(&app, &ada, broken).await;
    env.wait_everything_projected().await;
    worker.send_projected(&env, &started(broken, "ada")).await;
    worker.send_projected(&env, &failed(broken, "ada")).await;
    let j = job(&app, &ada, broken).await;
    assert_eq!(j["status"], "FAILED");
    assert_eq!(
        j["failure"],
        json!({"code": "model_unavailable", "reason": "the weights of multistyle26 could not be loaded"})
    );
    assert!(j["result"].is_null() && j["finishedAt"].is_string());

    // The user cancels a running job: cancelling until the worker confirms.
    let stopped = Uuid::new_v4();
    request(&app, &ada, stopped).await;
    env.wait_everything_projected().await;
    worker.send_projected(&env, &started(stopped, "ada")).await;
    worker
        .send_projected(&env, &progressed(stopped, "ada", 4, 20))
        .await;
    cancel(&app, &ada, stopped).await;
    env.wait_everything_projected().await;
    let j = job(&app, &ada, stopped).await;
    assert_eq!(j["status"], "CANCELLING", "{j}");
    assert!(j["cancelledAt"].is_string() && j["finishedAt"].is_null());
    worker
        .send_projected(&env, &cancel_confirmed(stopped, "ada", 6))
        .await;
    let j = job(&app, &ada, stopped).await;
    assert_eq!(j["status"], "CANCELLED");
    assert_eq!(j["progress"]["step"], 6);
    assert!(j["finishedAt"].is_string());

    // Someone else sees none of it.
    let bob = env.token("bob");
    let body = app.graphql(Some(&bob), JOB, json!({"id": id})).await;
    assert_eq!(body["data"]["generation"], Value::Null, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_artworks_image_is_served_through_its_signed_url() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::SERVICES).await;
    let cur = env.token_as("cur", Role::Curator);
    let resp = app
        .http
        .post(app.commands_url("/v1/exhibitions"))
        .bearer_auth(&cur)
        .json(&json!({"title": "Light", "description": "", "opensAt": future(1), "closesAt": future(9)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let exhibition = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bytes = png(64, 48);
    let (status, body) = post_form(
        &app,
        &format!("/v1/exhibitions/{exhibition}/artworks"),
        &cur,
        &[("title", "Dawn"), ("artist", "Claude Monet")],
        ("image", "dawn.png", &bytes),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let artwork = body["id"].as_str().unwrap().to_owned();
    env.wait_everything_projected().await;

    let body = app
        .graphql(
            None,
            "query($id: ID!) { artwork(id: $id) { image { url key contentType width height } } }",
            json!({"id": artwork}),
        )
        .await;
    let image = &body["data"]["artwork"]["image"];
    assert_eq!(image["contentType"], "image/png", "{body}");
    let key = image["key"].as_str().unwrap();
    let sha256 = key
        .trim_start_matches("images/sha256/")
        .trim_end_matches(".png");
    let reference = ImageRef {
        key: key.to_owned(),
        content_type: "image/png".into(),
        width: 64,
        height: 48,
        size_bytes: bytes.len() as i64,
        sha256: sha256.to_owned(),
    };
    assert_serves(&app, image["url"].as_str().unwrap(), &reference, &bytes).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_job_subscription_follows_a_run_to_its_result_and_completes() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::SERVICES).await;
    let worker = Worker::new(&env);
    let ada = env.token("ada");
    let id = Uuid::new_v4();

    let mut socket = ws::connect(&app, Some(&ada)).await;
    ws::send(
        &mut socket,
        json!({"id": "run", "type": "subscribe", "payload": {
            "query": "subscription($id: ID!) { generation(id: $id) {
                status progress { step steps } result { image { url } thumbnail { url } steps } } }",
            "variables": {"id": id}}}),
    )
    .await;

    // Each update is sent once the projection commits it; the next event goes out after.
    request(&app, &ada, id).await;
    let next = ws::receive(&mut socket).await;
    assert_eq!(
        next["payload"]["data"]["generation"]["status"], "REQUESTED",
        "{next}"
    );
    worker.send(&started(id, "ada")).await;
    let next = ws::receive(&mut socket).await;
    assert_eq!(
        next["payload"]["data"]["generation"],
        json!({"status": "RUNNING", "progress": null, "result": null}),
        "{next}"
    );
    worker.send(&progressed(id, "ada", 8, 20)).await;
    let next = ws::receive(&mut socket).await;
    assert_eq!(
        next["payload"]["data"]["generation"]["progress"],
        json!({"step": 8, "steps": 20}),
        "{next}"
    );
    let images = stored_images(&env).await;
    worker.send(&completed(id, "ada", &images)).await;
    let next = ws::receive(&mut socket).await;
    let pushed = &next["payload"]["data"]["generation"];
    assert_eq!(pushed["status"], "COMPLETED", "{next}");
    assert_eq!(pushed["result"]["steps"], 20);
    let thumbnail = pushed["result"]["thumbnail"]["url"].as_str().unwrap();
    assert_serves(&app, thumbnail, &images.thumbnail.0, &images.thumbnail.1).await;
    // Final: the subscription completes.
    let end = ws::receive(&mut socket).await;
    assert_eq!(end, json!({"id": "run", "type": "complete"}));
    app.stop().await;
}

/// `count:md5` of every row of `table` in `schema`.
async fn checksum(db: &tokio_postgres::Client, schema: &str, table: &str) -> String {
    db.query_one(
        &format!(
            "SELECT count(*)::text || ':' || COALESCE(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM {schema}.{table} t"
        ),
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_with_result_events_in_the_log_gives_identical_jobs() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::PROJECTIONS).await;
    let worker = Worker::new(&env);
    let images = Images {
        png: (fake_ref("png", 512), vec![]),
        webp: (fake_ref("webp", 512), vec![]),
        thumbnail: (fake_ref("png", 128), vec![]),
    };
    let ids: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
    let who = "ada";
    let [done, broken, withdrawn, stopping, restarted, waiting] = ids[..] else {
        unreachable!()
    };
    let crash_start = started(restarted, who);
    let finished = completed(done, who, &images);
    let log = vec![
        requested(done, who),
        started(done, who),
        progressed(done, who, 10, 20),
        finished.clone(),
        progressed(done, who, 11, 20),
        finished,
        requested(broken, who),
        started(broken, who),
        failed(broken, who),
        requested(withdrawn, who),
        cancelled(withdrawn, who),
        cancel_confirmed(withdrawn, who, 0),
        requested(stopping, who),
        started(stopping, who),
        cancelled(stopping, who),
        requested(restarted, who),
        crash_start.clone(),
        progressed(restarted, who, 9, 20),
        crash_start,
        progressed(restarted, who, 2, 20),
        requested(waiting, who),
    ];
    for event in &log {
        worker.send(event).await;
    }
    env.wait_everything_projected().await;
    let db = env.db().await;
    let statuses: BTreeMap<Uuid, (String, Option<i32>)> = db
        .query(
            "SELECT request_id, status, progress_step FROM generation_jobs",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let expected: BTreeMap<Uuid, (String, Option<i32>)> = [
        (done, ("completed", Some(20))),
        (broken, ("failed", None)),
        (withdrawn, ("cancelled", None)),
        (stopping, ("cancelling", None)),
        (restarted, ("running", Some(2))),
        (waiting, ("requested", None)),
    ]
    .into_iter()
    .map(|(id, (s, p))| (id, (s.to_owned(), p)))
    .collect();
    assert_eq!(statuses, expected);

    let out = gallery_command(&env, &["projections", "rebuild"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "rebuild failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for table in ["generation_jobs", "projection_offsets"] {
        let (old, new) = (
            checksum(&db, "read_v1", table).await,
            checksum(&db, "read_v2", table).await,
        );
        assert!(!old.starts_with("0:"), "{table} is empty");
        assert_eq!(new, old, "{table} rebuilt from the log");
    }
    app.stop().await;
}

/// A result reference that no store holds (the projection does not read images).
fn fake_ref(ext: &str, side: i32) -> ImageRef {
    let sha256 = format!("{side:064x}");
    ImageRef {
        key: format!("images/sha256/{sha256}.{ext}"),
        content_type: format!("image/{ext}"),
        width: side,
        height: side,
        size_bytes: 1000,
        sha256,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_projection_lag_reaches_zero_on_the_transactional_generation_topic() {
    use rdkafka::producer::Producer;
    let env = TestEnv::new().await;
    gallery::topics::ensure_topics(&env.config).await.unwrap();
    // The painter's way: events in Kafka transactions, each ending in a commit marker, which
    // takes an offset but is no message.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &env.config.kafka.brokers)
        .set(
            "transactional.id",
            format!("{}lag-probe", env.config.kafka.topic_prefix),
        )
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    let codec = EventCodec::new(&env.config.registry()).unwrap();
    let topic = env.config.topics().generation();
    let mut ids = Vec::new();
    for _ in 0..4 {
        producer.begin_transaction().unwrap();
        let id = Uuid::now_v7();
        for event in [requested(id, "ada"), started(id, "ada")] {
            let bytes = codec.encode(&topic, &event).await.unwrap();
            let key = id.to_string();
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&bytes),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer
            .commit_transaction(Duration::from_secs(30))
            .unwrap();
        ids.push(id);
    }

    let metrics = common::free_port();
    let _projector = common::spawn_projector(
        &env,
        &[("GALLERY_METRICS__LISTEN", &format!("127.0.0.1:{metrics}"))],
    );
    let db = env.db().await;
    let lag = format!(
        "gallery_projection_lag_messages{{projection=\"read-model\",store=\"postgres\",topic=\"{topic}\"}}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    // Every job projected, then the gauge (from the consumer's statistics, every 5 s) at 0.
    loop {
        let running: i64 = db
            .query_one(
                "SELECT count(*) FROM generation_jobs WHERE request_id = ANY($1) AND status = 'running'",
                &[&ids],
            )
            .await
            .map_or(0, |r| r.get(0));
        let text = match reqwest::get(format!("http://127.0.0.1:{metrics}/metrics")).await {
            Ok(r) => r.text().await.unwrap(),
            Err(_) => String::new(),
        };
        if running == 4 && common::sample(&text, &lag) == Some(0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{running} of 4 jobs projected; the lag never reached 0 when caught up:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
