//! What the command library is given to work with: the publisher that makes events durable
//! (and finds an earlier attempt's event in the log), the image store, and the admission of
//! generation requests. Kafka, object storage and the backlog implement them; tests wrap or
//! replace them.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use gallery_schemas::{CodecError, Event, ImageRef, Position};
use rdkafka::error::KafkaError;

use crate::decide::generation::Admission;
use crate::error::CommandError;
use crate::lookup::LookupError;

/// Why an event could not be made durable.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Kafka failed the send, or gave no answer; the event may still be written.
    #[error("event store unavailable")]
    Kafka(#[source] KafkaError),
    /// No acknowledgement came within the bound; the event may still be written.
    #[error("event store unavailable: no acknowledgement within {} ms", waited.as_millis())]
    NoAcknowledgement { waited: Duration },
    /// The producer shut down before the event was acknowledged.
    #[error("event store unavailable: the producer shut down before the event was acknowledged")]
    ProducerClosed,
    /// The schema registry is unreachable or answered with a transient error.
    #[error("event store unavailable: the schema registry")]
    Registry(#[source] CodecError),
    /// The log could not be searched for the event of an earlier attempt (a takeover).
    #[error(
        "event store unavailable: could not search the log for the event of an earlier attempt"
    )]
    Search(#[source] Box<LookupError>),
    /// Every Kafka broker is unreachable; the event was refused before it was sent.
    #[error("event store unavailable: every Kafka broker is down")]
    BrokersDown,
    /// The producer holds as many unacknowledged events as it may; the event was refused.
    #[error("event store overloaded: the producer queue is full")]
    QueueFull,
    /// The event could not be encoded or decoded (a bug or an incompatible schema).
    #[error("event could not be encoded")]
    Encode(#[source] CodecError),
}

impl PublishError {
    /// True when retrying later may succeed (the client gets `503` and `Retry-After`).
    pub fn is_transient(&self) -> bool {
        !matches!(self, PublishError::Encode(_))
    }

    /// True when the event certainly did not reach Kafka: it was refused before it was
    /// handed to the producer. Any other failure of a send may still have written it, one
    /// taken back out of the producer's queue included (it may have been waiting for a
    /// retry after a request that was appended).
    pub fn surely_unwritten(&self) -> bool {
        matches!(
            self,
            PublishError::BrokersDown | PublishError::QueueFull | PublishError::Encode(_)
        )
    }
}

pub type PublishFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Position, PublishError>> + Send + 'a>>;
pub type EncodeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Encoded, PublishError>> + Send + 'a>>;
pub type DecodeFuture<'a> = Pin<Box<dyn Future<Output = Result<Event, PublishError>> + Send + 'a>>;
pub type FindFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Position>, LookupError>> + Send + 'a>>;

/// An event encoded for Kafka: its topic, its message key and its value, exactly the bytes
/// that are sent. Sending the same `Encoded` again writes a byte-identical copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
}

/// Writes events durably, in two steps so that the exact bytes can be kept before they are
/// sent (a retried command looks for them in the log, and sends them if they are not there).
pub trait EventPublisher: Send + Sync + std::fmt::Debug {
    /// Encodes `event` for its topic (registering its schema on first use); sends nothing.
    fn encode<'a>(&'a self, event: &'a Event) -> EncodeFuture<'a>;

    /// Sends encoded bytes. Resolves only once they are acknowledged by every in-sync
    /// replica; the returned position is where they landed.
    fn send<'a>(&'a self, message: &'a Encoded) -> PublishFuture<'a>;

    /// The event an [`Encoded`] holds (the inverse of [`EventPublisher::encode`]).
    fn decode<'a>(&'a self, message: &'a Encoded) -> DecodeFuture<'a>;

    /// How long a send may still write after it started: once this has passed, every send
    /// begun before has resolved, one way or the other.
    fn max_in_flight(&self) -> Duration;

    /// Where `message` is in the log, if a copy of it was written at `since` or later (give
    /// or take the clocks' disagreement); `None` when the log holds none. For a takeover, so
    /// that an event a dead attempt wrote is not sent again.
    fn find<'a>(&'a self, message: &'a Encoded, since: SystemTime) -> FindFuture<'a>;

    /// Encodes and sends `event`.
    fn publish<'a>(&'a self, event: &'a Event) -> PublishFuture<'a> {
        Box::pin(async move {
            let message = self.encode(event).await?;
            self.send(&message).await
        })
    }
}

/// What kind of image is being stored (they have different limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// A curator's artwork image.
    Artwork,
    /// A visitor's photo for image-to-image.
    Photo,
}

pub type ImageFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ImageRef, CommandError>> + Send + 'a>>;

/// Checks an uploaded image by its content and stores it, content-addressed.
pub trait ImageStore: Send + Sync + std::fmt::Debug {
    fn put_image(&self, bytes: Vec<u8>, kind: ImageKind) -> ImageFuture<'_>;
}

/// Why a generation request is refused for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overload {
    pub backlog: u64,
    /// Seconds the client should wait.
    pub retry_after: u64,
}

/// Admits generation requests given the backlog.
pub trait AdmissionPolicy: Send + Sync + std::fmt::Debug {
    fn admit(&self) -> Result<Admission, Overload>;
}

/// Admits everything normally.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysAdmit;

impl AdmissionPolicy for AlwaysAdmit {
    fn admit(&self) -> Result<Admission, Overload> {
        Ok(Admission::Normal)
    }
}
