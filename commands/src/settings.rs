//! The sections of the configuration the write side reads: `commands` (where its HTTP service
//! listens), `auth` (the signing secret), `accounts` (token lifetimes, password hashing),
//! `limits` ([`RateLimits`]), `generation` (admission while the painter is overloaded) and
//! `media` ([`crate::MediaConfig`]). Each is one `Deserialize + Default` type whose defaults
//! and checks sit next to its fields; a refusal names its key.

use std::net::SocketAddr;
use std::time::Duration;

use gallery_infra::Secret;
use gallery_infra::settings::{Invalid, at_least, between, invalid};
use gallery_schemas::DegradedLimits;
use gallery_schemas::settings::KafkaSettings;
use serde::{Deserialize, Serialize};

use crate::accounts::HashCost;
use crate::{AccountSettings, GenerationPolicy, OverloadPolicy, ProducerConfig, RateLimits};

/// A development signing secret, used when none is configured (with a warning at start).
pub const DEV_JWT_SECRET: &str = "gallery-development-secret-change-me-please";

/// Highest per-minute quota accepted (one command every 60 µs).
pub const MAX_PER_MINUTE: u32 = 1_000_000;

/// The `commands` section: where the HTTP service listens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CommandsSettings {
    pub listen: SocketAddr,
}

impl Default for CommandsSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// The `auth` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 signing secret, at least [`crate::auth::MIN_SECRET_LEN`] bytes.
    pub jwt_secret: Secret,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: Secret::new(DEV_JWT_SECRET),
        }
    }
}

impl AuthSettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        let len = self.jwt_secret.expose().len();
        let min = crate::auth::MIN_SECRET_LEN;
        if len < min {
            return Err(invalid(
                "auth.jwt_secret",
                format!("must be at least {min} bytes, got {len}"),
            ));
        }
        Ok(())
    }

    /// Whether the secret is the built-in development one.
    pub fn uses_dev_secret(&self) -> bool {
        self.jwt_secret.expose() == DEV_JWT_SECRET
    }
}

/// The `accounts` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccountsSettings {
    /// Lifetime of an access token (JWT), in seconds.
    pub access_ttl_secs: u64,
    /// Lifetime of a refresh token, in days (each refresh issues a new one).
    pub refresh_ttl_days: u64,
    /// Argon2id memory per password hash, in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes per password hash.
    pub argon2_iterations: u32,
}

impl Default for AccountsSettings {
    /// Fifteen minutes, thirty days, and [`HashCost::default`].
    fn default() -> Self {
        let cost = HashCost::default();
        Self {
            access_ttl_secs: 15 * 60,
            refresh_ttl_days: 30,
            argon2_memory_kib: cost.memory_kib,
            argon2_iterations: cost.iterations,
        }
    }
}

impl AccountsSettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(60..=86_400).contains(&self.access_ttl_secs) {
            return Err(invalid(
                "accounts.access_ttl_secs",
                "must be between 60 (a minute) and 86400 (a day)",
            ));
        }
        between("accounts.refresh_ttl_days", self.refresh_ttl_days, 1..=365)?;
        if !(8..=1_048_576).contains(&self.argon2_memory_kib) {
            return Err(invalid(
                "accounts.argon2_memory_kib",
                "must be between 8 and 1048576 (1 GiB)",
            ));
        }
        between("accounts.argon2_iterations", self.argon2_iterations, 1..=16)
    }

    /// Token lifetimes and password hashing cost of the accounts library.
    pub fn account_settings(&self) -> AccountSettings {
        AccountSettings {
            access_ttl: Duration::from_secs(self.access_ttl_secs),
            refresh_ttl: Duration::from_secs(self.refresh_ttl_days.saturating_mul(86_400)),
            hash_cost: HashCost {
                memory_kib: self.argon2_memory_kib,
                iterations: self.argon2_iterations,
            },
        }
    }
}

impl RateLimits {
    /// Each quota at most [`MAX_PER_MINUTE`] (0 is unlimited); a refusal names its key
    /// under `limits`.
    pub fn validate(&self) -> Result<(), Invalid> {
        for (key, per_minute) in [
            ("limits.generation_per_minute", self.generation_per_minute),
            (
                "limits.interactions_per_minute",
                self.interactions_per_minute,
            ),
            ("limits.catalog_per_minute", self.catalog_per_minute),
            ("limits.auth_per_minute", self.auth_per_minute),
        ] {
            if per_minute > MAX_PER_MINUTE {
                return Err(invalid(
                    key,
                    format!("must be at most {MAX_PER_MINUTE} (0 means unlimited)"),
                ));
            }
        }
        Ok(())
    }
}

/// The `generation` section: how generation requests are admitted while the painter lags.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GenerationSettings {
    /// Unprocessed messages on the generation topic from which the painter is overloaded.
    pub backlog_threshold: u64,
    /// `degrade` (accept with the degraded limits) or `refuse` (`503`).
    pub overload: OverloadPolicy,
    /// Most steps of a request accepted while overloaded.
    pub degraded_max_steps: u32,
    /// Longest image side, in pixels, of a request accepted while overloaded.
    pub degraded_max_side: u32,
    /// How often the backlog is measured.
    pub backlog_interval_ms: u64,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        let degraded = DegradedLimits::default();
        Self {
            backlog_threshold: DegradedLimits::DEFAULT_BACKLOG_THRESHOLD,
            overload: OverloadPolicy::Degrade,
            degraded_max_steps: degraded.max_steps,
            degraded_max_side: degraded.max_side,
            backlog_interval_ms: 3_000,
        }
    }
}

impl GenerationSettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        at_least("generation.backlog_threshold", self.backlog_threshold, 1)?;
        at_least("generation.degraded_max_steps", self.degraded_max_steps, 1)?;
        if !(8..=16_384).contains(&self.degraded_max_side) {
            return Err(invalid(
                "generation.degraded_max_side",
                "must be between 8 and 16384 pixels",
            ));
        }
        at_least(
            "generation.backlog_interval_ms",
            self.backlog_interval_ms,
            100,
        )
    }

    /// When the painter counts as overloaded, and what a degraded request may ask for.
    pub fn policy(&self) -> GenerationPolicy {
        GenerationPolicy {
            backlog_threshold: self.backlog_threshold,
            overload: self.overload,
            degraded_max_steps: self.degraded_max_steps,
            degraded_max_side: self.degraded_max_side,
        }
    }

    pub fn backlog_interval(&self) -> Duration {
        Duration::from_millis(self.backlog_interval_ms)
    }

    /// What a refused client is told to wait: two measurements, in whole seconds.
    pub fn retry_after_secs(&self) -> u64 {
        (self.backlog_interval_ms / 1000).max(1) * 2
    }
}

impl ProducerConfig {
    /// The command side's producer as the `kafka` section asks.
    pub fn from_settings(kafka: &KafkaSettings) -> Self {
        Self {
            brokers: kafka.brokers.clone(),
            delivery_timeout: kafka.delivery_timeout(),
            queue_capacity: kafka.producer_queue_messages,
            linger: Duration::from_millis(kafka.producer_linger_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_documented_values_and_valid() {
        let a = AccountsSettings::default();
        assert_eq!(a.validate(), Ok(()));
        let s = a.account_settings();
        assert_eq!(s.access_ttl, Duration::from_secs(900));
        assert_eq!(s.refresh_ttl, Duration::from_secs(30 * 86_400));
        let g = GenerationSettings::default();
        assert_eq!(g.validate(), Ok(()));
        assert_eq!(
            (
                g.backlog_threshold,
                g.degraded_max_steps,
                g.degraded_max_side
            ),
            (200, 10, 256)
        );
        assert_eq!(g.overload, OverloadPolicy::Degrade);
        assert_eq!(RateLimits::default().validate(), Ok(()));
        assert_eq!(RateLimits::default().generation_per_minute, 10);
        assert!(AuthSettings::default().uses_dev_secret());
        assert_eq!(AuthSettings::default().validate(), Ok(()));
    }

    #[test]
    fn a_short_secret_is_refused_with_its_length() {
        let short = AuthSettings {
            jwt_secret: Secret::new("short"),
        };
        assert_eq!(
            short.validate().map_err(|e| e.to_string()),
            Err("configuration key auth.jwt_secret: must be at least 32 bytes, got 5".into())
        );
    }

    #[test]
    fn out_of_range_values_are_refused_with_their_key() {
        let accounts = AccountsSettings {
            argon2_iterations: 17,
            ..AccountsSettings::default()
        };
        assert_eq!(
            accounts.validate().map_err(|e| e.key),
            Err("accounts.argon2_iterations")
        );
        let limits = RateLimits {
            catalog_per_minute: MAX_PER_MINUTE + 1,
            ..RateLimits::UNLIMITED
        };
        assert_eq!(
            limits.validate().map_err(|e| e.key),
            Err("limits.catalog_per_minute")
        );
        let generation = GenerationSettings {
            backlog_interval_ms: 99,
            ..GenerationSettings::default()
        };
        assert_eq!(
            generation.validate().map_err(|e| e.key),
            Err("generation.backlog_interval_ms")
        );
    }

    #[test]
    fn a_refused_request_waits_two_measurements() {
        let g = GenerationSettings {
            backlog_interval_ms: 5_000,
            ..GenerationSettings::default()
        };
        assert_eq!(g.retry_after_secs(), 10);
        let fast = GenerationSettings {
            backlog_interval_ms: 200,
            ..GenerationSettings::default()
        };
        assert_eq!(fast.retry_after_secs(), 2);
    }
}
