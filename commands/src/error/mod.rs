//! The one error type of the write side. Each area keeps its own enum ([`AccountError`],
//! [`MediaError`], [`BodyError`], [`Refusal`], ...); [`CommandError`] wraps them all, and
//! [`answer`] alone decides what a client is shown for each of their variants: a [`Code`],
//! which fixes the HTTP status, and a public message.

mod answer;
#[cfg(test)]
mod tests;

use axum::http::StatusCode;
use gallery_schemas::IdError;

use crate::accounts::AccountError;
use crate::auth::AuthError;
use crate::body::BodyError;
use crate::db::DbError;
use crate::decide::Refusal;
use crate::idempotency::BadKey;
use crate::media::MediaError;
use crate::ports::PublishError;
use crate::ratelimit::RateLimited;

/// What a client is told to wait before retrying an unavailable event store, in seconds.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    #[error("{field} is invalid")]
    InvalidInput {
        field: &'static str,
        #[source]
        source: IdError,
    },
    /// The request body is not what the endpoint takes (bad JSON, a missing field, a bad
    /// multipart form), or it is too large, or too slow to arrive.
    #[error("invalid request body")]
    Body(#[from] BodyError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    BadIdempotencyKey(#[from] BadKey),
    /// Keys belong to their user; a command without one (an anonymous view) cannot take one.
    #[error("an Idempotency-Key needs a bearer token: keys belong to their user")]
    AnonymousIdempotencyKey,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyMismatch,
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyInProgress,
    #[error("the stored result of an idempotent command is unreadable")]
    StoredResult(#[source] serde_json::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("write-side database")]
    Db(#[from] DbError),
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error("the AI painter is overloaded (backlog {backlog}); retry in {retry_after} s")]
    Overloaded { backlog: u64, retry_after: u64 },
    #[error("no image store is configured")]
    NoImageStore,
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Account(#[from] AccountError),
}

/// The stable, machine-readable codes clients see. Each code has one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidInput,
    InvalidJson,
    InvalidBody,
    InvalidIdempotencyKey,
    Unauthenticated,
    InvalidCredentials,
    InvalidRefreshToken,
    Forbidden,
    NotFound,
    RequestTimeout,
    Conflict,
    UsernameTaken,
    IdempotencyInProgress,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidImage,
    ImageDimensions,
    IdempotencyKeyReused,
    RateLimited,
    Internal,
    Unavailable,
    Overloaded,
}

impl Code {
    /// Every code, for tests and documents that list them.
    pub const ALL: [Code; 22] = [
        Code::InvalidInput,
        Code::InvalidJson,
        Code::InvalidBody,
        Code::InvalidIdempotencyKey,
        Code::Unauthenticated,
        Code::InvalidCredentials,
        Code::InvalidRefreshToken,
        Code::Forbidden,
        Code::NotFound,
        Code::RequestTimeout,
        Code::Conflict,
        Code::UsernameTaken,
        Code::IdempotencyInProgress,
        Code::PayloadTooLarge,
        Code::UnsupportedMediaType,
        Code::InvalidImage,
        Code::ImageDimensions,
        Code::IdempotencyKeyReused,
        Code::RateLimited,
        Code::Internal,
        Code::Unavailable,
        Code::Overloaded,
    ];

    /// The code as clients read it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidInput => "INVALID_INPUT",
            Code::InvalidJson => "INVALID_JSON",
            Code::InvalidBody => "INVALID_BODY",
            Code::InvalidIdempotencyKey => "INVALID_IDEMPOTENCY_KEY",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::InvalidCredentials => "INVALID_CREDENTIALS",
            Code::InvalidRefreshToken => "INVALID_REFRESH_TOKEN",
            Code::Forbidden => "FORBIDDEN",
            Code::NotFound => "NOT_FOUND",
            Code::RequestTimeout => "REQUEST_TIMEOUT",
            Code::Conflict => "CONFLICT",
            Code::UsernameTaken => "USERNAME_TAKEN",
            Code::IdempotencyInProgress => "IDEMPOTENCY_IN_PROGRESS",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Code::InvalidImage => "INVALID_IMAGE",
            Code::ImageDimensions => "IMAGE_DIMENSIONS",
            Code::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Code::RateLimited => "RATE_LIMITED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::Overloaded => "OVERLOADED",
        }
    }

    /// The HTTP status every answer with this code has.
    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidInput
            | Code::InvalidJson
            | Code::InvalidBody
            | Code::InvalidIdempotencyKey => StatusCode::BAD_REQUEST,
            Code::Unauthenticated | Code::InvalidCredentials | Code::InvalidRefreshToken => {
                StatusCode::UNAUTHORIZED
            }
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Code::Conflict | Code::UsernameTaken | Code::IdempotencyInProgress => {
                StatusCode::CONFLICT
            }
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::InvalidImage | Code::ImageDimensions | Code::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable | Code::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}
