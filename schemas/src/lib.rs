//! The event contract of Gallery.
//!
//! The Avro schemas under `avro/` are the source of truth; `avro/released/` keeps the last
//! released version of each, and a test holds every schema BACKWARD-compatible with it. This
//! crate holds the Rust types of the events, the identifiers and texts they carry (parsed at
//! the edge, never raw strings), the topic names, and the codec that frames events the
//! Confluent way (magic byte, schema id, Avro body) through a schema registry.

mod codec;
mod events;
mod ids;
pub mod json_schema;
mod text;
mod topics;

pub use codec::{
    CodecError, EventCodec, MAX_DECODE_ALLOCATION, RegistryConfig, SCHEMAS, decode_body, frame,
    from_avro, schema_of, stream_of, to_avro, unframe,
};
pub use events::{
    ArtworkAdded, ArtworkRemoved, ArtworkViewed, CommentDeleted, CommentPosted, Event,
    ExhibitionClosed, ExhibitionCreated, ExhibitionPublished, FavoriteSet,
    GenerationCancelConfirmed, GenerationCancelled, GenerationCompleted, GenerationFailed,
    GenerationMode, GenerationProgressed, GenerationRequested, GenerationStarted, ImageRef,
    LikeSet, Position, Role, Stream, UserRegistered,
};
pub use ids::{ArtworkId, IdError, UserId};
pub use text::{CommentBody, Description, PersonName, Prompt, StyleName, TextError, Title};
pub use topics::{Topics, dead_letter_headers};
