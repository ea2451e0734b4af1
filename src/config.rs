//! Typed, layered configuration: built-in defaults, then an optional TOML file, then
//! `GALLERY_*` environment variables (sections split by `__`, e.g.
//! `GALLERY_KAFKA__BROKERS`), then command-line flags. Validated once, at start.
//!
//! Each section is owned by the crate that reads it, with its defaults and its checks next to
//! its fields (`settings.rs` in each crate); this module composes them and layers the sources.

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use gallery_commands::settings::{
    AccountsSettings, AuthSettings, CommandsSettings, GenerationSettings,
};
use gallery_commands::{MediaConfig, RateLimits};
use gallery_gpu_workers::settings::PainterSettings;
use gallery_infra::PostgresSettings;
use gallery_projections::scylla::ScyllaSettings;
use gallery_projections::settings::ProjectionsSettings;
use gallery_query_api::settings::{QueryApiSettings, ReadSettings};
use gallery_schemas::settings::{KafkaSettings, RegistrySettings};
use serde::{Deserialize, Serialize};

pub use gallery_commands::settings::DEV_JWT_SECRET;
pub use gallery_infra::Secret;
pub use gallery_query_api::settings::ReadStore;

/// Every section, each a type of the crate that owns it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaSettings,
    pub registry: RegistrySettings,
    pub postgres: PostgresSettings,
    pub commands: CommandsSettings,
    pub query_api: QueryApiSettings,
    pub auth: AuthSettings,
    pub accounts: AccountsSettings,
    pub media: MediaConfig,
    pub limits: RateLimits,
    pub generation: GenerationSettings,
    pub read: ReadSettings,
    pub scylla: ScyllaSettings,
    pub projections: ProjectionsSettings,
    pub painter: PainterSettings,
    pub metrics: MetricsConfig,
    /// Body limit and read timeouts of every HTTP server (see [`crate::edge`]).
    pub http: crate::edge::HttpSettings,
}

/// Where the process serves its metrics for Prometheus (`GET /metrics`, every role of the
/// process in one text), beside `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Off: no recorder, no listener.
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration key {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl From<gallery_infra::Invalid> for ConfigError {
    fn from(e: gallery_infra::Invalid) -> Self {
        ConfigError::Invalid {
            key: e.key,
            reason: e.reason,
        }
    }
}

/// The `GALLERY_<SECTION>__<KEY>` variables. Only sectioned names count, so the local stack's
/// own variables (`GALLERY_STACK_DIR`, `GALLERY_KAFKA_PORT`, ...) and `GALLERY_LOG` or
/// `GALLERY_CONFIG` are not taken for configuration keys.
fn app_env() -> Env {
    Env::prefixed("GALLERY_")
        .filter(|key| key.as_str().contains("__"))
        .split("__")
}

/// `GALLERY_READ_STORE`, the documented short name of `read.store` (`GALLERY_READ__STORE`,
/// which wins when both are set).
fn read_store_env() -> Env {
    Env::raw()
        .only(&["GALLERY_READ_STORE"])
        .map(|_| "read__store".into())
        .split("__")
}

/// Values given as command-line flags, the last layer.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<UrlOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<UrlOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<ListenConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_api: Option<ListenConfig>,
}

#[derive(Debug, Default, Serialize)]
pub struct KafkaOverrides {
    pub brokers: String,
}

#[derive(Debug, Default, Serialize)]
pub struct UrlOverride {
    pub url: String,
}

/// A listening address given as a flag.
#[derive(Debug, Clone, Serialize)]
pub struct ListenConfig {
    pub listen: SocketAddr,
}

impl Config {
    /// Loads defaults, then `file` (if given), then the environment, then `overrides`, and
    /// validates the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        if let Some(path) = file
            && !path.exists()
        {
            return Err(ConfigError::Invalid {
                key: "config file",
                reason: format!("{} does not exist", path.display()),
            });
        }
        Self::load_layers(file.map(Toml::file), overrides)
    }

    /// Like [`Config::load`], with the file's layer given as TOML text.
    pub fn load_toml(toml: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_layers(Some(Toml::string(toml)), overrides)
    }

    fn load_layers(
        file: Option<figment::providers::Data<Toml>>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(file);
        }
        let config: Config = figment
            .merge(read_store_env())
            .merge(app_env())
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Every section's checks, and those across sections; the first refusal names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.projections.validate()?;
        self.kafka.validate()?;
        self.limits.validate()?;
        self.generation.validate()?;
        self.query_api.validate()?;
        self.registry.validate()?;
        self.postgres.validate()?;
        self.auth.validate()?;
        self.accounts.validate()?;
        self.scylla.validate()?;
        self.painter.validate()?;
        self.http.validate(self.media.limits.max_bytes)?;
        self.media.validate().map_err(|e| match e {
            gallery_commands::MediaError::Config { key, value, reason } => ConfigError::Invalid {
                key,
                reason: format!("{value:?} {reason}"),
            },
            other => ConfigError::Invalid {
                key: "media",
                reason: other.to_string(),
            },
        })?;
        Ok(())
    }

    pub fn topics(&self) -> gallery_schemas::Topics {
        self.kafka.topics()
    }

    pub fn registry(&self) -> gallery_schemas::RegistryConfig {
        self.registry.config()
    }

    /// The generation worker's settings (the `painter` role): its section, on the brokers
    /// and topics of `kafka`, taking sources within the upload limits of `media`.
    pub fn painter_settings(&self) -> gallery_gpu_workers::WorkerSettings {
        let limits = self.media.limits;
        self.painter.worker_settings(
            self.kafka.brokers.clone(),
            self.topics(),
            gallery_gpu_workers::SourceLimits {
                max_bytes: limits.max_bytes,
                max_side: limits.max_side,
                max_pixels: limits.max_pixels,
            },
        )
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
