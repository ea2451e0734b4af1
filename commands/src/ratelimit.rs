//! Rate limits per subject (a user, or a client address) and per class of command.
//!
//! The limiter is `governor`'s keyed GCRA (the generic cell rate algorithm, a token bucket
//! kept as one instant per key), one per class: a quota of `q` per minute admits a burst of
//! `q` commands, then one every `60 s / q`. Time comes from a `governor` clock, so tests are
//! deterministic ([`ManualClock`]). Keys whose bucket is full again are pruned periodically:
//! such a key behaves exactly like an absent one, so memory stays bounded by the keys active in
//! the last minute.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, TryLockError};
use std::time::Duration;

use gallery_schemas::UserId;
use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Gcra};

/// What a limit applies to. Each class has its own quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandClass {
    /// Requests to the AI painter.
    Generation,
    /// Likes, favorites, comments, views.
    Interactions,
    /// Curators' writes to exhibitions.
    Catalog,
    /// Register, login, refresh; keyed by client address.
    Auth,
}

impl CommandClass {
    pub const ALL: [CommandClass; 4] = [
        CommandClass::Generation,
        CommandClass::Interactions,
        CommandClass::Catalog,
        CommandClass::Auth,
    ];

    /// Its place in [`CommandClass::ALL`].
    fn index(self) -> usize {
        match self {
            CommandClass::Generation => 0,
            CommandClass::Interactions => 1,
            CommandClass::Catalog => 2,
            CommandClass::Auth => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CommandClass::Generation => "generation",
            CommandClass::Interactions => "interactions",
            CommandClass::Catalog => "catalog",
            CommandClass::Auth => "auth",
        }
    }
}

impl fmt::Display for CommandClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is limited: an authenticated user, or (before authentication) a client address.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    User(&'a UserId),
    Client(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SubjectKey {
    User(String),
    Client(IpAddr),
}

impl From<Subject<'_>> for SubjectKey {
    fn from(s: Subject<'_>) -> Self {
        match s {
            Subject::User(u) => SubjectKey::User(u.as_str().to_owned()),
            Subject::Client(ip) => SubjectKey::Client(ip),
        }
    }
}

/// Commands admitted per minute for each class; `0` means unlimited. The `limits` section of
/// the configuration (checked by [`RateLimits::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    pub generation_per_minute: u32,
    pub interactions_per_minute: u32,
    pub catalog_per_minute: u32,
    pub auth_per_minute: u32,
}

impl RateLimits {
    /// No limit on anything.
    pub const UNLIMITED: RateLimits = RateLimits {
        generation_per_minute: 0,
        interactions_per_minute: 0,
        catalog_per_minute: 0,
        auth_per_minute: 0,
    };

    pub fn per_minute(&self, class: CommandClass) -> u32 {
        match class {
            CommandClass::Generation => self.generation_per_minute,
            CommandClass::Interactions => self.interactions_per_minute,
            CommandClass::Catalog => self.catalog_per_minute,
            CommandClass::Auth => self.auth_per_minute,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            generation_per_minute: 10,
            interactions_per_minute: 120,
            catalog_per_minute: 60,
            auth_per_minute: 20,
        }
    }
}

/// A command refused because its subject used up the quota of its class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit of {class} commands reached; retry in {} s", self.retry_after_secs())]
pub struct RateLimited {
    pub class: CommandClass,
    /// When the next command of this class would be admitted.
    pub retry_after: Duration,
}

impl RateLimited {
    /// `retry_after` in whole seconds, rounded up (at least 1), as `Retry-After` wants it.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        let secs = if self.retry_after.subsec_nanos() > 0 {
            secs.saturating_add(1)
        } else {
            secs
        };
        secs.max(1)
    }
}

/// The monotonic system clock.
pub type SystemClock = governor::clock::DefaultClock;

/// A clock that moves only when told to (`advance`; tests). Clones share one time.
pub type ManualClock = governor::clock::FakeRelativeClock;

/// How often idle keys are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The buckets of one class, one per subject.
type Buckets<C> =
    Gcra<SubjectKey, DashMapStateStore<SubjectKey>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Admits or refuses commands per (subject, class). Cheap to share behind an `Arc`.
pub struct RateLimiter<C: Clock = SystemClock> {
    limits: RateLimits,
    clock: C,
    /// Per class (in the order of [`CommandClass::ALL`]); none for an unlimited class.
    classes: [Option<Buckets<C>>; 4],
    /// When the idle keys were last pruned.
    pruned: Mutex<C::Instant>,
}

impl<C: Clock + Clone> fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limits", &self.limits)
            .field("keys", &self.tracked_keys())
            .finish_non_exhaustive()
    }
}

impl RateLimiter<SystemClock> {
    pub fn new(limits: RateLimits) -> Self {
        Self::with_clock(limits, SystemClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    pub fn with_clock(limits: RateLimits, clock: C) -> Self {
        let classes = CommandClass::ALL.map(|class| {
            NonZeroU32::new(limits.per_minute(class))
                .map(|q| Gcra::dashmap_with_clock(Quota::per_minute(q), clock.clone()))
        });
        Self {
            limits,
            pruned: Mutex::new(clock.now()),
            clock,
            classes,
        }
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Admits one command of `class` by `subject`, or says when to retry. An admitted command
    /// uses up quota; a refused one does not.
    pub fn check(&self, subject: Subject<'_>, class: CommandClass) -> Result<(), RateLimited> {
        let Some(buckets) = &self.classes[class.index()] else {
            return Ok(());
        };
        self.prune_when_due();
        buckets
            .check_key(&SubjectKey::from(subject))
            .map_err(|not_until| RateLimited {
                class,
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Forgets the keys whose bucket is full again, once every [`PRUNE_EVERY`]. A check never
    /// waits for another's pruning: while one prunes, the others go on.
    fn prune_when_due(&self) {
        let mut pruned = match self.pruned.try_lock() {
            Ok(pruned) => pruned,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let now = self.clock.now();
        if Duration::from(now.duration_since(*pruned)) < PRUNE_EVERY {
            return;
        }
        *pruned = now;
        drop(pruned);
        for buckets in self.classes.iter().flatten() {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
    }

    /// How many (subject, class) keys are remembered (for tests and metrics).
    pub fn tracked_keys(&self) -> usize {
        self.classes.iter().flatten().map(Buckets::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn limiter(limits: RateLimits) -> RateLimiter<ManualClock> {
        RateLimiter::with_clock(limits, ManualClock::default())
    }

    #[test]
    fn a_full_quota_is_admitted_at_once_then_one_more_is_refused() {
        let l = limiter(RateLimits::default());
        let ada = user("ada");
        for _ in 0..10 {
            assert_eq!(
                l.check(Subject::User(&ada), CommandClass::Generation),
                Ok(())
            );
        }
        let refused = l.check(Subject::User(&ada), CommandClass::Generation);
        assert_eq!(
            refused,
            Err(RateLimited {
                class: CommandClass::Generation,
                retry_after: Duration::from_secs(6)
            })
        );
    }

    #[test]
    fn quota_refills_at_the_steady_rate() {
        let l = limiter(RateLimits::default());
        let ada = user("ada");
        for _ in 0..10 {
            let _ = l.check(Subject::User(&ada), CommandClass::Generation);
        }
        l.clock().advance(Duration::from_millis(5_999));
        let refused = l.check(Subject::User(&ada), CommandClass::Generation);
        assert_eq!(
            refused.map_err(|r| (r.retry_after, r.retry_after_secs())),
            Err((Duration::from_millis(1), 1))
        );
        l.clock().advance(Duration::from_millis(1));
        assert!(
            l.check(Subject::User(&ada), CommandClass::Generation)
                .is_ok()
        );
        assert!(
            l.check(Subject::User(&ada), CommandClass::Generation)
                .is_err()
        );
        // A whole idle minute refills the whole burst.
        l.clock().advance(Duration::from_secs(60));
        for _ in 0..10 {
            assert!(
                l.check(Subject::User(&ada), CommandClass::Generation)
                    .is_ok()
            );
        }
    }

    #[test]
    fn subjects_and_classes_have_separate_buckets() {
        let l = limiter(RateLimits {
            interactions_per_minute: 1,
            catalog_per_minute: 1,
            ..RateLimits::UNLIMITED
        });
        let (ada, bob) = (user("ada"), user("bob"));
        assert!(
            l.check(Subject::User(&ada), CommandClass::Interactions)
                .is_ok()
        );
        assert!(
            l.check(Subject::User(&ada), CommandClass::Interactions)
                .is_err()
        );
        assert!(
            l.check(Subject::User(&bob), CommandClass::Interactions)
                .is_ok()
        );
        assert!(l.check(Subject::User(&ada), CommandClass::Catalog).is_ok());
        let ip = IpAddr::from([10, 0, 0, 1]);
        assert!(l.check(Subject::Client(ip), CommandClass::Catalog).is_ok());
    }

    #[test]
    fn zero_means_unlimited_and_remembers_nothing() {
        let l = limiter(RateLimits::UNLIMITED);
        let ada = user("ada");
        for _ in 0..10_000 {
            assert!(l.check(Subject::User(&ada), CommandClass::Auth).is_ok());
        }
        assert_eq!(l.tracked_keys(), 0);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let r = |ms| RateLimited {
            class: CommandClass::Auth,
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(r(0).retry_after_secs(), 1);
        assert_eq!(r(1).retry_after_secs(), 1);
        assert_eq!(r(1_000).retry_after_secs(), 1);
        assert_eq!(r(1_001).retry_after_secs(), 2);
        assert_eq!(r(59_999).retry_after_secs(), 60);
    }

    #[test]
    fn idle_keys_are_pruned() {
        let l = limiter(RateLimits::default());
        for i in 0..1_000 {
            let ip = IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
            assert!(l.check(Subject::Client(ip), CommandClass::Auth).is_ok());
        }
        assert_eq!(l.tracked_keys(), 1_000);
        l.clock().advance(PRUNE_EVERY);
        let ada = user("ada");
        assert!(
            l.check(Subject::User(&ada), CommandClass::Interactions)
                .is_ok()
        );
        assert_eq!(l.tracked_keys(), 1);
    }

    #[test]
    fn a_refused_command_uses_no_quota() {
        let l = limiter(RateLimits {
            auth_per_minute: 2,
            ..RateLimits::UNLIMITED
        });
        let ip = IpAddr::from([127, 0, 0, 1]);
        assert!(l.check(Subject::Client(ip), CommandClass::Auth).is_ok());
        assert!(l.check(Subject::Client(ip), CommandClass::Auth).is_ok());
        for _ in 0..100 {
            assert!(l.check(Subject::Client(ip), CommandClass::Auth).is_err());
        }
        l.clock().advance(Duration::from_secs(30));
        assert!(l.check(Subject::Client(ip), CommandClass::Auth).is_ok());
    }
}
