//! The one error type of the write side, and how HTTP shows it.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gallery_schemas::IdError;
use serde_json::json;

use crate::auth::AuthError;
use crate::db::DbError;
use crate::decide::Refusal;
use crate::idempotency::BadKey;
use crate::ratelimit::RateLimited;
use crate::service::PublishError;

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
    #[error("invalid request body: {message}")]
    BadBody { code: &'static str, message: String },
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
    Media(#[from] crate::media::MediaError),
    #[error(transparent)]
    Account(#[from] crate::accounts::AccountError),
}

impl CommandError {
    /// A stable, machine-readable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Unauthenticated(_) => "UNAUTHENTICATED",
            CommandError::InvalidInput { .. } => "INVALID_INPUT",
            CommandError::BadBody { code, .. } => code,
            CommandError::Refused(r) => match r {
                Refusal::NotFound { .. } => "NOT_FOUND",
                Refusal::Forbidden { .. } => "FORBIDDEN",
                Refusal::Conflict { .. } => "CONFLICT",
                _ => "INVALID_INPUT",
            },
            CommandError::BadIdempotencyKey(_) | CommandError::AnonymousIdempotencyKey => {
                "INVALID_IDEMPOTENCY_KEY"
            }
            CommandError::IdempotencyMismatch => "IDEMPOTENCY_KEY_REUSED",
            CommandError::IdempotencyInProgress => "IDEMPOTENCY_IN_PROGRESS",
            CommandError::RateLimited(_) => "RATE_LIMITED",
            CommandError::Publish(e) if e.is_transient() => "UNAVAILABLE",
            CommandError::Db(_) => "UNAVAILABLE",
            CommandError::Overloaded { .. } => "OVERLOADED",
            CommandError::Media(e) => e.code(),
            CommandError::Account(e) => e.code(),
            CommandError::StoredResult(_)
            | CommandError::NoImageStore
            | CommandError::Publish(_) => "INTERNAL",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            CommandError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            CommandError::BadBody { code, .. } => match *code {
                "UNSUPPORTED_MEDIA_TYPE" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "PAYLOAD_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
                "REQUEST_TIMEOUT" => StatusCode::REQUEST_TIMEOUT,
                _ => StatusCode::BAD_REQUEST,
            },
            CommandError::InvalidInput { .. }
            | CommandError::BadIdempotencyKey(_)
            | CommandError::AnonymousIdempotencyKey => StatusCode::BAD_REQUEST,
            CommandError::Refused(r) => match r {
                Refusal::NotFound { .. } => StatusCode::NOT_FOUND,
                Refusal::Forbidden { .. } => StatusCode::FORBIDDEN,
                Refusal::Conflict { .. } => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            },
            CommandError::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            CommandError::Media(e) => e.status(),
            CommandError::Account(e) => e.status(),
            CommandError::IdempotencyInProgress => StatusCode::CONFLICT,
            CommandError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            CommandError::Publish(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            CommandError::Db(_) | CommandError::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            CommandError::StoredResult(_)
            | CommandError::NoImageStore
            | CommandError::Publish(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds a client should wait before retrying, for the errors where retrying helps.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            CommandError::RateLimited(r) => Some(r.retry_after_secs()),
            CommandError::Overloaded { retry_after, .. } => Some((*retry_after).max(1)),
            CommandError::Publish(e) if e.is_transient() => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            CommandError::Db(_) | CommandError::IdempotencyInProgress => {
                Some(UNAVAILABLE_RETRY_AFTER_SECS)
            }
            CommandError::Account(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE => {
                Some(UNAVAILABLE_RETRY_AFTER_SECS)
            }
            CommandError::Media(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE => Some(1),
            _ => None,
        }
    }

    /// The message shown to clients: input errors say what is wrong, internal ones say
    /// nothing about internals.
    pub fn public_message(&self) -> String {
        match self {
            CommandError::Unauthenticated(AuthError::WeakSecret { .. } | AuthError::Sign(_)) => {
                "internal error".to_owned()
            }
            CommandError::InvalidInput { field, source } => format!("{field}: {source}"),
            CommandError::RateLimited(e) => e.to_string(),
            CommandError::Publish(e) if e.is_transient() => {
                "the event store is unavailable; retry later".to_owned()
            }
            CommandError::Db(_) => "the event store is unavailable; retry later".to_owned(),
            CommandError::Overloaded { .. } => "the AI painter is busy; retry later".to_owned(),
            CommandError::Media(e) => e.public_message(),
            CommandError::Account(e) => e.public_message(),
            e if e.status().is_server_error() => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for CommandError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after_secs();
        if status.is_server_error() && retry_after.is_none() {
            tracing::error!(error = %self, source = ?std::error::Error::source(&self), "command failed");
        } else if status.is_server_error() {
            tracing::warn!(error = %self, "command refused; the client may retry");
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            tracing::info!(error = %self, "command rate limited");
        }
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
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::CommandClass;
    use std::time::Duration;

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
        let e = CommandError::Publish(PublishError::Encode {
            message: "bug".into(),
        });
        assert_eq!(header(e), (StatusCode::INTERNAL_SERVER_ERROR, None));
    }
}
