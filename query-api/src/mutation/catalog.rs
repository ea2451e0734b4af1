//! Exhibitions and their artworks (curators and admins).

use async_graphql::{Context, ID, InputObject, Object, Upload};
use gallery_commands::ArtworkUpload;
use gallery_commands::decide::catalog::{NewArtwork, NewExhibition};
use time::OffsetDateTime;

use super::{Call, CommandResult, reply, upload_bytes, uuid, writes};

/// A new exhibition (a draft until it is published).
#[derive(Debug, InputObject)]
pub struct CreateExhibitionInput {
    /// The title.
    pub title: String,
    /// What the exhibition is about; empty when left out.
    #[graphql(default)]
    pub description: String,
    /// When it opens (RFC 3339, e.g. `2030-05-01T10:00:00Z`).
    pub opens_at: OffsetDateTime,
    /// When it closes (RFC 3339); after `opensAt`.
    pub closes_at: OffsetDateTime,
}

/// The details of an artwork to add; its image is a separate upload.
#[derive(Debug, InputObject)]
pub struct ArtworkInput {
    /// The artwork's title.
    pub title: String,
    /// Who made it.
    pub artist: String,
    /// The year it was made, if known.
    pub year: Option<i32>,
    /// Its style, if any (e.g. `impressionism`).
    pub style: Option<String>,
    /// A description; empty when left out.
    #[graphql(default)]
    pub description: String,
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Exhibitions and their artworks.
#[derive(Debug, Default)]
pub struct CatalogMutations;

#[Object]
impl CatalogMutations {
    /// A curator creates an exhibition (a draft); the result's `id` is the exhibition's id.
    async fn create_exhibition(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The exhibition.")] input: CreateExhibitionInput,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        let w = writes(ctx)?;
        reply(
            async {
                let call = Call::of(ctx, idempotency_key)?;
                let input = NewExhibition {
                    title: input.title,
                    description: input.description,
                    opens_at: millis(input.opens_at),
                    closes_at: millis(input.closes_at),
                };
                w.commands.create_exhibition(&call.cx(), &input).await
            }
            .await,
        )
    }

    /// The exhibition's curator (or an admin) adds an artwork with its image, sent as a file
    /// of a multipart request (GraphQL multipart request spec). The image is checked by its
    /// content and stored before the event refers to it; the result's `id` is the artwork's
    /// id.
    async fn add_artwork(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The exhibition's id (a UUID).")] exhibition_id: ID,
        #[graphql(desc = "The artwork's details.")] input: ArtworkInput,
        #[graphql(desc = "The artwork's image (JPEG, PNG or WebP).")] image: Upload,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        let w = writes(ctx)?;
        reply(
            async {
                let call = Call::of(ctx, idempotency_key)?;
                let exhibition = uuid("exhibition id", &exhibition_id)?;
                let upload = ArtworkUpload {
                    details: NewArtwork {
                        title: input.title,
                        artist: input.artist,
                        year: input.year,
                        style: input.style.filter(|s| !s.is_empty()),
                        description: input.description,
                    },
                    image: upload_bytes(ctx, &image, "image").await?,
                };
                w.commands.add_artwork(&call.cx(), exhibition, upload).await
            }
            .await,
        )
    }

    /// The exhibition's curator (or an admin) takes an artwork out of it.
    async fn remove_artwork(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The exhibition's id (a UUID).")] exhibition_id: ID,
        #[graphql(desc = "The artwork's id.")] artwork_id: ID,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        let w = writes(ctx)?;
        reply(
            async {
                let call = Call::of(ctx, idempotency_key)?;
                let exhibition = uuid("exhibition id", &exhibition_id)?;
                let artwork = super::artwork_id(&artwork_id)?;
                w.commands
                    .remove_artwork(&call.cx(), exhibition, &artwork)
                    .await
            }
            .await,
        )
    }

    /// The exhibition's curator (or an admin) opens it to visitors.
    async fn publish_exhibition(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The exhibition's id (a UUID).")] exhibition_id: ID,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        let w = writes(ctx)?;
        reply(
            async {
                let call = Call::of(ctx, idempotency_key)?;
                let exhibition = uuid("exhibition id", &exhibition_id)?;
                w.commands.publish_exhibition(&call.cx(), exhibition).await
            }
            .await,
        )
    }

    /// The exhibition's curator (or an admin) closes it; it takes no more changes.
    async fn close_exhibition(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The exhibition's id (a UUID).")] exhibition_id: ID,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        let w = writes(ctx)?;
        reply(
            async {
                let call = Call::of(ctx, idempotency_key)?;
                let exhibition = uuid("exhibition id", &exhibition_id)?;
                w.commands.close_exhibition(&call.cx(), exhibition).await
            }
            .await,
        )
    }
}
