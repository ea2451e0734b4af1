//! The GraphQL endpoint over axum, with GraphiQL for development. It takes JSON requests and
//! multipart requests (the GraphQL multipart request spec, for uploads).

use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::{GraphiQLSource, MultipartOptions};
use async_graphql::{ErrorExtensions, ServerError};
use async_graphql_axum::GraphQLResponse;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use gallery_commands::TokenKeys;

use crate::cache::{CacheSettings, HotCache};
use crate::changes::ChangeFeed;
use crate::consistency::{self, Position};
use crate::error::QueryError;
use crate::media::{Media, media_routes};
use crate::mutation::Writes;
use crate::read::ReadModel;
use crate::schema::{Caller, ClientAddr, GallerySchema, Viewer, build_schema};
use crate::ws::Connections;

/// Most files one multipart request may carry.
const MAX_FILES: usize = 4;

/// The API's tunables (the `query_api` configuration section).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Longest a request with consistency tokens waits for the read model.
    pub consistency_timeout: Duration,
    /// The hot-read cache.
    pub cache: CacheSettings,
    /// Deepest field nesting accepted, fragments expanded (`QUERY_TOO_COMPLEX` beyond); at most
    /// [`crate::guard::MAX_DEPTH_LIMIT`].
    pub max_depth: usize,
    /// Highest complexity (one per field, times `first` on lists) accepted; also the most
    /// fields a document may select, fragments expanded.
    pub max_complexity: usize,
    /// Longest GraphQL document accepted, in bytes (`QUERY_TOO_LARGE` beyond, before parsing).
    pub max_document_bytes: usize,
    /// Most lexical tokens a document may have (`QUERY_TOO_LARGE` beyond, before parsing).
    pub max_document_tokens: usize,
    /// Whether the schema answers introspection (`__schema`, `__type`) and serves GraphiQL.
    pub introspection: bool,
    /// Longest a query or mutation may run (`TIMEOUT` beyond).
    pub query_timeout: Duration,
    /// Persisted queries kept (automatic persisted queries, least recently used dropped).
    pub persisted_queries: usize,
    /// Most operations one WebSocket connection runs at once (`TOO_MANY_SUBSCRIPTIONS`
    /// beyond, the connection and its other subscriptions kept).
    pub max_subscriptions_per_connection: usize,
    /// Most WebSocket connections the process holds at once, initialised or not
    /// (`TOO_MANY_CONNECTIONS` with HTTP 503 beyond, at the upgrade).
    pub max_websocket_connections: usize,
    /// Longest a WebSocket connection may wait before its `connection_init` (closed with 4408
    /// beyond).
    pub ws_init_timeout: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        crate::settings::QueryApiSettings::default().api()
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub schema: GallerySchema,
    pub keys: Arc<TokenKeys>,
    pub read: ReadModel,
    pub feed: ChangeFeed,
    pub settings: ApiSettings,
    /// Stored images and their signed URLs.
    pub media: Media,
    /// The WebSocket connections open, against `settings.max_websocket_connections`.
    pub(crate) connections: Connections,
}

impl ApiState {
    /// The API over `read` and `writes`: its cache follows `feed`; it serves the images of
    /// `media` and signs their URLs.
    pub fn new(
        read: ReadModel,
        writes: Writes,
        keys: Arc<TokenKeys>,
        feed: ChangeFeed,
        settings: ApiSettings,
        media: Media,
    ) -> Self {
        let cache = HotCache::new(settings.cache);
        feed.observe(Arc::new(cache.clone()));
        Self {
            schema: build_schema(
                read.clone(),
                writes,
                cache,
                feed.clone(),
                media.urls.clone(),
                &settings,
            ),
            keys,
            read,
            feed,
            connections: Connections::new(settings.max_websocket_connections),
            settings,
            media,
        }
    }
}

impl FromRef<ApiState> for Media {
    fn from_ref(state: &ApiState) -> Self {
        state.media.clone()
    }
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

pub fn router(state: ApiState) -> Router {
    // GraphiQL explores the schema by introspection: without it, there is nothing to show.
    let graphql_route = if state.settings.introspection {
        get(graphiql).post(graphql)
    } else {
        axum::routing::post(graphql)
    };
    Router::new()
        .route("/graphql", graphql_route)
        .route("/graphql/ws", get(crate::ws::graphql_ws))
        .merge(media_routes())
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
}

/// A request refused before it reached the schema, as a GraphQL error response.
pub(crate) fn refused(status: StatusCode, error: &QueryError) -> Response {
    let error = error.extend();
    let server_error = ServerError {
        message: error.message,
        source: None,
        locations: vec![],
        path: vec![],
        extensions: error.extensions,
    };
    let response: GraphQLResponse = async_graphql::Response::from_errors(vec![server_error]).into();
    (status, response).into_response()
}

/// The answer to a request whose body is larger than `limit` bytes (announced or sent): the
/// HTTP edge that serves the API cuts every body at one limit and answers with this.
pub fn payload_too_large(limit: u64) -> Response {
    refused(
        StatusCode::PAYLOAD_TOO_LARGE,
        &QueryError::BodyTooLarge { limit },
    )
}

/// The answer to a request whose body did not arrive within `after`.
pub fn body_too_slow(after: Duration) -> Response {
    let waited_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
    refused(
        StatusCode::REQUEST_TIMEOUT,
        &QueryError::BodyTooSlow { waited_ms },
    )
}

/// Parses a JSON or multipart GraphQL request; uploaded files are spooled to temporary files
/// (the HTTP edge limits the whole body).
async fn parse(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<async_graphql::Request, (StatusCode, QueryError)> {
    let body = body.map_err(|rejection| (rejection.status(), QueryError::Body(rejection)))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    parse_request(content_type, body).await
}

/// Reads the body of `POST /graphql` (its `Content-Type` tells JSON from multipart) into one
/// GraphQL request, or the status and error it is refused with. The document is not parsed
/// yet: the schema's protection does that, within its budget. A JSON batch is refused from
/// its first byte, before it is parsed.
pub async fn parse_request(
    content_type: Option<&str>,
    body: Bytes,
) -> Result<async_graphql::Request, (StatusCode, QueryError)> {
    let multipart = content_type.is_some_and(|t| {
        t.trim_start()
            .get(..10)
            .is_some_and(|kind| kind.eq_ignore_ascii_case("multipart/"))
    });
    if !multipart && is_json_array(&body) {
        // Parsed, a body-sized array of small operations would cost many times its size.
        return Err((StatusCode::BAD_REQUEST, QueryError::BatchNotSupported));
    }
    let options = MultipartOptions::default().max_num_files(MAX_FILES);
    let bad = |e: async_graphql::ParseRequestError| match e {
        async_graphql::ParseRequestError::PayloadTooLarge => {
            (StatusCode::PAYLOAD_TOO_LARGE, QueryError::from(e))
        }
        async_graphql::ParseRequestError::UnsupportedBatch => {
            (StatusCode::BAD_REQUEST, QueryError::BatchNotSupported)
        }
        _ => (StatusCode::BAD_REQUEST, QueryError::from(e)),
    };
    let batch = async_graphql::http::receive_batch_body(
        content_type,
        async_graphql::futures_util::io::Cursor::new(body),
        options,
    )
    .await
    .map_err(bad)?;
    // A multipart request's `operations` may still be a batch.
    batch.into_single().map_err(bad)
}

/// Whether a JSON body is an array (a batch of operations), from its first byte that is not
/// whitespace.
fn is_json_array(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|b| *b == b'[')
}

#[tracing::instrument(skip_all)]
async fn graphql(
    State(state): State<ApiState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => match state.keys.verify_header(value.to_str().ok()) {
            Ok(principal) => Some(principal),
            Err(e) => return refused(StatusCode::OK, &QueryError::from(e)),
        },
    };
    let request = match parse(&headers, body).await {
        Ok(request) => request,
        Err((status, e)) => return refused(status, &e),
    };
    let positions = match consistency_tokens(&headers) {
        Ok(p) => p,
        Err(e) => return refused(StatusCode::BAD_REQUEST, &e),
    };
    let reached = match consistency::wait(
        &state.feed,
        &state.read,
        &positions,
        state.settings.consistency_timeout,
    )
    .await
    {
        Ok(reached) => reached,
        Err(e) => return refused(StatusCode::OK, &e),
    };
    let viewer = Viewer(caller.as_ref().map(|p| p.user.clone()));
    let client = ClientAddr(peer.map(|p| p.0.0.ip()));
    let request = request
        .data(viewer)
        .data(Caller(caller))
        .data(client)
        .data(reached);
    GraphQLResponse::from(state.schema.execute(request).await).into_response()
}

/// Every position of the `X-Consistency-Token` headers (repeated, or comma separated).
fn consistency_tokens(headers: &HeaderMap) -> Result<Vec<Position>, QueryError> {
    let mut positions = Vec::new();
    for value in headers.get_all(consistency::HEADER) {
        let raw = value.to_str().map_err(|_| QueryError::InvalidArgument {
            argument: "consistency token",
            reason: "must be <topic>:<partition>:<offset>",
        })?;
        positions.extend(Position::parse_list(raw)?);
    }
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_told_by_its_first_byte_that_is_not_whitespace() {
        for batch in ["[]", " \r\n\t[{\"query\": \"{ a }\"}]"] {
            assert!(is_json_array(batch.as_bytes()), "{batch:?}");
        }
        for single in ["", "  ", "{\"query\": \"[\"}", "\"[\"", "\u{c}["] {
            assert!(!is_json_array(single.as_bytes()), "{single:?}");
        }
    }
}
