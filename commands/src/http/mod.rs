//! The write side over HTTP: JSON (and multipart for uploads) under `/v1`. Every write needs a
//! bearer token; every write takes an optional `Idempotency-Key` header. Accepted commands
//! answer `202` with the event id and its position.

mod bodies;
mod form;

use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{FromRef, Multipart, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};

pub use self::bodies::{CommentBody, ExhibitionBody, TextToImageBody};
pub(crate) use self::bodies::{add_artwork_form, image_to_image_form};
pub use self::form::{artwork_upload, image_to_image_input};
use crate::accounts::{self, Accounts};
use crate::auth::{Principal, TokenKeys};
use crate::body::{BodyError, JsonBody};
use crate::decide::Refusal;
use crate::decide::catalog::NewExhibition;
use crate::error::CommandError;
use crate::idempotency::IdempotencyKey;
use crate::input::{artwork_id as artwork, uuid};
use crate::library::{Accepted, Commands, Context};
use crate::ops::GenerationInput;
use crate::ratelimit::CommandClass;

/// The answer to a request whose body is larger than `limit` bytes (announced or sent): the
/// HTTP edge that serves the routes cuts every body at one limit and answers with this.
pub fn payload_too_large(limit: u64) -> Response {
    BodyError::TooLarge { limit }.into_response()
}

/// The answer to a request whose body did not arrive within `after` (a client too slow, or
/// one that announced a body and sent none).
pub fn body_too_slow(after: std::time::Duration) -> Response {
    BodyError::TooSlow { after }.into_response()
}

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub commands: Commands,
    pub keys: Arc<TokenKeys>,
    pub accounts: Accounts,
}

impl FromRef<Arc<HttpState>> for Accounts {
    fn from_ref(state: &Arc<HttpState>) -> Self {
        state.accounts.clone()
    }
}

/// The routes of the command service. Their state is shared behind one `Arc`: a handler's
/// `State` is a clone of it per request, one reference count instead of a dozen.
pub fn router(state: HttpState) -> Router {
    let state = Arc::new(state);
    let uploads = Router::new()
        .route("/v1/exhibitions/{id}/artworks", post(add_artwork))
        .route("/v1/generations/image-to-image", post(image_to_image));
    Router::new()
        .route("/v1/artworks/{id}/like", put(like).delete(unlike))
        .route(
            "/v1/artworks/{id}/favorite",
            put(favorite).delete(unfavorite),
        )
        .route("/v1/artworks/{id}/comments", post(post_comment))
        .route(
            "/v1/artworks/{id}/comments/{comment}",
            delete(delete_comment),
        )
        .route("/v1/artworks/{id}/views", post(record_view))
        .route("/v1/exhibitions", post(create_exhibition))
        .route(
            "/v1/exhibitions/{id}/artworks/{artwork}",
            delete(remove_artwork),
        )
        .route("/v1/exhibitions/{id}/publish", post(publish_exhibition))
        .route("/v1/exhibitions/{id}/close", post(close_exhibition))
        .route("/v1/generations", post(text_to_image))
        .route("/v1/generations/{id}/cancel", post(cancel_generation))
        .merge(uploads)
        .route("/openapi.json", get(crate::openapi::document))
        .route("/healthz", get(|| async { "ok" }))
        .merge(
            accounts::http::sign_in_routes().route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                limit_auth,
            )),
        )
        .merge(accounts::http::role_routes())
        .fallback(not_found)
        .with_state(state)
}

/// Quotas for the sign-in routes, per client address (the address of the TCP peer: behind a
/// proxy every client shares the proxy's quota).
async fn limit_auth(
    State(state): State<Arc<HttpState>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(Err(e)) = peer.map(|ip| state.commands.limit_client(ip, CommandClass::Auth)) {
        return e.into_response();
    }
    next.run(request).await
}

async fn not_found() -> Response {
    CommandError::Refused(Refusal::NotFound { what: "route" }).into_response()
}

/// A 202 with the accepted command.
struct AcceptedResponse(Accepted);

impl IntoResponse for AcceptedResponse {
    fn into_response(self) -> Response {
        (StatusCode::ACCEPTED, Json(self.0)).into_response()
    }
}

type Reply = Result<AcceptedResponse, CommandError>;

fn principal(state: &HttpState, headers: &HeaderMap) -> Result<Principal, CommandError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    Ok(state.keys.verify_header(header)?)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, CommandError> {
    headers
        .get("idempotency-key")
        .map(|v| IdempotencyKey::parse(v.to_str().unwrap_or("")))
        .transpose()
        .map_err(CommandError::from)
}

/// The caller and their idempotency key.
struct Caller {
    who: Principal,
    key: Option<IdempotencyKey>,
}

impl Caller {
    /// Authenticates the caller (the command itself spends their quota).
    fn of(state: &HttpState, headers: &HeaderMap) -> Result<Self, CommandError> {
        let who = principal(state, headers)?;
        let key = idempotency_key(headers)?;
        Ok(Self { who, key })
    }

    fn cx(&self) -> Context<'_> {
        Context {
            who: &self.who,
            key: self.key.as_ref(),
        }
    }
}

macro_rules! set_fact {
    ($name:ident, $method:ident, $value:expr) => {
        #[tracing::instrument(level = "debug", skip_all, fields(artwork = %id))]
        async fn $name(
            State(state): State<Arc<HttpState>>,
            headers: HeaderMap,
            Path(id): Path<String>,
        ) -> Reply {
            let caller = Caller::of(&state, &headers)?;
            let artwork = artwork(&id)?;
            let done = state
                .commands
                .$method(&caller.cx(), &artwork, $value)
                .await?;
            Ok(AcceptedResponse(done))
        }
    };
}

set_fact!(like, set_like, true);
set_fact!(unlike, set_like, false);
set_fact!(favorite, set_favorite, true);
set_fact!(unfavorite, set_favorite, false);

#[tracing::instrument(level = "debug", skip_all, fields(artwork = %id))]
async fn post_comment(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<CommentBody>,
) -> Reply {
    let caller = Caller::of(&state, &headers)?;
    let artwork = artwork(&id)?;
    let done = state
        .commands
        .post_comment(&caller.cx(), &artwork, input.body())
        .await?;
    Ok(AcceptedResponse(done))
}

#[tracing::instrument(level = "debug", skip_all, fields(artwork = %id, comment = %comment))]
async fn delete_comment(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((id, comment)): Path<(String, String)>,
) -> Reply {
    let caller = Caller::of(&state, &headers)?;
    let artwork = artwork(&id)?;
    let comment = uuid("comment id", &comment)?;
    let done = state
        .commands
        .delete_comment(&caller.cx(), &artwork, comment)
        .await?;
    Ok(AcceptedResponse(done))
}

/// Views may be anonymous; a token, when sent, must be valid. A key needs a token.
#[tracing::instrument(level = "debug", skip_all, fields(artwork = %id))]
async fn record_view(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let viewer = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(_) => Some(principal(&state, &headers)?),
    };
    let key = idempotency_key(&headers)?;
    let artwork = artwork(&id)?;
    let done = state
        .commands
        .record_view(viewer.as_ref(), key.as_ref(), &artwork)
        .await?;
    Ok(AcceptedResponse(done))
}

#[tracing::instrument(level = "debug", skip_all)]
async fn create_exhibition(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<ExhibitionBody>,
) -> Reply {
    let caller = Caller::of(&state, &headers)?;
    let input = NewExhibition::from(input);
    let done = state
        .commands
        .create_exhibition(&caller.cx(), &input)
        .await?;
    Ok(AcceptedResponse(done))
}

#[tracing::instrument(level = "debug", skip_all, fields(exhibition = %id))]
async fn add_artwork(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Reply {
    let caller = Caller::of(&state, &headers)?;
    let exhibition = uuid("exhibition id", &id)?;
    let multipart = multipart.map_err(BodyError::NotMultipart)?;
    let upload = artwork_upload(multipart).await?;
    let done = state
        .commands
        .add_artwork(&caller.cx(), exhibition, upload)
        .await?;
    Ok(AcceptedResponse(done))
}

#[tracing::instrument(level = "debug", skip_all, fields(exhibition = %id, artwork = %art))]
async fn remove_artwork(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((id, art)): Path<(String, String)>,
) -> Reply {
    let caller = Caller::of(&state, &headers)?;
    let exhibition = uuid("exhibition id", &id)?;
    let artwork = artwork(&art)?;
    let done = state
        .commands
        .remove_artwork(&caller.cx(), exhibition, &artwork)
        .await?;
    Ok(AcceptedResponse(done))
}

/// A command on one thing named by a UUID in the path, with no body.
macro_rules! uuid_action {
    ($name:ident, $method:ident, $what:literal) => {
        #[tracing::instrument(level = "debug", skip_all, fields(id = %id))]
        async fn $name(
            State(state): State<Arc<HttpState>>,
            headers: HeaderMap,
            Path(id): Path<String>,
        ) -> Reply {
            let caller = Caller::of(&state, &headers)?;
            let id = uuid($what, &id)?;
            let done = state.commands.$method(&caller.cx(), id).await?;
            Ok(AcceptedResponse(done))
        }
    };
}

uuid_action!(publish_exhibition, publish_exhibition, "exhibition id");
uuid_action!(close_exhibition, close_exhibition, "exhibition id");
uuid_action!(cancel_generation, cancel_generation, "request id");

#[tracing::instrument(level = "debug", skip_all)]
async fn text_to_image(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<TextToImageBody>,
) -> Reply {
    let caller = Caller::of(&state, &headers)?;
    let request = GenerationInput::from(input);
    let done = state
        .commands
        .request_generation(&caller.cx(), request)
        .await?;
    Ok(AcceptedResponse(done))
}

#[tracing::instrument(level = "debug", skip_all)]
async fn image_to_image(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Reply {
    let caller = Caller::of(&state, &headers)?;
    let multipart = multipart.map_err(BodyError::NotMultipart)?;
    let request = image_to_image_input(multipart).await?;
    let done = state
        .commands
        .request_generation(&caller.cx(), request)
        .await?;
    Ok(AcceptedResponse(done))
}

#[cfg(test)]
mod tests;
