//! The write side of Gallery: authenticated, validated commands that become durable Kafka
//! events. Usable as a library ([`Commands`]) and as an HTTP service ([`http::router`]).

pub mod accounts;
pub mod auth;
pub mod backlog;
pub mod db;
pub mod decide;
mod error;
pub mod http;
pub mod idempotency;
pub mod json;
mod kafka;
mod lookup;
pub mod media;
pub mod metrics;
pub mod openapi;
mod ops;
pub mod placement;
pub mod ratelimit;
mod service;
mod state;

pub use accounts::{AccountError, AccountSettings, Accounts, Session};
pub use auth::{AuthError, Principal, TokenKeys};
pub use backlog::{
    Admission, Backlog, BacklogAdmission, BacklogConfig, BacklogMonitor, GenerationPolicy,
    GenerationSize, OverloadPolicy, admit,
};
pub use error::CommandError;
pub use kafka::{BrokerHealth, KafkaPublisher, ProducerConfig, producer_client_config};
pub use lookup::LookupError;
pub use media::{
    ImageFormat, ImageInfo, ImageLimits, LimitedImages, MediaConfig, MediaError, MediaStore,
    StoreLocation, check_image,
};
pub use ops::{ArtworkUpload, GenerationInput};
pub use ratelimit::{CommandClass, RateLimited, RateLimiter, RateLimits, Subject};
pub use service::{
    Accepted, AdmissionPolicy, AlwaysAdmit, Commands, Context, DecodeFuture, EncodeFuture, Encoded,
    EventPublisher, FindFuture, ImageFuture, ImageKind, ImageStore, Overload, PublishError,
    PublishFuture,
};
