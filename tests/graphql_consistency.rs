//! Read-your-writes through GraphQL: a query with the `X-Consistency-Token` of a mutation
//! answers only once the read model has applied that write, without any sleep.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{App, TestEnv};
use gallery::Roles;
use serde_json::{Value, json};

const LIKE: &str = "mutation($id: ID!) { likeArtwork(artworkId: $id) { consistencyToken } }";
const LIKES: &str = "query($id: ID!) { artwork(id: $id) { likeCount viewerHasLiked } }";

async fn graphql_with_token(app: &App, auth: &str, token: &str, query: &str, id: &str) -> Value {
    app.http
        .post(app.graphql_url())
        .bearer_auth(auth)
        .header("X-Consistency-Token", token)
        .json(&json!({"query": query, "variables": {"id": id}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_with_the_token_of_a_mutation_sees_that_write() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::SERVICES).await;
    let ada = env.token("ada");
    let mut tokens = Vec::new();
    for (n, artwork) in ["sunflowers", "irises", "sunflowers-2"].iter().enumerate() {
        let liked = app.graphql(Some(&ada), LIKE, json!({"id": artwork})).await;
        let token = liked["data"]["likeArtwork"]["consistencyToken"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {liked}"))
            .to_owned();
        tokens.push(token);
        let body = graphql_with_token(&app, &ada, &tokens[n], LIKES, artwork).await;
        assert!(body.get("errors").is_none(), "{body}");
        assert_eq!(
            body["data"]["artwork"],
            json!({"likeCount": 1, "viewerHasLiked": true}),
            "the write of {artwork} is visible at once"
        );
    }
    // Several tokens at once, comma separated.
    let body = graphql_with_token(&app, &ada, &tokens.join(","), LIKES, "irises").await;
    assert_eq!(body["data"]["artwork"]["likeCount"], 1, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_read_model_does_not_reach_in_time_is_a_consistency_timeout() {
    let mut env = TestEnv::new().await;
    env.config.query_api.consistency_timeout_ms = 300;
    let app = env.start(Roles::SERVICES).await;
    let ada = env.token("ada");
    let topic = env.config.topics().interactions();
    let body = graphql_with_token(&app, &ada, &format!("{topic}:0:1000000"), LIKES, "x").await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "CONSISTENCY_TIMEOUT",
        "{body}"
    );
    assert_eq!(body["data"], Value::Null);

    let bad = graphql_with_token(&app, &ada, "not-a-token", LIKES, "x").await;
    assert_eq!(
        bad["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{bad}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cached_count_changes_as_soon_as_the_projection_commits_a_like() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::SERVICES).await;
    let (ada, bob) = (env.token("ada"), env.token("bob"));
    let stats = "query($id: ID!) { artwork(id: $id) { stats { likes } } }";
    let first = app
        .graphql(Some(&ada), LIKE, json!({"id": "waterlilies"}))
        .await;
    let token = first["data"]["likeArtwork"]["consistencyToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen = graphql_with_token(&app, &bob, &token, stats, "waterlilies").await;
    assert_eq!(seen["data"]["artwork"]["stats"]["likes"], 1, "{seen}");

    // Cached: the second read runs no statement.
    let before = app.query_statements();
    let again = app.graphql(None, stats, json!({"id": "waterlilies"})).await;
    assert_eq!(again["data"]["artwork"]["stats"]["likes"], 1, "{again}");
    assert_eq!(app.query_statements(), before, "served from the cache");

    let second = app
        .graphql(Some(&bob), LIKE, json!({"id": "waterlilies"}))
        .await;
    let token = second["data"]["likeArtwork"]["consistencyToken"]
        .as_str()
        .unwrap()
        .to_owned();
    // Any request with the token returns once the change is announced, and so invalidated.
    graphql_with_token(&app, &bob, &token, "{ __typename }", "waterlilies").await;
    let after = app.graphql(None, stats, json!({"id": "waterlilies"})).await;
    assert_eq!(after["data"]["artwork"]["stats"]["likes"], 2, "{after}");
    app.stop().await;
}
