//! The write side of Gallery: authenticated, validated commands that become durable Kafka
//! events. Usable as a library ([`Commands`]) and as an HTTP service ([`http::router`]).

pub mod auth;
pub mod db;
mod error;
pub mod http;
mod kafka;
pub mod media;
mod service;

pub use auth::{AuthError, Principal, TokenKeys};
pub use error::CommandError;
pub use kafka::{KafkaPublisher, ProducerConfig};
pub use media::{
    ImageFormat, ImageInfo, ImageLimits, MediaConfig, MediaError, MediaStore, StoreLocation,
    check_image,
};
pub use service::{Accepted, Commands, EventPublisher, PublishError, PublishFuture};
