//! The write side of Gallery: authenticated, validated commands that become durable Kafka
//! events. Usable as a library ([`Commands`]) and as an HTTP service ([`http::router`]).

pub mod accounts;
pub mod auth;
pub mod db;
mod error;
pub mod http;
pub mod json;
mod kafka;
mod service;

pub use accounts::{AccountError, AccountSettings, Accounts, Session};
pub use auth::{AuthError, Principal, TokenKeys};
pub use error::CommandError;
pub use kafka::{KafkaPublisher, ProducerConfig};
pub use service::{Accepted, Commands, EventPublisher, PublishError, PublishFuture};
