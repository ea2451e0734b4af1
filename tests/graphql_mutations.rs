//! Every command as a GraphQL mutation, against the real stack: the mutations call the same
//! library as the HTTP command service, so they validate, authorize, deduplicate and fail
//! alike, with `extensions.code` equal to the HTTP error code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{App, TestEnv};
use gallery::Roles;
use gallery_schemas::Role;
use serde_json::{Value, json};

const RESULT: &str = "eventId id degraded position { topic partition offset } consistencyToken";
const PASSWORD: &str = "correct horse battery";

fn query_api() -> Roles {
    Roles::QUERY_API
}

/// The data of field `name`, asserting the response has no errors.
fn data<'a>(body: &'a Value, name: &str) -> &'a Value {
    assert!(body.get("errors").is_none(), "graphql errors: {body}");
    &body["data"][name]
}

/// `extensions.code` of the first error.
fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

fn message(body: &Value) -> &str {
    body["errors"][0]["message"].as_str().unwrap_or("")
}

async fn like(app: &App, token: Option<&str>, artwork: &str, key: Option<&str>) -> Value {
    app.graphql(
        token,
        &format!(
            "mutation($id: ID!, $key: String) {{ likeArtwork(artworkId: $id, idempotencyKey: $key) {{ {RESULT} }} }}"
        ),
        json!({"id": artwork, "key": key}),
    )
    .await
}

async fn create_exhibition(app: &App, token: &str, title: &str) -> Value {
    app.graphql(
        Some(token),
        &format!(
            "mutation($input: CreateExhibitionInput!) {{ createExhibition(input: $input) {{ {RESULT} }} }}"
        ),
        json!({"input": {
            "title": title,
            "description": "Light and water",
            "opensAt": "2030-05-01T10:00:00Z",
            "closesAt": "2030-06-01T10:00:00+02:00",
        }}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_like_mutation_counts_once_and_its_retry_replays_the_same_event() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::SERVICES).await;
    let ada = env.token("ada");

    let first = like(&app, Some(&ada), "sunflowers", Some("like-1")).await;
    let first = data(&first, "likeArtwork").clone();
    let position = &first["position"];
    let topic = position["topic"].as_str().unwrap().to_owned();
    let partition = i32::try_from(position["partition"].as_i64().unwrap()).unwrap();
    let offset = position["offset"].as_i64().unwrap();
    assert_eq!(topic, env.config.topics().interactions());
    assert_eq!(
        first["consistencyToken"],
        format!("{topic}:{partition}:{offset}")
    );
    assert_eq!(first["id"], Value::Null);
    assert_eq!(first["degraded"], Value::Null);
    env.wait_projected(&topic, partition, offset).await;
    assert_eq!(app.artwork_likes(Some(&ada), "sunflowers").await, (1, true));

    // The same key again: the stored result, and no second event in the log.
    let before = env.end_offsets(&topic);
    let again = like(&app, Some(&ada), "sunflowers", Some("like-1")).await;
    assert_eq!(data(&again, "likeArtwork"), &first);
    assert_eq!(env.end_offsets(&topic), before, "a replay writes nothing");

    // The same key with another request is refused, as over HTTP.
    let other = like(&app, Some(&ada), "irises", Some("like-1")).await;
    assert_eq!(code(&other), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(env.end_offsets(&topic), before);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curators_create_exhibitions_and_visitors_may_not() {
    let env = TestEnv::new().await;
    let app = env.start(query_api()).await;
    let catalog = env.config.topics().catalog();
    let before = env.end_offsets(&catalog);

    let refused = create_exhibition(&app, &env.token("bob"), "Water lilies").await;
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    assert_eq!(refused["data"], Value::Null);
    assert_eq!(
        env.end_offsets(&catalog),
        before,
        "a refusal writes nothing"
    );

    let curator = env.token_as("claude", Role::Curator);
    let created = create_exhibition(&app, &curator, "Water lilies").await;
    let created = data(&created, "createExhibition");
    let id = created["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{created}");
    assert_eq!(created["position"]["topic"], catalog);

    let published = app
        .graphql(
            Some(&curator),
            &format!(
                "mutation($id: ID!) {{ publishExhibition(exhibitionId: $id) {{ {RESULT} }} }}"
            ),
            json!({"id": id}),
        )
        .await;
    // The library's rules apply: an empty exhibition cannot open.
    assert_eq!(code(&published), "CONFLICT", "{published}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_codes_and_messages_of_http() {
    let env = TestEnv::new().await;
    let app = env
        .start(Roles {
            commands: true,
            query_api: true,
            ..Roles::NONE
        })
        .await;
    let interactions = env.config.topics().interactions();
    let before = env.end_offsets(&interactions);

    let anonymous = like(&app, None, "sunflowers", None).await;
    assert_eq!(code(&anonymous), "UNAUTHENTICATED", "{anonymous}");
    let (status, http) = app.set_like(None, "sunflowers", true).await;
    assert_eq!(status, 401);
    assert_eq!(message(&anonymous), http["error"]["message"]);

    let ada = env.token("ada");
    let long = "a".repeat(2001);
    let too_long = app
        .graphql(
            Some(&ada),
            &format!(
                "mutation($body: String!) {{ postComment(artworkId: \"sunflowers\", body: $body) {{ {RESULT} }} }}"
            ),
            json!({"body": long}),
        )
        .await;
    assert_eq!(code(&too_long), "INVALID_INPUT", "{too_long}");
    let http: Value = app
        .http
        .post(app.commands_url("/v1/artworks/sunflowers/comments"))
        .bearer_auth(&ada)
        .json(&json!({"body": long}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(message(&too_long), http["error"]["message"]);
    assert!(message(&too_long).starts_with("body"));

    let bad_id = like(&app, Some(&ada), "no spaces", None).await;
    assert_eq!(code(&bad_id), "INVALID_INPUT");
    let bad_key = like(&app, Some(&ada), "sunflowers", Some("")).await;
    assert_eq!(code(&bad_key), "INVALID_IDEMPOTENCY_KEY");

    assert_eq!(
        env.end_offsets(&interactions),
        before,
        "refusals write nothing"
    );

    // Views may be anonymous.
    let view = app
        .graphql(
            None,
            &format!("mutation {{ recordView(artworkId: \"sunflowers\") {{ {RESULT} }} }}"),
            json!({}),
        )
        .await;
    assert!(data(&view, "recordView")["eventId"].is_string());
    // A signed-in viewer's key replays the view, as over HTTP; without a token, a key is
    // refused.
    let keyed_view = format!(
        "mutation($key: String) {{ recordView(artworkId: \"sunflowers\", idempotencyKey: $key) {{ {RESULT} }} }}"
    );
    let key = json!({"key": "view-1"});
    let first = app.graphql(Some(&ada), &keyed_view, key.clone()).await;
    let first = data(&first, "recordView").clone();
    let before = env.end_offsets(&interactions);
    let again = app.graphql(Some(&ada), &keyed_view, key.clone()).await;
    assert_eq!(data(&again, "recordView"), &first);
    let reused = like(&app, Some(&ada), "sunflowers", Some("view-1")).await;
    assert_eq!(code(&reused), "IDEMPOTENCY_KEY_REUSED");
    let anonymous = app.graphql(None, &keyed_view, key).await;
    assert_eq!(code(&anonymous), "INVALID_IDEMPOTENCY_KEY", "{anonymous}");
    assert_eq!(
        env.end_offsets(&interactions),
        before,
        "nothing written again"
    );
    app.stop().await;
}

const SESSION: &str = "accessToken tokenType expiresIn refreshToken user { id displayName role }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_refresh_and_roles_through_graphql() {
    let env = TestEnv::new().await;
    let app = env.start(query_api()).await;

    let register =
        format!("mutation($input: RegisterInput!) {{ register(input: $input) {{ {SESSION} }} }}");
    let input =
        json!({"input": {"username": "ada", "password": PASSWORD, "displayName": "Ada Lovelace"}});
    let registered = app.graphql(None, &register, input.clone()).await;
    let registered = data(&registered, "register").clone();
    assert_eq!(registered["tokenType"], "Bearer");
    assert_eq!(registered["expiresIn"], 900);
    assert_eq!(
        registered["user"],
        json!({"id": "ada", "displayName": "Ada Lovelace", "role": "VISITOR"})
    );
    let taken = app.graphql(None, &register, input).await;
    assert_eq!(code(&taken), "USERNAME_TAKEN");
    let short = app
        .graphql(
            None,
            &register,
            json!({"input": {"username": "bob", "password": "short", "displayName": "Bob"}}),
        )
        .await;
    assert_eq!(code(&short), "INVALID_INPUT");
    assert!(message(&short).starts_with("password"));

    // The access token works for commands.
    let access = registered["accessToken"].as_str().unwrap();
    let liked = like(&app, Some(access), "sunflowers", None).await;
    assert!(data(&liked, "likeArtwork")["eventId"].is_string());

    let login = format!(
        "mutation($u: String!, $p: String!) {{ login(username: $u, password: $p) {{ {SESSION} }} }}"
    );
    let wrong = app
        .graphql(None, &login, json!({"u": "ada", "p": "wrong password!"}))
        .await;
    assert_eq!(code(&wrong), "INVALID_CREDENTIALS");
    let logged_in = app
        .graphql(None, &login, json!({"u": "ada", "p": PASSWORD}))
        .await;
    let logged_in = data(&logged_in, "login").clone();
    assert_eq!(logged_in["user"]["id"], "ada");

    let refresh = format!("mutation($t: String!) {{ refresh(refreshToken: $t) {{ {SESSION} }} }}");
    let first = logged_in["refreshToken"].as_str().unwrap();
    let rotated = app.graphql(None, &refresh, json!({"t": first})).await;
    assert_ne!(data(&rotated, "refresh")["refreshToken"], first);
    let reused = app.graphql(None, &refresh, json!({"t": first})).await;
    assert_eq!(code(&reused), "INVALID_REFRESH_TOKEN");

    // Only admins set roles.
    let set_role = "mutation($u: ID!, $r: Role!) { setRole(userId: $u, role: $r) { id role } }";
    let vars = json!({"u": "ada", "r": "CURATOR"});
    let anonymous = app.graphql(None, set_role, vars.clone()).await;
    assert_eq!(code(&anonymous), "UNAUTHENTICATED");
    let visitor = app.graphql(Some(access), set_role, vars.clone()).await;
    assert_eq!(code(&visitor), "FORBIDDEN");
    app.stop().await;
}

async fn text_to_image(app: &App, token: &str, input: Value) -> Value {
    app.graphql(
        Some(token),
        &format!(
            "mutation($input: TextToImageInput!) {{ requestTextToImage(input: $input) {{ {RESULT} }} }}"
        ),
        json!({"input": input}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_to_image_is_checked_and_a_request_id_replays() {
    let env = TestEnv::new().await;
    let app = env.start(query_api()).await;
    let ada = env.token("ada");

    let too_many = text_to_image(
        &app,
        &ada,
        json!({"prompt": "a lighthouse", "style": "impressionism", "steps": 51}),
    )
    .await;
    assert_eq!(code(&too_many), "INVALID_INPUT", "{too_many}");
    assert!(message(&too_many).starts_with("steps"));

    let accepted = text_to_image(
        &app,
        &ada,
        json!({"prompt": "a lighthouse", "style": "impressionism"}),
    )
    .await;
    let accepted = data(&accepted, "requestTextToImage");
    assert!(uuid::Uuid::parse_str(accepted["id"].as_str().unwrap()).is_ok());
    assert!(accepted["degraded"].is_boolean());

    let request_id = uuid::Uuid::new_v4().to_string();
    let input = json!({"prompt": "a harbour", "style": "impressionism", "steps": 30, "requestId": request_id});
    let first = text_to_image(&app, &ada, input.clone()).await;
    let first = data(&first, "requestTextToImage").clone();
    assert_eq!(first["id"], request_id);
    let generations = first["position"]["topic"].as_str().unwrap().to_owned();
    let before = env.end_offsets(&generations);
    let second = text_to_image(&app, &ada, input).await;
    assert_eq!(data(&second, "requestTextToImage"), &first);
    assert_eq!(
        env.end_offsets(&generations),
        before,
        "a replay writes nothing"
    );
    app.stop().await;
}

/// A GraphQL multipart request (operations, map, one file in variable `variable`).
async fn multipart(app: &App, token: &str, query: &str, variables: Value, variable: &str) -> Value {
    let boundary = "gallery-test-boundary";
    let operations = json!({"query": query, "variables": variables}).to_string();
    let map = json!({"0": [format!("variables.{variable}")]}).to_string();
    let mut body = Vec::new();
    for (name, value) in [("operations", operations), ("map", map)] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"0\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(b"\x89PNG\r\n\x1a\nnot really a picture");
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    app.http
        .post(app.graphql_url())
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Uploads reach the commands as multipart requests; what is refused before any image is
/// stored is refused alike whether or not an image store is configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_travel_as_multipart_requests() {
    let env = TestEnv::new().await;
    let app = env.start(query_api()).await;
    let curator = env.token_as("claude", Role::Curator);
    let add = format!(
        "mutation($ex: ID!, $input: ArtworkInput!, $image: Upload!) {{ addArtwork(exhibitionId: $ex, input: $input, image: $image) {{ {RESULT} }} }}"
    );
    let artwork = json!({"title": "Impression, Sunrise", "artist": "Claude Monet", "year": 1872});

    let unknown = multipart(
        &app,
        &curator,
        &add,
        json!({"ex": uuid::Uuid::new_v4().to_string(), "input": artwork, "image": null}),
        "image",
    )
    .await;
    assert_eq!(code(&unknown), "NOT_FOUND", "{unknown}");

    let created = create_exhibition(&app, &curator, "Impressions").await;
    let exhibition = data(&created, "createExhibition")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let visitor = multipart(
        &app,
        &env.token("bob"),
        &add,
        json!({"ex": exhibition, "input": artwork, "image": null}),
        "image",
    )
    .await;
    assert_eq!(code(&visitor), "FORBIDDEN", "{visitor}");

    let photo = multipart(
        &app,
        &env.token("bob"),
        &format!(
            "mutation($input: ImageToImageInput!, $photo: Upload!) {{ requestImageToImage(input: $input, photo: $photo) {{ {RESULT} }} }}"
        ),
        json!({"input": {"style": "impressionism", "steps": 51}, "photo": null}),
        "photo",
    )
    .await;
    assert_eq!(code(&photo), "INVALID_INPUT", "{photo}");
    app.stop().await;
}
