use std::path::PathBuf;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::*;
use crate::accounts::rules::{InvalidInput, PasswordError, RefreshRejection};
use crate::ratelimit::CommandClass;
use axum::extract::rejection::JsonRejection;
use gallery_schemas::{CodecError, RegistryFailure, UserId};

fn ada() -> UserId {
    UserId::parse("ada").unwrap_or_else(|e| unreachable!("{e}"))
}

fn header(e: CommandError) -> (StatusCode, Option<String>) {
    let r = e.into_response();
    let retry = r
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (r.status(), retry)
}

#[test]
fn rate_limited_is_429_with_retry_after_rounded_up() {
    let e = CommandError::RateLimited(RateLimited {
        class: CommandClass::Interactions,
        retry_after: Duration::from_millis(2_100),
    });
    assert_eq!(e.code(), "RATE_LIMITED");
    assert_eq!(
        header(e),
        (StatusCode::TOO_MANY_REQUESTS, Some("3".to_owned()))
    );
}

#[test]
fn an_unreachable_event_store_is_503_with_retry_after() {
    for e in [PublishError::BrokersDown, PublishError::QueueFull] {
        let e = CommandError::Publish(e);
        assert_eq!(e.code(), "UNAVAILABLE");
        assert_eq!(
            header(e),
            (StatusCode::SERVICE_UNAVAILABLE, Some("1".to_owned()))
        );
    }
    let e = CommandError::Publish(PublishError::Encode(CodecError::Invalid {
        reason: "bug".into(),
    }));
    assert_eq!(header(e), (StatusCode::INTERNAL_SERVER_ERROR, None));
}

#[test]
fn every_code_has_its_string_and_its_status() {
    let table = [
        (Code::InvalidInput, "INVALID_INPUT", 400),
        (Code::InvalidJson, "INVALID_JSON", 400),
        (Code::InvalidBody, "INVALID_BODY", 400),
        (Code::InvalidIdempotencyKey, "INVALID_IDEMPOTENCY_KEY", 400),
        (Code::Unauthenticated, "UNAUTHENTICATED", 401),
        (Code::InvalidCredentials, "INVALID_CREDENTIALS", 401),
        (Code::InvalidRefreshToken, "INVALID_REFRESH_TOKEN", 401),
        (Code::Forbidden, "FORBIDDEN", 403),
        (Code::NotFound, "NOT_FOUND", 404),
        (Code::RequestTimeout, "REQUEST_TIMEOUT", 408),
        (Code::Conflict, "CONFLICT", 409),
        (Code::UsernameTaken, "USERNAME_TAKEN", 409),
        (Code::IdempotencyInProgress, "IDEMPOTENCY_IN_PROGRESS", 409),
        (Code::PayloadTooLarge, "PAYLOAD_TOO_LARGE", 413),
        (Code::UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", 415),
        (Code::InvalidImage, "INVALID_IMAGE", 422),
        (Code::ImageDimensions, "IMAGE_DIMENSIONS", 422),
        (Code::IdempotencyKeyReused, "IDEMPOTENCY_KEY_REUSED", 422),
        (Code::RateLimited, "RATE_LIMITED", 429),
        (Code::Internal, "INTERNAL", 500),
        (Code::Unavailable, "UNAVAILABLE", 503),
        (Code::Overloaded, "OVERLOADED", 503),
    ];
    assert_eq!(table.map(|(c, ..)| c), Code::ALL);
    for (code, text, status) in table {
        assert_eq!((code.as_str(), code.status().as_u16()), (text, status));
    }
}

/// Each variant of the write side's errors, with the code and status clients see.
#[test]
fn every_variant_has_its_code_and_status() {
    let id_error = gallery_schemas::ArtworkId::parse("").err();
    let cases: Vec<(CommandError, &str, u16)> = vec![
        (AuthError::Missing.into(), "UNAUTHENTICATED", 401),
        (
            AuthError::WeakSecret { len: 1 }.into(),
            "UNAUTHENTICATED",
            401,
        ),
        (
            BodyError::MissingField { name: "title" }.into(),
            "INVALID_INPUT",
            400,
        ),
        (
            BodyError::MissingFile { name: "image" }.into(),
            "INVALID_INPUT",
            400,
        ),
        (
            BodyError::UnreadableUpload { field: "photo" }.into(),
            "INVALID_INPUT",
            400,
        ),
        (
            BodyError::TooLarge { limit: 1 }.into(),
            "PAYLOAD_TOO_LARGE",
            413,
        ),
        (
            BodyError::TooSlow {
                after: Duration::from_secs(1),
            }
            .into(),
            "REQUEST_TIMEOUT",
            408,
        ),
        (Refusal::NotFound { what: "route" }.into(), "NOT_FOUND", 404),
        (
            Refusal::Rule {
                field: "f",
                rule: "r",
            }
            .into(),
            "INVALID_INPUT",
            400,
        ),
        (
            CommandError::AnonymousIdempotencyKey,
            "INVALID_IDEMPOTENCY_KEY",
            400,
        ),
        (
            CommandError::IdempotencyMismatch,
            "IDEMPOTENCY_KEY_REUSED",
            422,
        ),
        (
            CommandError::IdempotencyInProgress,
            "IDEMPOTENCY_IN_PROGRESS",
            409,
        ),
        (
            CommandError::Overloaded {
                backlog: 9,
                retry_after: 0,
            },
            "OVERLOADED",
            503,
        ),
        (CommandError::NoImageStore, "INTERNAL", 500),
        (DbError::LeaseLost.into(), "UNAVAILABLE", 503),
        (
            AccountError::UsernameTaken { username: ada() }.into(),
            "USERNAME_TAKEN",
            409,
        ),
        (
            AccountError::InvalidCredentials.into(),
            "INVALID_CREDENTIALS",
            401,
        ),
        (
            AccountError::Unauthenticated(AuthError::Expired).into(),
            "UNAUTHENTICATED",
            401,
        ),
        (
            AccountError::UnknownUser { user: ada() }.into(),
            "NOT_FOUND",
            404,
        ),
        (
            MediaError::UnsupportedFormat.into(),
            "UNSUPPORTED_MEDIA_TYPE",
            415,
        ),
        (
            MediaError::InvalidKey { key: "k".into() }.into(),
            "INVALID_INPUT",
            400,
        ),
    ];
    if let Some(source) = id_error {
        let e = CommandError::InvalidInput {
            field: "artwork id",
            source,
        };
        assert_eq!((e.code(), e.status().as_u16()), ("INVALID_INPUT", 400));
    }
    for (e, code, status) in cases {
        assert_eq!((e.code(), e.status().as_u16()), (code, status), "{e:?}");
    }
}

#[test]
fn account_refusals_map_to_their_codes_and_statuses() {
    let cases = [
        (
            AccountError::Invalid(InvalidInput::Password(PasswordError::TooShort { len: 3 })),
            400,
            "INVALID_INPUT",
        ),
        (AccountError::InvalidCredentials, 401, "INVALID_CREDENTIALS"),
        (
            AccountError::Refresh(RefreshRejection::Reused),
            401,
            "INVALID_REFRESH_TOKEN",
        ),
        (AccountError::Forbidden, 403, "FORBIDDEN"),
        (
            AccountError::Publish(PublishError::ProducerClosed),
            503,
            "UNAVAILABLE",
        ),
    ];
    for (e, status, code) in cases {
        let e = CommandError::from(e);
        assert_eq!((e.status().as_u16(), e.code()), (status, code), "{e:?}");
    }
}

#[test]
fn an_unavailable_account_store_is_retried_like_the_event_store() {
    let e = CommandError::from(AccountError::Publish(PublishError::BrokersDown));
    assert_eq!(
        header(e),
        (StatusCode::SERVICE_UNAVAILABLE, Some("1".to_owned()))
    );
}

#[test]
fn every_refresh_refusal_reads_the_same() {
    let a = CommandError::from(AccountError::Refresh(RefreshRejection::Reused)).public_message();
    let b = CommandError::from(AccountError::Refresh(RefreshRejection::Unknown)).public_message();
    assert_eq!(a, b);
}

#[test]
fn an_account_input_error_names_its_field() {
    let e = AccountError::Invalid(InvalidInput::Password(PasswordError::TooShort { len: 3 }));
    let e = CommandError::from(e);
    assert!(e.public_message().starts_with("password:"));
}

#[test]
fn media_client_errors_have_their_codes_and_statuses() {
    let cases = [
        (
            MediaError::TooLarge { size: 2, max: 1 },
            "PAYLOAD_TOO_LARGE",
            413,
        ),
        (MediaError::UnsupportedFormat, "UNSUPPORTED_MEDIA_TYPE", 415),
        (
            MediaError::Dimensions {
                width: 1,
                height: 1,
                min_side: 32,
                max_side: 8192,
                max_pixels: 1,
            },
            "IMAGE_DIMENSIONS",
            422,
        ),
        (MediaError::NotFound { key: "k".into() }, "NOT_FOUND", 404),
    ];
    for (error, code, status) in cases {
        let error = CommandError::from(error);
        assert_eq!(error.code(), code);
        assert_eq!(error.status().as_u16(), status);
        assert_eq!(error.public_message(), error.to_string());
    }
}

#[test]
fn media_server_errors_do_not_leak_internals() {
    let store = CommandError::from(MediaError::Store {
        source: object_store::Error::Generic {
            store: "S3",
            source: "secret-bucket at 10.1.2.3 refused".into(),
        },
    });
    assert_eq!(
        (store.code(), store.status().as_u16()),
        ("UNAVAILABLE", 503)
    );
    assert!(!store.public_message().contains("10.1.2.3"));
    assert_eq!(
        header(store),
        (StatusCode::SERVICE_UNAVAILABLE, Some("1".to_owned()))
    );
    let dir = CommandError::from(MediaError::CreateDir {
        path: PathBuf::from("/srv/private/objects"),
        source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    });
    assert_eq!((dir.code(), dir.status().as_u16()), ("INTERNAL", 500));
    assert_eq!(dir.public_message(), "internal error");
}

#[test]
fn an_unauthenticated_answer_says_how_to_authenticate() {
    for e in [
        CommandError::from(AuthError::Missing),
        CommandError::from(AccountError::Unauthenticated(AuthError::Missing)),
    ] {
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"gallery\"")
        );
    }
}

#[test]
fn a_signing_failure_is_not_shown() {
    let e = CommandError::from(AuthError::WeakSecret { len: 1 });
    assert_eq!(e.public_message(), "internal error");
}

/// JSON a route could not take, as axum rejects it.
async fn rejection(content_type: &str, body: &'static str) -> JsonRejection {
    let request = axum::http::Request::post("/")
        .header(header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from(body))
        .unwrap_or_else(|e| unreachable!("{e}"));
    match <axum::Json<Vec<u8>> as axum::extract::FromRequest<()>>::from_request(request, &()).await
    {
        Ok(_) => unreachable!("{body} was taken"),
        Err(r) => r,
    }
}

#[tokio::test]
async fn a_refused_body_has_one_answer_whichever_error_carries_it() {
    let cases = [
        ("application/json", "[1, 2", "INVALID_JSON", 400),
        ("application/json", "{}", "INVALID_INPUT", 400),
        ("text/plain", "[1]", "UNSUPPORTED_MEDIA_TYPE", 415),
    ];
    for (content_type, body, code, status) in cases {
        let command = CommandError::from(BodyError::Json(rejection(content_type, body).await));
        let account = CommandError::from(AccountError::Body(BodyError::Json(
            rejection(content_type, body).await,
        )));
        assert_eq!(
            (command.code(), command.status().as_u16()),
            (code, status),
            "{body}"
        );
        assert_eq!(
            (account.code(), account.public_message()),
            (code, command.public_message())
        );
    }
}

#[test]
fn an_internal_error_is_logged_with_its_whole_cause_chain() {
    let e = CommandError::from(MediaError::CreateDir {
        path: PathBuf::from("/srv/objects"),
        source: std::io::Error::other("disk on fire"),
    });
    assert_eq!(
        answer::Chain(&e).to_string(),
        "could not create the image directory /srv/objects: disk on fire"
    );
}

#[test]
fn a_publish_failure_keeps_its_cause_and_shows_none_of_it() {
    let registry = CodecError::RegistryUnavailable(RegistryFailure::Answered {
        status: 504,
        body: "registry at 10.1.2.3 timed out".into(),
    });
    let e = CommandError::from(PublishError::Registry(registry));
    assert_eq!(e.code(), "UNAVAILABLE");
    assert!(
        answer::Chain(&e)
            .to_string()
            .ends_with("10.1.2.3 timed out")
    );
    assert!(!e.public_message().contains("10.1.2.3"));
    let e = CommandError::from(PublishError::Encode(CodecError::Invalid {
        reason: "no such field".into(),
    }));
    assert_eq!(
        (e.code(), e.public_message().as_str()),
        ("INTERNAL", "internal error")
    );
    assert!(answer::Chain(&e).to_string().ends_with("no such field"));
}

#[test]
fn only_a_refused_send_is_surely_unwritten() {
    let waited = Duration::from_secs(1);
    let cases = [
        (PublishError::BrokersDown, true, true),
        (PublishError::QueueFull, true, true),
        (PublishError::NoAcknowledgement { waited }, true, false),
        (PublishError::ProducerClosed, true, false),
        (
            PublishError::Encode(CodecError::UnknownRecord { name: "X".into() }),
            false,
            true,
        ),
    ];
    for (e, transient, unwritten) in cases {
        assert_eq!(
            (e.is_transient(), e.surely_unwritten()),
            (transient, unwritten),
            "{e}"
        );
    }
}
