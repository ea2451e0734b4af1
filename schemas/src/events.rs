//! The Rust side of the Avro schemas: one type per event, and [`Event`] over all of them.

use uuid::Uuid;

use crate::ids::{ArtworkId, UserId};

/// The fact "user U set like(artwork A) = liked". See `avro/gallery.interactions.LikeSet.avsc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LikeSet {
    pub event_id: Uuid,
    pub user_id: UserId,
    pub artwork_id: ArtworkId,
    pub liked: bool,
    /// Milliseconds since the Unix epoch, UTC.
    pub occurred_at_ms: i64,
}

/// Every event Gallery writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    LikeSet(LikeSet),
}

impl Event {
    pub fn event_id(&self) -> Uuid {
        match self {
            Event::LikeSet(e) => e.event_id,
        }
    }

    /// The Kafka message key: events that must stay ordered relative to each other share it.
    pub fn key(&self) -> &str {
        match self {
            Event::LikeSet(e) => e.artwork_id.as_str(),
        }
    }
}

impl From<LikeSet> for Event {
    fn from(e: LikeSet) -> Self {
        Event::LikeSet(e)
    }
}

/// Where an event landed in Kafka. Doubles as a read-your-writes token: a reader that has
/// applied `offset` of `partition` of `topic` has seen the event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}
