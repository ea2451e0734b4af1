//! Accounts and refresh tokens in Postgres (`commands.users`, `commands.refresh_tokens`).

use std::time::SystemTime;

use deadpool_postgres::GenericClient;
use gallery_schemas::{IdError, PersonName, Role, TextError, UserId};
use tokio_postgres::Row;
use uuid::Uuid;

use super::rules::{RefreshState, UnknownRole, parse_role, role_name};
use crate::db::DbError;
use gallery_infra::Columns;

/// A row that does not meet the rules the code wrote it with.
#[derive(Debug, thiserror::Error)]
pub enum CorruptRow {
    #[error("commands.users.user_id")]
    UserId(#[source] IdError),
    #[error("commands.users.display_name")]
    DisplayName(#[source] TextError),
    #[error("commands.users.role")]
    Role(#[source] UnknownRole),
}

/// Why the account store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("corrupt account row")]
    Corrupt(#[from] CorruptRow),
}

impl From<gallery_infra::ColumnError> for StoreError {
    fn from(e: gallery_infra::ColumnError) -> Self {
        StoreError::Db(e.into())
    }
}

/// A user's public profile and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: UserId,
    pub display_name: PersonName,
    pub role: Role,
}

/// An account and its password hash, for login.
#[derive(Debug)]
pub(crate) struct Credentials {
    pub account: Account,
    pub password_hash: String,
}

/// A presented refresh token as stored, locked for the rest of the transaction.
#[derive(Debug)]
pub(crate) struct StoredRefresh {
    pub state: RefreshState,
    pub family_id: Uuid,
    pub account: Account,
}

const ACCOUNT_COLUMNS: &str = "u.user_id, u.display_name, u.role";

/// The account in a row of [`ACCOUNT_COLUMNS`].
fn account(row: &Row) -> Result<Account, StoreError> {
    let id: String = row.column("user_id")?;
    let name: String = row.column("display_name")?;
    let role: String = row.column("role")?;
    Ok(Account {
        id: UserId::parse(&id).map_err(CorruptRow::UserId)?,
        display_name: PersonName::parse(name).map_err(CorruptRow::DisplayName)?,
        role: parse_role(&role).map_err(CorruptRow::Role)?,
    })
}

/// Inserts a new account; `false` when the username (ignoring case) is taken.
pub(crate) async fn insert_user(
    c: &impl GenericClient,
    account: &Account,
    password_hash: &str,
) -> Result<bool, StoreError> {
    let inserted = c
        .execute(
            include_str!("../../sql/insert_user.sql"),
            &[
                &account.id.as_str(),
                &account.display_name.as_str(),
                &password_hash,
                &role_name(account.role),
            ],
        )
        .await
        .map_err(DbError::pg("insert user"))?;
    Ok(inserted == 1)
}

/// The account a username names (ignoring case), with its password hash.
pub(crate) async fn credentials(
    c: &impl GenericClient,
    username: &UserId,
) -> Result<Option<Credentials>, StoreError> {
    let row = c
        .query_opt(
            &format!(
                "SELECT {ACCOUNT_COLUMNS}, u.password_hash FROM commands.users u
                 WHERE lower(u.user_id) = lower($1)"
            ),
            &[&username.as_str()],
        )
        .await
        .map_err(DbError::pg("read credentials"))?;
    row.map(|r| {
        Ok(Credentials {
            account: account(&r)?,
            password_hash: r.column("password_hash")?,
        })
    })
    .transpose()
}

/// The account of `user`, if any.
pub async fn account_of(
    c: &impl GenericClient,
    user: &UserId,
) -> Result<Option<Account>, StoreError> {
    let row = c
        .query_opt(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM commands.users u WHERE u.user_id = $1"),
            &[&user.as_str()],
        )
        .await
        .map_err(DbError::pg("read account"))?;
    row.map(|r| account(&r)).transpose()
}

/// Sets the role of `user`; the updated account, or `None` when there is no such user.
pub async fn set_role(
    c: &impl GenericClient,
    user: &UserId,
    role: Role,
) -> Result<Option<Account>, StoreError> {
    let row = c
        .query_opt(
            &format!(
                "UPDATE commands.users u SET role = $2 WHERE u.user_id = $1
                 RETURNING {ACCOUNT_COLUMNS}"
            ),
            &[&user.as_str(), &role_name(role)],
        )
        .await
        .map_err(DbError::pg("set role"))?;
    row.map(|r| account(&r)).transpose()
}

/// Stores a new refresh token (by its digest) in `family`.
pub(crate) async fn insert_refresh(
    c: &impl GenericClient,
    digest: &[u8; 32],
    user: &UserId,
    family_id: Uuid,
    expires_at: SystemTime,
) -> Result<(), StoreError> {
    c.execute(
        include_str!("../../sql/insert_refresh_token.sql"),
        &[&digest.as_slice(), &user.as_str(), &family_id, &expires_at],
    )
    .await
    .map_err(DbError::pg("insert refresh token"))?;
    Ok(())
}

/// Reads a refresh token by digest and locks it until the transaction ends, so that two
/// concurrent uses of one token cannot both rotate it.
pub(crate) async fn lock_refresh(
    c: &impl GenericClient,
    digest: &[u8; 32],
) -> Result<Option<StoredRefresh>, StoreError> {
    let row = c
        .query_opt(
            &format!(
                "SELECT {ACCOUNT_COLUMNS}, t.used, t.revoked, t.expires_at, t.family_id
                 FROM commands.refresh_tokens t JOIN commands.users u USING (user_id)
                 WHERE t.token_hash = $1
                 FOR UPDATE OF t"
            ),
            &[&digest.as_slice()],
        )
        .await
        .map_err(DbError::pg("read refresh token"))?;
    row.map(|r| {
        Ok(StoredRefresh {
            account: account(&r)?,
            state: RefreshState {
                used: r.column("used")?,
                revoked: r.column("revoked")?,
                expires_at: r.column("expires_at")?,
            },
            family_id: r.column("family_id")?,
        })
    })
    .transpose()
}

pub(crate) async fn mark_used(c: &impl GenericClient, digest: &[u8; 32]) -> Result<(), StoreError> {
    c.execute(
        "UPDATE commands.refresh_tokens SET used = true, used_at = now() WHERE token_hash = $1",
        &[&digest.as_slice()],
    )
    .await
    .map_err(DbError::pg("mark refresh token used"))?;
    Ok(())
}

/// Revokes every token of a family; how many were still live.
pub(crate) async fn revoke_family(
    c: &impl GenericClient,
    family_id: Uuid,
) -> Result<u64, StoreError> {
    Ok(c.execute(
        include_str!("../../sql/revoke_refresh_family.sql"),
        &[&family_id],
    )
    .await
    .map_err(DbError::pg("revoke refresh family"))?)
}
