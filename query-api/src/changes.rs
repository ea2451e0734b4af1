//! The read model's change feed: the projection announces every committed batch on the
//! Postgres channel `read_model` (`NOTIFY` inside the batch's transaction, so only commits are
//! heard). One connection per API process listens; read-your-writes waits, cache invalidation
//! and subscriptions all follow it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

/// The channel the projection notifies (`gallery_projections`' `NOTIFY_CHANNEL`).
pub const CHANNEL: &str = "read_model";

/// The projection whose offsets tell what the read model holds.
pub const PROJECTION: &str = "read-model";

/// A (topic, partition) pair.
pub type Partition = (String, i32);

/// What one committed batch changed (one notification).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// The projection that committed (offsets of others are not the read model's).
    pub projection: Option<String>,
    /// (topic, partition) -> next offset to apply.
    pub offsets: Vec<(Partition, i64)>,
    /// Artworks whose details or counts may have changed.
    pub artworks: Vec<String>,
    /// Generation jobs that may have changed.
    pub jobs: Vec<Uuid>,
    /// Anything may have changed (the list did not fit, or notifications were missed).
    pub everything: bool,
}

impl Change {
    /// Parses a notification payload: lines `p <projection>`, `o <topic> <partition> <next>`,
    /// `a <artwork>`, `j <job>` and `*`. Lines it does not understand are skipped.
    pub fn parse(payload: &str) -> Change {
        let mut change = Change::default();
        for line in payload.lines() {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("o"), Some(topic), Some(partition), Some(next)) => {
                    if let (Ok(p), Ok(n)) = (partition.parse(), next.parse()) {
                        change.offsets.push(((topic.to_owned(), p), n));
                    }
                }
                (Some("p"), Some(name), None, None) => change.projection = Some(name.to_owned()),
                (Some("a"), Some(id), None, None) => change.artworks.push(id.to_owned()),
                (Some("j"), Some(id), None, None) => {
                    if let Ok(id) = Uuid::parse_str(id) {
                        change.jobs.push(id);
                    }
                }
                (Some("*"), None, None, None) => change.everything = true,
                _ => tracing::debug!(line, "unknown read-model notification line"),
            }
        }
        change
    }

    /// Whether `artwork` may have changed.
    pub fn touches_artwork(&self, artwork: &str) -> bool {
        self.everything || self.artworks.iter().any(|a| a == artwork)
    }

    /// Whether `job` may have changed.
    pub fn touches_job(&self, job: Uuid) -> bool {
        self.everything || self.jobs.contains(&job)
    }
}

/// Something to tell before anyone else hears of a change (the caches).
pub trait ChangeObserver: Send + Sync + std::fmt::Debug {
    /// `change` is committed: forget what it makes stale.
    fn changed<'a>(&'a self, change: &'a Change) -> futures::future::BoxFuture<'a, ()>;

    /// The feed starts (`true`) or stops (`false`) listening; while it does not listen,
    /// nothing tells of changes.
    fn listening(&self, up: bool);
}

/// The feed, shared by the handlers (cheap to clone).
#[derive(Debug, Clone)]
pub struct ChangeFeed {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    offsets: watch::Sender<HashMap<Partition, i64>>,
    changes: broadcast::Sender<Arc<Change>>,
    connected: AtomicBool,
    observers: std::sync::RwLock<Vec<Arc<dyn ChangeObserver>>>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl ChangeFeed {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                offsets: watch::channel(HashMap::new()).0,
                changes: broadcast::channel(1024).0,
                connected: AtomicBool::new(false),
                observers: std::sync::RwLock::new(Vec::new()),
            }),
        }
    }

    /// Registers `observer`, told of every change before waiters and subscribers.
    pub fn observe(&self, observer: Arc<dyn ChangeObserver>) {
        if let Ok(mut list) = self.inner.observers.write() {
            list.push(observer);
        }
    }

    /// Whether the feed is listening now (while it is not, nothing is invalidated on time).
    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// The next offsets the feed has heard of.
    pub fn offsets(&self) -> watch::Receiver<HashMap<Partition, i64>> {
        self.inner.offsets.subscribe()
    }

    /// Every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.inner.changes.subscribe()
    }

    fn observers(&self) -> Vec<Arc<dyn ChangeObserver>> {
        self.inner
            .observers
            .read()
            .map(|list| list.clone())
            .unwrap_or_default()
    }

    /// Announces `change`: observers (caches) first, then waiters, then subscribers.
    pub async fn publish(&self, change: Change) {
        for o in self.observers() {
            o.changed(&change).await;
        }
        let ours = change.projection.as_deref().is_none_or(|p| p == PROJECTION);
        if ours && !change.offsets.is_empty() {
            self.inner.offsets.send_modify(|known| {
                for (partition, next) in &change.offsets {
                    let at = known.entry(partition.clone()).or_insert(*next);
                    *at = (*at).max(*next);
                }
            });
        }
        let _ = self.inner.changes.send(Arc::new(change));
    }

    fn set_connected(&self, connected: bool) {
        for o in self.observers() {
            o.listening(connected);
        }
        self.inner.connected.store(connected, Ordering::Release);
    }

    /// Listens on `url` until `stop` resolves, reconnecting after a second when the
    /// connection is lost. Each (re)connection announces "everything changed", since
    /// notifications may have been missed meanwhile.
    pub async fn listen(self, url: String, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = self.listen_once(&url) => {}
            }
            self.set_connected(false);
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        self.set_connected(false);
    }

    async fn listen_once(&self, url: &str) {
        let (client, mut connection) = match tokio_postgres::connect(url, NoTls).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "read-model change feed cannot connect");
                return;
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_owned()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "read-model change feed lost its connection");
                        break;
                    }
                }
            }
        });
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            tracing::warn!(error = %e, "read-model change feed cannot listen");
            driver.abort();
            return;
        }
        self.set_connected(true);
        self.publish(Change {
            everything: true,
            ..Change::default()
        })
        .await;
        tracing::info!("listening to read-model changes");
        while let Some(payload) = rx.recv().await {
            self.publish(Change::parse(&payload)).await;
        }
        drop(client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_parses_into_offsets_artworks_and_jobs() {
        let job = Uuid::nil();
        let change = Change::parse(&format!(
            "p read-model\no gallery.interactions 4 18\na sunflowers\nj {job}\nzzz\n"
        ));
        assert_eq!(
            change.offsets,
            vec![(("gallery.interactions".to_owned(), 4), 18)]
        );
        assert_eq!(change.projection.as_deref(), Some(PROJECTION));
        assert_eq!(change.artworks, vec!["sunflowers".to_owned()]);
        assert!(change.touches_job(job));
        assert!(!change.touches_artwork("irises"));
        assert!(Change::parse("*\n").touches_artwork("irises"));
    }
}
