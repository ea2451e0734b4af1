//! The cache of hot reads (artwork details, counts and viewers' flags), in front of the read
//! model. The change feed invalidates an entry as soon as the projection commits a change to
//! it; a TTL is the safety net. While the feed does not listen the cache is bypassed (and
//! emptied).
//!
//! A viewer's flags are kept per (artwork, user), so a change to an artwork cannot name the
//! entries it makes stale: instead each entry carries the epoch its read started in, and the
//! cache remembers the epoch of each artwork's last change (as long as an entry can live). An
//! entry read before its artwork's last change is stale and not returned. Should the record of
//! a change be evicted for room (not expired), every entry read before that change is taken
//! for stale.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use moka::future::Cache;
use moka::notification::RemovalCause;

use crate::changes::{Change, ChangeObserver};
use crate::read::{ArtworkRow, Stats};

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
        crate::settings::QueryApiSettings::default().api().cache
    }
}

/// A viewer's (liked, favorited) of an artwork, and the epoch its read started in.
#[derive(Debug, Clone, Copy)]
struct Flagged {
    flags: (bool, bool),
    read_in: u64,
}

/// Artwork details (`None`: not in the catalog) and counts by artwork id, viewers' flags by
/// (artwork id, user id).
#[derive(Debug, Clone)]
pub struct HotCache {
    details: Cache<String, Option<Arc<ArtworkRow>>>,
    stats: Cache<String, Stats>,
    flags: Cache<(String, String), Flagged>,
    /// The epoch of each artwork's last change.
    changed: Cache<String, u64>,
    /// Flags read before this epoch are stale: a change record after it was evicted for room.
    floor: Arc<AtomicU64>,
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
        let floor = Arc::new(AtomicU64::new(0));
        let evicted = floor.clone();
        Self {
            details: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.ttl)
                .build(),
            stats: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.ttl)
                .build(),
            flags: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.ttl)
                .build(),
            changed: Cache::builder()
                .max_capacity(settings.capacity)
                // At least as long as a flags entry read before the change can live.
                .time_to_live(settings.ttl)
                .eviction_listener(move |_, epoch, cause| {
                    if cause == RemovalCause::Size {
                        evicted.fetch_max(epoch, Ordering::AcqRel);
                    }
                })
                .build(),
            floor,
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

    pub async fn details(&self, id: &str) -> Option<Option<Arc<ArtworkRow>>> {
        if !self.on() {
            return None;
        }
        self.details.get(id).await
    }

    /// `user`'s (liked, favorited) of `artwork`, unless a change to the artwork was committed
    /// since it was read.
    pub async fn flags(&self, artwork: &str, user: &str) -> Option<(bool, bool)> {
        if !self.on() {
            return None;
        }
        let hit = self
            .flags
            .get(&(artwork.to_owned(), user.to_owned()))
            .await?;
        if hit.read_in < self.floor.load(Ordering::Acquire) {
            return None;
        }
        match self.changed.get(artwork).await {
            Some(changed) if hit.read_in < changed => None,
            _ => Some(hit.flags),
        }
    }

    pub async fn put_flags(&self, artwork: &str, user: &str, flags: (bool, bool), read_at: Epoch) {
        if self.on() {
            let key = (artwork.to_owned(), user.to_owned());
            self.flags
                .insert(
                    key.clone(),
                    Flagged {
                        flags,
                        read_in: read_at.0,
                    },
                )
                .await;
            if self.epoch.load(Ordering::Acquire) != read_at.0 {
                // A change committed meanwhile, and its record may be older than this entry.
                self.flags.invalidate(&key).await;
            }
        }
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

    pub async fn put_details(&self, id: &str, record: Option<Arc<ArtworkRow>>, read_at: Epoch) {
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
        self.flags.invalidate_all();
        self.changed.invalidate_all();
    }
}

impl ChangeObserver for HotCache {
    fn changed<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
            if change.everything {
                self.clear();
                return;
            }
            for id in &change.artworks {
                self.changed.insert(id.clone(), epoch).await;
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
    async fn a_change_to_an_artwork_makes_every_viewers_flags_of_it_stale() {
        let cache = HotCache::new(CacheSettings::default()).enabled();
        let before = cache.epoch();
        cache.put_flags("a", "ada", (true, false), before).await;
        cache.put_flags("a", "bob", (false, true), before).await;
        cache.put_flags("b", "ada", (true, true), before).await;
        assert_eq!(cache.flags("a", "ada").await, Some((true, false)));
        assert_eq!(cache.flags("a", "bob").await, Some((false, true)));
        cache
            .changed(&Change {
                artworks: vec!["a".into()],
                ..Change::default()
            })
            .await;
        assert_eq!(cache.flags("a", "ada").await, None);
        assert_eq!(cache.flags("a", "bob").await, None);
        assert_eq!(cache.flags("b", "ada").await, Some((true, true)));
        // Read before the change, stored after it: not kept. Read after it: kept.
        cache.put_flags("a", "cy", (true, false), before).await;
        assert_eq!(cache.flags("a", "cy").await, None, "read before the change");
        cache
            .put_flags("a", "ada", (false, false), cache.epoch())
            .await;
        assert_eq!(cache.flags("a", "ada").await, Some((false, false)));
        cache
            .changed(&Change {
                everything: true,
                ..Change::default()
            })
            .await;
        assert_eq!(cache.flags("a", "ada").await, None);
        assert_eq!(cache.flags("b", "ada").await, None);
    }

    #[tokio::test]
    async fn flags_read_before_a_change_whose_record_was_evicted_are_stale() {
        // Room for the one flags entry, not for the records of the changes that follow.
        let cache = HotCache::new(CacheSettings {
            capacity: 2,
            ttl: Duration::from_secs(60),
        })
        .enabled();
        cache
            .put_flags("a", "ada", (true, false), cache.epoch())
            .await;
        for id in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            cache
                .changed(&Change {
                    artworks: vec![id.into()],
                    ..Change::default()
                })
                .await;
        }
        cache.changed.run_pending_tasks().await;
        cache.flags.run_pending_tasks().await;
        assert!(cache.changed.entry_count() <= 2);
        assert_eq!(cache.flags("a", "ada").await, None);
        // Flags read after every change are kept.
        cache
            .put_flags("a", "ada", (true, false), cache.epoch())
            .await;
        assert_eq!(cache.flags("a", "ada").await, Some((true, false)));
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
