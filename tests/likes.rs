//! One like travelling from the command service through Kafka and the projector to GraphQL,
//! against the real stack.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use common::TestEnv;
use gallery::Roles;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn like_like_unlike_unlike_counts_1_1_0_0_and_never_negative() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::SERVICES).await;
    let ada = env.token("ada");

    assert_eq!(
        app.artwork_likes(Some(&ada), "sunflowers").await,
        (0, false)
    );
    let mut seen = vec![];
    for liked in [true, true, false, false] {
        let accepted = app.accept_like(&ada, "sunflowers", liked).await;
        // Read-your-writes: the projection has reached the like and the cache has dropped
        // the count it held.
        seen.push(
            app.artwork_likes_after(Some(&ada), Some(&accepted), "sunflowers")
                .await,
        );
    }
    assert_eq!(seen, vec![(1, true), (1, true), (0, false), (0, false)]);
    // Another viewer sees the count but not ada's like; an anonymous one likewise.
    assert_eq!(
        app.artwork_likes(Some(&env.token("bob")), "sunflowers")
            .await,
        (0, false)
    );
    assert_eq!(app.artwork_likes(None, "sunflowers").await, (0, false));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_users_liking_concurrently_count_two_hundred() {
    let env = TestEnv::new().await;
    let app = std::sync::Arc::new(env.start(Roles::SERVICES).await);
    let tokens: Vec<String> = (0..200)
        .map(|i| env.token(&format!("visitor-{i}")))
        .collect();

    let mut tasks = tokio::task::JoinSet::new();
    for token in tokens.clone() {
        let app = app.clone();
        tasks.spawn(async move { app.accept_like(&token, "starry-night", true).await });
    }
    let mut highest: HashMap<i32, i64> = HashMap::new();
    let mut topic = String::new();
    let mut event_ids = std::collections::HashSet::new();
    while let Some(accepted) = tasks.join_next().await {
        let accepted = accepted.unwrap();
        let h = highest.entry(accepted.partition).or_insert(-1);
        *h = (*h).max(accepted.offset);
        event_ids.insert(accepted.event_id.clone());
        topic = accepted.topic;
    }
    assert_eq!(event_ids.len(), 200, "every command has its own event");
    env.wait_all_projected(&topic, &highest).await;

    let (count, viewer_liked) = app.artwork_likes(Some(&tokens[7]), "starry-night").await;
    assert_eq!(count, 200);
    assert!(viewer_liked);
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_write_nothing() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::COMMANDS).await;
    let topic = env.config.topics().interactions();
    let before = env.end_offsets(&topic);

    let (status, body) = app.set_like(None, "a1", true).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );

    let tampered = format!("{}x", env.token("ada"));
    let (status, _) = app.set_like(Some(&tampered), "a1", true).await;
    assert_eq!(status, 401);

    let mut other = env.config.clone();
    other.auth.jwt_secret = gallery::config::Secret::new("another-secret-another-secret-123456");
    let foreign =
        gallery_commands::TokenKeys::from_secret(other.auth.jwt_secret.expose().as_bytes())
            .unwrap()
            .issue(
                &gallery_commands::Principal::new(
                    gallery_schemas::UserId::parse("ada").unwrap(),
                    gallery_schemas::Role::Visitor,
                ),
                std::time::Duration::from_secs(60),
            )
            .unwrap();
    let (status, _) = app.set_like(Some(&foreign), "a1", true).await;
    assert_eq!(status, 401);

    let (status, body) = app
        .set_like(Some(&env.token("ada")), "not%20valid", true)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("INVALID_INPUT"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("artwork id")
    );

    assert_eq!(env.end_offsets(&topic), before, "no event may be written");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_rejects_bad_ids_and_bad_tokens_with_codes() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::QUERY_API).await;
    let body = app
        .graphql(
            None,
            "{ artwork(id: \"no spaces\") { likeCount } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

    let body = app
        .graphql(
            Some("not-a-token"),
            "{ artwork(id: \"a1\") { likeCount } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_command_service_and_the_projector_serve_their_metrics() {
    let env = TestEnv::new().await;
    let (commands_port, commands_metrics, projector_metrics) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let _commands = common::gallery_command(&env, &["commands"])
        .env(
            "GALLERY_COMMANDS__LISTEN",
            format!("127.0.0.1:{commands_port}"),
        )
        .env(
            "GALLERY_METRICS__LISTEN",
            format!("127.0.0.1:{commands_metrics}"),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _projector = common::spawn_projector(
        &env,
        &[(
            "GALLERY_METRICS__LISTEN",
            &format!("127.0.0.1:{projector_metrics}"),
        )],
    );
    let http = reqwest::Client::new();
    let like = format!("http://127.0.0.1:{commands_port}/v1/artworks/irises/like");
    let ada = env.token("ada");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    // The first like once the service listens; then a second, and one without a token.
    loop {
        match http.put(&like).bearer_auth(&ada).send().await {
            Ok(r) if r.status() == 202 => break,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no command service: {other:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
    let bob = http
        .put(&like)
        .bearer_auth(env.token("bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(bob.status(), 202);
    let anonymous = http.put(&like).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let text = common::scrape(&format!("http://127.0.0.1:{commands_metrics}")).await;
    let route = "service=\"commands\",method=\"PUT\",route=\"/v1/artworks/{id}/like\"";
    assert_eq!(
        common::sample(
            &text,
            &format!("gallery_http_requests_total{{{route},status=\"202\"}}")
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        common::sample(
            &text,
            &format!("gallery_http_requests_total{{{route},status=\"401\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        common::sample(
            &text,
            &format!("gallery_http_request_seconds_count{{{route}}}")
        ),
        Some(3.0),
        "{text}"
    );

    // The projector: both likes in committed batches, and no lag left on the interactions
    // (the gauge comes from the consumer's statistics, every few seconds).
    let interactions = env.config.topics().interactions();
    let lag = format!(
        "gallery_projection_lag_messages{{projection=\"read-model\",store=\"postgres\",topic=\"{interactions}\"}}"
    );
    let messages =
        "gallery_projection_messages_total{projection=\"read-model\",store=\"postgres\"}";
    let text = loop {
        let text = match reqwest::get(format!("http://127.0.0.1:{projector_metrics}/metrics")).await
        {
            Ok(r) => r.text().await.unwrap(),
            Err(_) => String::new(),
        };
        if common::sample(&text, &lag) == Some(0.0)
            && common::sample(&text, messages).is_some_and(|n| n >= 2.0)
        {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projector's metrics never settled:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert!(
        common::sample(
            &text,
            "gallery_projection_batch_seconds_count{projection=\"read-model\",store=\"postgres\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        text.contains("# HELP gallery_projection_lag_messages"),
        "{text}"
    );
}
