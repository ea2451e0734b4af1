//! What the signed-in user has: likes, favorites, generation jobs.

use async_graphql::connection::Connection;
use async_graphql::{Context, ID, Object};
use time::OffsetDateTime;

use super::generation::GenerationJob;
use super::page;
use super::{Artwork, datetime, gql, read};
use crate::read::{Mark, MarkRecord};

/// The signed-in user.
#[derive(Debug)]
pub struct ViewerRoot {
    user: String,
}

impl ViewerRoot {
    pub fn new(user: String) -> Self {
        Self { user }
    }

    async fn marks(
        &self,
        ctx: &Context<'_>,
        mark: Mark,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, MarkedArtwork>> {
        let read = read(ctx)?;
        page::load(
            first,
            after.as_deref(),
            page::decode,
            |after, n| read.marks_page(mark, &self.user, after, n),
            |m| (m.at_ms, m.artwork_id.clone()),
            MarkedArtwork,
        )
        .await
        .map_err(gql)
    }
}

#[Object(name = "Viewer")]
impl ViewerRoot {
    /// The user's id.
    async fn id(&self) -> ID {
        ID(self.user.clone())
    }

    /// The artworks the user likes now, the latest first.
    async fn likes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many (1 to 100, default 20).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, MarkedArtwork>> {
        self.marks(ctx, Mark::Likes, first, after).await
    }

    /// The user's favorites now, the latest first.
    async fn favorites(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many (1 to 100, default 20).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, MarkedArtwork>> {
        self.marks(ctx, Mark::Favorites, first, after).await
    }

    /// The user's generation jobs, the latest first.
    async fn generations(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many (1 to 100, default 20).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, GenerationJob>> {
        let read = read(ctx)?;
        page::load(
            first,
            after.as_deref(),
            page::decode_uuid,
            |after, n| read.jobs_page(&self.user, after, n),
            |j| (j.requested_at_ms, j.request_id.to_string()),
            GenerationJob::from,
        )
        .await
        .map_err(gql)
    }
}

/// An artwork the viewer likes (or has among their favorites), and since when.
#[derive(Debug)]
pub struct MarkedArtwork(MarkRecord);

#[Object]
impl MarkedArtwork {
    /// The artwork.
    async fn artwork(&self) -> Artwork {
        Artwork::by_id(self.0.artwork_id.clone())
    }

    /// When the viewer last set it.
    async fn at(&self) -> OffsetDateTime {
        datetime(self.0.at_ms)
    }
}
