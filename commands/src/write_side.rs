//! The write side built from its settings: one idempotent producer, the commands and the
//! accounts over it and one pool, and the generation backlog's monitor. A
//! process builds it once and shares it between the command service and the GraphQL
//! mutations.

use std::sync::Arc;

use deadpool_postgres::Pool;
use gallery_schemas::EventCodec;
use gallery_schemas::settings::KafkaSettings;

use crate::accounts::HashError;
use crate::painter_backlog::BacklogError;
use crate::settings::{AccountsSettings, GenerationSettings};
use crate::{
    Accounts, BacklogAdmission, BacklogConfig, BacklogMonitor, Commands, ImageLimits,
    KafkaPublisher, LimitedImages, MediaStore, ProducerConfig, RateLimiter, RateLimits, TokenKeys,
};

/// The sections the write side reads.
#[derive(Debug, Clone, Copy)]
pub struct WriteSettings<'a> {
    pub kafka: &'a KafkaSettings,
    pub accounts: &'a AccountsSettings,
    pub limits: RateLimits,
    pub generation: &'a GenerationSettings,
    /// What an uploaded image may be (`media.limits`).
    pub images: ImageLimits,
}

/// What the write side shares with the rest of the process.
#[derive(Debug, Clone)]
pub struct WriteDeps {
    pub codec: EventCodec,
    pub pool: Pool,
    pub keys: Arc<TokenKeys>,
    /// The process's one image store (uploads and the painter's sources meet in it).
    pub media: MediaStore,
}

/// The write side, built; [`WriteSide::backlog`] must run for generation requests to see the
/// painter's backlog.
#[derive(Debug)]
pub struct WriteSide {
    pub commands: Commands,
    pub accounts: Accounts,
    pub backlog: BacklogMonitor,
}

/// Why the write side could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("Kafka producer for {brokers}")]
    Producer {
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("password hashing settings")]
    Accounts(#[from] HashError),
    #[error("generation backlog monitor")]
    Backlog(#[from] BacklogError),
}

impl WriteSide {
    /// Builds the write side; nothing is sent or measured until it is used or run.
    pub fn build(settings: WriteSettings<'_>, deps: WriteDeps) -> Result<Self, BuildError> {
        let topics = settings.kafka.topics();
        let publisher = KafkaPublisher::new(
            &ProducerConfig::from_settings(settings.kafka),
            deps.codec,
            topics.clone(),
        )
        .map_err(|source| BuildError::Producer {
            brokers: settings.kafka.brokers.clone(),
            source,
        })?;
        let publisher = Arc::new(publisher);
        let accounts = Accounts::new(
            deps.pool.clone(),
            publisher.clone(),
            deps.keys.clone(),
            settings.accounts.account_settings(),
        )?;
        let (backlog, measured) = BacklogMonitor::new(&BacklogConfig {
            interval: settings.generation.backlog_interval(),
            ..BacklogConfig::new(settings.kafka.brokers.clone(), topics)
        })?;
        let admission = BacklogAdmission {
            backlog: measured,
            policy: settings.generation.policy(),
            retry_after_secs: settings.generation.retry_after_secs(),
        };
        let commands = Commands::new(publisher, deps.pool)
            .with_images(Arc::new(LimitedImages {
                store: deps.media,
                limits: settings.images,
            }))
            .with_admission(Arc::new(admission))
            .with_limiter(Arc::new(RateLimiter::new(settings.limits)));
        Ok(Self {
            commands,
            accounts,
            backlog,
        })
    }
}
