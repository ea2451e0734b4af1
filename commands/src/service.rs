//! The command library: decide which event a command produces, then publish it durably.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use gallery_schemas::{ArtworkId, Event, LikeSet, Position, UserId};
use uuid::Uuid;

use crate::error::CommandError;

/// Why an event could not be made durable.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Kafka or the registry is unreachable or timed out; nothing is known to be written.
    #[error("event store unavailable: {message}")]
    Unavailable { message: String },
    /// Every Kafka broker is unreachable; the event was refused before it was sent.
    #[error("event store unavailable: every Kafka broker is down")]
    BrokersDown,
    /// The producer holds as many unacknowledged events as it may; the event was refused.
    #[error("event store overloaded: the producer queue is full")]
    QueueFull,
    /// The event could not be encoded (a bug or an incompatible schema).
    #[error("event could not be encoded: {message}")]
    Encode { message: String },
}

impl PublishError {
    /// True when retrying later may succeed (the client gets `503` and `Retry-After`).
    pub fn is_transient(&self) -> bool {
        match self {
            PublishError::Unavailable { .. }
            | PublishError::BrokersDown
            | PublishError::QueueFull => true,
            PublishError::Encode { .. } => false,
        }
    }
}

pub type PublishFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Position, PublishError>> + Send + 'a>>;

/// Writes events durably. Resolves only once the event is acknowledged by every in-sync
/// replica; the returned position is where it landed.
pub trait EventPublisher: Send + Sync + std::fmt::Debug {
    fn publish<'a>(&'a self, event: &'a Event) -> PublishFuture<'a>;
}

/// What a client gets back for an accepted command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub event_id: Uuid,
    pub position: Position,
}

/// The write side as a library: the HTTP service and GraphQL mutations both call this.
#[derive(Debug, Clone)]
pub struct Commands {
    publisher: Arc<dyn EventPublisher>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Decides the fact a like or unlike command produces. Pure: the caller supplies the id and
/// the clock.
pub fn decide_like(
    user: &UserId,
    artwork: &ArtworkId,
    liked: bool,
    event_id: Uuid,
    now_ms: i64,
) -> Event {
    Event::LikeSet(LikeSet {
        event_id,
        user_id: user.clone(),
        artwork_id: artwork.clone(),
        liked,
        occurred_at: now_ms,
    })
}

impl Commands {
    pub fn new(publisher: Arc<dyn EventPublisher>) -> Self {
        Self { publisher }
    }

    /// `user` sets their like of `artwork` to `liked`.
    #[tracing::instrument(skip(self), fields(user = %user, artwork = %artwork))]
    pub async fn set_like(
        &self,
        user: &UserId,
        artwork: &ArtworkId,
        liked: bool,
    ) -> Result<Accepted, CommandError> {
        let event = decide_like(user, artwork, liked, Uuid::now_v7(), now_ms());
        let position = self.publisher.publish(&event).await?;
        tracing::debug!(topic = %position.topic, partition = position.partition, offset = position.offset, "like fact durable");
        Ok(Accepted {
            event_id: event.event_id(),
            position,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_user_and_artwork_when_unliking_then_the_fact_is_liked_false() {
        let user = UserId::parse("u").unwrap_or_else(|e| unreachable!("{e}"));
        let artwork = ArtworkId::parse("a").unwrap_or_else(|e| unreachable!("{e}"));
        let id = Uuid::now_v7();
        let event = decide_like(&user, &artwork, false, id, 42);
        assert_eq!(
            event,
            Event::LikeSet(LikeSet {
                event_id: id,
                user_id: user,
                artwork_id: artwork,
                liked: false,
                occurred_at: 42
            })
        );
        assert_eq!(event.key(), "a");
    }
}
