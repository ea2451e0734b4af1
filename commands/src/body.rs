//! Request bodies: why one was refused before any command saw it ([`BodyError`]), and JSON
//! bodies whose refusals are answered like every other error, `{"error": {"code",
//! "message"}}`, with the same code on every route (axum's own rejection is plain text).

use std::time::Duration;

use axum::Json;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

/// Why a request body was refused. What clients are shown for each variant is decided with
/// every other error's answer, in [`CommandError`](crate::CommandError).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Not JSON, not the JSON the route takes, not sent as JSON, or too large.
    #[error("the body is not the JSON expected")]
    Json(#[source] JsonRejection),
    #[error("the body is not a multipart form")]
    NotMultipart(#[source] MultipartRejection),
    #[error("the multipart form could not be read")]
    Multipart(#[source] MultipartError),
    #[error("missing form field `{name}`")]
    MissingField { name: &'static str },
    #[error("missing file field `{name}`")]
    MissingFile { name: &'static str },
    /// An uploaded file that could not be read (its cause is logged where it happened).
    #[error("{field}: the uploaded file could not be read")]
    UnreadableUpload { field: &'static str },
    /// Larger than the one limit the HTTP edge puts on every body.
    #[error("the request body exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the request body did not arrive within {} ms", after.as_millis())]
    TooSlow { after: Duration },
}

/// Like [`axum::Json`], but refuses with a [`BodyError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = BodyError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(BodyError::Json(rejection)),
        }
    }
}
