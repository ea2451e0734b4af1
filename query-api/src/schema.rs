//! The GraphQL schema.

use async_graphql::Schema;
use async_graphql::extensions::apollo_persisted_queries::{
    ApolloPersistedQueries, LruCacheStorage,
};
use gallery_commands::Principal;
use gallery_schemas::UserId;

use crate::cache::HotCache;
use crate::changes::ChangeFeed;
use crate::http::ApiSettings;
use crate::mutation::{MutationRoot, Writes};
use crate::protect::Protection;
use crate::query::{QueryRoot, loaders};
use crate::read::ReadModel;
use crate::subscription::SubscriptionRoot;

pub type GallerySchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Who is asking: the user of a valid bearer token, or nobody.
#[derive(Debug, Clone, Default)]
pub struct Viewer(pub Option<UserId>);

/// Who acts in mutations: the principal (user and role) of a valid bearer token, or nobody.
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<Principal>);

/// The schema: queries read `read` (the read model, batched through DataLoaders); mutations
/// call `writes`, the same command library the HTTP command service calls.
pub fn build_schema(
    read: ReadModel,
    writes: Writes,
    cache: HotCache,
    feed: ChangeFeed,
    settings: &ApiSettings,
) -> GallerySchema {
    Schema::build(QueryRoot, MutationRoot::default(), SubscriptionRoot)
        // First, so it times and codes everything the other extensions do.
        .extension(Protection {
            timeout: settings.query_timeout,
        })
        .extension(ApolloPersistedQueries::new(LruCacheStorage::new(
            settings.persisted_queries.max(1),
        )))
        .data(loaders(read.clone()))
        .data(feed)
        .data(read)
        .data(writes)
        .data(cache)
        .limit_depth(settings.max_depth)
        .limit_complexity(settings.max_complexity)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_a_documented_mutation() {
        let sdl = Schema::build(
            QueryRoot,
            MutationRoot::default(),
            async_graphql::EmptySubscription,
        )
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
