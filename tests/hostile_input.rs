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
//!   overflowing expiry;
//! - GraphQL batches, small and huge, refused before they are parsed;
//! - every ID argument of the GraphQL schema holding a traversal, SQL or a NUL byte, and every
//!   other text argument holding a NUL byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{App, TestEnv, future, offsets, send};
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

/// A NUL byte, and SQL that would do harm were any text ever pasted into a statement.
const NUL: &str = "before\u{0}after";
const SQL: &str = "x'); DROP TABLE artwork_stats; -- \" \\ % _ ;";

/// `text` as one path segment: every byte but unreserved ones percent-encoded, so that no
/// client or server takes any of it for a separator.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every text field of the command API's JSON bodies, as (what, method, path, body with
/// `value` in the field).
fn text_fields(value: &str) -> Vec<(String, &'static str, String, Value)> {
    let times = |mut body: Value| {
        body["opensAt"] = json!(future(1));
        body["closesAt"] = json!(future(2));
        body
    };
    vec![
        (
            "comment body".into(),
            "POST",
            "/v1/artworks/a1/comments".into(),
            json!({"body": value}),
        ),
        (
            "exhibition title".into(),
            "POST",
            "/v1/exhibitions".into(),
            times(json!({"title": value})),
        ),
        (
            "exhibition description".into(),
            "POST",
            "/v1/exhibitions".into(),
            times(json!({"title": "Night", "description": value})),
        ),
        (
            "prompt".into(),
            "POST",
            "/v1/generations".into(),
            json!({"prompt": value, "style": "warm"}),
        ),
        (
            "negative prompt".into(),
            "POST",
            "/v1/generations".into(),
            json!({"prompt": "a harbour", "negativePrompt": value, "style": "warm"}),
        ),
        (
            "style".into(),
            "POST",
            "/v1/generations".into(),
            json!({"prompt": "a harbour", "style": value}),
        ),
        (
            "username".into(),
            "POST",
            "/v1/auth/register".into(),
            json!({"username": value, "password": "a long enough password", "displayName": "Ada"}),
        ),
        (
            "display name".into(),
            "POST",
            "/v1/auth/register".into(),
            json!({"username": "ada-hostile", "password": "a long enough password", "displayName": value}),
        ),
        (
            "login username".into(),
            "POST",
            "/v1/auth/login".into(),
            json!({"username": value, "password": "a long enough password"}),
        ),
        (
            "role".into(),
            "PUT",
            "/v1/users/bob/role".into(),
            json!({"role": value}),
        ),
    ]
}

/// A multipart form with one field under test: (the field, the form's kind, its fields).
type FormCase = (&'static str, &'static str, Vec<(&'static str, String)>);

/// The multipart text fields: an artwork's and an image-to-image request's.
fn form_fields(value: &str) -> Vec<FormCase> {
    let artwork = |field: &'static str| {
        let mut fields = vec![
            ("title", "Harbour".to_owned()),
            ("artist", "Ada".to_owned()),
            ("year", "1890".to_owned()),
            ("style", "impressionism".to_owned()),
            ("description", "Boats".to_owned()),
        ];
        fields.retain(|(name, _)| *name != field);
        fields.push((field, value.to_owned()));
        (field, "artwork", fields)
    };
    let photo = |field: &'static str| {
        let mut fields = vec![("style", "warm".to_owned())];
        fields.retain(|(name, _)| *name != field);
        fields.push((field, value.to_owned()));
        (field, "photo", fields)
    };
    vec![
        artwork("title"),
        artwork("artist"),
        artwork("style"),
        artwork("description"),
        photo("prompt"),
        photo("negativePrompt"),
        photo("style"),
    ]
}

/// Sends the form of `kind` ("artwork" to `exhibition`, or "photo").
async fn send_form(
    app: &App,
    token: &str,
    exhibition: &str,
    kind: &str,
    fields: &[(&'static str, String)],
) -> (u16, Value) {
    let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let picture = common::png(64, 64);
    match kind {
        "artwork" => {
            let path = format!("/v1/exhibitions/{exhibition}/artworks");
            common::post_form(app, &path, token, &fields, ("image", "a.png", &picture)).await
        }
        _ => {
            let path = "/v1/generations/image-to-image";
            common::post_form(app, path, token, &fields, ("photo", "a.png", &picture)).await
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nul_byte_in_any_text_field_is_refused_and_writes_nothing() {
    let (env, app) = start(false).await;
    let ada = env.token("ada");
    let admin = env.token_as("root", gallery_schemas::Role::Admin);
    let cur = env.token_as("cur", gallery_schemas::Role::Curator);
    let exhibition = common::create_exhibition(&app, &cur, "Harbours", 2).await;
    let store = std::path::PathBuf::from(&env.config.media.store_url);
    let stored = common::generation::objects(&store);
    let before = offsets(&env);

    for (what, method, path, body) in text_fields(NUL) {
        let token = match what.as_str() {
            "exhibition title" | "exhibition description" => &cur,
            "role" => &admin,
            _ => &ada,
        };
        let (status, body) = send(&app, method, &path, Some(token), None, Some(body)).await;
        let expected = if what == "login username" {
            // A name that cannot exist signs nobody in, as a wrong password does.
            (401, "INVALID_CREDENTIALS")
        } else {
            (400, "INVALID_INPUT")
        };
        assert_eq!((status, code(&body)), expected, "{what}: {body}");
    }
    for (field, kind, fields) in form_fields(NUL) {
        let token = if kind == "artwork" { &cur } else { &ada };
        let (status, body) = send_form(&app, token, &exhibition, kind, &fields).await;
        assert_eq!(
            (status, code(&body)),
            (400, "INVALID_INPUT"),
            "{kind} {field}: {body}"
        );
    }
    for (what, mutation) in [
        (
            "comment",
            "mutation($v: String!) { postComment(artworkId: \"a1\", body: $v) { eventId } }",
        ),
        (
            "prompt",
            "mutation($v: String!) { requestTextToImage(input: {prompt: $v, style: \"warm\"}) { eventId } }",
        ),
        (
            "idempotency key",
            "mutation($v: String!) { likeArtwork(artworkId: \"a1\", idempotencyKey: $v) { eventId } }",
        ),
    ] {
        let body = app.graphql(Some(&ada), mutation, json!({"v": NUL})).await;
        assert!(body["data"].is_null(), "{what}: {body}");
        let expected = if what == "idempotency key" {
            "INVALID_IDEMPOTENCY_KEY"
        } else {
            "INVALID_INPUT"
        };
        assert_eq!(code(&body), expected, "GraphQL {what}: {body}");
    }

    assert_eq!(offsets(&env), before, "a refused command wrote nothing");
    assert_eq!(
        common::generation::objects(&store),
        stored,
        "a refused upload stored no image"
    );
    alive(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_in_free_text_is_shown_verbatim_and_refused_where_text_is_an_id() {
    let (env, app) = start(true).await;
    let ada = env.token("ada");
    let cur = env.token_as("cur", gallery_schemas::Role::Curator);

    // Free text is taken as it is, and shown as it was sent.
    let (status, comment) = send(
        &app,
        "POST",
        "/v1/artworks/a1/comments",
        Some(&ada),
        None,
        Some(json!({"body": SQL})),
    )
    .await;
    assert_eq!(status, 202, "{comment}");
    let (status, exhibition) = send(
        &app,
        "POST",
        "/v1/exhibitions",
        Some(&cur),
        None,
        Some(
            json!({"title": SQL, "description": SQL, "opensAt": future(1), "closesAt": future(2)}),
        ),
    )
    .await;
    assert_eq!(status, 202, "{exhibition}");
    let (status, generation) = send(
        &app,
        "POST",
        "/v1/generations",
        Some(&ada),
        None,
        Some(json!({"prompt": SQL, "negativePrompt": SQL, "style": SQL})),
    )
    .await;
    assert_eq!(status, 202, "{generation}");
    // A password is any characters, a NUL and SQL included, and only itself signs in.
    let password = format!("{SQL}{NUL}");
    let (status, registered) = send(
        &app,
        "POST",
        "/v1/auth/register",
        None,
        None,
        Some(json!({"username": "grace", "password": password, "displayName": SQL})),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    assert_eq!(registered["user"]["displayName"], SQL, "{registered}");
    for (attempt, expected) in [
        (password.clone(), 200),
        (password.split('\u{0}').next().unwrap().to_owned(), 401),
        (SQL.to_owned(), 401),
    ] {
        let (status, body) = send(
            &app,
            "POST",
            "/v1/auth/login",
            None,
            None,
            Some(json!({"username": "grace", "password": attempt})),
        )
        .await;
        assert_eq!(status, expected, "{attempt:?}: {body}");
    }

    // Where text is an id, SQL is not an id.
    let before = offsets(&env);
    let escaped = segment(SQL);
    for (method, path, token, body) in [
        ("PUT", format!("/v1/artworks/{escaped}/like"), &ada, None),
        (
            "POST",
            format!("/v1/artworks/{escaped}/comments"),
            &ada,
            Some(json!({"body": "hi"})),
        ),
        (
            "POST",
            "/v1/auth/register".to_owned(),
            &ada,
            Some(
                json!({"username": SQL, "password": "a long enough password", "displayName": "X"}),
            ),
        ),
    ] {
        let (status, answer) = send(&app, method, &path, Some(token), None, body).await;
        assert_eq!(
            (status, code(&answer)),
            (400, "INVALID_INPUT"),
            "{method} {path}: {answer}"
        );
    }
    let body = app
        .graphql(
            Some(&ada),
            "mutation($v: ID!) { likeArtwork(artworkId: $v) { eventId } }",
            json!({"v": SQL}),
        )
        .await;
    assert_eq!(code(&body), "INVALID_INPUT", "{body}");
    assert_eq!(offsets(&env), before, "a refused command wrote nothing");

    // The read model shows the text verbatim, and its tables are all there.
    let (status, _) = send(&app, "PUT", "/v1/artworks/a1/like", Some(&ada), None, None).await;
    assert_eq!(status, 202);
    env.wait_everything_projected().await;
    let body = app
        .graphql(
            None,
            "query($e: ID!) { artwork(id: \"a1\") { likeCount comments { edges { node { body } } } }
              exhibition(id: $e) { title description } }",
            json!({"e": exhibition["id"]}),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["artwork"]["likeCount"], 1, "{body}");
    assert_eq!(
        body["data"]["artwork"]["comments"]["edges"][0]["node"]["body"],
        SQL
    );
    assert_eq!(body["data"]["exhibition"]["title"], SQL);
    assert_eq!(body["data"]["exhibition"]["description"], SQL);
    alive(&app).await;
    app.stop().await;
}

/// `method target` (with a JSON `body` when given) sent over a socket of its own exactly as
/// written (no client resolves dot segments or re-encodes anything); the status and the JSON
/// body of the answer.
async fn raw(
    addr: &str,
    method: &str,
    target: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let body = body.map_or(String::new(), |b| b.to_string());
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("an answer within 30 s")
    .unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

/// `http://host:port` of a URL.
fn authority(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    rest[..rest.find('/').unwrap_or(rest.len())].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn path_traversal_in_ids_and_keys_is_refused_and_writes_nothing() {
    let (env, app) = start(false).await;
    let ada = env.token("ada");
    let admin = env.token_as("root", gallery_schemas::Role::Admin);
    let commands = authority(&app.commands_url("/"));
    let exhibition = uuid::Uuid::now_v7();
    let before = offsets(&env);

    // Ids in paths, with dot segments as they are and with their slashes encoded.
    for (method, target, token) in [
        ("PUT", "/v1/artworks/../like".to_owned(), &ada),
        (
            "PUT",
            "/v1/artworks/..%2F..%2Fetc%2Fpasswd/like".to_owned(),
            &ada,
        ),
        ("PUT", "/v1/artworks/%2e%2e/favorite".to_owned(), &ada),
        (
            "POST",
            "/v1/artworks/..%5C..%5Cwindows/views".to_owned(),
            &ada,
        ),
        (
            "DELETE",
            "/v1/artworks/a1/comments/..%2F..%2Fx".to_owned(),
            &ada,
        ),
        (
            "POST",
            "/v1/exhibitions/..%2F..%2Fx/publish".to_owned(),
            &admin,
        ),
        (
            "DELETE",
            format!("/v1/exhibitions/{exhibition}/artworks/..%2F..%2Fa1"),
            &admin,
        ),
        ("POST", "/v1/generations/../cancel".to_owned(), &ada),
        ("PUT", "/v1/users/..%2Fadmin/role".to_owned(), &admin),
    ] {
        let body = target.ends_with("/role").then(|| json!({"role": "ADMIN"}));
        let (status, body) = raw(&commands, method, &target, Some(token), body).await;
        assert_eq!(
            (status, code(&body)),
            (400, "INVALID_INPUT"),
            "{method} {target}: {body}"
        );
    }
    for (what, query, expected) in [
        (
            "artwork",
            "{ artwork(id: \"../../etc/passwd\") { id } }",
            "BAD_USER_INPUT",
        ),
        (
            "exhibition",
            "{ exhibition(id: \"../x\") { id } }",
            "BAD_USER_INPUT",
        ),
        (
            "like",
            "mutation { likeArtwork(artworkId: \"../x\") { eventId } }",
            "INVALID_INPUT",
        ),
    ] {
        let body = app.graphql(Some(&ada), query, json!({})).await;
        assert_eq!(code(&body), expected, "{what}: {body}");
    }
    assert_eq!(offsets(&env), before, "a refused command wrote nothing");

    // Media keys: a traversal is not an image key, signed or not.
    let urls =
        gallery_query_api::MediaUrls::new(&env.config.query_api.media_url_settings()).unwrap();
    let exp = urls.expiry(now());
    let signed =
        |target: &str, key: &str| format!("{target}?exp={exp}&sig={}", urls.signature(key, exp));
    let query_api = authority(&app.graphql_url());
    for (target, expected) in [
        (
            signed(
                "/media/images/sha256/../../../etc/passwd",
                "images/sha256/../../../etc/passwd",
            ),
            (400, "INVALID_INPUT"),
        ),
        (
            signed(
                "/media/images%2Fsha256%2F..%2F..%2Faccounts.png",
                "images/sha256/../../accounts.png",
            ),
            (400, "INVALID_INPUT"),
        ),
        (
            signed("/media/..%2F..%2Fetc%2Fpasswd", "../../etc/passwd"),
            (400, "INVALID_INPUT"),
        ),
        (
            "/media/images/sha256/../../../etc/passwd".to_owned(),
            (403, "INVALID_SIGNATURE"),
        ),
    ] {
        let (status, body) = raw(&query_api, "GET", &target, None, None).await;
        assert_eq!((status, code(&body)), expected, "{target}: {body}");
    }
    alive(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampered_media_urls_are_refused_and_only_the_genuine_one_reaches_the_store() {
    let (env, app) = start(false).await;
    let urls =
        gallery_query_api::MediaUrls::new(&env.config.query_api.media_url_settings()).unwrap();
    let key = format!("images/sha256/{}.png", "0".repeat(64));
    let other = format!("images/sha256/{}.png", "1".repeat(64));
    let exp = urls.expiry(now());
    let sig = urls.signature(&key, exp);
    let target = |exp: &str, sig: &str| format!("/media/{key}?exp={exp}&sig={sig}");
    let mut flipped = sig.clone();
    let first = flipped.remove(0);
    flipped.insert(0, if first == 'A' { 'B' } else { 'A' });
    let cases = [
        // The genuine URL passes its checks: the image is just not there.
        (target(&exp.to_string(), &sig), (404, "NOT_FOUND")),
        (
            target(&(exp + 3600).to_string(), &sig),
            (403, "INVALID_SIGNATURE"),
        ),
        (
            target(&exp.to_string(), &flipped),
            (403, "INVALID_SIGNATURE"),
        ),
        (
            target(&exp.to_string(), &sig[..sig.len() - 1]),
            (403, "INVALID_SIGNATURE"),
        ),
        (
            target(&exp.to_string(), &format!("{sig}=")),
            (403, "INVALID_SIGNATURE"),
        ),
        (target(&exp.to_string(), ""), (403, "INVALID_SIGNATURE")),
        (target(&format!("0{exp}"), &sig), (403, "INVALID_SIGNATURE")),
        (
            target(&format!("%2B{exp}"), &sig),
            (403, "INVALID_SIGNATURE"),
        ),
        (
            target("184467440737095516160", &sig),
            (403, "INVALID_SIGNATURE"),
        ),
        (target("-1", &sig), (403, "INVALID_SIGNATURE")),
        (
            format!("/media/{other}?exp={exp}&sig={sig}"),
            (403, "INVALID_SIGNATURE"),
        ),
        (
            format!("{}&exp={}", target(&exp.to_string(), &sig), exp + 3600),
            (403, "INVALID_SIGNATURE"),
        ),
        (format!("/media/{key}"), (403, "INVALID_SIGNATURE")),
        (
            urls.url_at(&key, now() - 7 * 24 * 3600),
            (403, "URL_EXPIRED"),
        ),
    ];
    let query_api = authority(&app.graphql_url());
    for (target, expected) in cases {
        let (status, body) = raw(&query_api, "GET", &target, None, None).await;
        assert_eq!((status, code(&body)), expected, "{target}: {body}");
    }
    alive(&app).await;
    app.stop().await;
}

/// A GraphQL request with a raw `body` of `content_type` (and `token`): the status and the
/// JSON answer.
async fn post_graphql(
    app: &App,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = app.http.post(app.graphql_url());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graphql_batches_are_refused_before_they_are_parsed_and_run_nothing() {
    let (env, app) = start(false).await;
    let ada = env.token("ada");
    let like = json!({"query": "mutation { likeArtwork(artworkId: \"a1\") { eventId } }"});
    let before = offsets(&env);

    // Small, huge (10 MiB of likes, within the 12 MiB body limit: parsed, it would take
    // hundreds of megabytes) and padded with whitespace before its bracket.
    let small = serde_json::to_vec(&json!([like, {"query": "{ __typename }"}])).unwrap();
    let one = like.to_string();
    let count = 10 * 1024 * 1024 / (one.len() + 1);
    let mut huge = Vec::with_capacity(10 * 1024 * 1024 + 2);
    huge.push(b'[');
    for i in 0..count {
        if i > 0 {
            huge.push(b',');
        }
        huge.extend_from_slice(one.as_bytes());
    }
    huge.push(b']');
    let padded = [b" \r\n\t".as_slice(), &small].concat();
    for (what, body) in [("small", small), ("huge", huge), ("padded", padded)] {
        let started = std::time::Instant::now();
        let (status, body) = post_graphql(&app, Some(&ada), "application/json", body).await;
        assert_eq!(
            (status, code(&body)),
            (400, "BATCH_NOT_SUPPORTED"),
            "{what}: {body}"
        );
        assert!(body["data"].is_null(), "{what}: {body}");
        eprintln!("{what} batch refused in {:?}", started.elapsed());
    }
    // A multipart request whose `operations` is a batch.
    let boundary = "hostile-batch";
    let operations = json!([like, like]).to_string();
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{operations}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{{}}\r\n--{boundary}--\r\n"
    );
    let (status, body) = post_graphql(
        &app,
        Some(&ada),
        &format!("multipart/form-data; boundary={boundary}"),
        form.into_bytes(),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (400, "BATCH_NOT_SUPPORTED"),
        "multipart: {body}"
    );

    assert_eq!(offsets(&env), before, "no operation of a batch ran");
    // One operation alone is served.
    let body = app
        .graphql(Some(&ada), like["query"].as_str().unwrap(), json!({}))
        .await;
    assert!(body["data"]["likeArtwork"]["eventId"].is_string(), "{body}");
    alive(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_graphql_id_and_text_argument_refuses_traversal_nul_and_sql_and_writes_nothing() {
    let (env, app) = start(false).await;
    let ada = env.token("ada");
    let admin = env.token_as("root", gallery_schemas::Role::Admin);
    let cur = env.token_as("cur", gallery_schemas::Role::Curator);
    let exhibition = uuid::Uuid::now_v7().to_string();
    let comment = uuid::Uuid::now_v7().to_string();
    let before = offsets(&env);

    // Every ID argument, with `$v` in its place: (what, token, document, expected code).
    let ids: &[(&str, &String, &str, &str)] = &[
        (
            "unlike",
            &ada,
            "mutation($v: ID!) { unlikeArtwork(artworkId: $v) { eventId } }",
            "INVALID_INPUT",
        ),
        (
            "favorite",
            &ada,
            "mutation($v: ID!) { favoriteArtwork(artworkId: $v) { eventId } }",
            "INVALID_INPUT",
        ),
        (
            "unfavorite",
            &ada,
            "mutation($v: ID!) { unfavoriteArtwork(artworkId: $v) { eventId } }",
            "INVALID_INPUT",
        ),
        (
            "comment's artwork",
            &ada,
            "mutation($v: ID!) { postComment(artworkId: $v, body: \"hi\") { eventId } }",
            "INVALID_INPUT",
        ),
        (
            "view",
            &ada,
            "mutation($v: ID!) { recordView(artworkId: $v) { eventId } }",
            "INVALID_INPUT",
        ),
        (
            "deleted comment's artwork",
            &ada,
            &format!(
                "mutation($v: ID!) {{ deleteComment(artworkId: $v, commentId: \"{comment}\") {{ eventId }} }}"
            ),
            "INVALID_INPUT",
        ),
        (
            "deleted comment",
            &ada,
            "mutation($v: ID!) { deleteComment(artworkId: \"a1\", commentId: $v) { eventId } }",
            "INVALID_INPUT",
        ),
        (
            "removed artwork's exhibition",
            &cur,
            "mutation($v: ID!) { removeArtwork(exhibitionId: $v, artworkId: \"a1\") { eventId } }",
            "INVALID_INPUT",
        ),
        (
            "removed artwork",
            &cur,
            &format!(
                "mutation($v: ID!) {{ removeArtwork(exhibitionId: \"{exhibition}\", artworkId: $v) {{ eventId }} }}"
            ),
            "INVALID_INPUT",
        ),
        (
            "published exhibition",
            &cur,
            "mutation($v: ID!) { publishExhibition(exhibitionId: $v) { eventId } }",
            "INVALID_INPUT",
        ),
        (
            "closed exhibition",
            &cur,
            "mutation($v: ID!) { closeExhibition(exhibitionId: $v) { eventId } }",
            "INVALID_INPUT",
        ),
        (
            "cancelled generation",
            &ada,
            "mutation($v: ID!) { cancelGeneration(requestId: $v) { eventId } }",
            "INVALID_INPUT",
        ),
        (
            "generation request id",
            &ada,
            "mutation($v: ID!) { requestTextToImage(input: {prompt: \"a harbour\", style: \"warm\", requestId: $v}) { eventId } }",
            "INVALID_INPUT",
        ),
        (
            "user",
            &admin,
            "mutation($v: ID!) { setRole(userId: $v, role: CURATOR) { id } }",
            "INVALID_INPUT",
        ),
        (
            "generation",
            &ada,
            "query($v: ID!) { generation(id: $v) { id } }",
            "BAD_USER_INPUT",
        ),
        (
            "artworks' exhibition",
            &ada,
            "query($v: ID!) { artworks(exhibitionId: $v) { edges { node { id } } } }",
            "BAD_USER_INPUT",
        ),
    ];
    for value in ["../../etc/passwd", "..\\..\\windows", "%2e%2e%2f", SQL, NUL] {
        for (what, token, document, expected) in ids {
            let body = app
                .graphql(Some(token), document, json!({"v": value}))
                .await;
            assert_eq!(code(&body), *expected, "{what} {value:?}: {body}");
        }
    }

    // Every text argument not covered above, with a NUL byte.
    let times = json!({"o": future(1), "c": future(2)});
    let texts: &[(&str, Option<&String>, &str, Value, &str)] = &[
        (
            "exhibition title",
            Some(&cur),
            "mutation($v: String!, $o: DateTime!, $c: DateTime!) { createExhibition(input: {title: $v, opensAt: $o, closesAt: $c}) { eventId } }",
            times.clone(),
            "INVALID_INPUT",
        ),
        (
            "exhibition description",
            Some(&cur),
            "mutation($v: String!, $o: DateTime!, $c: DateTime!) { createExhibition(input: {title: \"Night\", description: $v, opensAt: $o, closesAt: $c}) { eventId } }",
            times,
            "INVALID_INPUT",
        ),
        (
            "negative prompt",
            Some(&ada),
            "mutation($v: String!) { requestTextToImage(input: {prompt: \"a harbour\", negativePrompt: $v, style: \"warm\"}) { eventId } }",
            json!({}),
            "INVALID_INPUT",
        ),
        (
            "style",
            Some(&ada),
            "mutation($v: String!) { requestTextToImage(input: {prompt: \"a harbour\", style: $v}) { eventId } }",
            json!({}),
            "INVALID_INPUT",
        ),
        (
            "username",
            None,
            "mutation($v: String!) { register(input: {username: $v, password: \"a long enough password\", displayName: \"Ada\"}) { accessToken } }",
            json!({}),
            "INVALID_INPUT",
        ),
        (
            "display name",
            None,
            "mutation($v: String!) { register(input: {username: \"ada-gql\", password: \"a long enough password\", displayName: $v}) { accessToken } }",
            json!({}),
            "INVALID_INPUT",
        ),
        (
            "login username",
            None,
            "mutation($v: String!) { login(username: $v, password: \"a long enough password\") { accessToken } }",
            json!({}),
            "INVALID_CREDENTIALS",
        ),
        (
            "refresh token",
            None,
            "mutation($v: String!) { refresh(refreshToken: $v) { accessToken } }",
            json!({}),
            "INVALID_REFRESH_TOKEN",
        ),
        (
            "idempotency key of a favorite",
            Some(&ada),
            "mutation($v: String!) { favoriteArtwork(artworkId: \"a1\", idempotencyKey: $v) { eventId } }",
            json!({}),
            "INVALID_IDEMPOTENCY_KEY",
        ),
        (
            "cursor",
            None,
            "query($v: String!) { artworks(after: $v) { edges { node { id } } } }",
            json!({}),
            "BAD_USER_INPUT",
        ),
    ];
    for (what, token, document, variables, expected) in texts {
        let mut variables = variables.clone();
        variables["v"] = json!(NUL);
        let body = app
            .graphql(token.map(String::as_str), document, variables)
            .await;
        assert_eq!(code(&body), *expected, "{what}: {body}");
        assert!(
            body["data"].is_null()
                || body["data"]
                    .as_object()
                    .is_some_and(|d| d.values().all(Value::is_null)),
            "{what}: {body}"
        );
    }
    assert_eq!(offsets(&env), before, "a refused argument wrote nothing");
    alive(&app).await;
    app.stop().await;
}
