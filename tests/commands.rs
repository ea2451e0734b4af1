//! The write side end to end: every command through HTTP against the real stack, its events
//! readable by any Confluent-compatible consumer, idempotency, and every refusal writing
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestEnv, future, offsets, send};
use gallery::Roles;
use gallery_schemas::Role;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use serde_json::{Value, json};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_lands_on_its_topic_readable_by_any_confluent_consumer() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::COMMANDS).await;
    let ada = env.token("ada");
    let cur = env.token_as("cur", Role::Curator);

    for (method, path, token, body) in [
        ("PUT", "/v1/artworks/sunflowers/like", Some(&ada), None),
        ("PUT", "/v1/artworks/sunflowers/favorite", Some(&ada), None),
        ("POST", "/v1/artworks/sunflowers/views", None, None),
        (
            "POST",
            "/v1/artworks/sunflowers/comments",
            Some(&ada),
            Some(json!({"body": "Bright!"})),
        ),
        (
            "POST",
            "/v1/generations",
            Some(&ada),
            Some(json!({"prompt": "a lighthouse", "style": "impressionism"})),
        ),
    ] {
        let (status, body) = send(&app, method, path, token.map(String::as_str), None, body).await;
        assert_eq!(status, 202, "{method} {path}: {body}");
        if path.ends_with("comments") {
            let comment = body["id"].as_str().unwrap();
            let (status, _) = send(
                &app,
                "DELETE",
                &format!("/v1/artworks/sunflowers/comments/{comment}"),
                Some(&ada),
                None,
                None,
            )
            .await;
            assert_eq!(status, 202);
        }
        if path == "/v1/generations" {
            let id = body["id"].as_str().unwrap();
            let path = format!("/v1/generations/{id}/cancel");
            assert_eq!(
                send(&app, "POST", &path, Some(&ada), None, None).await.0,
                202
            );
        }
    }
    let exhibition = common::create_exhibition(&app, &cur, "Light", 30).await;
    let artworks = format!("/v1/exhibitions/{exhibition}/artworks");
    let fields = [("title", "Sunflowers"), ("artist", "Vincent van Gogh")];
    let image = common::png(64, 64);
    let (status, body) =
        common::post_form(&app, &artworks, &cur, &fields, ("image", "a.png", &image)).await;
    assert_eq!(status, 202, "{body}");
    let artwork = body["id"].as_str().unwrap().to_owned();
    for (method, path) in [
        ("POST", format!("/v1/exhibitions/{exhibition}/publish")),
        (
            "DELETE",
            format!("/v1/exhibitions/{exhibition}/artworks/{artwork}"),
        ),
    ] {
        assert_eq!(
            send(&app, method, &path, Some(&cur), None, None).await.0,
            202
        );
    }
    let path = format!("/v1/exhibitions/{exhibition}/close");
    assert_eq!(
        send(&app, "POST", &path, Some(&cur), None, None).await.0,
        202
    );
    let (status, body) = send(
        &app,
        "POST",
        "/v1/auth/register",
        None,
        None,
        Some(json!({"username": "grace", "password": "correct horse battery", "displayName": "Grace"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // A consumer that knows nothing of Gallery: Confluent framing, schemas from the registry.
    let consumer = common::kafka::reader(&env, "generic-reader");
    let topics = env.config.topics();
    let names: Vec<String> = [
        topics.users(),
        topics.catalog(),
        topics.interactions(),
        topics.generation(),
    ]
    .to_vec();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    consumer.subscribe(&refs).unwrap();
    let decoder = AvroDecoder::new(SrSettings::new(env.config.registry.url.clone()));
    let expected: BTreeSet<(String, &str)> = [
        (topics.users(), "gallery.users.UserRegistered"),
        (topics.catalog(), "gallery.catalog.ExhibitionCreated"),
        (topics.catalog(), "gallery.catalog.ArtworkAdded"),
        (topics.catalog(), "gallery.catalog.ExhibitionPublished"),
        (topics.catalog(), "gallery.catalog.ArtworkRemoved"),
        (topics.catalog(), "gallery.catalog.ExhibitionClosed"),
        (topics.interactions(), "gallery.interactions.LikeSet"),
        (topics.interactions(), "gallery.interactions.FavoriteSet"),
        (topics.interactions(), "gallery.interactions.ArtworkViewed"),
        (topics.interactions(), "gallery.interactions.CommentPosted"),
        (topics.interactions(), "gallery.interactions.CommentDeleted"),
        (
            topics.generation(),
            "gallery.generation.GenerationRequested",
        ),
        (
            topics.generation(),
            "gallery.generation.GenerationCancelled",
        ),
    ]
    .into_iter()
    .collect();
    let mut seen: BTreeSet<(String, &str)> = BTreeSet::new();
    while seen.len() < expected.len() {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only saw {seen:?}"))
            .unwrap();
        let payload = m.payload().unwrap();
        assert_eq!(payload[0], 0, "Confluent magic byte");
        let decoded = decoder.decode(Some(payload)).await.unwrap();
        let name = decoded.name.unwrap().fullname(None);
        let (topic, known) = expected
            .iter()
            .find(|(t, n)| t == m.topic() && *n == name)
            .unwrap_or_else(|| panic!("unexpected {name} on {}", m.topic()));
        // The key orders what must stay ordered: the artwork, the exhibition, the request, the user.
        assert!(m.key().is_some_and(|k| !k.is_empty()));
        seen.insert((topic.clone(), known));
    }
    assert_eq!(seen, expected);
    // Every event type of the contract but the AI painter's, which only workers write.
    let written_by_workers = gallery_schemas::SCHEMAS
        .iter()
        .filter(|(name, _)| {
            name.starts_with("gallery.generation.")
                && !name.ends_with(".GenerationRequested")
                && !name.ends_with(".GenerationCancelled")
        })
        .count();
    assert_eq!(
        written_by_workers, 5,
        "started, progressed and three terminals"
    );
    assert_eq!(
        seen.len(),
        gallery_schemas::SCHEMAS.len() - written_by_workers,
        "every event type of the contract that a command writes"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_replays_the_result_and_refuses_another_request() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::COMMANDS).await;
    let ada = env.token("ada");
    let path = "/v1/artworks/a1/comments";
    let body = || Some(json!({"body": "first!"}));

    let (s1, first) = send(&app, "POST", path, Some(&ada), Some("k-1"), body()).await;
    assert_eq!(s1, 202, "{first}");
    let before = offsets(&env);
    let (s2, again) = send(&app, "POST", path, Some(&ada), Some("k-1"), body()).await;
    assert_eq!(
        (s2, &again),
        (202, &first),
        "a retry returns the original result"
    );
    assert_eq!(offsets(&env), before, "and writes no second event");

    let (s3, other) = send(
        &app,
        "POST",
        path,
        Some(&ada),
        Some("k-1"),
        Some(json!({"body": "second"})),
    )
    .await;
    assert_eq!((s3, code(&other)), (422, "IDEMPOTENCY_KEY_REUSED"));

    // Keys belong to their user: bob's k-1 is his own command.
    let (s4, bobs) = send(
        &app,
        "POST",
        path,
        Some(&env.token("bob")),
        Some("k-1"),
        body(),
    )
    .await;
    assert_eq!(s4, 202);
    assert_ne!(bobs["eventId"], first["eventId"]);

    let (s5, bad) = send(
        &app,
        "PUT",
        "/v1/artworks/a1/like",
        Some(&ada),
        Some("has space"),
        None,
    )
    .await;
    assert_eq!((s5, code(&bad)), (400, "INVALID_IDEMPOTENCY_KEY"));

    // A client-chosen generation request id works like a key.
    let request = json!({"prompt": "sea", "style": "ukiyo-e", "requestId": "0190f5a4-7d1c-7b52-9b0e-5a3d2c1b0a99"});
    let (g1, r1) = send(
        &app,
        "POST",
        "/v1/generations",
        Some(&ada),
        None,
        Some(request.clone()),
    )
    .await;
    let (g2, r2) = send(
        &app,
        "POST",
        "/v1/generations",
        Some(&ada),
        None,
        Some(request),
    )
    .await;
    assert_eq!((g1, g2), (202, 202));
    assert_eq!(r1, r2);
    assert_eq!(r1["id"], "0190f5a4-7d1c-7b52-9b0e-5a3d2c1b0a99");
    // The same request id from someone else is refused.
    let stolen = json!({"prompt": "sea", "style": "ukiyo-e", "requestId": "0190f5a4-7d1c-7b52-9b0e-5a3d2c1b0a99"});
    let (g3, r3) = send(
        &app,
        "POST",
        "/v1/generations",
        Some(&env.token("bob")),
        None,
        Some(stolen),
    )
    .await;
    assert_eq!((g3, code(&r3)), (409, "CONFLICT"));
    app.stop().await;
}

/// A view is a command like the others: a signed-in viewer's key replays it and writes
/// nothing, and belongs to that one command. Keys belong to their user, so an anonymous view
/// cannot take one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_honour_idempotency_keys() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::COMMANDS).await;
    let ada = env.token("ada");
    let path = "/v1/artworks/a1/views";

    let (status, first) = send(&app, "POST", path, Some(&ada), Some("view-1"), None).await;
    assert_eq!(status, 202, "{first}");
    let before = offsets(&env);
    for _ in 0..3 {
        let (status, again) = send(&app, "POST", path, Some(&ada), Some("view-1"), None).await;
        assert_eq!((status, &again), (202, &first), "a retry replays the view");
    }
    // The same key for another command, or for a view of another artwork, is refused.
    let (status, body) = send(
        &app,
        "PUT",
        "/v1/artworks/a1/like",
        Some(&ada),
        Some("view-1"),
        None,
    )
    .await;
    assert_eq!((status, code(&body)), (422, "IDEMPOTENCY_KEY_REUSED"));
    let (status, body) = send(
        &app,
        "POST",
        "/v1/artworks/a2/views",
        Some(&ada),
        Some("view-1"),
        None,
    )
    .await;
    assert_eq!((status, code(&body)), (422, "IDEMPOTENCY_KEY_REUSED"));
    // Without a token there is no user to keep the key for.
    let (status, body) = send(&app, "POST", path, None, Some("view-1"), None).await;
    assert_eq!(
        (status, code(&body)),
        (400, "INVALID_IDEMPOTENCY_KEY"),
        "{body}"
    );
    assert_eq!(
        offsets(&env),
        before,
        "no replay or refusal writes an event"
    );

    // Unkeyed views, signed in or not, are each a view.
    for token in [Some(ada.as_str()), None] {
        let (status, body) = send(&app, "POST", path, token, None, None).await;
        assert_eq!(status, 202, "{body}");
        assert_ne!(body["eventId"], first["eventId"]);
    }
    app.stop().await;
}

/// method, path, token, body, expected status, expected code.
type Case<'a> = (
    &'a str,
    String,
    Option<&'a str>,
    Option<Value>,
    u16,
    &'a str,
);

fn expired_token(env: &TestEnv, user: &str) -> String {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        role: &'a str,
        iat: u64,
        exp: u64,
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims {
            sub: user,
            role: "VISITOR",
            iat: 1_000,
            exp: 2_000,
        },
        &jsonwebtoken::EncodingKey::from_secret(env.config.auth.jwt_secret.expose().as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_refusal_has_a_clear_error_and_writes_nothing() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::COMMANDS).await;
    let ada = env.token("ada");
    let bob = env.token("bob");
    let cur = env.token_as("cur", Role::Curator);
    let other_cur = env.token_as("other", Role::Curator);

    // Set the scene: a comment by ada, a generation by ada, an empty exhibition by cur.
    let (_, comment) = send(
        &app,
        "POST",
        "/v1/artworks/a1/comments",
        Some(&ada),
        None,
        Some(json!({"body": "mine"})),
    )
    .await;
    let comment = comment["id"].as_str().unwrap().to_owned();
    let (_, generation) = send(
        &app,
        "POST",
        "/v1/generations",
        Some(&ada),
        None,
        Some(json!({"prompt": "p", "style": "s"})),
    )
    .await;
    let generation = generation["id"].as_str().unwrap().to_owned();
    let (_, exhibition) = send(
        &app,
        "POST",
        "/v1/exhibitions",
        Some(&cur),
        None,
        Some(json!({"title": "Empty", "opensAt": future(1), "closesAt": future(2)})),
    )
    .await;
    let exhibition = exhibition["id"].as_str().unwrap().to_owned();
    let before = offsets(&env);

    let long = "x".repeat(2001);
    let expired = expired_token(&env, "ada");
    let cases: Vec<Case> = vec![
        (
            "PUT",
            "/v1/artworks/a1/like".into(),
            Some(&expired),
            None,
            401,
            "UNAUTHENTICATED",
        ),
        (
            "PUT",
            "/v1/artworks/a1/like".into(),
            Some("garbage"),
            None,
            401,
            "UNAUTHENTICATED",
        ),
        (
            "POST",
            "/v1/artworks/a1/comments".into(),
            Some(&ada),
            Some(json!({"body": long})),
            400,
            "INVALID_INPUT",
        ),
        (
            "POST",
            "/v1/artworks/a1/comments".into(),
            Some(&ada),
            Some(json!({"body": "bell\u{7}"})),
            400,
            "INVALID_INPUT",
        ),
        (
            "POST",
            "/v1/artworks/a1/comments".into(),
            Some(&ada),
            Some(json!({})),
            400,
            "INVALID_INPUT",
        ),
        (
            "POST",
            "/v1/artworks/a1/comments".into(),
            Some(&ada),
            Some(json!({"body": "x", "extra": 1})),
            400,
            "INVALID_INPUT",
        ),
        (
            "POST",
            "/v1/artworks/bad%20id/comments".into(),
            Some(&ada),
            Some(json!({"body": "x"})),
            400,
            "INVALID_INPUT",
        ),
        (
            "DELETE",
            format!("/v1/artworks/a1/comments/{comment}"),
            Some(&bob),
            None,
            403,
            "FORBIDDEN",
        ),
        (
            "DELETE",
            "/v1/artworks/a1/comments/not-a-uuid".into(),
            Some(&ada),
            None,
            400,
            "INVALID_INPUT",
        ),
        (
            "DELETE",
            format!("/v1/artworks/a1/comments/{}", uuid::Uuid::new_v4()),
            Some(&ada),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "POST",
            "/v1/exhibitions".into(),
            Some(&ada),
            Some(json!({"title": "Mine", "opensAt": future(1), "closesAt": future(2)})),
            403,
            "FORBIDDEN",
        ),
        (
            "POST",
            "/v1/exhibitions".into(),
            Some(&cur),
            Some(json!({"title": "Late", "opensAt": future(2), "closesAt": future(1)})),
            400,
            "INVALID_INPUT",
        ),
        (
            "POST",
            "/v1/exhibitions".into(),
            Some(&cur),
            Some(json!({"title": "Bad date", "opensAt": "tomorrow", "closesAt": future(1)})),
            400,
            "INVALID_INPUT",
        ),
        (
            "POST",
            format!("/v1/exhibitions/{exhibition}/publish"),
            Some(&other_cur),
            None,
            403,
            "FORBIDDEN",
        ),
        (
            "POST",
            format!("/v1/exhibitions/{exhibition}/publish"),
            Some(&cur),
            None,
            409,
            "CONFLICT",
        ),
        (
            "DELETE",
            format!("/v1/exhibitions/{exhibition}/artworks/nope"),
            Some(&cur),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "POST",
            format!("/v1/exhibitions/{}/close", uuid::Uuid::new_v4()),
            Some(&cur),
            None,
            404,
            "NOT_FOUND",
        ),
        (
            "POST",
            "/v1/generations".into(),
            Some(&ada),
            Some(json!({"prompt": "p", "style": "s", "steps": 51})),
            400,
            "INVALID_INPUT",
        ),
        (
            "POST",
            "/v1/generations".into(),
            Some(&ada),
            Some(json!({"prompt": "p", "style": "s", "width": 100})),
            400,
            "INVALID_INPUT",
        ),
        (
            "POST",
            "/v1/generations".into(),
            Some(&ada),
            Some(json!({"prompt": "p".repeat(1001), "style": "s"})),
            400,
            "INVALID_INPUT",
        ),
        (
            "POST",
            format!("/v1/generations/{generation}/cancel"),
            Some(&bob),
            None,
            403,
            "FORBIDDEN",
        ),
        (
            "POST",
            format!("/v1/generations/{}/cancel", uuid::Uuid::new_v4()),
            Some(&ada),
            None,
            404,
            "NOT_FOUND",
        ),
        ("GET", "/v1/nowhere".into(), None, None, 404, "NOT_FOUND"),
    ];
    for (method, path, token, body, status, expected) in cases {
        let (got, reply) = send(&app, method, &path, token, None, body).await;
        assert_eq!(
            (got, code(&reply)),
            (status, expected),
            "{method} {path}: {reply}"
        );
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }

    // Not JSON at all, and JSON that does not parse.
    let url = app.commands_url("/v1/artworks/a1/comments");
    let resp = app
        .http
        .post(&url)
        .bearer_auth(&ada)
        .body("body=x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let resp = app
        .http
        .post(&url)
        .bearer_auth(&ada)
        .header("content-type", "application/json")
        .body("{\"body\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(code(&body), "INVALID_JSON");

    assert_eq!(
        offsets(&env),
        before,
        "no refused command may write an event"
    );

    // The state-changing refusals are refusals of state, not of form: closing twice.
    let close = format!("/v1/exhibitions/{exhibition}/close");
    assert_eq!(
        send(&app, "POST", &close, Some(&cur), None, None).await.0,
        202
    );
    let (status, body) = send(&app, "POST", &close, Some(&cur), None, None).await;
    assert_eq!((status, code(&body)), (409, "CONFLICT"));
    let cancel = format!("/v1/generations/{generation}/cancel");
    assert_eq!(
        send(&app, "POST", &cancel, Some(&ada), None, None).await.0,
        202
    );
    let (status, body) = send(&app, "POST", &cancel, Some(&ada), None, None).await;
    assert_eq!((status, code(&body)), (409, "CONFLICT"));
    // Deleting a comment twice, by its author or by an admin.
    let delete = format!("/v1/artworks/a1/comments/{comment}");
    assert_eq!(
        send(&app, "DELETE", &delete, Some(&ada), None, None)
            .await
            .0,
        202
    );
    let admin = env.token_as("root", Role::Admin);
    for who in [&ada, &admin] {
        let (status, body) = send(&app, "DELETE", &delete, Some(who), None, None).await;
        assert_eq!((status, code(&body)), (409, "CONFLICT"), "{body}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_routes_that_exist() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::COMMANDS).await;
    let doc: Value = app
        .http
        .get(app.commands_url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path) in gallery_commands::openapi::OPERATIONS {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} documented"
        );
        // Unauthenticated calls reach the handler (401), not the fallback (404) or a 405.
        let concrete = path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{comment}", "00000000-0000-0000-0000-000000000000")
            .replace("{artwork}", "a1");
        let (status, body) = send(&app, &method.to_uppercase(), &concrete, None, None, None).await;
        assert!(
            status != 404 && status != 405,
            "{method} {path} is routed (got {status}: {body})"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_refuses_a_schema_that_breaks_backward_compatibility() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::COMMANDS).await;
    let subject = format!(
        "{}-gallery.interactions.LikeSet",
        env.config.topics().interactions()
    );
    let url = format!("{}/subjects/{subject}/versions", env.config.registry.url);
    let mut schema: Value =
        serde_json::from_str(gallery_schemas::schema_of("gallery.interactions.LikeSet").unwrap())
            .unwrap();
    schema["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "weight", "type": "int"}));
    let register = |schema: &Value| {
        app.http
            .post(&url)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .json(&json!({"schema": schema.to_string()}))
            .send()
    };
    let refused = register(&schema).await.unwrap();
    assert_eq!(
        refused.status().as_u16(),
        409,
        "{}",
        refused.text().await.unwrap()
    );
    schema["fields"].as_array_mut().unwrap().pop();
    schema["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "weight", "type": "int", "default": 1}));
    assert!(register(&schema).await.unwrap().status().is_success());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_wait_for_a_schema_registry_that_answers_late() {
    let mut env = TestEnv::new().await;
    // The registry behind a proxy that listens only after two seconds.
    let url = env.config.registry.url.clone();
    let rest = url.strip_prefix("http://").expect("an http registry URL");
    let (upstream, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let upstream = upstream.to_owned();
    let port = common::free_port();
    let late = Duration::from_secs(2);
    tokio::spawn(async move {
        tokio::time::sleep(late).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        loop {
            let (mut inbound, _) = listener.accept().await.unwrap();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    env.config.registry.url = format!("http://127.0.0.1:{port}{path}");
    let started = std::time::Instant::now();
    let app = env.start(Roles::COMMANDS).await;
    assert!(
        started.elapsed() >= late,
        "started before the registry answered"
    );
    let accepted = app
        .accept_like(&env.token("ada"), "water-lilies", true)
        .await;
    assert!(accepted.offset >= 0);
    app.stop().await;
}
