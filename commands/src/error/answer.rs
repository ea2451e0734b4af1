//! What a client is shown for every failure of the write side: the [`Code`] (and with it the
//! HTTP status), the public message and `Retry-After`, each chosen by matching the variant.
//! Input errors say what is wrong; internal ones say "internal error" and are logged with
//! their whole cause chain. HTTP ([`IntoResponse`]) and GraphQL show these same answers.

use std::error::Error;
use std::fmt;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Code, CommandError, UNAVAILABLE_RETRY_AFTER_SECS};
use crate::accounts::{AccountError, StoreError};
use crate::auth::AuthError;
use crate::body::BodyError;
use crate::db::DbError;
use crate::decide::Refusal;
use crate::media::MediaError;
use crate::ports::PublishError;

const INTERNAL: &str = "internal error";

impl CommandError {
    /// The code clients see, which fixes the status.
    pub fn kind(&self) -> Code {
        match self {
            CommandError::Unauthenticated(_) => Code::Unauthenticated,
            CommandError::InvalidInput { .. } => Code::InvalidInput,
            CommandError::Body(e) => body_code(e),
            CommandError::Refused(r) => refusal_code(r),
            CommandError::BadIdempotencyKey(_) | CommandError::AnonymousIdempotencyKey => {
                Code::InvalidIdempotencyKey
            }
            CommandError::IdempotencyMismatch => Code::IdempotencyKeyReused,
            CommandError::IdempotencyInProgress => Code::IdempotencyInProgress,
            CommandError::RateLimited(_) => Code::RateLimited,
            CommandError::Publish(e) => publish_code(e),
            CommandError::Db(e) => db_code(e),
            CommandError::Overloaded { .. } => Code::Overloaded,
            CommandError::Media(e) => media_code(e),
            CommandError::Account(e) => account_code(e),
            CommandError::StoredResult(_) | CommandError::NoImageStore => Code::Internal,
        }
    }

    /// A stable, machine-readable code for clients.
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }

    /// Seconds a client should wait before retrying, for the errors where retrying helps.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            CommandError::RateLimited(r) => Some(r.retry_after_secs()),
            CommandError::Overloaded { retry_after, .. } => Some((*retry_after).max(1)),
            e => matches!(e.kind(), Code::Unavailable | Code::IdempotencyInProgress)
                .then_some(UNAVAILABLE_RETRY_AFTER_SECS),
        }
    }

    /// The message shown to clients: input errors say what is wrong, internal ones say
    /// nothing about internals.
    pub fn public_message(&self) -> String {
        match self {
            CommandError::Unauthenticated(e) => auth_message(e),
            CommandError::InvalidInput { field, source } => format!("{field}: {source}"),
            CommandError::Body(e) => body_message(e),
            CommandError::Media(e) => media_message(e),
            CommandError::Account(e) => account_message(e),
            e => match e.kind() {
                Code::Unavailable => "the event store is unavailable; retry later".to_owned(),
                Code::Overloaded => "the AI painter is busy; retry later".to_owned(),
                Code::Internal => INTERNAL.to_owned(),
                _ => e.to_string(),
            },
        }
    }

    /// Logs a failure the server must know about: an internal error with its cause chain,
    /// a refusal the client may retry, a rate limit. Client errors are not logged.
    pub fn log(&self) {
        let status = self.status();
        let chain = Chain(self);
        if status.is_server_error() && self.retry_after_secs().is_none() {
            tracing::error!(error = %chain, "command failed");
        } else if status.is_server_error() {
            tracing::warn!(error = %chain, "command refused; the client may retry");
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            tracing::info!(error = %self, "command rate limited");
        }
    }
}

impl IntoResponse for CommandError {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status();
        let body = Json(json!({
            "error": { "code": self.code(), "message": self.public_message() }
        }));
        let mut response = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gallery\""),
            );
        }
        if let Some(secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Account errors answer through [`CommandError`], like every other failure.
impl IntoResponse for AccountError {
    fn into_response(self) -> Response {
        CommandError::from(self).into_response()
    }
}

/// A refused body answers through [`CommandError`], the same on every route.
impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        CommandError::from(self).into_response()
    }
}

/// An error and its sources, `outer: inner: innermost`.
pub(super) struct Chain<'a>(pub(super) &'a dyn Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

fn refusal_code(r: &Refusal) -> Code {
    match r {
        Refusal::NotFound { .. } => Code::NotFound,
        Refusal::Forbidden { .. } => Code::Forbidden,
        Refusal::Conflict { .. } => Code::Conflict,
        _ => Code::InvalidInput,
    }
}

fn publish_code(e: &PublishError) -> Code {
    if e.is_transient() {
        Code::Unavailable
    } else {
        Code::Internal
    }
}

fn db_code(e: &DbError) -> Code {
    if e.is_unavailable() {
        Code::Unavailable
    } else {
        Code::Internal
    }
}

fn auth_message(e: &AuthError) -> String {
    match e {
        AuthError::WeakSecret { .. } | AuthError::Sign(_) => INTERNAL.to_owned(),
        e => e.to_string(),
    }
}

fn body_code(e: &BodyError) -> Code {
    match e {
        BodyError::Json(JsonRejection::MissingJsonContentType(_)) | BodyError::NotMultipart(_) => {
            Code::UnsupportedMediaType
        }
        BodyError::Json(JsonRejection::JsonDataError(_)) => Code::InvalidInput,
        BodyError::Json(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
        BodyError::Json(_) => Code::InvalidJson,
        BodyError::Multipart(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Code::PayloadTooLarge
        }
        BodyError::Multipart(_) => Code::InvalidBody,
        BodyError::MissingField { .. }
        | BodyError::MissingFile { .. }
        | BodyError::UnreadableUpload { .. } => Code::InvalidInput,
        BodyError::TooLarge { .. } => Code::PayloadTooLarge,
        BodyError::TooSlow { .. } => Code::RequestTimeout,
    }
}

/// The same on every route: what was wrong with the body, in axum's words where axum
/// refused it (they name the field or the position).
fn body_message(e: &BodyError) -> String {
    let detail = match e {
        BodyError::Json(r) => r.body_text(),
        BodyError::NotMultipart(r) => r.body_text(),
        BodyError::Multipart(e) => e.body_text(),
        e => e.to_string(),
    };
    format!("invalid request body: {detail}")
}

fn media_code(e: &MediaError) -> Code {
    match e {
        MediaError::TooLarge { .. } => Code::PayloadTooLarge,
        MediaError::UnsupportedFormat => Code::UnsupportedMediaType,
        MediaError::Corrupt { .. } => Code::InvalidImage,
        MediaError::Dimensions { .. } => Code::ImageDimensions,
        MediaError::InvalidKey { .. } => Code::InvalidInput,
        MediaError::NotFound { .. } => Code::NotFound,
        MediaError::Store { .. } => Code::Unavailable,
        MediaError::CheckAborted { .. }
        | MediaError::Config { .. }
        | MediaError::CreateDir { .. }
        | MediaError::Open { .. } => Code::Internal,
    }
}

/// What is wrong with the client's image, or nothing about internals.
fn media_message(e: &MediaError) -> String {
    match e {
        MediaError::Corrupt { source, .. } => format!("{e}: {source}"),
        e => match media_code(e) {
            Code::Unavailable => "image storage is unavailable; retry later".to_owned(),
            Code::Internal => INTERNAL.to_owned(),
            _ => e.to_string(),
        },
    }
}

fn account_code(e: &AccountError) -> Code {
    match e {
        AccountError::Invalid(_) => Code::InvalidInput,
        AccountError::Body(b) => body_code(b),
        AccountError::UsernameTaken { .. } => Code::UsernameTaken,
        AccountError::InvalidCredentials => Code::InvalidCredentials,
        AccountError::Refresh(_) => Code::InvalidRefreshToken,
        AccountError::Unauthenticated(_) => Code::Unauthenticated,
        AccountError::Forbidden => Code::Forbidden,
        AccountError::UnknownUser { .. } => Code::NotFound,
        AccountError::Publish(p) => publish_code(p),
        AccountError::Store(s) if account_store_unavailable(s) => Code::Unavailable,
        AccountError::Store(_)
        | AccountError::Hash(_)
        | AccountError::Random(_)
        | AccountError::Token(_) => Code::Internal,
    }
}

/// Postgres unreachable or its pool exhausted, as opposed to a failing statement.
fn account_store_unavailable(e: &StoreError) -> bool {
    match e {
        StoreError::Db(DbError::Pool(_)) => true,
        StoreError::Db(DbError::Postgres { source, .. }) => source.code().is_none(),
        _ => false,
    }
}

/// Input errors name their field; refused tokens say one thing whatever the reason;
/// internal errors say nothing.
fn account_message(e: &AccountError) -> String {
    match e {
        AccountError::Body(b) => body_message(b),
        AccountError::Unauthenticated(a) => auth_message(a),
        AccountError::Refresh(_) => {
            "refresh token is invalid, expired or revoked; log in again".to_owned()
        }
        e => match account_code(e) {
            Code::Unavailable => {
                "the account store or event store is unavailable; retry later".to_owned()
            }
            Code::Internal => INTERNAL.to_owned(),
            _ => e.to_string(),
        },
    }
}
