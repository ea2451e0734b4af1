//! The Rust side of the Avro schemas: one struct per record, grouped by topic, and [`Event`]
//! over all of them. Field names and types match the `.avsc` files under `avro/` exactly
//! (a test encodes every event against its schema).

mod catalog;
mod generation;
mod interactions;
mod users;

pub use catalog::{
    ArtworkAdded, ArtworkRemoved, ExhibitionClosed, ExhibitionCreated, ExhibitionPublished,
    ImageRef,
};
pub use generation::{
    GenerationCancelConfirmed, GenerationCancelled, GenerationCompleted, GenerationFailed,
    GenerationMode, GenerationProgressed, GenerationRequested, GenerationStarted,
};
pub use interactions::{ArtworkViewed, CommentDeleted, CommentPosted, FavoriteSet, LikeSet};
pub use users::{Role, UserRegistered};

use uuid::Uuid;

/// Uuids as their hyphenated text, as Avro's `uuid` logical type on `string` wants them
/// (the Avro serializer is not "human readable", so `Uuid` alone would become bytes).
pub(crate) mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

/// The topic family an event belongs to (the topic name adds the deployment's prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Key: user id.
    Users,
    /// Key: exhibition id.
    Catalog,
    /// Key: artwork id.
    Interactions,
    /// Key: generation request id.
    Generation,
}

macro_rules! events {
    ($($variant:ident => $stream:ident, key = |$e:ident| $key:expr;)*) => {
        /// Every event Gallery writes.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $($variant($variant),)*
        }

        impl Event {
            pub fn event_id(&self) -> Uuid {
                match self {
                    $(Event::$variant(e) => e.event_id,)*
                }
            }

            /// Milliseconds since the Unix epoch, UTC.
            pub fn occurred_at(&self) -> i64 {
                match self {
                    $(Event::$variant(e) => e.occurred_at,)*
                }
            }

            pub fn stream(&self) -> Stream {
                match self {
                    $(Event::$variant(_) => Stream::$stream,)*
                }
            }

            /// The Kafka message key: events that must stay ordered relative to each other
            /// share it.
            pub fn key(&self) -> String {
                match self {
                    $(Event::$variant($e) => $key,)*
                }
            }

            /// The full name of the Avro record.
            pub fn record_name(&self) -> &'static str {
                match self {
                    $(Event::$variant(_) => $variant::RECORD,)*
                }
            }
        }

        $(impl From<$variant> for Event {
            fn from(e: $variant) -> Self {
                Event::$variant(e)
            }
        })*
    };
}

events! {
    UserRegistered => Users, key = |e| e.user_id.to_string();
    ExhibitionCreated => Catalog, key = |e| e.exhibition_id.to_string();
    ArtworkAdded => Catalog, key = |e| e.exhibition_id.to_string();
    ArtworkRemoved => Catalog, key = |e| e.exhibition_id.to_string();
    ExhibitionPublished => Catalog, key = |e| e.exhibition_id.to_string();
    ExhibitionClosed => Catalog, key = |e| e.exhibition_id.to_string();
    LikeSet => Interactions, key = |e| e.artwork_id.to_string();
    FavoriteSet => Interactions, key = |e| e.artwork_id.to_string();
    CommentPosted => Interactions, key = |e| e.artwork_id.to_string();
    CommentDeleted => Interactions, key = |e| e.artwork_id.to_string();
    ArtworkViewed => Interactions, key = |e| e.artwork_id.to_string();
    GenerationRequested => Generation, key = |e| e.request_id.to_string();
    GenerationCancelled => Generation, key = |e| e.request_id.to_string();
    GenerationStarted => Generation, key = |e| e.request_id.to_string();
    GenerationProgressed => Generation, key = |e| e.request_id.to_string();
    GenerationCompleted => Generation, key = |e| e.request_id.to_string();
    GenerationFailed => Generation, key = |e| e.request_id.to_string();
    GenerationCancelConfirmed => Generation, key = |e| e.request_id.to_string();
}

/// Where an event landed in Kafka. Doubles as a read-your-writes token: a reader that has
/// applied `offset` of `partition` of `topic` has seen the event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}
