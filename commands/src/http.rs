//! The write side over HTTP: JSON (and multipart for uploads) under `/v1`. Every write needs a
//! bearer token; every write takes an optional `Idempotency-Key` header. Accepted commands
//! answer `202` with the event id and its position.

use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use gallery_schemas::{
    ArtworkId, Description, GenerationMode, PersonName, Prompt, StyleName, Title,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::accounts::{self, Accounts};
use crate::auth::{Principal, TokenKeys};
use crate::decide::Refusal;
use crate::decide::catalog::{NewArtwork, NewExhibition, YEARS};
use crate::decide::generation::{Bounds, Params};
use crate::error::CommandError;
use crate::idempotency::IdempotencyKey;
use crate::openapi::{empty_or, image_file, integer};
use crate::ops::{ArtworkUpload, GenerationInput};
use crate::ratelimit::CommandClass;
use crate::service::{Accepted, Commands, Context};

/// The answer to a request whose body is larger than `limit` bytes (announced or sent): the
/// HTTP edge that serves the routes cuts every body at one limit and answers with this.
pub fn payload_too_large(limit: u64) -> Response {
    CommandError::BadBody {
        code: "PAYLOAD_TOO_LARGE",
        message: format!("the request body exceeds {limit} bytes"),
    }
    .into_response()
}

/// The answer to a request whose body did not arrive within `after` (a client too slow, or
/// one that announced a body and sent none).
pub fn body_too_slow(after: std::time::Duration) -> Response {
    CommandError::BadBody {
        code: "REQUEST_TIMEOUT",
        message: format!(
            "the request body did not arrive within {} ms",
            after.as_millis()
        ),
    }
    .into_response()
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

/// JSON bodies whose rejections are errors in the API's shape.
struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = CommandError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> CommandError {
    let code = match rejection {
        JsonRejection::MissingJsonContentType(_) => "UNSUPPORTED_MEDIA_TYPE",
        JsonRejection::JsonDataError(_) => "INVALID_INPUT",
        r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        _ => "INVALID_JSON",
    };
    CommandError::BadBody {
        code,
        message: rejection.body_text(),
    }
}

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

fn artwork(raw: &str) -> Result<ArtworkId, CommandError> {
    ArtworkId::parse(raw).map_err(|source| CommandError::InvalidInput {
        field: "artwork id",
        source,
    })
}

fn uuid(field: &'static str, raw: &str) -> Result<Uuid, CommandError> {
    Uuid::parse_str(raw).map_err(|_| {
        CommandError::Refused(Refusal::Rule {
            field,
            rule: "must be a UUID",
        })
    })
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

/// The JSON body of `POST /v1/artworks/{id}/comments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    body: String,
}

impl CommentBody {
    /// The comment's text, unchecked (the command checks it).
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The body as the document shows it: the fields above, their rules, nothing else.
    pub(crate) fn schema() -> Value {
        json!({"type": "object", "additionalProperties": false, "required": ["body"], "properties": {
            "body": gallery_schemas::CommentBody::json_schema(),
        }})
    }
}

#[tracing::instrument(level = "debug", skip_all, fields(artwork = %id))]
async fn post_comment(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(input): Body<CommentBody>,
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

/// The JSON body of `POST /v1/exhibitions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExhibitionBody {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(with = "time::serde::rfc3339")]
    opens_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    closes_at: time::OffsetDateTime,
}

impl ExhibitionBody {
    /// The body as the document shows it (the rule between the two times, which JSON Schema
    /// cannot state, in their descriptions).
    pub(crate) fn schema() -> Value {
        json!({"type": "object", "additionalProperties": false,
               "required": ["title", "opensAt", "closesAt"], "properties": {
            "title": gallery_schemas::Title::json_schema(),
            "description": gallery_schemas::Description::json_schema(),
            "opensAt": {"type": "string", "format": "date-time", "description": "RFC 3339."},
            "closesAt": {"type": "string", "format": "date-time",
                         "description": "RFC 3339; must be after opensAt and in the future (400 INVALID_INPUT otherwise)."},
        }})
    }
}

fn millis(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl From<ExhibitionBody> for NewExhibition {
    fn from(input: ExhibitionBody) -> Self {
        NewExhibition {
            title: input.title,
            description: input.description,
            opens_at: millis(input.opens_at),
            closes_at: millis(input.closes_at),
        }
    }
}

#[tracing::instrument(level = "debug", skip_all)]
async fn create_exhibition(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Body(input): Body<ExhibitionBody>,
) -> Reply {
    let caller = Caller::of(&state, &headers)?;
    let input = NewExhibition::from(input);
    let done = state
        .commands
        .create_exhibition(&caller.cx(), &input)
        .await?;
    Ok(AcceptedResponse(done))
}

/// The fields of a multipart form: text fields by name, and one file.
#[derive(Debug, Default)]
struct Form {
    fields: std::collections::HashMap<String, String>,
    file: Option<Vec<u8>>,
}

impl Form {
    async fn read(
        mut multipart: Multipart,
        file_field: &'static str,
    ) -> Result<Self, CommandError> {
        let mut form = Form::default();
        let bad = |e: axum::extract::multipart::MultipartError| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                CommandError::BadBody {
                    code: "PAYLOAD_TOO_LARGE",
                    message: e.body_text(),
                }
            } else {
                CommandError::BadBody {
                    code: "INVALID_BODY",
                    message: e.body_text(),
                }
            }
        };
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or_default().to_owned();
            if name == file_field {
                form.file = Some(field.bytes().await.map_err(bad)?.to_vec());
            } else {
                let text = field.text().await.map_err(bad)?;
                form.fields.insert(name, text);
            }
        }
        Ok(form)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.fields.get(name).cloned()
    }

    fn required(&self, name: &'static str) -> Result<String, CommandError> {
        self.text(name).ok_or(CommandError::BadBody {
            code: "INVALID_INPUT",
            message: format!("missing form field `{name}`"),
        })
    }

    /// A whole number, written as JSON writes numbers (`128`, or `128.0`).
    fn number<T: TryFrom<i64>>(&self, name: &'static str) -> Result<Option<T>, CommandError> {
        match self.text(name).filter(|s| !s.trim().is_empty()) {
            None => Ok(None),
            Some(raw) => raw
                .trim()
                .parse::<serde_json::Number>()
                .ok()
                .and_then(|n| whole(&n))
                .map(Some)
                .ok_or(CommandError::Refused(Refusal::Rule {
                    field: name,
                    rule: "must be a whole number",
                })),
        }
    }

    fn file(&mut self, name: &'static str) -> Result<Vec<u8>, CommandError> {
        self.file.take().ok_or(CommandError::BadBody {
            code: "INVALID_INPUT",
            message: format!("missing file field `{name}`"),
        })
    }
}

/// Reads the multipart form of `POST /v1/exhibitions/{id}/artworks`: the artwork's details,
/// unchecked (the command checks them), and its image, as sent.
pub async fn artwork_upload(multipart: Multipart) -> Result<ArtworkUpload, CommandError> {
    let mut form = Form::read(multipart, "image").await?;
    Ok(ArtworkUpload {
        details: NewArtwork {
            title: form.required("title")?,
            artist: form.required("artist")?,
            year: form.number("year")?,
            style: form.text("style").filter(|s| !s.is_empty()),
            description: form.text("description").unwrap_or_default(),
        },
        image: form.file("image")?,
    })
}

/// Reads the multipart form of `POST /v1/generations/image-to-image`: the request's parameters,
/// unchecked (the command checks them), and its photo, as sent.
pub async fn image_to_image_input(multipart: Multipart) -> Result<GenerationInput, CommandError> {
    let mut form = Form::read(multipart, "photo").await?;
    let request_id = form
        .text("requestId")
        .filter(|s| !s.is_empty())
        .map(|raw| uuid("requestId", &raw))
        .transpose()?;
    Ok(GenerationInput {
        mode: GenerationMode::ImageToImage,
        params: Params {
            prompt: form.text("prompt"),
            negative_prompt: form.text("negativePrompt"),
            style: form.required("style")?,
            seed: form.number("seed")?,
            steps: form.number("steps")?,
            width: form.number("width")?,
            height: form.number("height")?,
        },
        photo: Some(form.file("photo")?),
        request_id,
    })
}

fn multipart_rejection(rejection: &MultipartRejection) -> CommandError {
    CommandError::BadBody {
        code: "UNSUPPORTED_MEDIA_TYPE",
        message: rejection.body_text(),
    }
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
    let multipart = multipart.map_err(|r| multipart_rejection(&r))?;
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

/// The JSON body of `POST /v1/generations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TextToImageBody {
    prompt: String,
    negative_prompt: Option<String>,
    style: String,
    #[serde(default, deserialize_with = "optional_whole")]
    seed: Option<i64>,
    #[serde(default, deserialize_with = "optional_whole")]
    steps: Option<i32>,
    #[serde(default, deserialize_with = "optional_whole")]
    width: Option<i32>,
    #[serde(default, deserialize_with = "optional_whole")]
    height: Option<i32>,
    request_id: Option<Uuid>,
}

/// 2^63: the first whole `f64` beyond `i64`.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// A whole number within `T`'s range, as JSON Schema's `integer` reads numbers: written with
/// or without a zero fraction (`128` and `128.0` alike).
fn whole<T: TryFrom<i64>>(n: &serde_json::Number) -> Option<T> {
    let whole = n.as_i64().or_else(|| {
        let f = n.as_f64()?;
        // Kept only in range and without a fraction, where the conversion is exact.
        (f.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&f)).then_some(f as i64)
    })?;
    T::try_from(whole).ok()
}

/// An optional whole number of a JSON body (see [`whole`]).
fn optional_whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    whole(&n).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!("expected a whole number within range, got {n}"))
    })
}

/// The generation parameters both modes take, with the bounds the service checks.
fn generation_fields(bounds: &Bounds) -> Map<String, Value> {
    let side = |which: &str| {
        json!({"type": "integer", "minimum": bounds.min_side, "maximum": bounds.max_side,
               "multipleOf": bounds.side_multiple, "default": bounds.default_side,
               "description": format!("{which} in pixels.")})
    };
    let mut fields = Map::new();
    fields.insert("negativePrompt".into(), empty_or(Prompt::json_schema()));
    fields.insert("style".into(), StyleName::json_schema());
    fields.insert(
        "seed".into(),
        integer(
            i64::MIN,
            i64::MAX,
            "Random when absent; the same seed reproduces an image.",
        ),
    );
    fields.insert(
        "steps".into(),
        json!({"type": "integer", "minimum": bounds.min_steps, "maximum": bounds.max_steps,
               "default": bounds.default_steps}),
    );
    fields.insert("width".into(), side("Width"));
    fields.insert("height".into(), side("Height"));
    fields
}

impl TextToImageBody {
    /// The body as the document shows it.
    pub(crate) fn schema() -> Value {
        let mut fields = generation_fields(&Bounds::default());
        fields.insert("prompt".into(), Prompt::json_schema());
        fields.insert(
            "requestId".into(),
            json!({"type": "string", "format": "uuid",
                   "description": "Client-chosen; works as an idempotency key of its own (another user's is 409)."}),
        );
        json!({"type": "object", "additionalProperties": false,
               "required": ["prompt", "style"], "properties": fields})
    }
}

/// The form of `POST /v1/generations/image-to-image`.
pub(crate) fn image_to_image_form() -> Value {
    let mut fields = generation_fields(&Bounds::default());
    fields.insert("prompt".into(), empty_or(Prompt::json_schema()));
    fields.insert("photo".into(), image_file("The photo to repaint"));
    fields.insert(
        "requestId".into(),
        empty_or(json!({"type": "string", "format": "uuid"})),
    );
    json!({"type": "object", "additionalProperties": false, "required": ["photo", "style"],
           "properties": fields})
}

/// The form of `POST /v1/exhibitions/{id}/artworks`.
pub(crate) fn add_artwork_form() -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["title", "artist", "image"], "properties": {
        "title": Title::json_schema(),
        "artist": PersonName::json_schema(),
        "year": integer(YEARS.0, YEARS.1, "The year it was made (negative: BCE)."),
        "style": empty_or(StyleName::json_schema()),
        "description": Description::json_schema(),
        "image": image_file("The artwork's picture"),
    }})
}

impl From<TextToImageBody> for GenerationInput {
    fn from(input: TextToImageBody) -> Self {
        GenerationInput {
            mode: GenerationMode::TextToImage,
            params: Params {
                prompt: Some(input.prompt),
                negative_prompt: input.negative_prompt,
                style: input.style,
                seed: input.seed,
                steps: input.steps,
                width: input.width,
                height: input.height,
            },
            photo: None,
            request_id: input.request_id,
        }
    }
}

#[tracing::instrument(level = "debug", skip_all)]
async fn text_to_image(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Body(input): Body<TextToImageBody>,
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
    let multipart = multipart.map_err(|r| multipart_rejection(&r))?;
    let request = image_to_image_input(multipart).await?;
    let done = state
        .commands
        .request_generation(&caller.cx(), request)
        .await?;
    Ok(AcceptedResponse(done))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(raw: &str) -> serde_json::Number {
        raw.parse().unwrap_or_else(|e| unreachable!("{raw}: {e}"))
    }

    #[test]
    fn whole_numbers_are_read_as_json_schema_reads_integers() {
        assert_eq!(whole::<i32>(&number("128")), Some(128));
        assert_eq!(whole::<i32>(&number("128.0")), Some(128));
        assert_eq!(whole::<i64>(&number("-1266.0")), Some(-1266));
        assert_eq!(whole::<i32>(&number("128.5")), None);
        assert_eq!(whole::<i32>(&number("3000000000")), None);
        assert_eq!(whole::<i64>(&number("9223372036854775807")), Some(i64::MAX));
        assert_eq!(whole::<i64>(&number("9223372036854775808.0")), None);
        assert_eq!(whole::<i64>(&number("1e300")), None);
    }

    #[test]
    fn a_generation_body_takes_whole_numbers_with_a_zero_fraction() {
        let body: Result<TextToImageBody, _> = serde_json::from_str(
            r#"{"prompt": "a cat", "style": "ink", "height": 128.0, "seed": -1266.0}"#,
        );
        let body = body.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (body.height, body.seed, body.width),
            (Some(128), Some(-1266), None)
        );
        let half: Result<TextToImageBody, _> =
            serde_json::from_str(r#"{"prompt": "a cat", "style": "ink", "steps": 2.5}"#);
        assert!(half.is_err());
    }
}
