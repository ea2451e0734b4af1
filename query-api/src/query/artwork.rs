//! Artworks: catalog details, counts, the viewer's flags and comments.

use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{ComplexObject, Context, ID, Object, SimpleObject};
use time::OffsetDateTime;
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::loaders::{ArtworkOf, ExhibitionOf, FlagsOf, StatsOf};
use super::page;
use super::{Exhibition, datetime, gql, loader, read, shared, viewer_id};
use crate::cache::HotCache;
use crate::consistency::Reached;
use crate::media::signed_url;
use crate::read::{ArtworkRow, CommentRow, Stats};

/// A painting in the gallery.
#[derive(Debug)]
pub struct Artwork {
    id: String,
    record: OnceCell<Option<Arc<ArtworkRow>>>,
}

impl Artwork {
    /// An artwork known by id only; its catalog record is loaded when asked for.
    pub fn by_id(id: String) -> Self {
        Self {
            id,
            record: OnceCell::new(),
        }
    }

    pub fn from_record(record: ArtworkRow) -> Self {
        Self {
            id: record.artwork_id.clone(),
            record: OnceCell::new_with(Some(Some(Arc::new(record)))),
        }
    }

    async fn record(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&ArtworkRow>> {
        let record = self
            .record
            .get_or_try_init(|| async {
                let cache = hot_cache(ctx);
                if let Some(hit) = match cache {
                    Some(c) => c.details(&self.id).await,
                    None => None,
                } {
                    return Ok(hit);
                }
                let epoch = cache.map(HotCache::epoch);
                let found = loader(ctx)?
                    .load_one(ArtworkOf(self.id.clone()))
                    .await
                    .map_err(shared)?;
                if let (Some(c), Some(epoch)) = (cache, epoch) {
                    c.put_details(&self.id, found.clone(), epoch).await;
                }
                Ok::<_, async_graphql::Error>(found)
            })
            .await?;
        Ok(record.as_deref())
    }

    async fn flags(&self, ctx: &Context<'_>) -> async_graphql::Result<(bool, bool)> {
        let Some(user) = viewer_id(ctx) else {
            return Ok((false, false));
        };
        let cache = hot_cache(ctx);
        if let Some(c) = cache
            && let Some(hit) = c.flags(&self.id, &user).await
        {
            return Ok(hit);
        }
        let epoch = cache.map(HotCache::epoch);
        let flags = loader(ctx)?
            .load_one(FlagsOf(user.clone(), self.id.clone()))
            .await
            .map_err(shared)?
            .unwrap_or((false, false));
        if let (Some(c), Some(epoch)) = (cache, epoch) {
            c.put_flags(&self.id, &user, flags, epoch).await;
        }
        Ok(flags)
    }

    async fn counts(&self, ctx: &Context<'_>) -> async_graphql::Result<Stats> {
        let cache = hot_cache(ctx);
        if let Some(c) = cache
            && let Some(hit) = c.stats(&self.id).await
        {
            return Ok(hit);
        }
        let epoch = cache.map(HotCache::epoch);
        let stats = loader(ctx)?
            .load_one(StatsOf(self.id.clone()))
            .await
            .map_err(shared)?
            .unwrap_or_default();
        if let (Some(c), Some(epoch)) = (cache, epoch) {
            c.put_stats(&self.id, stats, epoch).await;
        }
        Ok(stats)
    }
}

/// The hot cache, unless this request must read past it (its consistency tokens were seen
/// in the stored offsets before the change feed announced them).
fn hot_cache<'c>(ctx: &Context<'c>) -> Option<&'c HotCache> {
    if matches!(ctx.data_opt::<Reached>(), Some(Reached::Stored)) {
        return None;
    }
    ctx.data_opt::<HotCache>()
}

/// An artwork's image in object storage.
#[derive(Debug, SimpleObject)]
#[graphql(complex)]
pub struct ArtworkImage {
    /// Object key, content-addressed (`images/sha256/<hex>.<ext>`).
    key: String,
    /// Width in pixels.
    width: i32,
    /// Height in pixels.
    height: i32,
    /// `image/png`, `image/jpeg` or `image/webp`.
    content_type: String,
}

#[ComplexObject]
impl ArtworkImage {
    /// A signed URL of the image, valid for a limited time (query again for a fresh one).
    /// The bytes behind it never change: cache them.
    async fn url(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        signed_url(ctx, &self.key)
    }
}

/// An artwork's counts (never negative).
#[derive(Debug, SimpleObject)]
pub struct ArtworkStats {
    /// Users who like it now.
    likes: i64,
    /// Users who have it among their favorites now.
    favorites: i64,
    /// Comments not deleted.
    comments: i64,
    /// Views, all time.
    views: i64,
}

impl From<Stats> for ArtworkStats {
    fn from(s: Stats) -> Self {
        ArtworkStats {
            likes: s.likes,
            favorites: s.favorites,
            comments: s.comments,
            views: s.views,
        }
    }
}

#[Object]
impl Artwork {
    /// The artwork's id.
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }

    /// Whether the artwork is in the catalog (added to an exhibition); its catalog fields are
    /// null otherwise.
    async fn in_catalog(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        Ok(self.record(ctx).await?.is_some())
    }

    /// The title.
    async fn title(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.record(ctx).await?.map(|r| r.title.clone()))
    }

    /// Who painted it.
    async fn artist(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.record(ctx).await?.map(|r| r.artist.clone()))
    }

    /// The year it was made, if known.
    async fn year(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<i32>> {
        Ok(self.record(ctx).await?.and_then(|r| r.year))
    }

    /// Its style, if given.
    async fn style(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.record(ctx).await?.and_then(|r| r.style.clone()))
    }

    /// The curator's description.
    async fn description(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.record(ctx).await?.map(|r| r.description.clone()))
    }

    /// The image.
    async fn image(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ArtworkImage>> {
        Ok(self.record(ctx).await?.map(|r| ArtworkImage {
            key: r.image_key.clone(),
            width: r.image_width,
            height: r.image_height,
            content_type: r.image_content_type.clone(),
        }))
    }

    /// When it was added to its exhibition.
    async fn added_at(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<OffsetDateTime>> {
        Ok(self.record(ctx).await?.map(|r| datetime(r.added_at_ms)))
    }

    /// Whether the curator took it out of its exhibition.
    async fn removed(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        Ok(self
            .record(ctx)
            .await?
            .is_some_and(|r| r.removed_at_ms.is_some()))
    }

    /// The exhibition it belongs to.
    async fn exhibition(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Exhibition>> {
        let Some(id) = self.record(ctx).await?.map(|r| r.exhibition_id) else {
            return Ok(None);
        };
        let found = loader(ctx)?
            .load_one(ExhibitionOf(id))
            .await
            .map_err(shared)?;
        Ok(found.map(Exhibition::from))
    }

    /// Likes, favorites, comments and views.
    async fn stats(&self, ctx: &Context<'_>) -> async_graphql::Result<ArtworkStats> {
        Ok(self.counts(ctx).await?.into())
    }

    /// How many users like this artwork now (each user counts once; never negative).
    async fn like_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        Ok(self.counts(ctx).await?.likes)
    }

    /// Whether the signed-in viewer likes this artwork; false for anonymous viewers.
    async fn viewer_has_liked(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        Ok(self.flags(ctx).await?.0)
    }

    /// Whether the signed-in viewer has it among their favorites; false for anonymous viewers.
    async fn viewer_has_favorited(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        Ok(self.flags(ctx).await?.1)
    }

    /// Comments, newest first (deleted ones are gone).
    async fn comments(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many (1 to 100, default 20).")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Comment>> {
        let read = read(ctx)?;
        page::load(
            first,
            after.as_deref(),
            page::decode_uuid,
            |after, n| read.comments_page(&self.id, after, n),
            |c| (c.posted_at_ms, c.comment_id.to_string()),
            Comment,
        )
        .await
        .map_err(gql)
    }
}

/// A page of artworks on show, newest first.
pub(super) async fn page(
    ctx: &Context<'_>,
    exhibition: Option<Uuid>,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<Connection<String, Artwork>> {
    let read = read(ctx)?;
    page::load(
        first,
        after.as_deref(),
        page::decode,
        |after, n| read.artworks_page(exhibition, after, n),
        |r| (r.added_at_ms, r.artwork_id.clone()),
        Artwork::from_record,
    )
    .await
    .map_err(gql)
}

/// A comment on an artwork.
#[derive(Debug)]
pub struct Comment(CommentRow);

#[Object]
impl Comment {
    /// The comment's id.
    async fn id(&self) -> ID {
        ID(self.0.comment_id.to_string())
    }

    /// The artwork it is about.
    async fn artwork(&self) -> Artwork {
        Artwork::by_id(self.0.artwork_id.clone())
    }

    /// Who wrote it (a user id).
    async fn author(&self) -> ID {
        ID(self.0.user_id.clone())
    }

    /// The text.
    async fn body(&self) -> &str {
        &self.0.body
    }

    /// When it was posted.
    async fn posted_at(&self) -> OffsetDateTime {
        datetime(self.0.posted_at_ms)
    }
}
