//! The query root: the read model through GraphQL, paginated Relay-style, with DataLoaders so
//! a page costs a constant number of statements whatever its size.

mod artwork;
mod exhibition;
mod generation;
pub(crate) mod loaders;
mod page;
mod viewer;

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, ErrorExtensions, ID, Object};
use gallery_commands::AuthError;
use gallery_schemas::{ArtworkId, Role};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::QueryError;
use crate::read::{Measure, ReadModel};
use crate::schema::{Caller, Viewer};
pub use artwork::{Artwork, ArtworkStats};
pub use exhibition::{Exhibition, ExhibitionStatus};
pub use generation::GenerationJob;
pub use loaders::{Loaders, loaders};
use page::First;
use viewer::ViewerRoot;

/// The read model of the schema.
fn read<'c>(ctx: &Context<'c>) -> async_graphql::Result<&'c ReadModel> {
    ctx.data::<ReadModel>().map_err(|e| {
        tracing::error!(error = ?e, "the schema was built without the read model");
        async_graphql::Error::new("internal error").extend_with(|_, x| x.set("code", "INTERNAL"))
    })
}

/// The loaders of the schema.
fn loader<'c>(ctx: &Context<'c>) -> async_graphql::Result<&'c Loaders> {
    ctx.data::<Loaders>().map_err(|e| {
        tracing::error!(error = ?e, "the schema was built without loaders");
        async_graphql::Error::new("internal error").extend_with(|_, x| x.set("code", "INTERNAL"))
    })
}

/// The signed-in viewer's user id, if any.
fn viewer_id(ctx: &Context<'_>) -> Option<String> {
    ctx.data_opt::<Viewer>()
        .and_then(|v| v.0.as_ref())
        .map(|u| u.as_str().to_owned())
}

fn gql(e: QueryError) -> async_graphql::Error {
    e.extend()
}

fn shared(e: std::sync::Arc<QueryError>) -> async_graphql::Error {
    QueryError::Shared(e).extend()
}

/// Milliseconds since the epoch as a date-time (the epoch itself if out of range).
fn datetime(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn exhibition_id(raw: &str) -> Result<Uuid, QueryError> {
    Uuid::parse_str(raw).map_err(|_| QueryError::InvalidArgument {
        argument: "exhibition id",
        reason: "must be a UUID",
    })
}

/// A window of popularity: the hour buckets that overlap the last hour, day or week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum PopularityWindow {
    /// The last hour.
    LastHour,
    /// The last 24 hours.
    Last24Hours,
    /// The last 7 days.
    Last7Days,
}

impl PopularityWindow {
    fn hours(self) -> i64 {
        match self {
            PopularityWindow::LastHour => 1,
            PopularityWindow::Last24Hours => 24,
            PopularityWindow::Last7Days => 24 * 7,
        }
    }
}

/// What popularity counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum PopularityMeasure {
    /// New likes minus likes taken back in the window.
    Likes,
    /// Views in the window.
    Views,
}

/// An artwork and its popularity in a window.
#[derive(Debug)]
pub struct PopularArtwork {
    artwork: Artwork,
    score: i64,
}

#[Object]
impl PopularArtwork {
    /// The artwork.
    async fn artwork(&self) -> &Artwork {
        &self.artwork
    }

    /// Net likes (or views) in the window.
    async fn score(&self) -> i64 {
        self.score
    }
}

#[derive(Debug)]
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// An artwork by id. Every valid id names an artwork: one nobody has liked has a like
    /// count of 0, and its catalog fields are null until it is added to an exhibition.
    async fn artwork(&self, id: ID) -> async_graphql::Result<Artwork> {
        let id = ArtworkId::parse(&id).map_err(|e| QueryError::from(e).extend())?;
        Ok(Artwork::by_id(id.as_str().to_owned()))
    }

    /// Artworks on show (not removed), newest first, optionally of one exhibition.
    async fn artworks(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many (1 to 100, default 20).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only the artworks of this exhibition.")] exhibition_id: Option<ID>,
    ) -> async_graphql::Result<Connection<String, Artwork>> {
        let exhibition = match exhibition_id {
            Some(id) => Some(self::exhibition_id(&id).map_err(gql)?),
            None => None,
        };
        artwork::page(ctx, exhibition, first, after).await
    }

    /// An exhibition by id, or null if there is none.
    async fn exhibition(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Exhibition>> {
        let id = exhibition_id(&id).map_err(gql)?;
        let found = loader(ctx)?
            .load_one(loaders::ExhibitionOf(id))
            .await
            .map_err(shared)?;
        Ok(found.map(Exhibition::from))
    }

    /// Exhibitions by schedule (the earliest opening first), optionally in one status.
    async fn exhibitions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many (1 to 100, default 20).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only exhibitions in this status.")] status: Option<ExhibitionStatus>,
    ) -> async_graphql::Result<Connection<String, Exhibition>> {
        let read = read(ctx)?;
        page::load(
            first,
            after.as_deref(),
            page::decode_uuid,
            |after, n| read.exhibitions_page(status.map(ExhibitionStatus::stored), after, n),
            |r| (r.opens_at_ms, r.exhibition_id.to_string()),
            |r| Exhibition::from(std::sync::Arc::new(r)),
        )
        .await
        .map_err(gql)
    }

    /// The signed-in user's likes, favorites and generations. Needs a bearer token.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<ViewerRoot> {
        let user = viewer_id(ctx).ok_or_else(|| gql(AuthError::Missing.into()))?;
        Ok(ViewerRoot::new(user))
    }

    /// The most popular artworks of a window, most first; artworks with no net gain in the
    /// window are left out.
    async fn popular_artworks(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "PopularityWindow::Last24Hours")] window: PopularityWindow,
        #[graphql(default_with = "PopularityMeasure::Likes")] by: PopularityMeasure,
        #[graphql(desc = "How many (1 to 100, default 20).")] first: Option<i32>,
    ) -> async_graphql::Result<Vec<PopularArtwork>> {
        let first = First::parse(first).map_err(gql)?;
        let now_ms = i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(i64::MAX);
        let since = window_start(now_ms, window.hours());
        let measure = match by {
            PopularityMeasure::Likes => Measure::Likes,
            PopularityMeasure::Views => Measure::Views,
        };
        let limit = i64::try_from(first.get()).unwrap_or(20);
        let rows = read(ctx)?
            .popular(measure, since, now_ms, limit)
            .await
            .map_err(gql)?;
        Ok(rows
            .into_iter()
            .map(|(id, score)| PopularArtwork {
                artwork: Artwork::by_id(id),
                score,
            })
            .collect())
    }

    /// A generation job by request id; null unless the viewer asked for it (or is an admin).
    /// Needs a bearer token.
    async fn generation(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<GenerationJob>> {
        let who = ctx
            .data_opt::<Caller>()
            .and_then(|c| c.0.clone())
            .ok_or_else(|| gql(AuthError::Missing.into()))?;
        let id = Uuid::parse_str(&id).map_err(|_| {
            gql(QueryError::InvalidArgument {
                argument: "generation id",
                reason: "must be a UUID",
            })
        })?;
        let job = read(ctx)?.job(id).await.map_err(gql)?;
        Ok(job
            .filter(|j| j.user_id == who.user.as_str() || who.role == Role::Admin)
            .map(GenerationJob::from))
    }
}

/// The start of the first hour bucket that overlaps the last `hours` hours before `now_ms`.
fn window_start(now_ms: i64, hours: i64) -> i64 {
    const HOUR_MS: i64 = 3_600_000;
    (now_ms - hours * HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_starts_at_the_bucket_overlapping_its_start() {
        let hour = 3_600_000;
        assert_eq!(window_start(10 * hour + 5, 1), 9 * hour);
        assert_eq!(window_start(30 * hour, 24), 6 * hour);
    }
}
