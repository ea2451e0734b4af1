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

/// `{ artwork(id: "a") { exhibition { artworks { edges { node { exhibition { ... } } } } } } }`:
/// a query `depth` fields deep (the schema nests without end), `__typename` the deepest.
fn nested(depth: usize) -> String {
    assert!(depth >= 2);
    let steps = ["exhibition", "artworks(first: 1)", "edges", "node"];
    let mut query = String::from("{ artwork(id: \"a\") {");
    for level in 2..depth {
        query.push_str(&format!(" {} {{", steps[(level - 2) % steps.len()]));
    }
    query.push_str(" __typename");
    query.push_str(&" }".repeat(depth));
    query
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_depth_limit_holds_up_to_its_highest_setting_with_one_code() {
    let mut env = TestEnv::new().await;
    env.config.query_api.max_depth = gallery_query_api::guard::MAX_DEPTH_LIMIT;
    env.config.query_api.max_complexity = 1_000_000;
    let app = env.start(Roles::QUERY_API).await;
    let limit = gallery_query_api::guard::MAX_DEPTH_LIMIT;

    let body = app.graphql(None, &nested(limit), json!({})).await;
    assert!(body.get("errors").is_none(), "depth {limit}: {body}");
    for depth in [limit + 1, 50, 200] {
        let body = app.graphql(None, &nested(depth), json!({})).await;
        assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "depth {depth}: {body}");
    }
    // Deeper than the parser could recurse: refused before parsing, the server unharmed.
    let brackets = format!("{}{}", "{ a".repeat(10_000), "}".repeat(10_000));
    let body = app.graphql(None, &brackets, json!({})).await;
    assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");
    let body = app.graphql(None, &nested(3), json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_documents_and_fragment_bombs_are_refused_before_they_cost() {
    let mut env = TestEnv::new().await;
    env.config.query_api.max_document_bytes = 8_192;
    env.config.query_api.max_document_tokens = 1_000;
    let app = env.start(Roles::QUERY_API).await;

    let aliases = |n: usize| {
        let fields: String = (0..n).map(|i| format!("a{i}: __typename ")).collect();
        format!("{{ {fields}}}")
    };
    // 350 aliases: 1,052 tokens in 5 KiB. 600 aliases: over 8 KiB.
    let body = app.graphql(None, &aliases(350), json!({})).await;
    assert_eq!(code(&body), "QUERY_TOO_LARGE", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1000 tokens"),
        "{body}"
    );
    let body = app.graphql(None, &aliases(600), json!({})).await;
    assert_eq!(code(&body), "QUERY_TOO_LARGE", "{body}");
    let body = app.graphql(None, &aliases(50), json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");

    let bomb = common::fragment_bomb(30);
    let started = std::time::Instant::now();
    let body = app.graphql(None, &bomb, json!({})).await;
    assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");
    eprintln!("fragment bomb refused in {:?}", started.elapsed());

    // A fragment cycle is the validator's to refuse, and it does.
    let cycle =
        "{ ...A } fragment A on QueryRoot { ...B } fragment B on QueryRoot { ...A __typename }";
    let body = app.graphql(None, cycle, json!({})).await;
    assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_and_graphiql_can_be_switched_off() {
    let introspect = "{ __schema { queryType { name } } }";
    let env = TestEnv::new().await;
    let app = env.start(Roles::QUERY_API).await;
    let body = app.graphql(None, introspect, json!({})).await;
    assert!(
        body["data"]["__schema"]["queryType"]["name"].is_string(),
        "{body}"
    );
    let page = app.http.get(app.graphql_url()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    app.stop().await;

    let mut env = TestEnv::new().await;
    env.config.query_api.introspection = false;
    let app = env.start(Roles::QUERY_API).await;
    let body = app.graphql(None, introspect, json!({})).await;
    assert!(body.get("errors").is_some(), "{body}");
    assert!(
        body["data"].is_null() || body["data"]["__schema"].is_null(),
        "{body}"
    );
    let page = app.http.get(app.graphql_url()).send().await.unwrap();
    assert_eq!(page.status(), 405, "no GraphiQL without introspection");
    let body = app
        .graphql(None, "{ artwork(id: \"a\") { id } }", json!({}))
        .await;
    assert_eq!(body["data"]["artwork"]["id"], "a", "{body}");
    app.stop().await;
}
