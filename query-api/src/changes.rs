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

pub use gallery_schemas::read_model::{
    CHANNEL, Change, PROJECTION, SCYLLA_PROJECTION, TopicPartition,
};

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
    /// Positions every projection the reads depend on has announced.
    offsets: watch::Sender<HashMap<TopicPartition, i64>>,
    /// What each projection announced, when more than one is followed.
    heard: std::sync::Mutex<HashMap<String, HashMap<TopicPartition, i64>>>,
    /// The topics the Scylla projector folds, when the interactions are read from Scylla.
    scylla_topics: Vec<String>,
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
    /// A feed for reads from Postgres only.
    pub fn new() -> Self {
        Self::following(Vec::new())
    }

    /// A feed for reads of the interactions from Scylla, whose projector folds `topics`: a
    /// position of those is announced once both the Postgres and the Scylla projections have
    /// announced it.
    pub fn with_scylla(topics: Vec<String>) -> Self {
        Self::following(topics)
    }

    fn following(scylla_topics: Vec<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                offsets: watch::channel(HashMap::new()).0,
                heard: std::sync::Mutex::new(HashMap::new()),
                scylla_topics,
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
    pub fn offsets(&self) -> watch::Receiver<HashMap<TopicPartition, i64>> {
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
        let reached = self.reached(
            change.projection.as_deref().unwrap_or(PROJECTION),
            &change.offsets,
        );
        if !reached.is_empty() {
            self.inner.offsets.send_modify(|known| {
                for (partition, next) in reached {
                    let at = known.entry(partition).or_insert(next);
                    *at = (*at).max(next);
                }
            });
        }
        let _ = self.inner.changes.send(Arc::new(change));
    }

    /// Records `offsets` announced by `projection`; returns the positions of those partitions
    /// that every projection the reads depend on has now announced.
    fn reached(
        &self,
        projection: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Vec<(TopicPartition, i64)> {
        let scylla = &self.inner.scylla_topics;
        if scylla.is_empty() {
            return match projection {
                PROJECTION => offsets.to_vec(),
                _ => Vec::new(),
            };
        }
        if projection != PROJECTION && projection != SCYLLA_PROJECTION {
            return Vec::new();
        }
        let Ok(mut heard) = self.inner.heard.lock() else {
            return Vec::new();
        };
        let known = heard.entry(projection.to_owned()).or_default();
        for (partition, next) in offsets {
            let at = known.entry(partition.clone()).or_insert(*next);
            *at = (*at).max(*next);
        }
        let of = |name: &str, partition: &TopicPartition| {
            heard.get(name).and_then(|k| k.get(partition)).copied()
        };
        offsets
            .iter()
            .filter_map(|(partition, _)| {
                let postgres = of(PROJECTION, partition)?;
                let next = if scylla.contains(&partition.0) {
                    postgres.min(of(SCYLLA_PROJECTION, partition)?)
                } else {
                    postgres
                };
                Some((partition.clone(), next))
            })
            .collect()
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

    fn announced(projection: &str, topic: &str, next: i64) -> Change {
        Change {
            projection: Some(projection.to_owned()),
            offsets: vec![((topic.to_owned(), 0), next)],
            ..Change::default()
        }
    }

    fn known(feed: &ChangeFeed, topic: &str) -> Option<i64> {
        feed.offsets().borrow().get(&(topic.to_owned(), 0)).copied()
    }

    #[tokio::test]
    async fn with_scylla_a_folded_position_is_reached_once_both_projections_announced_it() {
        let feed = ChangeFeed::with_scylla(vec!["interactions".into()]);
        feed.publish(announced(PROJECTION, "interactions", 10))
            .await;
        assert_eq!(
            known(&feed, "interactions"),
            None,
            "Scylla has said nothing"
        );
        feed.publish(announced(SCYLLA_PROJECTION, "interactions", 7))
            .await;
        assert_eq!(known(&feed, "interactions"), Some(7), "the smaller of both");
        feed.publish(announced(SCYLLA_PROJECTION, "interactions", 12))
            .await;
        assert_eq!(known(&feed, "interactions"), Some(10));
        // Topics Scylla does not fold follow Postgres alone; other names count for nothing.
        feed.publish(announced(PROJECTION, "catalog", 3)).await;
        assert_eq!(known(&feed, "catalog"), Some(3));
        feed.publish(announced("rebuild-read_v2", "catalog", 9))
            .await;
        assert_eq!(known(&feed, "catalog"), Some(3));
    }

    #[tokio::test]
    async fn without_scylla_only_the_postgres_projection_counts() {
        let feed = ChangeFeed::new();
        feed.publish(announced(SCYLLA_PROJECTION, "interactions", 7))
            .await;
        assert_eq!(known(&feed, "interactions"), None);
        feed.publish(announced(PROJECTION, "interactions", 5)).await;
        assert_eq!(known(&feed, "interactions"), Some(5));
    }
}
