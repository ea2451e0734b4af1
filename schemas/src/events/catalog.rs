//! Topic `catalog`, key: exhibition id, so an exhibition's life (created, artworks added and
//! removed, published, closed) is read in order.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{ArtworkId, UserId};
use crate::text::{Description, PersonName, StyleName, Title};

/// An image stored in object storage, content-addressed (the key holds its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Object key, e.g. `images/sha256/<hex>.png`.
    pub key: String,
    /// `image/png`, `image/jpeg` or `image/webp`, from the content, not the file name.
    pub content_type: String,
    pub width: i32,
    pub height: i32,
    pub size_bytes: i64,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
}

/// A curator created an exhibition (in draft until published).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExhibitionCreated {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::events::uuid_text")]
    pub exhibition_id: Uuid,
    pub curator_id: UserId,
    pub title: Title,
    pub description: Description,
    /// Opening and closing time, milliseconds since the Unix epoch, UTC.
    pub opens_at: i64,
    pub closes_at: i64,
    pub occurred_at: i64,
}

/// An artwork was added to an exhibition; its image is already in object storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtworkAdded {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::events::uuid_text")]
    pub exhibition_id: Uuid,
    pub artwork_id: ArtworkId,
    pub title: Title,
    pub artist: PersonName,
    pub year: Option<i32>,
    pub style: Option<StyleName>,
    pub description: Description,
    pub image: ImageRef,
    pub added_by: UserId,
    pub occurred_at: i64,
}

/// An artwork was taken out of an exhibition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtworkRemoved {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::events::uuid_text")]
    pub exhibition_id: Uuid,
    pub artwork_id: ArtworkId,
    pub removed_by: UserId,
    pub occurred_at: i64,
}

/// An exhibition opened to visitors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExhibitionPublished {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::events::uuid_text")]
    pub exhibition_id: Uuid,
    pub published_by: UserId,
    pub occurred_at: i64,
}

/// An exhibition closed; it takes no more changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExhibitionClosed {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::events::uuid_text")]
    pub exhibition_id: Uuid,
    pub closed_by: UserId,
    pub occurred_at: i64,
}

impl ExhibitionCreated {
    pub const RECORD: &'static str = "gallery.catalog.ExhibitionCreated";
}
impl ArtworkAdded {
    pub const RECORD: &'static str = "gallery.catalog.ArtworkAdded";
}
impl ArtworkRemoved {
    pub const RECORD: &'static str = "gallery.catalog.ArtworkRemoved";
}
impl ExhibitionPublished {
    pub const RECORD: &'static str = "gallery.catalog.ExhibitionPublished";
}
impl ExhibitionClosed {
    pub const RECORD: &'static str = "gallery.catalog.ExhibitionClosed";
}
