//! Topic `users`, key: user id. Public profile facts only; credentials never leave the
//! accounts store.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::UserId;
use crate::text::PersonName;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// Browses, likes, comments, asks the AI painter.
    Visitor,
    /// Also builds exhibitions.
    Curator,
    /// Also moderates (deletes any comment) and manages roles.
    Admin,
}

/// A user account was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    #[serde(with = "crate::events::uuid_text")]
    pub event_id: Uuid,
    pub user_id: UserId,
    pub display_name: PersonName,
    pub role: Role,
    pub occurred_at: i64,
}

impl UserRegistered {
    pub const RECORD: &'static str = "gallery.users.UserRegistered";
}
