//! Accounts: registration, login, refresh-token rotation and roles.
//!
//! Account state (password hashes, roles, refresh tokens) lives in Postgres, schema
//! `commands`, never in the log; registration also publishes a [`UserRegistered`] event with
//! the public profile. [`Accounts`] is the library the HTTP routes ([`http::routes`]) and
//! GraphQL mutations call.

mod error;
pub mod http;
mod password;
pub mod rules;
mod store;
mod token;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{GenericClient, Pool};
use gallery_schemas::{Event, Role, UserId, UserRegistered};
use uuid::Uuid;

pub use error::AccountError;
pub use password::{HashCost, HashError};
pub use rules::{Password, Registration};
pub use store::{Account, CorruptRow, StoreError};
pub use token::{RandomError, RefreshToken};

use crate::auth::{Principal, TokenKeys};
use crate::db::DbError;
use crate::ports::EventPublisher;
use password::PasswordHasher;
use rules::{RefreshDecision, RefreshRejection, decide_refresh};

/// How long tokens live and what a password hash costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSettings {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub hash_cost: HashCost,
}

impl Default for AccountSettings {
    fn default() -> Self {
        crate::settings::AccountsSettings::default().account_settings()
    }
}

/// A signed-in user: a short-lived access token, the refresh token that renews it, and who.
#[derive(Clone)]
pub struct Session {
    /// Bearer token (JWT) naming the user and role.
    pub access_token: String,
    /// How long the access token is valid.
    pub expires_in: Duration,
    /// Single-use: presenting it again after a refresh revokes the whole session.
    pub refresh_token: RefreshToken,
    pub account: Account,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token)
            .field("account", &self.account)
            .finish()
    }
}

/// The accounts library.
#[derive(Debug, Clone)]
pub struct Accounts {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    publisher: Arc<dyn EventPublisher>,
    keys: Arc<TokenKeys>,
    hasher: PasswordHasher,
    settings: AccountSettings,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Sets a user's role without checking who asks: the bootstrap path (`gallery users
/// set-role`) that makes the first admin. [`Accounts::set_role`] is the checked one.
pub async fn assign_role(pool: &Pool, user: &UserId, role: Role) -> Result<Account, AccountError> {
    let client = pool.get().await.map_err(DbError::from)?;
    store::set_role(&client, user, role)
        .await?
        .ok_or_else(|| AccountError::UnknownUser { user: user.clone() })
}

impl Accounts {
    /// `pool` connects to the database holding the `commands` schema (migrated).
    pub fn new(
        pool: Pool,
        publisher: Arc<dyn EventPublisher>,
        keys: Arc<TokenKeys>,
        settings: AccountSettings,
    ) -> Result<Self, HashError> {
        let concurrency = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hasher = PasswordHasher::new(settings.hash_cost, concurrency)?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                publisher,
                keys,
                hasher,
                settings,
            }),
        })
    }

    /// The keys that sign and check access tokens.
    pub fn keys(&self) -> &TokenKeys {
        &self.inner.keys
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, AccountError> {
        Ok(self.inner.pool.get().await.map_err(DbError::from)?)
    }

    /// Starts or continues a refresh family for `account` and signs its access token.
    async fn session(
        &self,
        c: &impl GenericClient,
        account: Account,
        family_id: Uuid,
    ) -> Result<Session, AccountError> {
        let settings = &self.inner.settings;
        let refresh_token = RefreshToken::generate()?;
        let expires_at = SystemTime::now() + settings.refresh_ttl;
        store::insert_refresh(
            c,
            &refresh_token.digest(),
            &account.id,
            family_id,
            expires_at,
        )
        .await?;
        let access_token = self
            .inner
            .keys
            .issue(
                &Principal::new(account.id.clone(), account.role),
                settings.access_ttl,
            )
            .map_err(AccountError::Token)?;
        Ok(Session {
            access_token,
            expires_in: settings.access_ttl,
            refresh_token,
            account,
        })
    }

    /// Creates a visitor account and signs it in. The account row and the `UserRegistered`
    /// event are written together: the row is committed only after Kafka acknowledged the
    /// event, and if publishing fails nothing is kept.
    #[tracing::instrument(skip_all, fields(user = %registration.username))]
    pub async fn register(&self, registration: Registration) -> Result<Session, AccountError> {
        let hash = self.inner.hasher.hash(&registration.password).await?;
        let account = Account {
            id: registration.username,
            display_name: registration.display_name,
            role: Role::Visitor,
        };
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(DbError::pg("begin registration"))?;
        if !store::insert_user(&tx, &account, &hash).await? {
            return Err(AccountError::UsernameTaken {
                username: account.id,
            });
        }
        let session = self.session(&tx, account, Uuid::new_v4()).await?;
        let event = Event::from(UserRegistered {
            event_id: Uuid::now_v7(),
            user_id: session.account.id.clone(),
            display_name: session.account.display_name.clone(),
            role: session.account.role,
            occurred_at: now_ms(),
        });
        // Dropping `tx` on error rolls the account back.
        let position = self.inner.publisher.publish(&event).await?;
        if let Err(source) = tx.commit().await {
            tracing::error!(event_id = %event.event_id(), topic = %position.topic, partition = position.partition, offset = position.offset, "UserRegistered is durable but the account could not be committed");
            return Err(DbError::pg("commit registration")(source).into());
        }
        tracing::info!(topic = %position.topic, partition = position.partition, offset = position.offset, "user registered");
        Ok(session)
    }

    /// Signs a user in. Every refusal is the same [`AccountError::InvalidCredentials`], and
    /// an unknown user costs a password verification like a known one.
    #[tracing::instrument(skip_all, fields(user = tracing::field::Empty))]
    pub async fn login(&self, username: &str, password: &str) -> Result<Session, AccountError> {
        // A password no account can have is refused before any work, whoever is named.
        let password = Password::parse(password).map_err(|_| AccountError::InvalidCredentials)?;
        let found = match rules::parse_username(username) {
            Ok(user) => store::credentials(&self.client().await?, &user).await?,
            Err(_) => None,
        };
        let verified = match &found {
            Some(c) => {
                self.inner
                    .hasher
                    .verify(&password, &c.password_hash)
                    .await?
            }
            None => self.inner.hasher.verify_nobody(&password).await?,
        };
        let Some(credentials) = found.filter(|_| verified) else {
            return Err(AccountError::InvalidCredentials);
        };
        tracing::Span::current().record("user", credentials.account.id.as_str());
        let client = self.client().await?;
        self.session(&client, credentials.account, Uuid::new_v4())
            .await
    }

    /// Trades a refresh token for a new session: the token is used up and its successor
    /// joins the same family. The new access token carries the user's current role. A token
    /// that was already used revokes its whole family (someone holds a copy).
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, token: &RefreshToken) -> Result<Session, AccountError> {
        let digest = token.digest();
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(DbError::pg("begin refresh"))?;
        let stored = store::lock_refresh(&tx, &digest).await?;
        let decision = decide_refresh(stored.as_ref().map(|s| &s.state), SystemTime::now());
        match (decision, stored) {
            (RefreshDecision::Rotate, Some(stored)) => {
                store::mark_used(&tx, &digest).await?;
                let session = self.session(&tx, stored.account, stored.family_id).await?;
                tx.commit().await.map_err(DbError::pg("commit refresh"))?;
                Ok(session)
            }
            (RefreshDecision::RevokeFamily, Some(stored)) => {
                let revoked = store::revoke_family(&tx, stored.family_id).await?;
                tx.commit()
                    .await
                    .map_err(DbError::pg("commit family revocation"))?;
                tracing::warn!(user = %stored.account.id, family = %stored.family_id, revoked, "a used refresh token was presented again; its family is revoked");
                Err(AccountError::Refresh(RefreshRejection::Reused))
            }
            (RefreshDecision::Reject(why), _) => Err(AccountError::Refresh(why)),
            (_, None) => Err(AccountError::Refresh(RefreshRejection::Unknown)),
        }
    }

    /// `actor` sets `user`'s role. Only an admin may, and the store's role decides, not the
    /// token's: an admin who was demoted cannot act on an older token.
    #[tracing::instrument(skip_all, fields(actor = %actor.user, user = %user, ?role))]
    pub async fn set_role(
        &self,
        actor: &Principal,
        user: &UserId,
        role: Role,
    ) -> Result<Account, AccountError> {
        if !actor.is_admin() {
            return Err(AccountError::Forbidden);
        }
        let client = self.client().await?;
        let current = store::account_of(&client, &actor.user).await?;
        if !current.is_some_and(|a| a.role == Role::Admin) {
            return Err(AccountError::Forbidden);
        }
        let account = store::set_role(&client, user, role)
            .await?
            .ok_or_else(|| AccountError::UnknownUser { user: user.clone() })?;
        tracing::info!("role changed");
        Ok(account)
    }

    /// The account of `user`, if it exists.
    pub async fn account(&self, user: &UserId) -> Result<Option<Account>, AccountError> {
        Ok(store::account_of(&self.client().await?, user).await?)
    }
}
