//! The event contract of Gallery.
//!
//! The Avro schemas under `avro/` are the source of truth. This crate holds the Rust types of
//! the events, the identifiers they carry (parsed at the edge, never raw strings), the topic
//! names, and the codec that frames events the Confluent way (magic byte, schema id, Avro body)
//! through a schema registry.

mod codec;
mod events;
mod ids;
mod topics;

pub use codec::{CodecError, EventCodec, RegistryConfig};
pub use events::{Event, LikeSet, Position};
pub use ids::{ArtworkId, IdError, UserId};
pub use topics::Topics;
