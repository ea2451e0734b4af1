//! Typed, layered configuration: built-in defaults, then an optional TOML file, then
//! `GALLERY_*` environment variables (sections split by `__`, e.g.
//! `GALLERY_KAFKA__BROKERS`), then command-line flags. Validated once, at start.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use gallery_commands::AccountSettings;
use gallery_commands::accounts::HashCost;
use gallery_commands::{GenerationPolicy, OverloadPolicy, RateLimits};
use gallery_gpu_workers::{DeviceChoice, TextModel};
use serde::{Deserialize, Serialize};

/// A development signing secret, used when none is configured (with a warning at start).
pub const DEV_JWT_SECRET: &str = "gallery-development-secret-change-me-please";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    pub postgres: PostgresConfig,
    pub commands: ListenConfig,
    pub query_api: QueryApiConfig,
    pub auth: AuthConfig,
    pub accounts: AccountsConfig,
    pub media: gallery_commands::MediaConfig,
    pub limits: LimitsConfig,
    pub generation: GenerationConfig,
    pub read: ReadConfig,
    pub scylla: ScyllaConfig,
    pub projections: ProjectionsConfig,
    pub painter: PainterConfig,
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

/// Which store the GraphQL API reads interactions from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReadStore {
    Postgres,
    Scylla,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReadConfig {
    /// `postgres` or `scylla`: where counts, viewer flags, the viewer's likes and favorites
    /// and comments are read from (everything else is read from Postgres). With `scylla`, the
    /// projections role runs the Scylla projector besides the Postgres one.
    pub store: ReadStore,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProjectionsConfig {
    /// How long the projectors' consumer group waits for a silent instance before its
    /// partitions go to the others.
    pub session_timeout_ms: u64,
    /// A stable, unique name of this instance (e.g. the pod name of a StatefulSet): a
    /// restarted instance gets its partitions back at once (Kafka static membership).
    pub instance_id: Option<String>,
    /// Messages the Postgres projector (and a rebuild) applies in one transaction, at most.
    pub max_batch: usize,
    /// Messages the Scylla projector applies in one round, at most.
    pub scylla_max_batch: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`, comma separated.
    pub nodes: String,
    /// Keyspace of this deployment, created when missing.
    pub keyspace: String,
    /// Replicas of the keyspace (`SimpleStrategy`).
    pub replication_factor: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated.
    pub brokers: String,
    /// Prefix of every topic name.
    pub topic_prefix: String,
    /// Partitions of topics Gallery creates.
    pub partitions: i32,
    /// Replicas of topics Gallery creates; see [`KafkaConfig::min_insync_replicas`].
    pub replication_factor: i32,
    /// How long a command waits for Kafka to acknowledge its event before failing.
    pub delivery_timeout_ms: u64,
    /// Events the producer may hold unacknowledged; a command beyond that gets `503` at once.
    pub producer_queue_messages: u32,
    /// How long an event waits for others to share its batch to Kafka (`linger.ms`).
    pub producer_linger_ms: u64,
}

impl KafkaConfig {
    /// The in-sync replicas an `acks=all` write to Gallery's topics needs: two when there
    /// are two replicas or more, so that an acknowledged event is on two brokers and survives
    /// the loss of any one (with three replicas, writes go on while one broker is down). One
    /// replica can only ask for one.
    pub fn min_insync_replicas(&self) -> i32 {
        self.replication_factor.clamp(1, 2)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible schema registry API.
    pub url: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    pub url: Secret,
    pub pool_size: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    pub listen: SocketAddr,
}

/// The GraphQL API: where it listens and how it protects and answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueryApiConfig {
    pub listen: SocketAddr,
    /// Longest a request with `X-Consistency-Token` waits for the read model.
    pub consistency_timeout_ms: u64,
    /// Entries of the hot-read cache per kind (artwork details, counts); 0 turns it off.
    pub cache_capacity: u64,
    /// Longest a cached entry lives (changes invalidate it at once anyway).
    pub cache_ttl_ms: u64,
    /// Deepest field nesting of a query, fragments expanded.
    pub max_depth: usize,
    /// Highest complexity of a query (also the most fields it selects, fragments expanded).
    pub max_complexity: usize,
    /// Longest GraphQL document, in bytes.
    pub max_document_bytes: usize,
    /// Most lexical tokens of a GraphQL document.
    pub max_document_tokens: usize,
    /// Whether introspection (and GraphiQL) is on.
    pub introspection: bool,
    /// Longest a query or mutation may run.
    pub query_timeout_ms: u64,
    /// Automatic persisted queries kept in memory (least recently used dropped).
    pub persisted_queries: usize,
    /// Most subscriptions one WebSocket connection runs at once.
    pub max_subscriptions_per_connection: usize,
    /// Most WebSocket connections one process holds at once, initialised or not; one more is
    /// refused at the upgrade (503, `TOO_MANY_CONNECTIONS`). The default, 10,000, is sized for
    /// launch day (docs/PERFORMANCE.md): 100,000 watchers over the 12 query API processes the
    /// reads need is 8,300 each, and 10,000 leaves a fifth more for an uneven spread; at the
    /// measured 14.6 KB per idle subscription that is about 150 MB, and it stays below the
    /// 17,000 open files a process had there, so a flood is answered with 503 while files are
    /// left for HTTP clients and the pools, instead of `accept` failing for everyone.
    pub max_websocket_connections: usize,
    /// Longest a WebSocket connection may wait before its `connection_init`, in milliseconds
    /// (closed with 4408 beyond).
    pub ws_init_timeout_ms: u64,
    /// HMAC-SHA256 secret of the signed image URLs (`/media/...`), at least 32 bytes.
    pub media_url_secret: Secret,
    /// Shortest lifetime of a signed image URL, in seconds.
    pub media_url_ttl_secs: u64,
    /// Public origin of the API (`https://gallery.example.org`) for absolute image URLs;
    /// empty: URLs relative to the API.
    pub public_url: String,
}

impl QueryApiConfig {
    /// The settings of the GraphQL API.
    pub fn settings(&self) -> gallery_query_api::ApiSettings {
        gallery_query_api::ApiSettings {
            consistency_timeout: Duration::from_millis(self.consistency_timeout_ms),
            cache: gallery_query_api::CacheSettings {
                capacity: self.cache_capacity,
                ttl: Duration::from_millis(self.cache_ttl_ms),
            },
            max_depth: self.max_depth,
            max_complexity: self.max_complexity,
            max_document_bytes: self.max_document_bytes,
            max_document_tokens: self.max_document_tokens,
            introspection: self.introspection,
            query_timeout: Duration::from_millis(self.query_timeout_ms),
            persisted_queries: self.persisted_queries,
            max_subscriptions_per_connection: self.max_subscriptions_per_connection,
            max_websocket_connections: self.max_websocket_connections,
            ws_init_timeout: Duration::from_millis(self.ws_init_timeout_ms),
        }
    }

    /// How image URLs are signed.
    pub fn media_url_settings(&self) -> gallery_query_api::MediaUrlSettings {
        let base = self.public_url.trim();
        gallery_query_api::MediaUrlSettings {
            secret: gallery_query_api::MediaSecret::new(self.media_url_secret.expose().as_bytes()),
            ttl: Duration::from_secs(self.media_url_ttl_secs),
            public_base_url: (!base.is_empty()).then(|| base.to_owned()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 signing secret, at least 32 bytes.
    pub jwt_secret: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountsConfig {
    /// Lifetime of an access token (JWT), in seconds.
    pub access_ttl_secs: u64,
    /// Lifetime of a refresh token, in days (each refresh issues a new one).
    pub refresh_ttl_days: u64,
    /// Argon2id memory per password hash, in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes per password hash.
    pub argon2_iterations: u32,
}

/// Commands admitted per minute, per user (per client address for `auth`); 0 = unlimited.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub generation_per_minute: u32,
    pub interactions_per_minute: u32,
    pub catalog_per_minute: u32,
    pub auth_per_minute: u32,
}

/// How generation requests are admitted while the GPU workers lag behind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfig {
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

/// The AI painter (the `painter` role): the generation worker and its models.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PainterConfig {
    /// The worker's stable id: its Kafka transactional id (under the topic prefix) and its
    /// static group membership. Unique per live worker; keep it across restarts.
    pub worker_id: String,
    /// The workers' consumer group; unset = `<topic prefix>gpu-workers`, the group whose lag
    /// the command side reads as the generation backlog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Jobs painted at once, each on its own thread.
    pub threads: usize,
    /// Requests held at most (queued and running); the worker stops reading beyond.
    pub max_held: usize,
    /// At most one progress event per job per interval.
    pub progress_interval_ms: u64,
    /// Backlog (held requests plus unread messages) above which jobs are degraded.
    pub backlog_threshold: u64,
    /// Most steps of a degraded job.
    pub degraded_max_steps: u32,
    /// Longest side, in pixels, of a degraded job's picture.
    pub degraded_max_side: u32,
    /// Longest prompt (and negative prompt) a job takes, in characters.
    pub max_prompt_chars: usize,
    /// Messages re-read before the committed offset when taking a partition, to recognise
    /// duplicate requests.
    pub dedup_window: i64,
    /// Longest side of the stored thumbnail, in pixels.
    pub thumbnail_side: u32,
    /// Where the models' weights are (`scripts/models` puts them there).
    pub models_dir: String,
    /// `cpu`, `cuda` or `auto` (a GPU when the build and the machine have one).
    pub device: DeviceChoice,
    /// The text-to-image model, `sd15` or `sdxl-turbo` (weights under `models_dir`); unset,
    /// text-to-image requests fail with `model_unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_to_image: Option<TextModel>,
}

/// Where `scripts/models` puts the weights: `$GALLERY_MODELS_DIR`, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/gallery/models`.
pub fn default_models_dir() -> String {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("GALLERY_MODELS_DIR") {
        return dir.to_string_lossy().into_owned();
    }
    let cache = var("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(var("HOME").unwrap_or_default()).join(".cache")
        });
    cache
        .join("gallery")
        .join("models")
        .to_string_lossy()
        .into_owned()
}

impl Default for PainterConfig {
    fn default() -> Self {
        let policy = GenerationPolicy::default();
        Self {
            worker_id: "painter-1".into(),
            group: None,
            threads: 1,
            max_held: 1000,
            progress_interval_ms: 500,
            backlog_threshold: policy.backlog_threshold,
            degraded_max_steps: policy.degraded_max_steps,
            degraded_max_side: policy.degraded_max_side,
            max_prompt_chars: gallery_schemas::Prompt::MAX_CHARS,
            dedup_window: 20_000,
            thumbnail_side: 256,
            models_dir: default_models_dir(),
            device: DeviceChoice::Auto,
            text_to_image: None,
        }
    }
}

impl PainterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let id_ok = !self.worker_id.is_empty()
            && self.worker_id.len() <= 100
            && self
                .worker_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !id_ok {
            return Err(invalid(
                "painter.worker_id",
                "must be 1 to 100 ASCII letters, digits, '.', '_' or '-'",
            ));
        }
        if self.group.as_ref().is_some_and(|g| g.trim().is_empty()) {
            return Err(invalid("painter.group", "must not be empty when set"));
        }
        if !(1..=64).contains(&self.threads) {
            return Err(invalid("painter.threads", "must be between 1 and 64"));
        }
        if !(1..=1_000_000).contains(&self.max_held) {
            return Err(invalid("painter.max_held", "must be between 1 and 1000000"));
        }
        if !(10..=600_000).contains(&self.progress_interval_ms) {
            return Err(invalid(
                "painter.progress_interval_ms",
                "must be between 10 and 600000",
            ));
        }
        if self.degraded_max_steps == 0 {
            return Err(invalid("painter.degraded_max_steps", "must be at least 1"));
        }
        if !(8..=16_384).contains(&self.degraded_max_side) {
            return Err(invalid(
                "painter.degraded_max_side",
                "must be between 8 and 16384 pixels",
            ));
        }
        if self.max_prompt_chars == 0 {
            return Err(invalid("painter.max_prompt_chars", "must be at least 1"));
        }
        if self.dedup_window < 0 {
            return Err(invalid("painter.dedup_window", "must not be negative"));
        }
        if !(16..=4096).contains(&self.thumbnail_side) {
            return Err(invalid(
                "painter.thumbnail_side",
                "must be between 16 and 4096 pixels",
            ));
        }
        if self.models_dir.trim().is_empty() {
            return Err(invalid("painter.models_dir", "must name a directory"));
        }
        Ok(())
    }
}

/// A string that never prints (connection strings with passwords, signing keys).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<RateLimits> for LimitsConfig {
    fn from(l: RateLimits) -> Self {
        Self {
            generation_per_minute: l.generation_per_minute,
            interactions_per_minute: l.interactions_per_minute,
            catalog_per_minute: l.catalog_per_minute,
            auth_per_minute: l.auth_per_minute,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let policy = GenerationPolicy::default();
        Self {
            kafka: KafkaConfig {
                brokers: "127.0.0.1:9092".into(),
                topic_prefix: gallery_schemas::Topics::DEFAULT_PREFIX.into(),
                partitions: 6,
                replication_factor: 1,
                delivery_timeout_ms: 10_000,
                producer_queue_messages: gallery_commands::ProducerConfig::DEFAULT_QUEUE_CAPACITY,
                producer_linger_ms: gallery_commands::ProducerConfig::DEFAULT_LINGER_MS,
            },
            registry: RegistryConfig {
                url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
                timeout_ms: 5_000,
            },
            postgres: PostgresConfig {
                url: Secret::new("postgres://gallery:gallery@127.0.0.1:5432/gallery"),
                pool_size: 16,
            },
            commands: ListenConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            },
            query_api: QueryApiConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
                consistency_timeout_ms: 5_000,
                cache_capacity: 10_000,
                cache_ttl_ms: 60_000,
                max_depth: 16,
                max_complexity: 500,
                max_document_bytes: 65_536,
                max_document_tokens: 10_000,
                introspection: true,
                query_timeout_ms: 10_000,
                persisted_queries: 1_000,
                max_subscriptions_per_connection: 100,
                max_websocket_connections: 10_000,
                ws_init_timeout_ms: 10_000,
                media_url_secret: Secret::new(gallery_query_api::DEV_MEDIA_URL_SECRET),
                media_url_ttl_secs: 3_600,
                public_url: String::new(),
            },
            auth: AuthConfig {
                jwt_secret: Secret::new(DEV_JWT_SECRET),
            },
            accounts: {
                let d = AccountSettings::default();
                AccountsConfig {
                    access_ttl_secs: d.access_ttl.as_secs(),
                    refresh_ttl_days: d.refresh_ttl.as_secs() / 86_400,
                    argon2_memory_kib: d.hash_cost.memory_kib,
                    argon2_iterations: d.hash_cost.iterations,
                }
            },
            media: gallery_commands::MediaConfig::default(),
            limits: LimitsConfig::from(RateLimits::default()),
            generation: GenerationConfig {
                backlog_threshold: policy.backlog_threshold,
                overload: policy.overload,
                degraded_max_steps: policy.degraded_max_steps,
                degraded_max_side: policy.degraded_max_side,
                backlog_interval_ms: 3_000,
            },
            read: ReadConfig {
                store: ReadStore::Postgres,
            },
            scylla: ScyllaConfig {
                nodes: "127.0.0.1:9042".into(),
                keyspace: "gallery".into(),
                replication_factor: 1,
            },
            projections: ProjectionsConfig {
                session_timeout_ms: 10_000,
                instance_id: None,
                max_batch: gallery_projections::ProjectorConfig::DEFAULT_MAX_BATCH,
                scylla_max_batch:
                    gallery_projections::scylla::ScyllaProjectorConfig::DEFAULT_MAX_BATCH,
            },
            painter: PainterConfig::default(),
            metrics: MetricsConfig {
                enabled: true,
                listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            },
            http: crate::edge::HttpSettings::default(),
        }
    }
}

/// Most messages a projector batch may hold (a batch is decoded and planned in memory).
const MAX_PROJECTION_BATCH: usize = 50_000;

/// Highest per-minute quota accepted (one command every 60 µs).
const MAX_PER_MINUTE: u32 = 1_000_000;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration key {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
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

impl Config {
    /// Loads defaults, then `file` (if given), then the environment, then `overrides`, and
    /// validates the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        if let Some(path) = file
            && !path.exists()
        {
            return Err(invalid(
                "config file",
                format!("{} does not exist", path.display()),
            ));
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

    fn validate_projections(&self) -> Result<(), ConfigError> {
        let p = &self.projections;
        // Kafka's brokers accept 6 s to 30 min by default (group.min/max.session.timeout.ms).
        if !(1_000..=1_800_000).contains(&p.session_timeout_ms) {
            return Err(invalid(
                "projections.session_timeout_ms",
                "must be between 1000 and 1800000",
            ));
        }
        for (key, value) in [
            ("projections.max_batch", p.max_batch),
            ("projections.scylla_max_batch", p.scylla_max_batch),
        ] {
            if !(1..=MAX_PROJECTION_BATCH).contains(&value) {
                return Err(invalid(
                    key,
                    format!("must be between 1 and {MAX_PROJECTION_BATCH}"),
                ));
            }
        }
        if let Some(id) = &p.instance_id {
            let ok = !id.is_empty()
                && id.len() <= 200
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                return Err(invalid(
                    "projections.instance_id",
                    "may hold only ASCII letters, digits, '.', '_' and '-' (1 to 200)",
                ));
            }
        }
        Ok(())
    }

    /// How the projectors take part in their consumer groups.
    pub fn group_settings(&self) -> gallery_projections::GroupSettings {
        gallery_projections::GroupSettings {
            session_timeout: Duration::from_millis(self.projections.session_timeout_ms),
            instance_id: self.projections.instance_id.clone(),
        }
    }

    fn validate_query_api(&self) -> Result<(), ConfigError> {
        let q = &self.query_api;
        if !(1..=600_000).contains(&q.consistency_timeout_ms) {
            return Err(invalid(
                "query_api.consistency_timeout_ms",
                "must be between 1 and 600000",
            ));
        }
        if !(1..=86_400_000).contains(&q.cache_ttl_ms) {
            return Err(invalid(
                "query_api.cache_ttl_ms",
                "must be between 1 and 86400000",
            ));
        }
        if !(1..=gallery_query_api::guard::MAX_DEPTH_LIMIT).contains(&q.max_depth) {
            return Err(invalid(
                "query_api.max_depth",
                format!(
                    "must be between 1 and {} (the deepest the GraphQL parser can take)",
                    gallery_query_api::guard::MAX_DEPTH_LIMIT
                ),
            ));
        }
        if !(64..=1 << 20).contains(&q.max_document_bytes) {
            return Err(invalid(
                "query_api.max_document_bytes",
                "must be between 64 and 1048576",
            ));
        }
        if !(16..=1_000_000).contains(&q.max_document_tokens) {
            return Err(invalid(
                "query_api.max_document_tokens",
                "must be between 16 and 1000000",
            ));
        }
        if !(1..=1_000_000).contains(&q.max_complexity) {
            return Err(invalid(
                "query_api.max_complexity",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=600_000).contains(&q.query_timeout_ms) {
            return Err(invalid(
                "query_api.query_timeout_ms",
                "must be between 1 and 600000",
            ));
        }
        if !(1..=1_000_000).contains(&q.persisted_queries) {
            return Err(invalid(
                "query_api.persisted_queries",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=10_000).contains(&q.max_subscriptions_per_connection) {
            return Err(invalid(
                "query_api.max_subscriptions_per_connection",
                "must be between 1 and 10000",
            ));
        }
        if !(1..=1_000_000).contains(&q.max_websocket_connections) {
            return Err(invalid(
                "query_api.max_websocket_connections",
                "must be between 1 and 1000000",
            ));
        }
        if !(100..=60_000).contains(&q.ws_init_timeout_ms) {
            return Err(invalid(
                "query_api.ws_init_timeout_ms",
                "must be between 100 and 60000",
            ));
        }
        if !(60..=604_800).contains(&q.media_url_ttl_secs) {
            return Err(invalid(
                "query_api.media_url_ttl_secs",
                "must be between 60 (a minute) and 604800 (a week)",
            ));
        }
        let base = q.public_url.trim();
        let scheme_ok = base.starts_with("http://") || base.starts_with("https://");
        if !base.is_empty()
            && (!scheme_ok || base.contains(|c: char| c.is_whitespace() || c == '?' || c == '#'))
        {
            return Err(invalid(
                "query_api.public_url",
                "must be empty or an http:// or https:// URL without query or fragment",
            ));
        }
        gallery_query_api::MediaUrls::new(&q.media_url_settings())
            .map_err(|e| invalid("query_api.media_url_secret", e.to_string()))?;
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_projections()?;
        if self.kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "must name at least one broker"));
        }
        let prefix_ok = self
            .kafka
            .topic_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !prefix_ok || self.kafka.topic_prefix.len() > 100 {
            return Err(invalid(
                "kafka.topic_prefix",
                "may hold only ASCII letters, digits, '.', '_' and '-' (at most 100)",
            ));
        }
        if !(1..=1000).contains(&self.kafka.partitions) {
            return Err(invalid("kafka.partitions", "must be between 1 and 1000"));
        }
        if self.kafka.replication_factor < 1 {
            return Err(invalid("kafka.replication_factor", "must be at least 1"));
        }
        if self.kafka.delivery_timeout_ms < 100 {
            return Err(invalid("kafka.delivery_timeout_ms", "must be at least 100"));
        }
        if !(1..=10_000_000).contains(&self.kafka.producer_queue_messages) {
            return Err(invalid(
                "kafka.producer_queue_messages",
                "must be between 1 and 10000000",
            ));
        }
        if self.kafka.producer_linger_ms > 1000 {
            return Err(invalid(
                "kafka.producer_linger_ms",
                "must be between 0 and 1000",
            ));
        }
        for (key, per_minute) in [
            (
                "limits.generation_per_minute",
                self.limits.generation_per_minute,
            ),
            (
                "limits.interactions_per_minute",
                self.limits.interactions_per_minute,
            ),
            ("limits.catalog_per_minute", self.limits.catalog_per_minute),
            ("limits.auth_per_minute", self.limits.auth_per_minute),
        ] {
            if per_minute > MAX_PER_MINUTE {
                return Err(invalid(
                    key,
                    format!("must be at most {MAX_PER_MINUTE} (0 means unlimited)"),
                ));
            }
        }
        if self.generation.backlog_threshold == 0 {
            return Err(invalid(
                "generation.backlog_threshold",
                "must be at least 1",
            ));
        }
        if self.generation.degraded_max_steps == 0 {
            return Err(invalid(
                "generation.degraded_max_steps",
                "must be at least 1",
            ));
        }
        if !(8..=16_384).contains(&self.generation.degraded_max_side) {
            return Err(invalid(
                "generation.degraded_max_side",
                "must be between 8 and 16384 pixels",
            ));
        }
        self.validate_query_api()?;
        if self.generation.backlog_interval_ms < 100 {
            return Err(invalid(
                "generation.backlog_interval_ms",
                "must be at least 100",
            ));
        }
        if !(self.registry.url.starts_with("http://") || self.registry.url.starts_with("https://"))
        {
            return Err(invalid(
                "registry.url",
                "must be an http:// or https:// URL",
            ));
        }
        tokio_postgres::Config::from_str(self.postgres.url.expose())
            .map_err(|e| invalid("postgres.url", e.to_string()))?;
        if self.postgres.pool_size == 0 {
            return Err(invalid("postgres.pool_size", "must be at least 1"));
        }
        let secret_len = self.auth.jwt_secret.expose().len();
        if secret_len < gallery_commands::auth::MIN_SECRET_LEN {
            return Err(invalid(
                "auth.jwt_secret",
                format!(
                    "must be at least {} bytes, got {secret_len}",
                    gallery_commands::auth::MIN_SECRET_LEN
                ),
            ));
        }
        let a = &self.accounts;
        if !(60..=86_400).contains(&a.access_ttl_secs) {
            return Err(invalid(
                "accounts.access_ttl_secs",
                "must be between 60 (a minute) and 86400 (a day)",
            ));
        }
        if !(1..=365).contains(&a.refresh_ttl_days) {
            return Err(invalid(
                "accounts.refresh_ttl_days",
                "must be between 1 and 365",
            ));
        }
        if !(8..=1_048_576).contains(&a.argon2_memory_kib) {
            return Err(invalid(
                "accounts.argon2_memory_kib",
                "must be between 8 and 1048576 (1 GiB)",
            ));
        }
        if !(1..=16).contains(&a.argon2_iterations) {
            return Err(invalid(
                "accounts.argon2_iterations",
                "must be between 1 and 16",
            ));
        }
        if self.scylla.nodes.split(',').all(|n| n.trim().is_empty()) {
            return Err(invalid("scylla.nodes", "must name at least one node"));
        }
        if self.scylla.replication_factor == 0 {
            return Err(invalid("scylla.replication_factor", "must be at least 1"));
        }
        self.scylla_settings()
            .validate()
            .map_err(|e| invalid("scylla.keyspace", e.to_string()))?;
        self.painter.validate()?;
        self.http.validate(self.media.limits.max_bytes)?;
        self.media.validate().map_err(|e| match e {
            gallery_commands::MediaError::Config { key, value, reason } => {
                invalid(key, format!("{value:?} {reason}"))
            }
            other => invalid("media", other.to_string()),
        })?;
        Ok(())
    }

    /// Token lifetimes and password hashing cost of the accounts library.
    pub fn account_settings(&self) -> AccountSettings {
        let a = &self.accounts;
        AccountSettings {
            access_ttl: Duration::from_secs(a.access_ttl_secs),
            refresh_ttl: Duration::from_secs(a.refresh_ttl_days.saturating_mul(86_400)),
            hash_cost: HashCost {
                memory_kib: a.argon2_memory_kib,
                iterations: a.argon2_iterations,
            },
        }
    }

    pub fn topics(&self) -> gallery_schemas::Topics {
        gallery_schemas::Topics::new(self.kafka.topic_prefix.clone())
    }

    pub fn registry(&self) -> gallery_schemas::RegistryConfig {
        gallery_schemas::RegistryConfig {
            url: self.registry.url.clone(),
            timeout: Duration::from_millis(self.registry.timeout_ms),
        }
    }

    pub fn rate_limits(&self) -> RateLimits {
        RateLimits {
            generation_per_minute: self.limits.generation_per_minute,
            interactions_per_minute: self.limits.interactions_per_minute,
            catalog_per_minute: self.limits.catalog_per_minute,
            auth_per_minute: self.limits.auth_per_minute,
        }
    }

    pub fn generation_policy(&self) -> GenerationPolicy {
        GenerationPolicy {
            backlog_threshold: self.generation.backlog_threshold,
            overload: self.generation.overload,
            degraded_max_steps: self.generation.degraded_max_steps,
            degraded_max_side: self.generation.degraded_max_side,
        }
    }

    /// Where the Scylla read model lives.
    pub fn scylla_settings(&self) -> gallery_projections::scylla::ScyllaSettings {
        gallery_projections::scylla::ScyllaSettings {
            nodes: self
                .scylla
                .nodes
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
            keyspace: self.scylla.keyspace.clone(),
            replication_factor: self.scylla.replication_factor,
        }
    }

    /// The generation worker's settings (the `painter` role).
    pub fn painter_settings(&self) -> gallery_gpu_workers::WorkerSettings {
        let p = &self.painter;
        let topics = self.topics();
        let group = p.group.clone().unwrap_or_else(|| topics.workers_group());
        let limits = self.media.limits;
        gallery_gpu_workers::WorkerSettings {
            group,
            threads: p.threads,
            max_held: p.max_held,
            progress_interval: Duration::from_millis(p.progress_interval_ms),
            degradation: gallery_gpu_workers::Degradation {
                backlog_threshold: p.backlog_threshold,
                max_steps: p.degraded_max_steps,
                max_side: p.degraded_max_side,
            },
            max_prompt_chars: p.max_prompt_chars,
            dedup_window: p.dedup_window,
            thumbnail_side: p.thumbnail_side,
            source_limits: gallery_gpu_workers::SourceLimits {
                max_bytes: limits.max_bytes,
                max_side: limits.max_side,
                max_pixels: limits.max_pixels,
            },
            ..gallery_gpu_workers::WorkerSettings::new(
                self.kafka.brokers.clone(),
                topics.clone(),
                p.worker_id.clone(),
            )
        }
    }

    pub fn uses_dev_secret(&self) -> bool {
        self.auth.jwt_secret.expose() == DEV_JWT_SECRET
    }

    pub fn uses_dev_media_secret(&self) -> bool {
        self.query_api.media_url_secret.expose() == gallery_query_api::DEV_MEDIA_URL_SECRET
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn a_short_secret_is_refused_with_its_key() {
        let mut c = Config::default();
        c.auth.jwt_secret = Secret::new("short");
        let err = c.validate().map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("configuration key auth.jwt_secret: must be at least 32 bytes, got 5".into())
        );
    }

    #[test]
    fn a_bad_topic_prefix_is_refused() {
        let mut c = Config::default();
        c.kafka.topic_prefix = "bad prefix".into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "kafka.topic_prefix",
                ..
            })
        ));
    }

    #[test]
    fn projector_batches_of_no_message_or_beyond_the_bound_are_refused() {
        let mut c = Config::default();
        c.projections.max_batch = 0;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "projections.max_batch",
                ..
            })
        ));
        c.projections.max_batch = MAX_PROJECTION_BATCH;
        c.projections.scylla_max_batch = MAX_PROJECTION_BATCH + 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "projections.scylla_max_batch",
                ..
            })
        ));
        c.projections.scylla_max_batch = 1;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn a_producer_linger_beyond_a_second_is_refused() {
        let mut c = Config::default();
        c.kafka.producer_linger_ms = 0;
        assert!(c.validate().is_ok());
        c.kafka.producer_linger_ms = 1001;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "kafka.producer_linger_ms",
                ..
            })
        ));
    }

    #[test]
    fn account_settings_default_to_15_minutes_and_30_days() {
        let s = Config::default().account_settings();
        assert_eq!(s.access_ttl, Duration::from_secs(900));
        assert_eq!(s.refresh_ttl, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn out_of_range_account_settings_are_refused_with_their_key() {
        let mut c = Config::default();
        c.accounts.access_ttl_secs = 5;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "accounts.access_ttl_secs",
                ..
            })
        ));
        let mut c = Config::default();
        c.accounts.argon2_memory_kib = 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "accounts.argon2_memory_kib",
                ..
            })
        ));
    }

    #[test]
    fn a_bad_store_url_is_refused_with_its_key() {
        let mut c = Config::default();
        c.media.store_url = "ftp://example.org/images".into();
        let err = c.validate().map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(
                "configuration key media.store_url: \"ftp://example.org/images\" must be a \
                 path, a file:// URL, an s3:// URL or memory://"
                    .into()
            )
        );
    }

    #[test]
    fn media_limits_are_validated_and_read_from_a_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let file = dir.path().join("media.toml");
        let toml = "[media]\nstore_url = \"s3://art/prod\"\n[media.limits]\nmax_side = 4096\n";
        assert!(std::fs::write(&file, toml).is_ok());
        let c = Config::load(Some(&file), &Overrides::default());
        let c = c.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(c.media.store_url, "s3://art/prod");
        assert_eq!(c.media.limits.max_side, 4096);
        assert_eq!(c.media.limits.min_side, 32);

        let mut bad = Config::default();
        bad.media.limits.min_side = 0;
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::Invalid {
                key: "media.limits.min_side",
                ..
            })
        ));
    }

    #[test]
    fn secrets_do_not_print() {
        let shown = format!("{:?}", Config::default());
        assert!(!shown.contains(DEV_JWT_SECRET));
        assert!(!shown.contains("gallery:gallery@"));
    }

    #[test]
    fn query_api_defaults_to_the_documented_values_and_is_validated() {
        let q = Config::default().query_api;
        let s = q.settings();
        assert_eq!((s.max_depth, s.max_complexity), (16, 500));
        assert_eq!(s.query_timeout, Duration::from_secs(10));
        assert_eq!(s.consistency_timeout, Duration::from_secs(5));
        assert_eq!(s.cache.ttl, Duration::from_secs(60));
        assert_eq!(s.persisted_queries, 1_000);
        assert_eq!(s.max_subscriptions_per_connection, 100);
        assert_eq!(s.max_websocket_connections, 10_000);
        assert_eq!(s.ws_init_timeout, Duration::from_secs(10));
        assert_eq!(
            (s.max_document_bytes, s.max_document_tokens),
            (65_536, 10_000)
        );
        assert!(s.introspection);
        for depth in [0, 33, 50] {
            let mut c = Config::default();
            c.query_api.max_depth = depth;
            assert!(
                matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "query_api.max_depth"),
                "max_depth {depth}"
            );
        }
        let mut c = Config::default();
        c.query_api.max_depth = 32;
        assert!(c.validate().is_ok());
        c.query_api.max_document_bytes = 10;
        assert!(
            matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "query_api.max_document_bytes")
        );
        for limit in [0, 10_001] {
            let mut c = Config::default();
            c.query_api.max_subscriptions_per_connection = limit;
            assert!(
                matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "query_api.max_subscriptions_per_connection"),
                "max_subscriptions_per_connection {limit}"
            );
        }
        for limit in [0, 1_000_001] {
            let mut c = Config::default();
            c.query_api.max_websocket_connections = limit;
            assert!(
                matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "query_api.max_websocket_connections"),
                "max_websocket_connections {limit}"
            );
        }
        for ms in [0, 99, 60_001] {
            let mut c = Config::default();
            c.query_api.ws_init_timeout_ms = ms;
            assert!(
                matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "query_api.ws_init_timeout_ms"),
                "ws_init_timeout_ms {ms}"
            );
        }
    }

    #[test]
    fn media_urls_default_to_an_hour_relative_and_are_validated() {
        let c = Config::default();
        let s = c.query_api.media_url_settings();
        assert_eq!(s.ttl, Duration::from_secs(3600));
        assert_eq!(s.public_base_url, None);
        assert!(c.uses_dev_media_secret());
        assert!(!format!("{c:?}").contains(gallery_query_api::DEV_MEDIA_URL_SECRET));
        let mut c = Config::default();
        c.query_api.media_url_secret = Secret::new("short");
        let err = c.validate().map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err("configuration key query_api.media_url_secret: the media URL secret must be at least 32 bytes, got 5".into())
        );
        for bad in ["ftp://x", "https://x/?a=1", "example.org"] {
            let mut c = Config::default();
            c.query_api.public_url = bad.into();
            assert!(
                matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "query_api.public_url"),
                "{bad}"
            );
        }
        let mut c = Config::default();
        c.query_api.public_url = "https://gallery.example.org".into();
        c.query_api.media_url_ttl_secs = 600;
        assert!(c.validate().is_ok());
        c.query_api.media_url_ttl_secs = 5;
        assert!(c.validate().is_err());
    }

    #[test]
    fn limits_and_generation_default_to_the_documented_values() {
        let c = Config::default();
        assert_eq!(c.rate_limits(), RateLimits::default());
        assert_eq!(c.limits.generation_per_minute, 10);
        assert_eq!(c.generation_policy(), GenerationPolicy::default());
        assert_eq!(c.generation.overload, OverloadPolicy::Degrade);
    }

    #[test]
    fn limits_and_generation_are_validated() {
        let mut c = Config::default();
        c.limits.auth_per_minute = MAX_PER_MINUTE + 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "limits.auth_per_minute",
                ..
            })
        ));
        let mut c = Config {
            limits: LimitsConfig::from(RateLimits::UNLIMITED),
            ..Config::default()
        };
        assert!(c.validate().is_ok());
        c.generation.degraded_max_side = 4;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "generation.degraded_max_side",
                ..
            })
        ));
    }

    #[test]
    fn the_overload_policy_reads_from_toml() {
        let c: Result<GenerationConfig, _> = Figment::from(Toml::string(
            "backlog_threshold = 5\noverload = \"refuse\"\ndegraded_max_steps = 4\ndegraded_max_side = 128\nbacklog_interval_ms = 500",
        ))
        .extract();
        assert_eq!(c.map(|c| c.overload).ok(), Some(OverloadPolicy::Refuse));
    }

    #[test]
    #[allow(clippy::result_large_err)] // the closure's error type is figment's own
    fn only_sectioned_variables_configure_and_flags_win() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GALLERY_STACK_DIR", "/somewhere");
            jail.set_env("GALLERY_KAFKA_PORT", "19092");
            jail.set_env("GALLERY_KAFKA__BROKERS", "env-broker:9092");
            jail.set_env("GALLERY_KAFKA__TOPIC_PREFIX", "env.");
            let from_env = Config::load(None, &Overrides::default())
                .map_err(|e| figment::Error::from(e.to_string()))?;
            assert_eq!(from_env.kafka.brokers, "env-broker:9092");
            assert_eq!(from_env.kafka.topic_prefix, "env.");
            let flags = Overrides {
                kafka: Some(KafkaOverrides {
                    brokers: "flag-broker:9092".into(),
                }),
                ..Overrides::default()
            };
            let from_flags =
                Config::load(None, &flags).map_err(|e| figment::Error::from(e.to_string()))?;
            assert_eq!(from_flags.kafka.brokers, "flag-broker:9092");
            assert_eq!(from_flags.kafka.topic_prefix, "env.");
            jail.set_env("GALLERY_KAFKA__NOPE", "1");
            assert!(Config::load(None, &Overrides::default()).is_err());
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // the closure's error type is figment's own
    fn the_read_store_reads_from_both_variable_names() {
        figment::Jail::expect_with(|jail| {
            let config = Config::load(None, &Overrides::default())
                .map_err(|e| figment::Error::from(e.to_string()))?;
            assert_eq!(config.read.store, ReadStore::Postgres);
            jail.set_env("GALLERY_READ_STORE", "scylla");
            let config = Config::load(None, &Overrides::default())
                .map_err(|e| figment::Error::from(e.to_string()))?;
            assert_eq!(config.read.store, ReadStore::Scylla);
            jail.set_env("GALLERY_READ__STORE", "postgres");
            let config = Config::load(None, &Overrides::default())
                .map_err(|e| figment::Error::from(e.to_string()))?;
            assert_eq!(config.read.store, ReadStore::Postgres);
            jail.set_env("GALLERY_READ__STORE", "mysql");
            assert!(Config::load(None, &Overrides::default()).is_err());
            Ok(())
        });
    }

    #[test]
    fn scylla_settings_are_validated() {
        let mut c = Config::default();
        c.scylla.keyspace = "bad-name".into();
        let e = c.validate().map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("scylla.keyspace"), "{e}");
        let mut c = Config::default();
        c.scylla.nodes = " , ".into();
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.scylla.replication_factor = 0;
        assert!(c.validate().is_err());
        assert_eq!(
            Config::default().scylla_settings().nodes,
            vec!["127.0.0.1:9042".to_owned()]
        );
    }

    #[test]
    fn an_acknowledged_event_needs_two_replicas_when_there_are_two() {
        let mut k = Config::default().kafka;
        for (replicas, min_insync) in [(1, 1), (2, 2), (3, 2), (5, 2)] {
            k.replication_factor = replicas;
            assert_eq!(k.min_insync_replicas(), min_insync, "{replicas} replicas");
        }
    }

    #[test]
    fn the_painter_reads_its_section_and_is_validated() {
        let c = Config::default();
        let s = c.painter_settings();
        assert_eq!(s.group, "gallery.gpu-workers");
        assert_eq!(s.transactional_id(), "gallery.painter-1");
        assert_eq!((s.threads, s.max_held), (1, 1000));
        assert_eq!(s.max_prompt_chars, gallery_schemas::Prompt::MAX_CHARS);
        assert_eq!(c.painter.device, DeviceChoice::Auto);
        let p: Result<PainterConfig, _> =
            Figment::from(Serialized::defaults(PainterConfig::default()))
                .merge(Toml::string(
                    "worker_id = \"gpu-7\"\nthreads = 2\ndevice = \"cpu\"\ngroup = \"painters\"\n\
                     text_to_image = \"sdxl-turbo\"",
                ))
                .extract();
        let p = p.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (p.worker_id.as_str(), p.threads, p.device),
            ("gpu-7", 2, DeviceChoice::Cpu)
        );
        assert_eq!(p.group.as_deref(), Some("painters"));
        assert_eq!(p.text_to_image, Some(TextModel::SdxlTurbo));
        assert_eq!(Config::default().painter.text_to_image, None);
        for (key, bad) in [
            (
                "painter.worker_id",
                PainterConfig {
                    worker_id: "two words".into(),
                    ..PainterConfig::default()
                },
            ),
            (
                "painter.threads",
                PainterConfig {
                    threads: 0,
                    ..PainterConfig::default()
                },
            ),
            (
                "painter.degraded_max_side",
                PainterConfig {
                    degraded_max_side: 4,
                    ..PainterConfig::default()
                },
            ),
            (
                "painter.group",
                PainterConfig {
                    group: Some(" ".into()),
                    ..PainterConfig::default()
                },
            ),
        ] {
            let c = Config {
                painter: bad,
                ..Config::default()
            };
            assert!(
                matches!(c.validate(), Err(ConfigError::Invalid { key: k, .. }) if k == key),
                "{key}"
            );
        }
    }

    #[test]
    fn flags_override_defaults() {
        let overrides = Overrides {
            kafka: Some(KafkaOverrides {
                brokers: "10.0.0.1:9092".into(),
            }),
            ..Overrides::default()
        };
        let c = Config::load(None, &overrides).map(|c| c.kafka.brokers);
        assert_eq!(c.ok().as_deref(), Some("10.0.0.1:9092"));
    }
}
