//! The GraphQL schema.

use async_graphql::{Context, EmptySubscription, ErrorExtensions, ID, Object, Schema};
use deadpool_postgres::Pool;
use gallery_commands::Principal;
use gallery_schemas::{ArtworkId, UserId};

use crate::error::QueryError;
use crate::mutation::{MutationRoot, Writes};

pub type GallerySchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Who is asking: the user of a valid bearer token, or nobody.
#[derive(Debug, Clone, Default)]
pub struct Viewer(pub Option<UserId>);

/// Who acts in mutations: the principal (user and role) of a valid bearer token, or nobody.
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<Principal>);

/// The schema: queries read `pool` (the read model); mutations call `writes`, the same
/// command library the HTTP command service calls.
pub fn build_schema(pool: Pool, writes: Writes) -> GallerySchema {
    Schema::build(QueryRoot, MutationRoot::default(), EmptySubscription)
        .data(pool)
        .data(writes)
        .limit_depth(16)
        .limit_complexity(500)
        .finish()
}

#[derive(Debug)]
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// An artwork by id. Every valid id names an artwork; one nobody has liked has a like
    /// count of 0.
    async fn artwork(&self, id: ID) -> async_graphql::Result<Artwork> {
        let id = ArtworkId::parse(&id).map_err(|e| QueryError::from(e).extend())?;
        Ok(Artwork { id })
    }
}

/// A painting in the gallery.
#[derive(Debug)]
pub struct Artwork {
    id: ArtworkId,
}

#[Object]
impl Artwork {
    /// The artwork's id.
    async fn id(&self) -> ID {
        ID(self.id.as_str().to_owned())
    }

    /// How many users like this artwork now (each user counts once; never negative).
    async fn like_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        let pool = ctx.data::<Pool>()?;
        like_count(pool, &self.id).await.map_err(|e| e.extend())
    }

    /// Whether the signed-in viewer likes this artwork; false for anonymous viewers.
    async fn viewer_has_liked(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let Some(user) = ctx.data_opt::<Viewer>().and_then(|v| v.0.as_ref()) else {
            return Ok(false);
        };
        let pool = ctx.data::<Pool>()?;
        has_liked(pool, &self.id, user)
            .await
            .map_err(|e| e.extend())
    }
}

async fn like_count(pool: &Pool, id: &ArtworkId) -> Result<i64, QueryError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT like_count FROM artwork_stats WHERE artwork_id = $1",
            &[&id.as_str()],
        )
        .await?;
    Ok(row.map_or(0, |r| r.get(0)))
}

async fn has_liked(pool: &Pool, id: &ArtworkId, user: &UserId) -> Result<bool, QueryError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT liked FROM artwork_likes WHERE artwork_id = $1 AND user_id = $2",
            &[&id.as_str(), &user.as_str()],
        )
        .await?;
    Ok(row.is_some_and(|r| r.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_a_documented_mutation() {
        let sdl = Schema::build(QueryRoot, MutationRoot::default(), EmptySubscription)
            .finish()
            .sdl();
        for name in [
            "likeArtwork(",
            "unlikeArtwork(",
            "favoriteArtwork(",
            "unfavoriteArtwork(",
            "postComment(",
            "deleteComment(",
            "recordView(",
            "createExhibition(",
            "addArtwork(",
            "removeArtwork(",
            "publishExhibition(",
            "closeExhibition(",
            "requestTextToImage(",
            "requestImageToImage(",
            "cancelGeneration(",
            "register(",
            "login(",
            "refresh(",
            "setRole(",
        ] {
            let at = sdl
                .find(&format!("\t{name}"))
                .unwrap_or_else(|| unreachable!("no mutation {name} in\n{sdl}"));
            // The field's description comes right before it.
            assert!(
                sdl[..at].trim_end().ends_with("\"\"\""),
                "{name} has no docs"
            );
        }
    }
}
