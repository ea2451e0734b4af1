//! Why an account operation was refused or failed. What clients are shown for each variant
//! is decided with every other write-side error, in [`CommandError`](crate::CommandError).

use gallery_schemas::UserId;

use super::password::HashError;
use super::rules::{InvalidInput, RefreshRejection};
use super::store::StoreError;
use super::token::RandomError;
use crate::auth::AuthError;
use crate::body::BodyError;
use crate::db::DbError;
use crate::ports::PublishError;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("username {username} is taken")]
    UsernameTaken { username: UserId },
    /// Wrong password, unknown user, or a password that no account could have: one answer.
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error(transparent)]
    Refresh(RefreshRejection),
    #[error(transparent)]
    Unauthenticated(AuthError),
    #[error("only an admin may change roles")]
    Forbidden,
    #[error("no user {user}")]
    UnknownUser { user: UserId },
    #[error("account store")]
    Store(#[from] StoreError),
    #[error("password hashing")]
    Hash(#[from] HashError),
    #[error("refresh token")]
    Random(#[from] RandomError),
    #[error("access token")]
    Token(#[source] AuthError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl From<DbError> for AccountError {
    fn from(e: DbError) -> Self {
        AccountError::Store(StoreError::Db(e))
    }
}
