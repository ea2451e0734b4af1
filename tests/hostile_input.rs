//! Hostile input against both APIs (the command service and GraphQL, real roles on the real
//! stack): each is refused with its documented status and code, writes nothing, and both
//! processes go on serving.
//!
//! - forged and stale bearer tokens: `alg: none`, another algorithm with the right secret, a
//!   wrong key, expired, not yet valid, a subject that is a path;
//! - NUL bytes in every text field, SQL metacharacters in every text field (where the text is
//!   free, they are stored and shown verbatim);
//! - path traversal in every id and key: artwork, exhibition, generation and user ids in paths
//!   and GraphQL arguments, media keys (signed or not);
//! - tampered media URLs: another expiry, a cut or re-encoded signature, a non-canonical or
//!   overflowing expiry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{App, TestEnv, offsets, send};
use gallery::Roles;
use serde_json::{Value, json};

/// Both APIs, and the projector when `projected`.
async fn start(projected: bool) -> (TestEnv, App) {
    let mut env = TestEnv::new().await;
    env.config.limits.auth_per_minute = 0;
    env.config.limits.interactions_per_minute = 0;
    env.config.limits.catalog_per_minute = 0;
    env.config.limits.generation_per_minute = 0;
    let roles = Roles {
        commands: true,
        query_api: true,
        projections: projected,
        ..Roles::NONE
    };
    let app = env.start(roles).await;
    (env, app)
}

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .or_else(|| body["errors"][0]["extensions"]["code"].as_str())
        .unwrap_or("")
}

/// Both servers still answer.
async fn alive(app: &App) {
    let graphql = app.graphql_url();
    for url in [
        app.commands_url("/healthz"),
        graphql.replace("/graphql", "/healthz"),
    ] {
        let response = app.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
    }
}

fn now() -> u64 {
    time::OffsetDateTime::now_utc().unix_timestamp() as u64
}

/// A token over `claims`, signed with `secret` under `alg`.
fn signed(alg: jsonwebtoken::Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Claims an admin named `sub` would have, valid from `nbf` (if any) to `exp`.
fn claims(sub: &str, exp: u64, nbf: Option<u64>) -> Value {
    let mut c = json!({"sub": sub, "role": "ADMIN", "iat": now(), "exp": exp});
    if let Some(nbf) = nbf {
        c["nbf"] = json!(nbf);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_and_stale_tokens_are_refused_by_both_apis_and_write_nothing() {
    let (env, app) = start(false).await;
    let secret = env.config.auth.jwt_secret.expose().as_bytes().to_vec();
    let hs256 = jsonwebtoken::Algorithm::HS256;
    let hour = now() + 3600;
    let unsigned = {
        let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            part(json!({"alg": "none", "typ": "JWT"})),
            part(claims("ada", hour, None))
        )
    };
    let tokens: Vec<(&str, String)> = vec![
        ("alg none, no signature", unsigned.clone()),
        ("alg none, the HS256 signature kept", {
            let genuine = signed(hs256, &secret, &claims("ada", hour, None));
            let signature = genuine.rsplit('.').next().unwrap();
            format!("{unsigned}{signature}")
        }),
        (
            "HS512 with the right secret",
            signed(
                jsonwebtoken::Algorithm::HS512,
                &secret,
                &claims("ada", hour, None),
            ),
        ),
        (
            "a wrong key",
            signed(
                hs256,
                b"not the secret, but just as long as one",
                &claims("ada", hour, None),
            ),
        ),
        (
            "expired a minute ago",
            signed(hs256, &secret, &claims("ada", now() - 60, None)),
        ),
        (
            "not valid for another hour",
            signed(hs256, &secret, &claims("ada", hour + 3600, Some(hour))),
        ),
        (
            "a subject that is a path",
            signed(hs256, &secret, &claims("../admin", hour, None)),
        ),
        ("no expiry", {
            let mut c = claims("ada", hour, None);
            c.as_object_mut().unwrap().remove("exp");
            signed(hs256, &secret, &c)
        }),
    ];
    let before = offsets(&env);
    for (what, token) in &tokens {
        for (method, path, body) in [
            ("PUT", "/v1/artworks/a1/like", None),
            (
                "POST",
                "/v1/artworks/a1/comments",
                Some(json!({"body": "hello"})),
            ),
            ("PUT", "/v1/users/bob/role", Some(json!({"role": "ADMIN"}))),
        ] {
            let (status, body) = send(&app, method, path, Some(token), None, body).await;
            assert_eq!(
                (status, code(&body)),
                (401, "UNAUTHENTICATED"),
                "{what}: {method} {path}: {body}"
            );
        }
        let response = app
            .http
            .post(app.graphql_url())
            .header("authorization", format!("Bearer {token}"))
            .json(&json!({"query": "mutation { likeArtwork(artworkId: \"a1\") { eventId } }"}))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(code(&body), "UNAUTHENTICATED", "{what}: GraphQL: {body}");
        assert!(body["data"].is_null(), "{what}: {body}");
    }
    // The genuine token of the same claims is taken: the refusals were for what they forged.
    let genuine = signed(hs256, &secret, &claims("ada", hour, None));
    let (status, body) = send(
        &app,
        "PUT",
        "/v1/artworks/a1/like",
        Some(&genuine),
        None,
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let mut after = offsets(&env);
    let interactions = env.config.topics().interactions();
    let written: i64 =
        after[&interactions].values().sum::<i64>() - before[&interactions].values().sum::<i64>();
    assert_eq!(written, 1, "only the genuine like is written");
    after.remove(&interactions);
    let mut before = before;
    before.remove(&interactions);
    assert_eq!(after, before, "a forged token wrote nothing");
    alive(&app).await;
    app.stop().await;
}
