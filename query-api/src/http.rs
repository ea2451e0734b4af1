//! The GraphQL endpoint over axum, with GraphiQL for development. It takes JSON requests and
//! multipart requests (the GraphQL multipart request spec, for uploads).

use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::http::{GraphiQLSource, MultipartOptions};
use async_graphql::{ErrorExtensions, ServerError};
use async_graphql_axum::{GraphQLProtocol, GraphQLResponse, GraphQLWebSocket};
use axum::Router;
use axum::body::Bytes;
use axum::extract::WebSocketUpgrade;
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
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            consistency_timeout: Duration::from_secs(5),
            cache: CacheSettings::default(),
            max_depth: 16,
            max_complexity: 500,
            max_document_bytes: 65_536,
            max_document_tokens: 10_000,
            introspection: true,
            query_timeout: Duration::from_secs(10),
            persisted_queries: 1_000,
        }
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
        .route("/graphql/ws", get(graphql_ws))
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

/// The read buffer of a WebSocket connection: what an idle subscription holds for reading.
/// Client messages are small (`subscribe`, `ping`, `complete`); a larger one is read in as
/// many chunks, into room reserved for it alone.
const WS_READ_BUFFER_BYTES: usize = 1024;

/// The size at which a WebSocket connection's writes are flushed.
const WS_WRITE_BUFFER_BYTES: usize = 4 * 1024;

/// Room beyond the document in a WebSocket message: variables and the protocol's envelope.
const WS_ENVELOPE_BYTES: usize = 64 * 1024;

/// Subscriptions over WebSocket (`graphql-transport-ws`, or the older `graphql-ws`). The
/// bearer token goes in the `connection_init` payload: `{"authorization": "Bearer <token>"}`;
/// a bad one closes the connection.
async fn graphql_ws(
    State(state): State<ApiState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let client = ClientAddr(peer.map(|p| p.0.0.ip()));
    let schema = state.schema.clone();
    let keys = state.keys.clone();
    // The largest message a client needs to send: a document within its budget, with room for
    // its variables and the protocol's envelope. Anything larger is refused by the WebSocket
    // layer before it is buffered whole (its default is 64 MiB).
    let max_message = state
        .settings
        .max_document_bytes
        .saturating_add(WS_ENVELOPE_BYTES);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        // GraphQL messages are small: buffers sized for them, not tungstenite's 128 KiB
        // defaults, which made every idle subscription cost about 150 KB.
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(WS_WRITE_BUFFER_BYTES)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |stream| {
            GraphQLWebSocket::new(stream, schema, protocol)
                .on_connection_init(move |payload| async move {
                    connection_data(&keys, &payload, client)
                })
                .serve()
        })
}

/// The session data of a WebSocket connection: who is asking, from `connection_init`.
fn connection_data(
    keys: &TokenKeys,
    payload: &serde_json::Value,
    client: ClientAddr,
) -> async_graphql::Result<async_graphql::Data> {
    let header = payload
        .get("authorization")
        .or_else(|| payload.get("Authorization"));
    let caller = match header {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(
            keys.verify_header(value.as_str())
                .map_err(|e| QueryError::from(e).extend())?,
        ),
    };
    let mut data = async_graphql::Data::default();
    data.insert(Viewer(caller.as_ref().map(|p| p.user.clone())));
    data.insert(Caller(caller));
    data.insert(client);
    Ok(data)
}

/// A request refused before it reached the schema, as a GraphQL error response.
fn refused(status: StatusCode, error: &QueryError) -> Response {
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
/// yet: the schema's protection does that, within its budget.
pub async fn parse_request(
    content_type: Option<&str>,
    body: Bytes,
) -> Result<async_graphql::Request, (StatusCode, QueryError)> {
    let options = MultipartOptions::default().max_num_files(MAX_FILES);
    let bad = |e: async_graphql::ParseRequestError| {
        let status = match e {
            async_graphql::ParseRequestError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, QueryError::from(e))
    };
    let batch = async_graphql::http::receive_batch_body(
        content_type,
        async_graphql::futures_util::io::Cursor::new(body),
        options,
    )
    .await
    .map_err(bad)?;
    batch.into_single().map_err(bad)
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
