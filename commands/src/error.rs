//! The one error type of the write side, and how HTTP shows it.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gallery_schemas::IdError;
use serde_json::json;

use crate::auth::AuthError;
use crate::service::PublishError;

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
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl CommandError {
    /// A stable, machine-readable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Unauthenticated(_) => "UNAUTHENTICATED",
            CommandError::InvalidInput { .. } => "INVALID_INPUT",
            CommandError::Publish(PublishError::Unavailable { .. }) => "UNAVAILABLE",
            CommandError::Publish(PublishError::Encode { .. }) => "INTERNAL",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            CommandError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            CommandError::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            CommandError::Publish(PublishError::Unavailable { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            CommandError::Publish(PublishError::Encode { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message shown to clients: input errors say what is wrong, internal ones say
    /// nothing about internals.
    pub fn public_message(&self) -> String {
        match self {
            CommandError::Unauthenticated(AuthError::WeakSecret { .. } | AuthError::Sign(_)) => {
                "internal error".to_owned()
            }
            CommandError::Unauthenticated(e) => e.to_string(),
            CommandError::InvalidInput { field, source } => format!("{field}: {source}"),
            CommandError::Publish(PublishError::Unavailable { .. }) => {
                "the event store is unavailable; retry later".to_owned()
            }
            CommandError::Publish(PublishError::Encode { .. }) => "internal error".to_owned(),
        }
    }
}

impl IntoResponse for CommandError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, source = ?std::error::Error::source(&self), "command failed");
        }
        let body = Json(json!({
            "error": { "code": self.code(), "message": self.public_message() }
        }));
        let mut response = (status, body).into_response();
        match status {
            StatusCode::UNAUTHORIZED => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"gallery\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}
