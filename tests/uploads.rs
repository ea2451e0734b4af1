//! Commands that carry images: artworks added by curators and photos for image-to-image. An
//! image is checked by its content and stored before any event refers to it; a refused image
//! writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestEnv, future, png, post_form};
use gallery::Roles;
use gallery_schemas::{Event, EventCodec, Role};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use serde_json::{Value, json};

/// Every event on `topic`, decoded.
async fn events(env: &TestEnv, topic: &str, at_least: usize) -> Vec<Event> {
    let consumer = common::kafka::reader(env, &format!("reader-{}", uuid::Uuid::new_v4()));
    consumer.subscribe(&[topic]).unwrap();
    let codec = EventCodec::new(&env.config.registry()).unwrap();
    let mut out = vec![];
    while out.len() < at_least {
        let m = tokio::time::timeout(std::time::Duration::from_secs(30), consumer.recv())
            .await
            .expect("events arrive")
            .unwrap();
        out.push(codec.decode(m.payload()).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_curator_adds_a_checked_image_and_publishes_and_bad_images_write_nothing() {
    let mut env = TestEnv::new().await;
    env.config.media.limits.max_bytes = 200_000;
    let app = env.start(Roles::COMMANDS).await;
    let cur = env.token_as("cur", Role::Curator);
    let resp = app
        .http
        .post(app.commands_url("/v1/exhibitions"))
        .bearer_auth(&cur)
        .json(&json!({"title": "Light", "opensAt": future(1), "closesAt": future(9)}))
        .send()
        .await
        .unwrap();
    let exhibition = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/exhibitions/{exhibition}/artworks");
    let fields = [
        ("title", "Sunflowers"),
        ("artist", "Vincent van Gogh"),
        ("year", "1888"),
    ];
    let catalog = env.config.topics().catalog();
    let before = env.end_offsets(&catalog);

    // Refused images: a text file called .png, a PNG header over junk, a picture too large,
    // one too small. Nothing is written.
    let mut fake = png(64, 64);
    for b in fake.iter_mut().skip(40) {
        *b = 0xAB;
    }
    let huge = png(400, 400); // > 200 kB uncompressible? not quite: make sure of the size
    let huge = if huge.len() > 200_000 {
        huge
    } else {
        [huge, vec![0u8; 200_001]].concat()
    };
    for (file, status, code) in [
        (
            b"just some text, honest".to_vec(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (fake, 422, "INVALID_IMAGE"),
        (huge, 413, "PAYLOAD_TOO_LARGE"),
        (png(8, 8), 422, "IMAGE_DIMENSIONS"),
    ] {
        let (got, body) = post_form(&app, &path, &cur, &fields, ("image", "art.png", &file)).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    assert_eq!(
        env.end_offsets(&catalog),
        before,
        "refused images write nothing"
    );

    // A visitor may not add an artwork.
    let (got, body) = post_form(
        &app,
        &path,
        &env.token("ada"),
        &fields,
        ("image", "a.png", &png(64, 48)),
    )
    .await;
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );

    // A real PNG: accepted, stored content-addressed, referred to by the event.
    let image = png(64, 48);
    let (got, body) = post_form(
        &app,
        &path,
        &cur,
        &fields,
        ("image", "whatever.bin", &image),
    )
    .await;
    assert_eq!(got, 202, "{body}");
    let artwork = body["id"].as_str().unwrap().to_owned();
    let publish = format!("/v1/exhibitions/{exhibition}/publish");
    let resp = app
        .http
        .post(app.commands_url(&publish))
        .bearer_auth(&cur)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let remove = format!("/v1/exhibitions/{exhibition}/artworks/{artwork}");
    let resp = app
        .http
        .delete(app.commands_url(&remove))
        .bearer_auth(&cur)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);

    let events = events(&env, &catalog, 4).await;
    let added = events
        .iter()
        .find_map(|e| match e {
            Event::ArtworkAdded(a) => Some(a.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(added.artwork_id.as_str(), artwork);
    assert_eq!(added.year, Some(1888));
    assert_eq!((added.image.width, added.image.height), (64, 48));
    assert_eq!(added.image.content_type, "image/png");
    assert!(added.image.key.ends_with(".png") && added.image.key.contains(&added.image.sha256));
    let stored = std::path::Path::new(&env.config.media.store_url).join(&added.image.key);
    assert_eq!(
        std::fs::read(stored).unwrap(),
        image,
        "the stored object is the upload"
    );
    let names: Vec<&str> = events.iter().map(Event::record_name).collect();
    assert!(names.contains(&"gallery.catalog.ExhibitionPublished"));
    assert!(names.contains(&"gallery.catalog.ArtworkRemoved"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_photo_becomes_an_image_to_image_request() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::COMMANDS).await;
    let ada = env.token("ada");
    let photo = png(96, 64);
    let fields = [("style", "impressionism"), ("steps", "12")];
    let (got, body) = post_form(
        &app,
        "/v1/generations/image-to-image",
        &ada,
        &fields,
        ("photo", "me.jpg", &photo),
    )
    .await;
    assert_eq!(got, 202, "{body}");
    assert_eq!(body["degraded"], false);
    let (got, body) = post_form(
        &app,
        "/v1/generations/image-to-image",
        &ada,
        &[("style", "impressionism"), ("steps", "many")],
        ("photo", "me.png", &photo),
    )
    .await;
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (400, Some("INVALID_INPUT"))
    );

    let events = events(&env, &env.config.topics().generation(), 1).await;
    let Event::GenerationRequested(r) = &events[0] else {
        panic!("a request")
    };
    assert_eq!(r.mode, gallery_schemas::GenerationMode::ImageToImage);
    assert_eq!(r.steps, 12);
    let source = r.source_image.as_ref().unwrap();
    assert_eq!((source.width, source.height), (96, 64));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_backlog_degrades_or_refuses_generation_per_configuration() {
    for (policy, expect) in [("degrade", 202), ("refuse", 503)] {
        let mut env = TestEnv::new().await;
        env.config.generation.backlog_threshold = 2;
        env.config.generation.backlog_interval_ms = 100;
        env.config.generation.overload = serde_json::from_value(json!(policy)).unwrap();
        let app = env.start(Roles::COMMANDS).await;
        let ada = env.token("ada");
        let big = json!({"prompt": "p", "style": "s", "steps": 40, "width": 768, "height": 512});
        // No workers consume the topic: every accepted request adds to the backlog.
        for _ in 0..2 {
            let resp = app
                .http
                .post(app.commands_url("/v1/generations"))
                .bearer_auth(&ada)
                .json(&big)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 202);
        }
        let mut sent = 2;
        // Wait until the monitor has measured the backlog (bounded), then ask again.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let resp = app
                .http
                .post(app.commands_url("/v1/generations"))
                .bearer_auth(&ada)
                .json(&big)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let retry = resp.headers().get("retry-after").is_some();
            let body: Value = resp.json().await.unwrap();
            if status == expect && (status == 503 || body["degraded"] == true) {
                if status == 503 {
                    assert_eq!(body["error"]["code"], "OVERLOADED");
                    assert!(retry, "a refusal says when to retry");
                } else {
                    let events = events(&env, &env.config.topics().generation(), sent + 1).await;
                    let id = body["id"].as_str().unwrap_or_default().to_owned();
                    let degraded = events.iter().find_map(|e| match e {
                        Event::GenerationRequested(r) if r.request_id.to_string() == id => {
                            Some(r.clone())
                        }
                        _ => None,
                    });
                    let r = degraded.expect("a degraded request on the topic");
                    assert_eq!((r.steps, r.width, r.height), (10, 256, 168));
                }
                break;
            }
            assert_eq!(status, 202, "{policy}: {body}");
            sent += 1;
            assert!(
                tokio::time::Instant::now() < deadline,
                "{policy}: never overloaded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
        app.stop().await;
    }
}
