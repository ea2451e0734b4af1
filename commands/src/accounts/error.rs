//! Why an account operation was refused or failed, and how HTTP shows it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gallery_schemas::UserId;

use super::password::HashError;
use super::rules::{InvalidInput, RefreshRejection};
use super::store::StoreError;
use super::token::RandomError;
use crate::auth::AuthError;
use crate::db::DbError;
use crate::json::BodyRejection;
use crate::service::PublishError;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Body(#[from] BodyRejection),
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

impl AccountError {
    /// Postgres unreachable or its pool exhausted, as opposed to a failing statement.
    fn store_unavailable(&self) -> bool {
        match self {
            AccountError::Store(StoreError::Db(DbError::Pool(_))) => true,
            AccountError::Store(StoreError::Db(DbError::Postgres { source, .. })) => {
                source.code().is_none()
            }
            _ => false,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AccountError::Invalid(_) => StatusCode::BAD_REQUEST,
            AccountError::Body(e) => e.status(),
            AccountError::UsernameTaken { .. } => StatusCode::CONFLICT,
            AccountError::InvalidCredentials
            | AccountError::Refresh(_)
            | AccountError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AccountError::Forbidden => StatusCode::FORBIDDEN,
            AccountError::UnknownUser { .. } => StatusCode::NOT_FOUND,
            AccountError::Publish(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            e if e.store_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            AccountError::Store(_)
            | AccountError::Hash(_)
            | AccountError::Random(_)
            | AccountError::Token(_)
            | AccountError::Publish(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable, machine-readable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            AccountError::Invalid(_) => "INVALID_INPUT",
            AccountError::Body(e) => e.code(),
            AccountError::UsernameTaken { .. } => "USERNAME_TAKEN",
            AccountError::InvalidCredentials => "INVALID_CREDENTIALS",
            AccountError::Refresh(_) => "INVALID_REFRESH_TOKEN",
            AccountError::Unauthenticated(_) => "UNAUTHENTICATED",
            AccountError::Forbidden => "FORBIDDEN",
            AccountError::UnknownUser { .. } => "NOT_FOUND",
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => "UNAVAILABLE",
            _ => "INTERNAL",
        }
    }

    /// What clients are told: input errors say what is wrong (naming the field), refused
    /// tokens say one thing whatever the reason, internal errors say nothing.
    pub fn public_message(&self) -> String {
        match self {
            AccountError::Invalid(e) => e.to_string(),
            AccountError::Body(e) => e.0.body_text(),
            AccountError::UsernameTaken { .. } | AccountError::InvalidCredentials => {
                self.to_string()
            }
            AccountError::Refresh(_) => {
                "refresh token is invalid, expired or revoked; log in again".to_owned()
            }
            AccountError::Unauthenticated(e) => e.to_string(),
            AccountError::Forbidden | AccountError::UnknownUser { .. } => self.to_string(),
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => {
                "the account store or event store is unavailable; retry later".to_owned()
            }
            _ => "internal error".to_owned(),
        }
    }
}

/// Account errors answer through the crate's one error type, so every route shows errors, sets
/// `WWW-Authenticate` and `Retry-After`, and logs alike.
impl IntoResponse for AccountError {
    fn into_response(self) -> Response {
        crate::error::CommandError::from(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::rules::PasswordError;

    #[test]
    fn refusals_map_to_their_codes_and_statuses() {
        let cases = [
            (
                AccountError::Invalid(InvalidInput::Password(PasswordError::TooShort { len: 3 })),
                400,
                "INVALID_INPUT",
            ),
            (AccountError::InvalidCredentials, 401, "INVALID_CREDENTIALS"),
            (
                AccountError::Refresh(RefreshRejection::Reused),
                401,
                "INVALID_REFRESH_TOKEN",
            ),
            (AccountError::Forbidden, 403, "FORBIDDEN"),
            (
                AccountError::Publish(PublishError::Unavailable {
                    message: "down".into(),
                }),
                503,
                "UNAVAILABLE",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status().as_u16(), e.code()), (status, code), "{e:?}");
        }
    }

    #[test]
    fn every_refresh_refusal_reads_the_same() {
        let a = AccountError::Refresh(RefreshRejection::Reused).public_message();
        let b = AccountError::Refresh(RefreshRejection::Unknown).public_message();
        assert_eq!(a, b);
    }

    #[test]
    fn an_input_error_names_its_field() {
        let e = AccountError::Invalid(InvalidInput::Password(PasswordError::TooShort { len: 3 }));
        assert!(e.public_message().starts_with("password:"));
    }
}
