//! Accounts against the real stack: registration (Postgres and the users topic together),
//! login, refresh-token rotation with theft detection, roles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{App, TestEnv};
use gallery::Roles;
use gallery_commands::accounts::{AccountSettings, Registration};
use gallery_commands::{
    AccountError, Accounts, CommandError, KafkaPublisher, ProducerConfig, TokenKeys,
};
use gallery_schemas::{Event, EventCodec, Role};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

async fn post(app: &App, path: &str, body: Value) -> (u16, Value) {
    common::send(app, "POST", path, None, None, Some(body)).await
}

async fn register(app: &App, username: &str, password: &str, name: &str) -> (u16, Value) {
    post(
        app,
        "/v1/auth/register",
        json!({"username": username, "password": password, "displayName": name}),
    )
    .await
}

async fn login(app: &App, username: &str, password: &str) -> (u16, Value) {
    post(
        app,
        "/v1/auth/login",
        json!({"username": username, "password": password}),
    )
    .await
}

async fn refresh(app: &App, token: &str) -> (u16, Value) {
    post(app, "/v1/auth/refresh", json!({"refreshToken": token})).await
}

async fn set_role(app: &App, token: Option<&str>, user: &str, role: &str) -> (u16, Value) {
    let mut req = app
        .http
        .put(app.commands_url(&format!("/v1/users/{user}/role")))
        .json(&json!({"role": role}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn field<'a>(body: &'a Value, name: &str) -> &'a str {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn role_in(env: &TestEnv, access_token: &str) -> Role {
    TokenKeys::from_secret(env.config.auth.jwt_secret.expose().as_bytes())
        .unwrap()
        .verify(access_token)
        .unwrap()
        .role
}

async fn commands_app(env: &TestEnv) -> App {
    env.start(Roles::COMMANDS).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_like_login_and_refresh_rotation_with_theft_detection() {
    let env = TestEnv::new().await;
    let app = commands_app(&env).await;

    let (status, registered) = register(&app, "ada", PASSWORD, "Ada Lovelace").await;
    assert_eq!(status, 201, "{registered}");
    assert_eq!(field(&registered, "tokenType"), "Bearer");
    assert_eq!(registered["expiresIn"], 900);
    assert_eq!(
        registered["user"],
        json!({"id": "ada", "displayName": "Ada Lovelace", "role": "visitor"})
    );
    assert_eq!(field(&registered, "refreshToken").len(), 43);

    // The access token is a working bearer token for commands.
    let accepted = app
        .accept_like(field(&registered, "accessToken"), "sunflowers", true)
        .await;
    assert!(accepted.topic.ends_with("interactions"));

    let (status, logged_in) = login(&app, "ada", PASSWORD).await;
    assert_eq!(status, 200, "{logged_in}");
    assert_eq!(logged_in["user"]["id"], "ada");
    let first = field(&logged_in, "refreshToken").to_owned();

    // Refresh rotates: a new refresh token, a new working access token.
    let (status, rotated) = refresh(&app, &first).await;
    assert_eq!(status, 200, "{rotated}");
    let second = field(&rotated, "refreshToken").to_owned();
    assert_ne!(first, second);
    assert_eq!(
        app.set_like(Some(field(&rotated, "accessToken")), "sunflowers", false)
            .await
            .0,
        202
    );

    // The old token again: refused, and the whole family is revoked, so the new one dies too.
    let (status, body) = refresh(&app, &first).await;
    assert_eq!((status, code(&body)), (401, "INVALID_REFRESH_TOKEN"));
    let (status, body) = refresh(&app, &second).await;
    assert_eq!((status, code(&body)), (401, "INVALID_REFRESH_TOKEN"));

    // Another login (another family) is untouched.
    let (status, _) = refresh(&app, field(&registered, "refreshToken")).await;
    assert_eq!(status, 200);

    let (status, body) = refresh(&app, "not-a-token").await;
    assert_eq!((status, code(&body)), (401, "INVALID_REFRESH_TOKEN"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_answer_json_errors_and_write_nothing() {
    let env = TestEnv::new().await;
    let app = commands_app(&env).await;
    let (status, _) = register(&app, "ada", PASSWORD, "Ada").await;
    assert_eq!(status, 201);
    let users = env.config.topics().users();
    let before = env.end_offsets(&users);

    // One answer for a wrong password and for a user that does not exist.
    let (status, wrong) = login(&app, "ada", "wrong password!").await;
    assert_eq!((status, code(&wrong)), (401, "INVALID_CREDENTIALS"));
    let (status, nobody) = login(&app, "nobody", PASSWORD).await;
    assert_eq!(status, 401);
    assert_eq!(wrong, nobody);
    let (status, _) = login(&app, "ada", "short").await;
    assert_eq!(status, 401);

    // Usernames are unique, ignoring case.
    for taken in ["ada", "ADA"] {
        let (status, body) = register(&app, taken, PASSWORD, "Someone").await;
        assert_eq!((status, code(&body)), (409, "USERNAME_TAKEN"), "{taken}");
    }

    for (username, password, name, named) in [
        ("bob", "short", "Bob", "password"),
        ("bob smith", PASSWORD, "Bob", "username"),
        ("bob", PASSWORD, "", "displayName"),
    ] {
        let (status, body) = register(&app, username, password, name).await;
        assert_eq!((status, code(&body)), (400, "INVALID_INPUT"), "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(named), "{message} must name {named}");
    }

    // Bad JSON (as on every route) and missing fields: 400 with the JSON error shape.
    let resp = app
        .http
        .post(app.commands_url("/v1/auth/register"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(code(&body), "INVALID_JSON");
    let (status, body) = post(&app, "/v1/auth/register", json!({"username": "bob"})).await;
    assert_eq!((status, code(&body)), (400, "INVALID_INPUT"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("password"),
        "{body}"
    );
    let (status, body) = post(&app, "/v1/auth/refresh", json!({})).await;
    assert_eq!((status, code(&body)), (400, "INVALID_INPUT"));

    assert_eq!(env.end_offsets(&users), before, "no event may be written");
    let db = env.db().await;
    let count: i64 = db
        .query_one("SELECT count(*) FROM commands.users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1, "only ada exists");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_registered_lands_on_the_users_topic_without_credentials() {
    let env = TestEnv::new().await;
    let app = commands_app(&env).await;
    let (status, _) = register(&app, "grace", PASSWORD, "Grace Hopper").await;
    assert_eq!(status, 201);

    let topic = env.config.topics().users();
    let consumer = common::kafka::reader(&env, "users-probe");
    consumer.subscribe(&[&topic]).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("UserRegistered is readable")
        .unwrap();
    assert_eq!(message.key(), Some(&b"grace"[..]));
    let payload = message.payload().unwrap().to_vec();

    let codec = EventCodec::new(&env.config.registry()).unwrap();
    let Event::UserRegistered(event) = codec.decode(Some(&payload)).await.unwrap() else {
        panic!("expected UserRegistered");
    };
    assert_eq!(event.user_id.as_str(), "grace");
    assert_eq!(event.display_name.as_str(), "Grace Hopper");
    assert_eq!(event.role, Role::Visitor);

    let hash: String = env
        .db()
        .await
        .query_one(
            "SELECT password_hash FROM commands.users WHERE user_id = 'grace'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(hash.starts_with("$argon2id$"));
    let text = String::from_utf8_lossy(&payload);
    assert!(
        !text.contains(PASSWORD),
        "the password must not be in the event"
    );
    assert!(!text.contains("argon2"), "no hash in the event");
    assert!(!text.contains(&hash[hash.len() - 20..]));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_promotes_a_visitor_and_the_next_refresh_carries_the_role() {
    let env = TestEnv::new().await;
    let app = commands_app(&env).await;
    let (status, ada) = register(&app, "ada", PASSWORD, "Ada").await;
    assert_eq!(status, 201);
    let (status, _) = register(&app, "root", PASSWORD, "The Admin").await;
    assert_eq!(status, 201);

    // A visitor may not change roles, nor may an anonymous caller.
    let (status, body) = set_role(&app, Some(field(&ada, "accessToken")), "ada", "admin").await;
    assert_eq!((status, code(&body)), (403, "FORBIDDEN"));
    let (status, _) = set_role(&app, None, "ada", "curator").await;
    assert_eq!(status, 401);
    // A token claiming admin is not enough: the store's role decides.
    let forged_role = env.token_as("ada", Role::Admin);
    let (status, _) = set_role(&app, Some(&forged_role), "ada", "curator").await;
    assert_eq!(status, 403);

    // Bootstrap: the command-line path writes the store directly.
    let root = gallery::app::set_user_role(&env.config, "root", Role::Admin)
        .await
        .unwrap();
    assert_eq!(root.role, Role::Admin);
    let (status, root) = login(&app, "root", PASSWORD).await;
    assert_eq!((status, &root["user"]["role"]), (200, &json!("admin")));
    let admin = field(&root, "accessToken");
    assert_eq!(role_in(&env, admin), Role::Admin);

    let (status, body) = set_role(&app, Some(admin), "ada", "wizard").await;
    assert_eq!((status, code(&body)), (400, "INVALID_INPUT"));
    let (status, body) = set_role(&app, Some(admin), "nobody", "curator").await;
    assert_eq!((status, code(&body)), (404, "NOT_FOUND"));
    let (status, body) = set_role(&app, Some(admin), "ada", "curator").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"id": "ada", "displayName": "Ada", "role": "curator"})
    );

    let (status, refreshed) = refresh(&app, field(&ada, "refreshToken")).await;
    assert_eq!(status, 200);
    assert_eq!(refreshed["user"]["role"], "curator");
    assert_eq!(
        role_in(&env, field(&refreshed, "accessToken")),
        Role::Curator
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_kafka_cannot_take_the_event_the_account_is_not_created() {
    let env = TestEnv::new().await;
    // The real schema and stack, but a producer whose broker does not answer.
    let mut client = env.db().await;
    gallery_commands::db::migrate(&mut client).await.unwrap();
    let pool = gallery::app::pg_pool(&env.config).unwrap();
    let publisher = KafkaPublisher::new(
        &ProducerConfig {
            brokers: "127.0.0.1:1".into(),
            delivery_timeout: Duration::from_millis(1500),
            queue_capacity: 1000,
            linger: ProducerConfig::DEFAULT_LINGER,
        },
        EventCodec::new(&env.config.registry()).unwrap(),
        env.config.topics(),
    )
    .unwrap();
    let keys =
        Arc::new(TokenKeys::from_secret(env.config.auth.jwt_secret.expose().as_bytes()).unwrap());
    let accounts =
        Accounts::new(pool, Arc::new(publisher), keys, AccountSettings::default()).unwrap();

    let registration = Registration::parse("ada", PASSWORD.into(), "Ada".into()).unwrap();
    let err = accounts.register(registration).await.unwrap_err();
    assert!(
        matches!(err, AccountError::Publish(_)),
        "unexpected {err:?}"
    );
    assert_eq!(CommandError::from(err).status().as_u16(), 503);
    let count: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM commands.users) + (SELECT count(*) FROM commands.refresh_tokens)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "nothing half-done");

    // With Kafka back, the same username registers.
    let app = commands_app(&env).await;
    let (status, _) = register(&app, "ada", PASSWORD, "Ada").await;
    assert_eq!(status, 201);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_are_limited_per_client_address() {
    let mut env = TestEnv::new().await;
    env.config.limits.auth_per_minute = 2;
    let app = env.start(Roles::COMMANDS).await;
    let url = app.commands_url("/v1/auth/login");
    let attempt = || {
        app.http
            .post(&url)
            .json(&serde_json::json!({"username": "nobody", "password": "wrong password!"}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(attempt().await.unwrap().status().as_u16(), 401);
    }
    let refused = attempt().await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    app.stop().await;
}

/// The client-address quota is for signing in (register, login, refresh) only: an admin's
/// role changes are authenticated commands and spend none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_changes_spend_nothing_of_the_sign_in_quota() {
    let mut env = TestEnv::new().await;
    env.config.limits.auth_per_minute = 3;
    let app = env.start(Roles::COMMANDS).await;
    assert_eq!(register(&app, "root", PASSWORD, "The Admin").await.0, 201);
    assert_eq!(register(&app, "ada", PASSWORD, "Ada").await.0, 201);
    gallery::app::set_user_role(&env.config, "root", Role::Admin)
        .await
        .unwrap();
    // The store's role decides, so a token of root's is an admin's.
    let admin = env.token_as("root", Role::Admin);
    for role in ["curator", "visitor", "curator", "visitor", "curator"] {
        let (status, body) = set_role(&app, Some(&admin), "ada", role).await;
        assert_eq!(status, 200, "{body}");
    }
    // One sign-in is left of the three, and then the quota is used up.
    assert_eq!(login(&app, "ada", PASSWORD).await.0, 200);
    let (status, body) = login(&app, "ada", PASSWORD).await;
    assert_eq!((status, code(&body)), (429, "RATE_LIMITED"));
    app.stop().await;
}

/// GraphQL's sign-in mutations spend the same per-address quota as the HTTP routes: neither
/// door is open to guessing passwords without limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_sign_ins_are_limited_per_client_address_too() {
    let mut env = TestEnv::new().await;
    env.config.limits.auth_per_minute = 2;
    let app = env.start(Roles::QUERY_API).await;
    let login =
        "mutation { login(username: \"nobody\", password: \"wrong password!\") { accessToken } }";
    for _ in 0..2 {
        let body = app.graphql(None, login, serde_json::json!({})).await;
        assert_ne!(
            body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
            "{body}"
        );
    }
    let body = app.graphql(None, login, serde_json::json!({})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );
    let refresh = "mutation { refresh(refreshToken: \"x\") { accessToken } }";
    let body = app.graphql(None, refresh, serde_json::json!({})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );
    app.stop().await;
}

/// A column whose type changed under the code: the account store's read names the column and
/// answers 500, instead of panicking (or of a 503 inviting retries that cannot help).
#[tokio::test]
async fn a_column_of_another_type_is_an_error_naming_it() {
    let env = TestEnv::new().await;
    let mut client = env.db().await;
    gallery_commands::db::migrate(&mut client).await.unwrap();
    client
        .batch_execute(
            "ALTER TABLE commands.users
                 ALTER COLUMN display_name TYPE jsonb USING to_jsonb(display_name);
             INSERT INTO commands.users (user_id, display_name, password_hash)
             VALUES ('ada', '\"Ada\"', 'unused');",
        )
        .await
        .unwrap();
    let pool = gallery::app::pg_pool(&env.config).unwrap();
    let user = gallery_schemas::UserId::parse("ada").unwrap();
    let e = gallery_commands::accounts::assign_role(&pool, &user, Role::Curator)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            AccountError::Store(gallery_commands::accounts::StoreError::Db(
                gallery_commands::db::DbError::Column(gallery_infra::ColumnError {
                    column: "display_name",
                    ..
                })
            ))
        ),
        "{e:?}"
    );
    assert_eq!(
        CommandError::from(e).status(),
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    );
}
