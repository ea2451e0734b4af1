//! Accounts over HTTP (JSON, camelCase):
//!
//! - `POST /v1/auth/register {username, password, displayName}` → 201 and a session
//! - `POST /v1/auth/login {username, password}` → 200 and a session
//! - `POST /v1/auth/refresh {refreshToken}` → 200 and a new session
//! - `PUT /v1/users/{id}/role {role}` (admins only) → 200 and the account

use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use gallery_schemas::{PersonName, Role, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::rules::{
    self, InvalidInput, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, Registration, role_name,
};
use super::{Account, AccountError, Accounts, RefreshToken, Session};
use crate::body::{BodyError, JsonBody};

/// The routes that sign a client in (register, login, refresh), for any router state that
/// holds an [`Accounts`]. No user is known yet, so the service limits them per client address.
pub fn sign_in_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Accounts: FromRef<S>,
{
    Router::new()
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
}

/// The admins' route that sets a user's role: an authenticated command, not a sign-in, so
/// it spends nothing of the client address's sign-in quota.
pub fn role_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Accounts: FromRef<S>,
{
    Router::new().route("/v1/users/{id}/role", put(set_role))
}

/// The JSON body of `POST /v1/auth/register`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBody {
    username: String,
    password: String,
    display_name: String,
}

impl std::fmt::Debug for RegisterBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterBody")
            .field("username", &self.username)
            .field("display_name", &self.display_name)
            .finish_non_exhaustive()
    }
}

impl RegisterBody {
    /// The body as the OpenAPI document shows it, with the rules of [`Registration::parse`].
    pub(crate) fn schema() -> Value {
        json!({"type": "object", "required": ["username", "password", "displayName"], "properties": {
            "username": UserId::json_schema(),
            "password": {"type": "string", "minLength": MIN_PASSWORD_CHARS, "maxLength": MAX_PASSWORD_CHARS,
                         "description": "Any characters; its length in characters is checked."},
            "displayName": PersonName::json_schema(),
        }})
    }
}

impl TryFrom<RegisterBody> for Registration {
    type Error = InvalidInput;

    fn try_from(b: RegisterBody) -> Result<Self, InvalidInput> {
        Registration::parse(&b.username, b.password, b.display_name)
    }
}

/// The JSON body of `POST /v1/auth/login`: any two strings.
#[derive(Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl LoginBody {
    /// Any strings: a wrong pair, whatever its shape, is `401 INVALID_CREDENTIALS`.
    pub(crate) fn schema() -> Value {
        json!({"type": "object", "required": ["username", "password"], "properties": {
            "username": {"type": "string"}, "password": {"type": "string"}}})
    }
}

/// The JSON body of `POST /v1/auth/refresh`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshBody {
    refresh_token: String,
}

impl std::fmt::Debug for RefreshBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshBody").finish_non_exhaustive()
    }
}

impl From<RefreshBody> for RefreshToken {
    fn from(body: RefreshBody) -> Self {
        RefreshToken::from_client(body.refresh_token)
    }
}

impl RefreshBody {
    pub(crate) fn schema() -> Value {
        json!({"type": "object", "required": ["refreshToken"], "properties": {
            "refreshToken": {"type": "string", "description": "The refresh token of the last session."}}})
    }
}

/// The JSON body of `PUT /v1/users/{id}/role`.
#[derive(Debug, Deserialize)]
pub struct RoleBody {
    role: String,
}

impl TryFrom<RoleBody> for Role {
    type Error = InvalidInput;

    fn try_from(body: RoleBody) -> Result<Self, InvalidInput> {
        rules::parse_role(&body.role).map_err(InvalidInput::Role)
    }
}

impl RoleBody {
    /// The roles [`rules::parse_role`] takes (it ignores ASCII case).
    pub(crate) fn schema() -> Value {
        let roles = [Role::Visitor, Role::Curator, Role::Admin].map(role_name);
        json!({"type": "object", "required": ["role"], "properties": {
            "role": {"type": "string", "enum": roles}}})
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UserBody {
    id: String,
    display_name: String,
    role: &'static str,
}

impl From<Account> for UserBody {
    fn from(a: Account) -> Self {
        Self {
            id: a.id.into(),
            display_name: a.display_name.into(),
            role: role_name(a.role),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionBody {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
    user: UserBody,
}

/// A session as JSON; tokens must not be cached by anyone on the way.
fn session_response(status: StatusCode, session: Session) -> Response {
    let body = SessionBody {
        access_token: session.access_token,
        token_type: "Bearer",
        expires_in: session.expires_in.as_secs(),
        refresh_token: session.refresh_token.expose().to_owned(),
        user: session.account.into(),
    };
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[tracing::instrument(skip_all)]
async fn register(
    State(accounts): State<Accounts>,
    JsonBody(body): JsonBody<RegisterBody>,
) -> Result<Response, AccountError> {
    let registration = Registration::try_from(body)?;
    let session = accounts.register(registration).await?;
    Ok(session_response(StatusCode::CREATED, session))
}

#[tracing::instrument(skip_all)]
async fn login(
    State(accounts): State<Accounts>,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, AccountError> {
    let session = accounts.login(&body.username, &body.password).await?;
    Ok(session_response(StatusCode::OK, session))
}

#[tracing::instrument(skip_all)]
async fn refresh(
    State(accounts): State<Accounts>,
    JsonBody(body): JsonBody<RefreshBody>,
) -> Result<Response, AccountError> {
    let token = RefreshToken::from(body);
    let session = accounts.refresh(&token).await?;
    Ok(session_response(StatusCode::OK, session))
}

#[tracing::instrument(skip_all, fields(user = %id))]
async fn set_role(
    State(accounts): State<Accounts>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<JsonBody<RoleBody>, BodyError>,
) -> Result<Json<UserBody>, AccountError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let actor = accounts
        .keys()
        .verify_header(header)
        .map_err(AccountError::Unauthenticated)?;
    // Who asks is checked before what they sent.
    let JsonBody(body) = body?;
    let user = gallery_schemas::UserId::parse(&id).map_err(InvalidInput::UserId)?;
    let role = Role::try_from(body)?;
    let account = accounts.set_role(&actor, &user, role).await?;
    Ok(Json(account.into()))
}
