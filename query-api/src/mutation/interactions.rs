//! Likes, favorites, comments and views.

use async_graphql::{Context, ID, Object};

use super::{Call, CommandResult, artwork_id, caller, parse_key, reply, uuid, writes};

/// Likes, favorites, comments and views.
#[derive(Debug, Default)]
pub struct InteractionMutations;

#[Object]
impl InteractionMutations {
    /// The caller likes an artwork (a fact with set semantics: liking twice counts once).
    async fn like_artwork(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The artwork's id.")] artwork_id: ID,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        set_like(ctx, &artwork_id, idempotency_key, true).await
    }

    /// The caller takes back their like of an artwork.
    async fn unlike_artwork(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The artwork's id.")] artwork_id: ID,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        set_like(ctx, &artwork_id, idempotency_key, false).await
    }

    /// The caller adds an artwork to their favorites.
    async fn favorite_artwork(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The artwork's id.")] artwork_id: ID,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        set_favorite(ctx, &artwork_id, idempotency_key, true).await
    }

    /// The caller removes an artwork from their favorites.
    async fn unfavorite_artwork(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The artwork's id.")] artwork_id: ID,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        set_favorite(ctx, &artwork_id, idempotency_key, false).await
    }

    /// The caller comments on an artwork; the result's `id` is the comment's id.
    async fn post_comment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The artwork's id.")] artwork_id: ID,
        #[graphql(desc = "The comment: 1 to 2000 printable characters, lines allowed.")]
        body: String,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        let w = writes(ctx)?;
        reply(
            async {
                let call = Call::of(ctx, idempotency_key)?;
                let artwork = super::artwork_id(&artwork_id)?;
                w.commands.post_comment(&call.cx(), &artwork, &body).await
            }
            .await,
        )
    }

    /// The comment's author (or an admin) deletes it.
    async fn delete_comment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The artwork the comment is on.")] artwork_id: ID,
        #[graphql(desc = "The comment's id (a UUID).")] comment_id: ID,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        let w = writes(ctx)?;
        reply(
            async {
                let call = Call::of(ctx, idempotency_key)?;
                let artwork = super::artwork_id(&artwork_id)?;
                let comment = uuid("comment id", &comment_id)?;
                w.commands
                    .delete_comment(&call.cx(), &artwork, comment)
                    .await
            }
            .await,
        )
    }

    /// Records a view of an artwork, by the signed-in caller or anonymously (a token, when
    /// sent, must be valid). A key needs a token: keys belong to their user.
    async fn record_view(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The artwork's id.")] artwork_id: ID,
        #[graphql(
            desc = "Makes a retry safe: the same key and request replay the first result. Only with a token (`INVALID_IDEMPOTENCY_KEY` without one)."
        )]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        let w = writes(ctx)?;
        let viewer = caller(ctx);
        reply(
            async {
                let key = parse_key(idempotency_key)?;
                let artwork = super::artwork_id(&artwork_id)?;
                w.commands
                    .record_view(viewer.as_ref(), key.as_ref(), &artwork)
                    .await
            }
            .await,
        )
    }
}

async fn set_like(
    ctx: &Context<'_>,
    id: &str,
    key: Option<String>,
    liked: bool,
) -> async_graphql::Result<CommandResult> {
    let w = writes(ctx)?;
    reply(
        async {
            let call = Call::of(ctx, key)?;
            let artwork = artwork_id(id)?;
            w.commands.set_like(&call.cx(), &artwork, liked).await
        }
        .await,
    )
}

async fn set_favorite(
    ctx: &Context<'_>,
    id: &str,
    key: Option<String>,
    favorited: bool,
) -> async_graphql::Result<CommandResult> {
    let w = writes(ctx)?;
    reply(
        async {
            let call = Call::of(ctx, key)?;
            let artwork = artwork_id(id)?;
            w.commands
                .set_favorite(&call.cx(), &artwork, favorited)
                .await
        }
        .await,
    )
}
