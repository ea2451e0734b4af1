//! The event contract of Gallery.
//!
//! The Avro schemas under `avro/` are the source of truth; `avro/released/` keeps the last
//! released version of each, and a test holds every schema BACKWARD-compatible with it. This
//! crate holds the Rust types of the events, the identifiers and texts they carry (parsed at
//! the edge, never raw strings), the topic and group names, the statuses stored as text, the
//! read model's name and announcements (`read_model`), the rule by which a generation is
//! scaled down ([`generation_size`]), the `kafka` and `registry` sections of the configuration
//! ([`settings`]), and the codec that frames events the Confluent way
//! (magic byte, schema id, Avro body) through a schema registry.

mod codec;
mod events;
pub mod generation_size;
mod ids;
pub mod json_schema;
pub mod read_model;
pub mod settings;
mod status;
mod text;
mod topics;

pub use codec::{
    CodecError, EventCodec, MAX_DECODE_ALLOCATION, RegistryConfig, RegistryFailure, SCHEMAS,
    decode_body, frame, from_avro, schema_of, stream_of, to_avro, unframe,
};
pub use events::{
    ArtworkAdded, ArtworkRemoved, ArtworkViewed, CommentDeleted, CommentPosted, Event,
    ExhibitionClosed, ExhibitionCreated, ExhibitionPublished, FavoriteSet,
    GenerationCancelConfirmed, GenerationCancelled, GenerationCompleted, GenerationFailed,
    GenerationMode, GenerationProgressed, GenerationRequested, GenerationStarted, ImageRef,
    LikeSet, Position, Role, Stream, UserRegistered,
};
pub use generation_size::{DegradedLimits, GenerationSize, SIDE_MULTIPLE};
pub use ids::{ArtworkId, IdError, UserId};
pub use status::{ExhibitionStatus, JobStatus, UnknownStatus};
pub use text::{CommentBody, Description, PersonName, Prompt, StyleName, TextError, Title};
pub use topics::{Topics, dead_letter_headers};
