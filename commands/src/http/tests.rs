//! The routers' refusals, asked with `oneshot` and no socket: every request here is refused
//! before any command would reach the broker or the database (neither is there).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, to_bytes};
use axum::http::{Request, header};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use gallery_schemas::{Event, Role, UserId};
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::accounts::AccountSettings;
use crate::ports::{
    DecodeFuture, EncodeFuture, Encoded, EventPublisher, FindFuture, PublishError, PublishFuture,
};

/// A publisher whose brokers are all down.
#[derive(Debug)]
struct Down;

impl EventPublisher for Down {
    fn encode<'a>(&'a self, _: &'a Event) -> EncodeFuture<'a> {
        Box::pin(async { Err(PublishError::BrokersDown) })
    }

    fn send<'a>(&'a self, _: &'a Encoded) -> PublishFuture<'a> {
        Box::pin(async { Err(PublishError::BrokersDown) })
    }

    fn decode<'a>(&'a self, _: &'a Encoded) -> DecodeFuture<'a> {
        Box::pin(async { Err(PublishError::BrokersDown) })
    }

    fn max_in_flight(&self) -> Duration {
        Duration::ZERO
    }

    fn find<'a>(&'a self, _: &'a Encoded, _: SystemTime) -> FindFuture<'a> {
        Box::pin(async { Ok(None) })
    }
}

const SECRET: &[u8] = b"a signing secret only these tests use, long enough";

/// The command service's routes over a pool that never connects (nothing asks it here).
fn app() -> Router {
    let pg = tokio_postgres::Config::new();
    let manager = Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .build()
        .unwrap_or_else(|e| unreachable!("{e}"));
    let keys = Arc::new(TokenKeys::from_secret(SECRET).unwrap_or_else(|e| unreachable!("{e}")));
    let publisher: Arc<dyn EventPublisher> = Arc::new(Down);
    let accounts = Accounts::new(
        pool.clone(),
        publisher.clone(),
        keys.clone(),
        AccountSettings::default(),
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    router(HttpState {
        commands: Commands::new(publisher, pool),
        keys,
        accounts,
    })
}

fn bearer() -> String {
    let keys = TokenKeys::from_secret(SECRET).unwrap_or_else(|e| unreachable!("{e}"));
    let ada = UserId::parse("ada").unwrap_or_else(|e| unreachable!("{e}"));
    let token = keys
        .issue(&Principal::new(ada, Role::Admin), Duration::from_secs(60))
        .unwrap_or_else(|e| unreachable!("{e}"));
    format!("Bearer {token}")
}

/// The status and the error code of `method path` with `body` sent as `content_type`.
async fn refusal(
    method: &str,
    path: &str,
    content_type: &str,
    body: &'static str,
) -> (u16, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, bearer())
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_else(|e| unreachable!("{e}"));
    let response = app().oneshot(request).await.unwrap_or_else(|e| match e {});
    let status = response.status().as_u16();
    let bytes = to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| unreachable!("{e}"));
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code)
}

const ARTWORK: &str = "0190f3b0-0000-7000-8000-000000000001";
const EXHIBITION: &str = "0190f3b0-0000-7000-8000-000000000002";

/// The JSON routes: commands, sign-in, and the admins' role route.
fn json_routes() -> [(&'static str, String); 4] {
    [
        ("POST", format!("/v1/artworks/{ARTWORK}/comments")),
        ("POST", "/v1/exhibitions".to_owned()),
        ("POST", "/v1/auth/register".to_owned()),
        ("PUT", "/v1/users/ada/role".to_owned()),
    ]
}

#[tokio::test]
async fn the_same_malformed_json_gets_one_code_on_every_json_route() {
    for (method, path) in json_routes() {
        assert_eq!(
            refusal(method, &path, "application/json", "{]").await,
            (400, "INVALID_JSON".to_owned()),
            "{method} {path}"
        );
        assert_eq!(
            refusal(method, &path, "application/json", "[]").await,
            (400, "INVALID_INPUT".to_owned()),
            "{method} {path}"
        );
    }
}

/// A body in the wrong media type is refused alike everywhere: JSON sent to an upload route,
/// a form sent to a JSON route.
#[tokio::test]
async fn a_body_of_the_wrong_type_is_415_on_every_route() {
    let uploads = [
        format!("/v1/exhibitions/{EXHIBITION}/artworks"),
        "/v1/generations/image-to-image".to_owned(),
    ];
    for path in uploads {
        assert_eq!(
            refusal("POST", &path, "application/json", "{\"body\": ").await,
            (415, "UNSUPPORTED_MEDIA_TYPE".to_owned()),
            "{path}"
        );
    }
    for (method, path) in json_routes() {
        assert_eq!(
            refusal(method, &path, "application/x-www-form-urlencoded", "body=x").await,
            (415, "UNSUPPORTED_MEDIA_TYPE".to_owned()),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn an_upload_without_its_file_names_the_missing_field() {
    let form = "--b\r\ncontent-disposition: form-data; name=\"title\"\r\n\r\nT\r\n--b--\r\n";
    let path = format!("/v1/exhibitions/{EXHIBITION}/artworks");
    assert_eq!(
        refusal("POST", &path, "multipart/form-data; boundary=b", form).await,
        (400, "INVALID_INPUT".to_owned())
    );
    let broken = "--b\r\nnot a part header\r\n";
    assert_eq!(
        refusal("POST", &path, "multipart/form-data; boundary=b", broken).await,
        (400, "INVALID_BODY".to_owned())
    );
}

#[tokio::test]
async fn an_unknown_route_is_404_in_the_api_shape() {
    assert_eq!(
        refusal("GET", "/v1/nowhere", "application/json", "").await,
        (404, "NOT_FOUND".to_owned())
    );
}
