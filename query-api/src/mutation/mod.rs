//! The mutation root: every command of the write side, calling the same library code as the
//! HTTP command service. Write mutations need a bearer token (except `recordView`) and take an
//! optional `idempotencyKey` with the semantics of the `Idempotency-Key` header. Arguments name
//! each id by its kind, the same in every mutation: `artworkId`, `exhibitionId`, `commentId`,
//! `requestId`, `userId`.

mod accounts;
mod catalog;
mod generation;
mod interactions;
mod types;

use std::io::Read;

use async_graphql::{Context, ErrorExtensions, MergedObject, Upload};
use gallery_commands::idempotency::IdempotencyKey;
use gallery_commands::input::{artwork_id, uuid};
use gallery_commands::{
    Accepted, Accounts, AuthError, BodyError, CommandError, Commands, Principal,
};

use crate::error::command_error;
use crate::schema::Caller;
pub use types::{CommandResult, Role, Session, User};

/// The write side the mutations call.
#[derive(Debug, Clone)]
pub struct Writes {
    pub commands: Commands,
    pub accounts: Accounts,
}

/// Every mutation of the gallery.
#[derive(Debug, Default, MergedObject)]
pub struct MutationRoot(
    interactions::InteractionMutations,
    catalog::CatalogMutations,
    generation::GenerationMutations,
    accounts::AccountMutations,
);

/// The write side, put into the schema by [`crate::build_schema`].
fn writes<'c>(ctx: &Context<'c>) -> async_graphql::Result<&'c Writes> {
    ctx.data::<Writes>().map_err(|e| {
        tracing::error!(error = ?e, "the schema was built without the write side");
        async_graphql::Error::new("internal error").extend_with(|_, x| x.set("code", "INTERNAL"))
    })
}

/// The principal of the request's bearer token, if it sent one.
fn caller(ctx: &Context<'_>) -> Option<Principal> {
    ctx.data_opt::<Caller>().and_then(|c| c.0.clone())
}

/// The caller of a write mutation and the idempotency key they sent, checked in the order
/// HTTP checks them: the token first, then the key.
struct Call {
    who: Principal,
    key: Option<IdempotencyKey>,
}

impl Call {
    fn of(ctx: &Context<'_>, key: Option<String>) -> Result<Self, CommandError> {
        let who = caller(ctx).ok_or(CommandError::Unauthenticated(AuthError::Missing))?;
        let key = parse_key(key)?;
        Ok(Self { who, key })
    }

    fn cx(&self) -> gallery_commands::Context<'_> {
        gallery_commands::Context {
            who: &self.who,
            key: self.key.as_ref(),
        }
    }
}

/// An `idempotencyKey` argument, checked like the `Idempotency-Key` header.
fn parse_key(key: Option<String>) -> Result<Option<IdempotencyKey>, CommandError> {
    key.as_deref()
        .map(IdempotencyKey::parse)
        .transpose()
        .map_err(CommandError::from)
}

/// The GraphQL answer to a command.
fn reply(result: Result<Accepted, CommandError>) -> async_graphql::Result<CommandResult> {
    result.map(CommandResult::from).map_err(command_error)
}

/// The bytes of an uploaded file (multipart request spec). The file is spooled to disk by the
/// request parser, so it is read off the async threads.
async fn upload_bytes(
    ctx: &Context<'_>,
    upload: &Upload,
    field: &'static str,
) -> Result<Vec<u8>, CommandError> {
    let unreadable = || CommandError::from(BodyError::UnreadableUpload { field });
    let value = upload.value(ctx).map_err(|e| {
        tracing::warn!(error = %e, field, "upload not readable");
        unreadable()
    })?;
    let read = tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        value.into_read().read_to_end(&mut bytes).map(|_| bytes)
    })
    .await;
    match read {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, field, "upload not readable");
            Err(unreadable())
        }
        Err(e) => {
            tracing::warn!(error = %e, field, "upload reader failed");
            Err(unreadable())
        }
    }
}
