//! The cache of hot reads (artwork details and counts), in front of the read model. The
//! change feed invalidates an entry as soon as the projection commits a change to it; a TTL
//! is the safety net. While the feed does not listen the cache is bypassed (and emptied).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use moka::future::Cache;

use crate::changes::{Change, ChangeObserver};
use crate::read::{ArtworkRecord, Stats};

/// How the cache is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Entries per kind (details, counts); 0 turns the cache off.
    pub capacity: u64,
    /// Longest an entry lives, changed or not.
    pub ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            ttl: Duration::from_secs(60),
        }
    }
}

/// Artwork details (`None`: not in the catalog) and counts by artwork id.
#[derive(Debug, Clone)]
pub struct HotCache {
    details: Cache<String, Option<Arc<ArtworkRecord>>>,
    stats: Cache<String, Stats>,
    /// Bumped on every change, so a read that raced with a change is not kept.
    epoch: Arc<AtomicU64>,
    enabled: Arc<AtomicBool>,
    capacity: u64,
}

/// The epoch a read started in, to hand back with what it read.
#[derive(Debug, Clone, Copy)]
pub struct Epoch(u64);

impl HotCache {
    pub fn new(settings: CacheSettings) -> Self {
        Self {
            details: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.ttl)
                .build(),
            stats: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.ttl)
                .build(),
            epoch: Arc::new(AtomicU64::new(0)),
            enabled: Arc::new(AtomicBool::new(false)),
            capacity: settings.capacity,
        }
    }

    /// Turns the cache on without a change feed (tests of expiry).
    #[cfg(test)]
    fn enabled(self) -> Self {
        self.enabled.store(true, Ordering::Release);
        self
    }

    fn on(&self) -> bool {
        self.capacity > 0 && self.enabled.load(Ordering::Acquire)
    }

    /// Call before reading the read model; hand the result to `put_*` with it.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::Acquire))
    }

    pub async fn stats(&self, id: &str) -> Option<Stats> {
        if !self.on() {
            return None;
        }
        self.stats.get(id).await
    }

    pub async fn details(&self, id: &str) -> Option<Option<Arc<ArtworkRecord>>> {
        if !self.on() {
            return None;
        }
        self.details.get(id).await
    }

    pub async fn put_stats(&self, id: &str, stats: Stats, read_at: Epoch) {
        if self.on() {
            self.stats.insert(id.to_owned(), stats).await;
            if self.epoch.load(Ordering::Acquire) != read_at.0 {
                // A change committed meanwhile: the value may predate it.
                self.stats.invalidate(id).await;
            }
        }
    }

    pub async fn put_details(&self, id: &str, record: Option<Arc<ArtworkRecord>>, read_at: Epoch) {
        if self.on() {
            self.details.insert(id.to_owned(), record).await;
            if self.epoch.load(Ordering::Acquire) != read_at.0 {
                self.details.invalidate(id).await;
            }
        }
    }

    fn clear(&self) {
        self.details.invalidate_all();
        self.stats.invalidate_all();
    }
}

impl ChangeObserver for HotCache {
    fn changed<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            if change.everything {
                self.clear();
                return;
            }
            for id in &change.artworks {
                self.details.invalidate(id).await;
                self.stats.invalidate(id).await;
            }
        })
    }

    fn listening(&self, up: bool) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.clear();
        self.enabled.store(up, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn likes(n: i64) -> Stats {
        Stats {
            likes: n,
            ..Stats::default()
        }
    }

    #[tokio::test]
    async fn an_entry_expires_after_its_ttl() {
        let cache = HotCache::new(CacheSettings {
            capacity: 10,
            ttl: Duration::from_millis(100),
        })
        .enabled();
        cache.put_stats("a", likes(3), cache.epoch()).await;
        assert_eq!(cache.stats("a").await.map(|s| s.likes), Some(3));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(cache.stats("a").await.map(|s| s.likes), None);
    }

    #[tokio::test]
    async fn a_change_invalidates_its_artworks_and_a_racing_read_is_not_kept() {
        let cache = HotCache::new(CacheSettings::default()).enabled();
        cache.put_stats("a", likes(1), cache.epoch()).await;
        cache.put_stats("b", likes(1), cache.epoch()).await;
        let before = cache.epoch();
        cache
            .changed(&Change {
                artworks: vec!["a".into()],
                ..Change::default()
            })
            .await;
        assert!(cache.stats("a").await.is_none());
        assert!(cache.stats("b").await.is_some());
        cache.put_stats("a", likes(1), before).await;
        assert!(cache.stats("a").await.is_none(), "read before the change");
    }

    #[tokio::test]
    async fn a_cache_whose_feed_is_down_is_bypassed() {
        let cache = HotCache::new(CacheSettings::default()).enabled();
        cache.put_stats("a", likes(1), cache.epoch()).await;
        cache.listening(false);
        assert!(cache.stats("a").await.is_none());
        cache.put_stats("a", likes(1), cache.epoch()).await;
        assert!(cache.stats("a").await.is_none());
    }
}
