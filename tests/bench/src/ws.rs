//! A GraphQL subscription client (`graphql-transport-ws` over WebSocket): one connection, its
//! subscriptions' answers handed to a channel each, stamped with the instant they arrived, so
//! a measurement is not delayed by whoever reads them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// An answer of a subscription: its `payload` (`{"data": ..}` or `{"errors": ..}`), or `None`
/// when the server completed it, and when it arrived.
pub type Arrival = (Option<Value>, Instant);

type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Arrival>>>>;
type Sink = futures::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// One WebSocket connection to the query API.
pub struct Subscriptions {
    sink: Sink,
    routes: Routes,
    reader: tokio::task::JoinHandle<()>,
}

impl Subscriptions {
    /// Connects to `ws://<addr>/graphql/ws` and completes `connection_init` (with the bearer
    /// token when there is one).
    pub async fn connect(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<Self> {
        let mut request = format!("ws://{addr}/graphql/ws").into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .context("could not open the subscriptions' WebSocket")?;
        let (mut sink, mut stream) = socket.split();
        let payload = token.map_or(
            json!({}),
            |t| json!({"authorization": format!("Bearer {t}")}),
        );
        let init = json!({"type": "connection_init", "payload": payload});
        sink.send(Message::Text(init.to_string().into())).await?;
        let ack = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .context("no connection_ack within 10 s")?
            .context("the WebSocket closed before connection_ack")??;
        let ack: Value = match ack {
            Message::Text(text) => serde_json::from_str(&text)?,
            other => anyhow::bail!("expected connection_ack, got {other:?}"),
        };
        anyhow::ensure!(
            ack["type"] == "connection_ack",
            "expected connection_ack, got {ack}"
        );
        let routes: Routes = Arc::default();
        let reader = tokio::spawn(read(stream, routes.clone()));
        Ok(Self {
            sink,
            routes,
            reader,
        })
    }

    /// Starts subscription `id`; its answers arrive on the returned channel.
    pub async fn subscribe(
        &mut self,
        id: &str,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<mpsc::UnboundedReceiver<Arrival>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), tx);
        let message = json!({"id": id, "type": "subscribe",
            "payload": {"query": query, "variables": variables}});
        self.sink
            .send(Message::Text(message.to_string().into()))
            .await?;
        Ok(rx)
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Hands each `next`, `error` and `complete` to its subscription's channel.
async fn read(
    mut stream: futures::stream::SplitStream<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    >,
    routes: Routes,
) {
    while let Some(Ok(message)) = stream.next().await {
        let at = Instant::now();
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let Some(id) = value["id"].as_str() else {
            continue;
        };
        let payload = match value["type"].as_str() {
            Some("next") => Some(value["payload"].clone()),
            Some("error") => Some(json!({"errors": value["payload"]})),
            Some("complete") => None,
            _ => continue,
        };
        let routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = routes.get(id) {
            let _ = tx.send((payload, at));
        }
    }
    // The connection is gone: every subscription ends.
    routes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
}
