//! JSON bodies in and JSON errors out: a request body that is not the JSON a route expects
//! gets the same `{"error": {"code", "message"}}` answer as every other refused request
//! (axum's own rejection is plain text).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

/// The error answer every route gives: `{"error": {"code": CODE, "message": MESSAGE}}`.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = Json(json!({ "error": { "code": code, "message": message } }));
    (status, body).into_response()
}

/// A request body that could not be read as the expected JSON.
#[derive(Debug, thiserror::Error)]
#[error("request body: {0}")]
pub struct BodyRejection(#[source] pub JsonRejection);

impl BodyRejection {
    pub fn status(&self) -> StatusCode {
        match self.0.status() {
            s @ (StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::PAYLOAD_TOO_LARGE) => s,
            // Bad syntax and missing or mistyped fields alike: the client sent bad input.
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn code(&self) -> &'static str {
        match self.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
            StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
            _ => "INVALID_INPUT",
        }
    }
}

impl IntoResponse for BodyRejection {
    fn into_response(self) -> Response {
        error_response(self.status(), self.code(), &self.0.body_text())
    }
}

/// Like [`axum::Json`], but refuses with a JSON error.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = BodyRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(BodyRejection(rejection)),
        }
    }
}
