//! GraphQL over axum (async-graphql). Queries read the projections' tables; mutations call the
//! write side's library ([`gallery_commands::Commands`] and [`gallery_commands::Accounts`]),
//! exactly as the HTTP command service does, so they validate, authorize and fail alike. Its
//! sections of the configuration (`query_api`, `read`) are in [`settings`]. The read model's
//! statements longer than a line, unless composed from the projector's column lists, are files
//! of `sql/`, named by what they read and loaded at compile time.

mod cache;
mod changes;
mod consistency;
mod error;
pub mod guard;
mod http;
mod live;
mod media;
pub mod metrics;
mod mutation;
mod persisted;
mod protect;
mod query;
mod read;
mod schema;
pub mod settings;
mod subscription;
mod ws;

pub use cache::{CacheSettings, HotCache};
pub use changes::{Change, ChangeFeed};
pub use consistency::Position;
pub use error::QueryError;
pub use http::{ApiSettings, ApiState, body_too_slow, parse_request, payload_too_large, router};
pub use media::{
    DEV_MEDIA_URL_SECRET, IMAGE_PREFIXES, MIN_MEDIA_SECRET_LEN, Media, MediaSecret, MediaUrlError,
    MediaUrlSettings, MediaUrls, UrlRefusal, media_routes,
};
pub use mutation::{MutationRoot, Writes};
pub use query::QueryRoot;
pub use read::{InteractionStore, ReadModel, ScyllaReads, StatementCounter};
pub use schema::{Caller, ClientAddr, GallerySchema, Viewer, build_schema, protected_schema, sdl};
pub use subscription::SubscriptionRoot;
