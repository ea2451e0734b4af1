//! What mutations return.

use std::fmt;

use async_graphql::{Enum, ID, SimpleObject};
use gallery_commands::Accepted;
use gallery_commands::accounts::Account;
use gallery_schemas::Position;

/// Where an event landed in the log.
#[derive(Debug, Clone, SimpleObject)]
pub struct EventPosition {
    /// The Kafka topic.
    pub topic: String,
    /// The partition of the topic.
    pub partition: i32,
    /// The event's offset in the partition.
    pub offset: i64,
}

/// An accepted command: its event is durable in Kafka.
#[derive(Debug, Clone, SimpleObject)]
pub struct CommandResult {
    /// The id of the event the command produced (a retry with the same idempotency key gets
    /// the same one).
    pub event_id: ID,
    /// The id of what the command created or acted on (a comment, an exhibition, an artwork,
    /// a generation request); null for likes, favorites and views.
    pub id: Option<ID>,
    /// For generation requests: whether the request was scaled down because the backlog is
    /// high; null for other commands.
    pub degraded: Option<bool>,
    /// Where the event landed.
    pub position: EventPosition,
    /// The position in compact form, `<topic>:<partition>:<offset>`, for read-your-writes on
    /// the read side.
    pub consistency_token: String,
}

/// The compact form of a position: `<topic>:<partition>:<offset>` (topic names never hold
/// a colon).
pub fn consistency_token(p: &Position) -> String {
    format!("{}:{}:{}", p.topic, p.partition, p.offset)
}

impl From<Accepted> for CommandResult {
    fn from(a: Accepted) -> Self {
        Self {
            event_id: ID(a.event_id.to_string()),
            id: a.id.map(ID),
            degraded: a.degraded,
            consistency_token: consistency_token(&a.position),
            position: EventPosition {
                topic: a.position.topic,
                partition: a.position.partition,
                offset: a.position.offset,
            },
        }
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "gallery_schemas::Role")]
pub enum Role {
    /// Browses, likes, comments and asks the AI painter for pictures.
    Visitor,
    /// Also builds exhibitions.
    Curator,
    /// Also changes roles and deletes any comment.
    Admin,
}

/// A user's public profile and role.
#[derive(Debug, Clone, SimpleObject)]
pub struct User {
    /// The user id (the username).
    pub id: ID,
    /// The name shown to others.
    pub display_name: String,
    /// The user's role.
    pub role: Role,
}

impl From<Account> for User {
    fn from(a: Account) -> Self {
        Self {
            id: ID(a.id.into()),
            display_name: a.display_name.into(),
            role: a.role.into(),
        }
    }
}

/// A signed-in user: a short-lived access token, the refresh token that renews it, and who.
#[derive(Clone, SimpleObject)]
pub struct Session {
    /// The bearer token of every other command (a JWT naming the user and role).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the access token is valid.
    pub expires_in: i64,
    /// Single-use: each refresh returns a new one, and presenting a used one again revokes
    /// every token of that login.
    pub refresh_token: String,
    /// Who signed in.
    pub user: User,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &"<redacted>")
            .field("user", &self.user)
            .finish()
    }
}

impl From<gallery_commands::Session> for Session {
    fn from(s: gallery_commands::Session) -> Self {
        Self {
            access_token: s.access_token,
            token_type: "Bearer".to_owned(),
            expires_in: i64::try_from(s.expires_in.as_secs()).unwrap_or(i64::MAX),
            refresh_token: s.refresh_token.expose().to_owned(),
            user: s.account.into(),
        }
    }
}
