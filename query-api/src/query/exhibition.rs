//! Exhibitions and their artworks.

use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, ID, Object};
use time::OffsetDateTime;

use super::{Artwork, datetime};
use crate::read::ExhibitionRow;

/// Where an exhibition is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "gallery_schemas::ExhibitionStatus")]
pub enum ExhibitionStatus {
    /// Being built by its curator; not open to visitors.
    Draft,
    /// Open to visitors.
    Published,
    /// Closed; it takes no more changes.
    Closed,
}

impl ExhibitionStatus {
    pub(super) fn stored(self) -> &'static str {
        gallery_schemas::ExhibitionStatus::from(self).as_str()
    }
}

/// An exhibition of artworks, built by a curator.
#[derive(Debug)]
pub struct Exhibition(Arc<ExhibitionRow>);

impl From<Arc<ExhibitionRow>> for Exhibition {
    fn from(record: Arc<ExhibitionRow>) -> Self {
        Exhibition(record)
    }
}

#[Object]
impl Exhibition {
    /// The exhibition's id (a UUID).
    async fn id(&self) -> ID {
        ID(self.0.exhibition_id.to_string())
    }

    /// The curator who created it (a user id).
    async fn curator(&self) -> ID {
        ID(self.0.curator_id.clone())
    }

    async fn title(&self) -> &str {
        &self.0.title
    }

    async fn description(&self) -> &str {
        &self.0.description
    }

    /// When it opens to visitors.
    async fn opens_at(&self) -> OffsetDateTime {
        datetime(self.0.opens_at_ms)
    }

    /// When it closes.
    async fn closes_at(&self) -> OffsetDateTime {
        datetime(self.0.closes_at_ms)
    }

    async fn status(&self) -> ExhibitionStatus {
        self.0.status.into()
    }

    async fn created_at(&self) -> OffsetDateTime {
        datetime(self.0.created_at_ms)
    }

    async fn published_at(&self) -> Option<OffsetDateTime> {
        self.0.published_at_ms.map(datetime)
    }

    async fn closed_at(&self) -> Option<OffsetDateTime> {
        self.0.closed_at_ms.map(datetime)
    }

    /// Its artworks on show, newest first.
    async fn artworks(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many (1 to 100, default 20).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Artwork>> {
        super::artwork::page(ctx, Some(self.0.exhibition_id), first, after).await
    }
}
