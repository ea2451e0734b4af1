//! A `graphql-transport-ws` client for the subscription tests.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::App;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/graphql/ws` with the `graphql-transport-ws` subprotocol (no `connection_init` yet).
pub async fn open(app: &App) -> Socket {
    open_url(&app.graphql_url()).await
}

/// Opens the WebSocket endpoint of the GraphQL API at `graphql` (its `http://.../graphql`)
/// with the `graphql-transport-ws` subprotocol (no `connection_init` yet).
pub async fn open_url(graphql: &str) -> Socket {
    try_open_url(graphql).await.unwrap()
}

/// [`open_url`], or the error of the upgrade (a refusal's status, headers and body in
/// [`tokio_tungstenite::tungstenite::Error::Http`]).
pub async fn try_open_url(graphql: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let url = graphql.replace("http://", "ws://") + "/ws";
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

/// The status, `Retry-After` and `extensions.code` of an upgrade refused over HTTP; `None` if
/// `error` is no such refusal.
pub fn refusal(error: &tokio_tungstenite::tungstenite::Error) -> Option<(u16, String, String)> {
    let tokio_tungstenite::tungstenite::Error::Http(response) = error else {
        return None;
    };
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = serde_json::from_slice(response.body().as_deref()?).ok()?;
    let code = body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Some((response.status().as_u16(), retry_after, code))
}

/// The close code the server ends `socket` with (`None` if it ends without a close frame),
/// skipping other messages, within `within`; `Err` if it is still open then.
pub async fn close_code(socket: &mut Socket, within: Duration) -> Result<Option<u16>, String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Err(format!("still open after {within:?}")),
            Ok(Some(Ok(Message::Close(frame)))) => return Ok(frame.map(|f| u16::from(f.code))),
            Ok(None | Some(Err(_))) => return Ok(None),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Opens `/graphql/ws` and completes `connection_init` with `token`.
pub async fn connect(app: &App, token: Option<&str>) -> Socket {
    connect_url(&app.graphql_url(), token).await
}

/// [`connect`] to the GraphQL API at `graphql` (its `http://.../graphql`).
pub async fn connect_url(graphql: &str, token: Option<&str>) -> Socket {
    let mut socket = open_url(graphql).await;
    let payload = token.map_or(
        json!({}),
        |t| json!({"authorization": format!("Bearer {t}")}),
    );
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": payload}),
    )
    .await;
    assert_eq!(receive(&mut socket).await["type"], "connection_ack");
    socket
}

/// Sends `subscribe` of `query` with `variables` under `id`.
pub async fn subscribe(socket: &mut Socket, id: &str, query: &str, variables: Value) {
    send(
        socket,
        json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}),
    )
    .await;
}

/// `extensions.code` of the first error of a `next` message.
pub fn error_code(message: &Value) -> &str {
    message["payload"]["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

pub async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON message (pings skipped), within 30 s.
pub async fn receive(socket: &mut Socket) -> Value {
    receive_within(socket, Duration::from_secs(30))
        .await
        .expect("a message within 30 s")
}

/// The next JSON message (pings skipped) if one comes within `within`.
pub async fn receive_within(socket: &mut Socket, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()?
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] != "ping" {
                return Some(value);
            }
        }
    }
}
