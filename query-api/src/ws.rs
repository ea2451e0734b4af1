//! GraphQL over WebSocket (`/graphql/ws`: `graphql-transport-ws`, or the older `graphql-ws`)
//! and what bounds an idle connection's cost, which nothing else does (it sends nothing, so no
//! body or document limit ever applies):
//!
//! - the process holds at most `max_websocket_connections` at once ([`Connections`]): one
//!   more is refused at the upgrade, before any WebSocket state exists, with HTTP 503,
//!   `Retry-After` and the code `TOO_MANY_CONNECTIONS`; a place is freed when its connection
//!   ends, however it ends;
//! - a connection that sends no `connection_init` within `ws_init_timeout` is closed with
//!   4408, as `graphql-transport-ws` specifies, so that connections which never start cannot
//!   keep those places for long.
//!
//! A connection that is initialised and then runs nothing is bounded by the first alone; its
//! subscriptions by `max_subscriptions_per_connection` ([`crate::protect`]).
//!
//! There is no cap per client address: visitors behind one NAT or carrier-grade NAT (a
//! school, an office, a mobile network) share an address, and on launch day thousands of them
//! may watch the same artworks. A cap low enough to stop one hostile host would refuse them;
//! one high enough for them would not stop a host that has many addresses anyway. Abusive
//! addresses are better refused in front of the API (a load balancer's connection limits).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use gallery_commands::TokenKeys;

use crate::error::QueryError;
use crate::http::{ApiState, refused};
use crate::protect::{Slot, Slots, SubscriptionSlots};
use crate::schema::{Caller, ClientAddr, GallerySchema, Viewer};

/// The read buffer of a WebSocket connection: what an idle subscription holds for reading.
/// Client messages are small (`subscribe`, `ping`, `complete`); a larger one is read in as
/// many chunks, into room reserved for it alone.
const WS_READ_BUFFER_BYTES: usize = 1024;

/// The size at which a WebSocket connection's writes are flushed.
const WS_WRITE_BUFFER_BYTES: usize = 4 * 1024;

/// Room beyond the document in a WebSocket message: variables and the protocol's envelope.
const WS_ENVELOPE_BYTES: usize = 64 * 1024;

/// `graphql-transport-ws`'s close code for a connection that sent no `connection_init` in
/// time.
pub const INIT_TIMEOUT_CLOSE_CODE: u16 = 4408;

/// The `Retry-After` of a connection refused for want of a place, in seconds: places free as
/// watchers leave, which a client cannot know; a few seconds spread the retries of a crowd.
const RETRY_AFTER_SECS: u64 = 5;

/// The WebSocket connections of the process: at most `limit` at once.
#[derive(Debug, Clone)]
pub(crate) struct Connections(Slots);

impl Connections {
    pub(crate) fn new(limit: usize) -> Self {
        Self(Slots::new(limit))
    }

    /// A place for one more connection, counted in
    /// [`crate::metrics::WEBSOCKET_CONNECTIONS`] until dropped; `None` when all are taken.
    fn open(&self) -> Option<Open> {
        let slot = self.0.take()?;
        metrics::gauge!(crate::metrics::WEBSOCKET_CONNECTIONS).increment(1.0);
        Some(Open { _slot: slot })
    }

    /// The answer to an upgrade when every place is taken: 503, `Retry-After` and the code
    /// `TOO_MANY_CONNECTIONS`, counted in [`crate::metrics::ERRORS`].
    fn refusal(&self) -> Response {
        let error = QueryError::TooManyConnections {
            limit: self.0.limit(),
        };
        metrics::counter!(crate::metrics::ERRORS, "code" => error.code()).increment(1);
        let mut response = refused(StatusCode::SERVICE_UNAVAILABLE, &error);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        response
    }
}

/// An open connection's place, until dropped (with its connection, or its upgrade if that
/// never completes).
struct Open {
    _slot: Slot,
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::WEBSOCKET_CONNECTIONS).decrement(1.0);
    }
}

/// Subscriptions over WebSocket. The bearer token goes in the `connection_init` payload:
/// `{"authorization": "Bearer <token>"}`; a bad one closes the connection. A connection takes
/// one of the process's places before it is upgraded (503 when none is left), must send
/// `connection_init` within `ws_init_timeout` (4408 otherwise), and runs at most
/// `max_subscriptions_per_connection` operations at once; one more is refused on its own.
pub(crate) async fn graphql_ws(
    State(state): State<ApiState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(open) = state.connections.open() else {
        return state.connections.refusal();
    };
    let client = ClientAddr(peer.map(|p| p.0.0.ip()));
    let session = Session {
        schema: state.schema.clone(),
        keys: state.keys.clone(),
        client,
        subscriptions: state.settings.max_subscriptions_per_connection,
        init_timeout: state.settings.ws_init_timeout,
    };
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
        .on_upgrade(move |socket| async move {
            session.serve(socket, protocol).await;
            drop(open);
        })
}

/// What one connection is served with.
struct Session {
    schema: GallerySchema,
    keys: Arc<TokenKeys>,
    client: ClientAddr,
    subscriptions: usize,
    init_timeout: Duration,
}

impl Session {
    /// Serves the connection until either side ends it; closes it with 4408 if no
    /// `connection_init` came within `init_timeout`.
    async fn serve(self, socket: WebSocket, protocol: GraphQLProtocol) {
        let Session {
            schema,
            keys,
            client,
            subscriptions,
            init_timeout,
        } = self;
        let (mut sink, stream) = socket.split();
        let initialised = Arc::new(AtomicBool::new(false));
        let timed_out = Arc::new(AtomicBool::new(false));
        // The client's messages end at the deadline unless `connection_init` came before it:
        // the protocol then ends too, and the close is sent below.
        let deadline = {
            let (initialised, timed_out) = (initialised.clone(), timed_out.clone());
            async move {
                tokio::time::sleep(init_timeout).await;
                if initialised.load(Ordering::Acquire) {
                    std::future::pending::<()>().await;
                }
                timed_out.store(true, Ordering::Release);
            }
        };
        let input = stream.take_until(deadline);
        GraphQLWebSocket::new_with_pair(&mut sink, input, schema, protocol)
            .on_connection_init(move |payload| async move {
                initialised.store(true, Ordering::Release);
                let mut data = connection_data(&keys, &payload, client)?;
                data.insert(SubscriptionSlots::new(subscriptions));
                Ok(data)
            })
            .serve()
            .await;
        if timed_out.load(Ordering::Acquire) {
            metrics::counter!(crate::metrics::WEBSOCKET_INIT_TIMEOUTS).increment(1);
            let close = CloseFrame {
                code: INIT_TIMEOUT_CLOSE_CODE,
                reason: "Connection initialisation timeout".into(),
            };
            // The client may be gone already: nothing is left to tell it.
            let _ = sink.send(Message::Close(Some(close))).await;
        }
    }
}

/// The session data of a WebSocket connection: who is asking, from `connection_init`.
fn connection_data(
    keys: &TokenKeys,
    payload: &serde_json::Value,
    client: ClientAddr,
) -> async_graphql::Result<async_graphql::Data> {
    use async_graphql::ErrorExtensions;
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
