//! Exhibitions and their artworks.

use gallery_schemas::ArtworkId;
use serde_json::json;
use uuid::Uuid;

use crate::decide::catalog::{self as rules, NewArtwork, NewExhibition};
use crate::error::CommandError;
use crate::idempotency::fingerprint;
use crate::library::{Accepted, Commands, Context, now_ms};
use crate::ports::ImageKind;
use crate::ratelimit::CommandClass;
use crate::repository;

/// A rule deciding an exhibition-wide change (publish, close).
type ExhibitionRule = fn(
    &crate::auth::Principal,
    Option<&crate::decide::catalog::ExhibitionState>,
    Uuid,
    Uuid,
    i64,
) -> Result<gallery_schemas::Event, crate::decide::Refusal>;

/// An artwork to add: its details and the uploaded image's bytes.
#[derive(Debug, Clone)]
pub struct ArtworkUpload {
    pub details: NewArtwork,
    pub image: Vec<u8>,
}

impl Commands {
    /// A curator creates an exhibition (a draft); the result's `id` is the exhibition's id.
    #[tracing::instrument(skip(self, cx, input), fields(user = %cx.who.user))]
    pub async fn create_exhibition(
        &self,
        cx: &Context<'_>,
        input: &NewExhibition,
    ) -> Result<Accepted, CommandError> {
        let request = || {
            json!({
                "title": input.title, "description": input.description,
                "opensAt": input.opens_at, "closesAt": input.closes_at,
            })
        };
        self.once(
            cx,
            ("create_exhibition", CommandClass::Catalog),
            request,
            |ids| async move {
                let exhibition_id = ids.id("exhibition");
                let event = rules::create_exhibition(
                    cx.who,
                    input,
                    exhibition_id,
                    ids.id("event"),
                    now_ms(),
                )?;
                let mut client = self.client().await?;
                let tx = Self::begin(&mut client).await?;
                self.publish_in(&ids, tx, event, Some(exhibition_id.to_string()))
                    .await
            },
        )
        .await
    }

    /// A curator adds an artwork; its image is checked and stored before the event refers to
    /// it. The result's `id` is the artwork's id.
    #[tracing::instrument(skip(self, cx, upload), fields(user = %cx.who.user))]
    pub async fn add_artwork(
        &self,
        cx: &Context<'_>,
        exhibition_id: Uuid,
        upload: ArtworkUpload,
    ) -> Result<Accepted, CommandError> {
        let d = &upload.details;
        let request = json!({
            "exhibition": exhibition_id, "title": d.title, "artist": d.artist, "year": d.year,
            "style": d.style, "description": d.description,
            "image": fingerprint("image", &upload.image),
        });
        self.once(
            cx,
            ("add_artwork", CommandClass::Catalog),
            move || request,
            |ids| async move {
                // Cheap checks first, so nothing is stored for a refused command.
                {
                    let mut client = self.client().await?;
                    let tx = Self::begin(&mut client).await?;
                    let current = repository::exhibition(&tx, exhibition_id).await?;
                    rules::authorize_edit(cx.who, current.as_ref())?;
                    rules::check_artwork(&upload.details)?;
                }
                let image = self
                    .images()?
                    .put_image(upload.image, ImageKind::Artwork)
                    .await?;
                let artwork_id = ArtworkId::parse(&ids.id("artwork").simple().to_string())
                    .map_err(crate::decide::Refusal::id("artwork id"))?;
                let mut client = self.client().await?;
                let tx = Self::begin(&mut client).await?;
                let current = repository::exhibition(&tx, exhibition_id).await?;
                let event = rules::add_artwork(
                    cx.who,
                    current.as_ref(),
                    exhibition_id,
                    &upload.details,
                    image,
                    artwork_id.clone(),
                    ids.id("event"),
                    now_ms(),
                )?;
                self.publish_in(&ids, tx, event, Some(artwork_id.to_string()))
                    .await
            },
        )
        .await
    }

    /// A curator takes an artwork out of an exhibition.
    #[tracing::instrument(skip(self, cx), fields(user = %cx.who.user))]
    pub async fn remove_artwork(
        &self,
        cx: &Context<'_>,
        exhibition_id: Uuid,
        artwork_id: &ArtworkId,
    ) -> Result<Accepted, CommandError> {
        let request = || json!({"exhibition": exhibition_id, "artwork": artwork_id.as_str()});
        self.once(
            cx,
            ("remove_artwork", CommandClass::Catalog),
            request,
            |ids| async move {
                let mut client = self.client().await?;
                let tx = Self::begin(&mut client).await?;
                let current = repository::exhibition(&tx, exhibition_id).await?;
                let artwork_in = repository::artwork_exhibition(&tx, artwork_id).await?;
                let event = rules::remove_artwork(
                    cx.who,
                    current.as_ref(),
                    exhibition_id,
                    artwork_id,
                    artwork_in,
                    ids.id("event"),
                    now_ms(),
                )?;
                self.publish_in(&ids, tx, event, Some(artwork_id.to_string()))
                    .await
            },
        )
        .await
    }

    /// A curator opens an exhibition to visitors.
    #[tracing::instrument(skip(self, cx), fields(user = %cx.who.user))]
    pub async fn publish_exhibition(
        &self,
        cx: &Context<'_>,
        exhibition_id: Uuid,
    ) -> Result<Accepted, CommandError> {
        self.transition(cx, "publish_exhibition", exhibition_id, rules::publish)
            .await
    }

    /// A curator closes an exhibition; it takes no more changes.
    #[tracing::instrument(skip(self, cx), fields(user = %cx.who.user))]
    pub async fn close_exhibition(
        &self,
        cx: &Context<'_>,
        exhibition_id: Uuid,
    ) -> Result<Accepted, CommandError> {
        self.transition(cx, "close_exhibition", exhibition_id, rules::close)
            .await
    }

    /// An exhibition-wide change decided by `rule` on the locked exhibition state.
    async fn transition(
        &self,
        cx: &Context<'_>,
        command: &str,
        exhibition_id: Uuid,
        rule: ExhibitionRule,
    ) -> Result<Accepted, CommandError> {
        let request = || json!({"exhibition": exhibition_id});
        self.once(
            cx,
            (command, CommandClass::Catalog),
            request,
            |ids| async move {
                let mut client = self.client().await?;
                let tx = Self::begin(&mut client).await?;
                let current = repository::exhibition(&tx, exhibition_id).await?;
                let event = rule(
                    cx.who,
                    current.as_ref(),
                    exhibition_id,
                    ids.id("event"),
                    now_ms(),
                )?;
                self.publish_in(&ids, tx, event, Some(exhibition_id.to_string()))
                    .await
            },
        )
        .await
    }
}
