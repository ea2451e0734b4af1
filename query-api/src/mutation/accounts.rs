//! Accounts: registration, login, refresh-token rotation and roles.

use async_graphql::{Context, ID, InputObject, Object};
use gallery_commands::accounts::rules::InvalidInput;
use gallery_commands::accounts::{RefreshToken, Registration};
use gallery_commands::{AccountError, AuthError, CommandClass};
use gallery_schemas::UserId;

use super::{Role, Session, User, caller, writes};
use crate::error::command_error;
use crate::schema::ClientAddr;

/// Spends one sign-in (`auth`) command from the client address's quota, as the command
/// service's register, login and refresh routes do.
fn limit_sign_in(ctx: &Context<'_>) -> async_graphql::Result<()> {
    let Some(ip) = ctx.data_opt::<ClientAddr>().and_then(|c| c.0) else {
        return Ok(());
    };
    writes(ctx)?
        .commands
        .limit_client(ip, CommandClass::Auth)
        .map_err(command_error)
}

/// A new account.
#[derive(InputObject)]
pub struct RegisterInput {
    /// 1 to 64 ASCII letters, digits, `-` or `_`, unique ignoring case; becomes the user id.
    pub username: String,
    /// 10 to 256 characters.
    pub password: String,
    /// The name shown to others.
    pub display_name: String,
}

impl std::fmt::Debug for RegisterInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterInput")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("display_name", &self.display_name)
            .finish()
    }
}

/// Accounts.
#[derive(Debug, Default)]
pub struct AccountMutations;

#[Object]
impl AccountMutations {
    /// Creates a visitor account and signs it in.
    async fn register(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new account.")] input: RegisterInput,
    ) -> async_graphql::Result<Session> {
        limit_sign_in(ctx)?;
        let w = writes(ctx)?;
        let registration = Registration::parse(&input.username, input.password, input.display_name)
            .map_err(|e| command_error(AccountError::from(e)))?;
        w.accounts
            .register(registration)
            .await
            .map(Session::from)
            .map_err(command_error)
    }

    /// Signs a user in. A wrong password and an unknown user get the same
    /// `INVALID_CREDENTIALS`.
    async fn login(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The username.")] username: String,
        #[graphql(desc = "The password.")] password: String,
    ) -> async_graphql::Result<Session> {
        limit_sign_in(ctx)?;
        let w = writes(ctx)?;
        w.accounts
            .login(&username, &password)
            .await
            .map(Session::from)
            .map_err(command_error)
    }

    /// Trades a refresh token for a new session. The token is used up; presenting it again
    /// revokes every token of that login.
    async fn refresh(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The refresh token of the latest session.")] refresh_token: String,
    ) -> async_graphql::Result<Session> {
        limit_sign_in(ctx)?;
        let w = writes(ctx)?;
        let token = RefreshToken::from_client(refresh_token);
        w.accounts
            .refresh(&token)
            .await
            .map(Session::from)
            .map_err(command_error)
    }

    /// An admin sets a user's role; it shows in the user's tokens from their next refresh.
    async fn set_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id (the username).")] user_id: ID,
        #[graphql(desc = "The new role.")] role: Role,
    ) -> async_graphql::Result<User> {
        let w = writes(ctx)?;
        let result = async {
            let actor = caller(ctx).ok_or(AccountError::Unauthenticated(AuthError::Missing))?;
            let user = UserId::parse(&user_id).map_err(InvalidInput::UserId)?;
            w.accounts.set_role(&actor, &user, role.into()).await
        }
        .await;
        result.map(User::from).map_err(command_error)
    }
}
