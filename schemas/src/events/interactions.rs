//! Topic `interactions`, key: artwork id, so every fact about one artwork is read in order.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{ArtworkId, UserId};
use crate::text::CommentBody;

/// The fact "user U set like(artwork A) = liked". Set semantics: the latest fact per
/// (artwork, user) wins; applying the same fact twice changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LikeSet {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    pub user_id: UserId,
    pub artwork_id: ArtworkId,
    pub liked: bool,
    pub occurred_at: i64,
}

/// The fact "user U set favorite(artwork A) = favorited"; set semantics as [`LikeSet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FavoriteSet {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    pub user_id: UserId,
    pub artwork_id: ArtworkId,
    pub favorited: bool,
    pub occurred_at: i64,
}

/// A comment was posted on an artwork.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentPosted {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::events::uuid_text")]
    pub comment_id: Uuid,
    pub artwork_id: ArtworkId,
    pub user_id: UserId,
    pub body: CommentBody,
    pub occurred_at: i64,
}

/// A comment was deleted by its author or an admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentDeleted {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    #[serde(with = "crate::events::uuid_text")]
    pub comment_id: Uuid,
    pub artwork_id: ArtworkId,
    pub deleted_by: UserId,
    pub occurred_at: i64,
}

/// An artwork was viewed (for popularity); anonymous views have no user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtworkViewed {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    pub artwork_id: ArtworkId,
    pub user_id: Option<UserId>,
    pub occurred_at: i64,
}

impl LikeSet {
    pub const RECORD: &'static str = "gallery.interactions.LikeSet";
}
impl FavoriteSet {
    pub const RECORD: &'static str = "gallery.interactions.FavoriteSet";
}
impl CommentPosted {
    pub const RECORD: &'static str = "gallery.interactions.CommentPosted";
}
impl CommentDeleted {
    pub const RECORD: &'static str = "gallery.interactions.CommentDeleted";
}
impl ArtworkViewed {
    pub const RECORD: &'static str = "gallery.interactions.ArtworkViewed";
}
