//! The write side of Gallery: authenticated, validated commands that become durable Kafka
//! events. Usable as a library ([`Commands`]) and as an HTTP service ([`http::router`]).
//!
//! What each module owns: `decide` (the pure rules: a command and the state it needs in, events
//! or a refusal out), `ops` (every command as a method of [`Commands`]: load the state, decide,
//! publish, record), `library` (the [`Commands`] library), `ports` (what it is given: the
//! publisher it sends through, the image store, the admission of generation requests),
//! `repository` (the aggregate state commands are decided on, rows in Postgres; its
//! statements, and the idempotency store's, are files of `sql/`, one per statement, named by
//! what it does and loaded at compile time), `db` (the
//! `commands` schema: its migrations in `migrations/*.sql`, connections, errors),
//! `idempotency` (keys, attempts and takeovers), `kafka` and `lookup` (the publisher, and the
//! search for an earlier attempt's event), `placement` (which partition a key goes to),
//! `painter_backlog` (the painter's backlog, measured, and the admission of generation requests
//! by it), `ratelimit`, `auth` and `accounts` (tokens
//! and users), `media` (uploads and object storage), `http`, `body` and `openapi` (the HTTP
//! service, its request bodies and its OpenAPI document), `input` (the one conversion from what
//! a client sends, over HTTP or GraphQL, to a command's input), `error` (the one error model: code,
//! status and public message of every failure), `settings` (the sections of the configuration
//! it reads, with their defaults and checks), `write_side` (the write side built from them), `metrics`.

pub mod accounts;
pub mod auth;
pub mod body;
pub mod db;
pub mod decide;
mod error;
pub mod http;
pub mod idempotency;
pub mod input;
mod kafka;
mod library;
mod lookup;
pub mod media;
pub mod metrics;
pub mod openapi;
mod ops;
pub mod painter_backlog;
pub mod placement;
mod ports;
pub mod ratelimit;
mod repository;
pub mod settings;
pub mod write_side;

pub use accounts::{AccountError, AccountSettings, Accounts, Session};
pub use auth::{AuthError, Principal, TokenKeys};
pub use body::BodyError;
pub use error::{Code, CommandError};
pub use kafka::{BrokerHealth, KafkaPublisher, ProducerConfig, producer_client_config};
pub use library::{Accepted, Commands, Context};
pub use lookup::LookupError;
pub use media::{
    ImageFormat, ImageInfo, ImageLimits, LimitedImages, MediaConfig, MediaError, MediaStore,
    StoreLocation, check_image,
};
pub use ops::{ArtworkUpload, GenerationInput};
pub use painter_backlog::{
    Backlog, BacklogAdmission, BacklogConfig, BacklogMonitor, GenerationPolicy, OverloadPolicy,
};
pub use ports::{
    AdmissionPolicy, AlwaysAdmit, DecodeFuture, EncodeFuture, Encoded, EventPublisher, FindFuture,
    ImageFuture, ImageKind, ImageStore, Overload, PublishError, PublishFuture,
};
pub use ratelimit::{CommandClass, RateLimited, RateLimiter, RateLimits, Subject};
