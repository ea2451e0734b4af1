//! The GraphQL API's protection, against the real server: configurable depth and
//! complexity limits, automatic persisted queries, and a stable code on every error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{App, TestEnv};
use gallery::Roles;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

async fn post(app: &App, body: Value) -> Value {
    app.http
        .post(app.graphql_url())
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_past_the_configured_limits_are_refused_with_a_code() {
    let mut env = TestEnv::new().await;
    env.config.query_api.max_depth = 3;
    env.config.query_api.max_complexity = 8;
    let app = env.start(Roles::QUERY_API).await;

    let ok = app
        .graphql(None, "{ artwork(id: \"a\") { id likeCount } }", json!({}))
        .await;
    assert!(ok.get("errors").is_none(), "{ok}");

    let deep = "{ artwork(id: \"a\") { exhibition { artworks { edges { node { id } } } } } }";
    let body = app.graphql(None, deep, json!({})).await;
    assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");
    assert_eq!(body["data"], Value::Null);

    let wide = "{ a: artwork(id: \"a\") { id title artist year style description } b: artwork(id: \"b\") { id title artist } }";
    let body = app.graphql(None, wide, json!({})).await;
    assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");

    // Documents that do not parse or do not fit the schema have codes too.
    assert_eq!(
        code(&app.graphql(None, "{ artwork(", json!({})).await),
        "GRAPHQL_PARSE_FAILED"
    );
    assert_eq!(
        code(&app.graphql(None, "{ nothingHere }", json!({})).await),
        "GRAPHQL_VALIDATION_FAILED"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_persisted_query_is_sent_once_then_by_hash() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::QUERY_API).await;
    let query = "query($id: ID!) { artwork(id: $id) { id likeCount } }";
    let hash = hex::encode(Sha256::digest(query.as_bytes()));
    let persisted = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});

    // Unknown hash: the client sends the query with it next.
    let body = post(
        &app,
        json!({"variables": {"id": "a"}, "extensions": persisted}),
    )
    .await;
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");

    let body = post(
        &app,
        json!({"query": query, "variables": {"id": "a"}, "extensions": persisted}),
    )
    .await;
    assert_eq!(body["data"]["artwork"]["id"], "a", "{body}");

    // From now on the hash alone is enough.
    let body = post(
        &app,
        json!({"variables": {"id": "b"}, "extensions": persisted}),
    )
    .await;
    assert_eq!(
        body["data"]["artwork"],
        json!({"id": "b", "likeCount": 0}),
        "{body}"
    );

    let bad = json!({"persistedQuery": {"version": 2, "sha256Hash": hash}});
    let body = post(&app, json!({"variables": {"id": "b"}, "extensions": bad})).await;
    assert_eq!(code(&body), "PERSISTED_QUERY_INVALID", "{body}");
    app.stop().await;
}
