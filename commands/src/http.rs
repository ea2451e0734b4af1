//! The write side over HTTP (JSON under `/v1`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, put};
use axum::{Json, Router};
use gallery_schemas::{ArtworkId, UserId};
use serde::Serialize;

use crate::auth::TokenKeys;
use crate::backlog::{Backlog, GenerationPolicy};
use crate::error::CommandError;
use crate::ratelimit::{CommandClass, RateLimiter, Subject};
use crate::service::{Accepted, Commands};

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub commands: Commands,
    pub keys: Arc<TokenKeys>,
    /// Quotas per user (or client address) and class of command.
    pub limiter: Arc<RateLimiter>,
    /// The generation backlog, as last measured.
    pub backlog: Backlog,
    /// What a generation request gets while the backlog is long.
    pub generation: GenerationPolicy,
}

/// The routes of the command service.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/v1/artworks/{id}/like", put(like).delete(unlike))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PositionBody {
    topic: String,
    partition: i32,
    offset: i64,
}

/// The body of a 202: the event's id and where it landed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AcceptedBody {
    event_id: String,
    position: PositionBody,
}

impl From<Accepted> for AcceptedBody {
    fn from(a: Accepted) -> Self {
        Self {
            event_id: a.event_id.to_string(),
            position: PositionBody {
                topic: a.position.topic,
                partition: a.position.partition,
                offset: a.position.offset,
            },
        }
    }
}

fn user(state: &HttpState, headers: &HeaderMap) -> Result<UserId, CommandError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    Ok(state.keys.verify_header(header)?.user)
}

fn artwork(raw: &str) -> Result<ArtworkId, CommandError> {
    ArtworkId::parse(raw).map_err(|source| CommandError::InvalidInput {
        field: "artwork id",
        source,
    })
}

async fn set_like(
    state: HttpState,
    headers: HeaderMap,
    id: String,
    liked: bool,
) -> Result<(StatusCode, Json<AcceptedBody>), CommandError> {
    let user = user(&state, &headers)?;
    let artwork = artwork(&id)?;
    state
        .limiter
        .check(Subject::User(&user), CommandClass::Interactions)?;
    let accepted = state.commands.set_like(&user, &artwork, liked).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted.into())))
}

#[tracing::instrument(skip_all, fields(artwork = %id))]
async fn like(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<AcceptedBody>), CommandError> {
    set_like(state, headers, id, true).await
}

#[tracing::instrument(skip_all, fields(artwork = %id))]
async fn unlike(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<AcceptedBody>), CommandError> {
    set_like(state, headers, id, false).await
}
