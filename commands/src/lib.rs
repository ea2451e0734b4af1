//! The write side of Gallery: authenticated, validated commands that become durable Kafka
//! events. Usable as a library ([`Commands`]) and as an HTTP service ([`http::router`]).

pub mod auth;
pub mod backlog;
pub mod db;
mod error;
pub mod http;
mod kafka;
pub mod ratelimit;
mod service;

pub use auth::{AuthError, Principal, TokenKeys};
pub use backlog::{
    Admission, Backlog, BacklogConfig, BacklogMonitor, GenerationPolicy, GenerationSize,
    OverloadPolicy, admit,
};
pub use error::CommandError;
pub use kafka::{BrokerHealth, KafkaPublisher, ProducerConfig};
pub use ratelimit::{CommandClass, RateLimited, RateLimiter, RateLimits, Subject};
pub use service::{Accepted, Commands, EventPublisher, PublishError, PublishFuture};
