//! The GraphQL schema.

use async_graphql::{Schema, SchemaBuilder};
use gallery_commands::Principal;
use gallery_schemas::UserId;

use crate::cache::HotCache;
use crate::changes::ChangeFeed;
use crate::guard::{DocumentGuard, DocumentLimits};
use crate::http::ApiSettings;
use crate::live::LiveStats;
use crate::media::MediaUrls;
use crate::mutation::{MutationRoot, Writes};
use crate::persisted::PersistedQueries;
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

/// The address of the client's TCP peer, when known: the sign-in mutations spend its `auth`
/// quota, as the command service's sign-in routes do.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

/// The schema: queries read `read` (the read model, batched through DataLoaders); mutations
/// call `writes`, the same command library the HTTP command service calls; image URLs are
/// signed with `media_urls`.
pub fn build_schema(
    read: ReadModel,
    writes: Writes,
    cache: HotCache,
    feed: ChangeFeed,
    media_urls: MediaUrls,
    settings: &ApiSettings,
) -> GallerySchema {
    protected_schema(settings)
        .data(loaders(read.clone()))
        .data(LiveStats::new(read.clone(), feed.clone()))
        .data(feed)
        .data(read)
        .data(writes)
        .data(cache)
        .data(media_urls)
        .finish()
}

/// The schema's types behind its protection ([`Protection`]: the document budget, the time
/// limit, persisted queries, the error codes) and its depth and complexity limits, as
/// `settings` set them, before any data is attached. A request to it alone is read, bounded
/// and validated as the service does it, and fails at its first resolver.
pub fn protected_schema(
    settings: &ApiSettings,
) -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    let builder = Schema::build(QueryRoot, MutationRoot::default(), SubscriptionRoot)
        // First, so it times and codes everything the other extensions do.
        .extension(Protection {
            timeout: settings.query_timeout,
            documents: DocumentGuard::new(
                DocumentLimits {
                    max_bytes: settings.max_document_bytes,
                    max_tokens: settings.max_document_tokens,
                    max_depth: settings.max_depth,
                    max_fields: settings.max_complexity,
                },
                DocumentGuard::default_concurrency(),
            ),
            persisted: PersistedQueries::new(
                u64::try_from(settings.persisted_queries).unwrap_or(u64::MAX),
            ),
            introspection: settings.introspection,
        })
        .limit_depth(settings.max_depth)
        .limit_complexity(settings.max_complexity);
    if settings.introspection {
        builder
    } else {
        builder.disable_introspection()
    }
}

/// The schema's SDL, as checked in at `query-api/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot::default(), SubscriptionRoot)
        .finish()
        .sdl()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in SDL is the schema's: clients and reviewers read the file.
    #[test]
    fn the_checked_in_sdl_is_up_to_date() {
        // The checkout `cargo test` runs in (its environment), not the one the binary was
        // built in.
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
        let path = &format!("{dir}/schema.graphql");
        let now = sdl();
        if std::env::var_os("GALLERY_UPDATE_SDL").is_some_and(|v| v == "1") {
            std::fs::write(path, &now).unwrap_or_else(|e| unreachable!("write {path}: {e}"));
            return;
        }
        let stored = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            stored == now,
            "query-api/schema.graphql is not the schema's SDL; regenerate it with\n\n    \
             GALLERY_UPDATE_SDL=1 cargo test -p gallery-query-api --lib the_checked_in_sdl_is_up_to_date\n\n\
             and commit the file"
        );
    }

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

    /// Write mutations (every one but the account mutations, which have their own rules) all
    /// take an `idempotencyKey`, and every mutation names an id by its kind (`artworkId`,
    /// `exhibitionId`, ...), never a bare `id`, so one thing has one spelling everywhere.
    #[tokio::test]
    async fn write_mutations_take_a_key_and_name_ids_by_kind() {
        let schema = Schema::build(
            QueryRoot,
            MutationRoot::default(),
            async_graphql::EmptySubscription,
        )
        .finish();
        let response = schema
            .execute("{ __schema { mutationType { fields { name args { name } } } } }")
            .await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        let data = response
            .data
            .into_json()
            .unwrap_or_else(|e| unreachable!("{e}"));
        let fields = data["__schema"]["mutationType"]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(fields.len() > 10, "{data}");
        let accounts = ["register", "login", "refresh", "setRole"];
        for field in &fields {
            let name = field["name"].as_str().unwrap_or_default();
            let args: Vec<&str> = field["args"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
                .unwrap_or_default();
            assert!(!args.contains(&"id"), "{name} takes a bare `id`: {args:?}");
            if !accounts.contains(&name) {
                assert!(
                    args.contains(&"idempotencyKey"),
                    "{name} takes no idempotencyKey: {args:?}"
                );
            }
        }
    }
}
