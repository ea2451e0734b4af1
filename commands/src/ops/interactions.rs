//! Likes, favorites, comments and views.

use gallery_schemas::ArtworkId;
use serde_json::json;
use uuid::Uuid;

use crate::auth::Principal;
use crate::decide::interactions as rules;
use crate::error::CommandError;
use crate::idempotency::{IdempotencyKey, Ids};
use crate::library::{Accepted, Commands, Context, now_ms};
use crate::ratelimit::CommandClass;
use crate::repository;

impl Commands {
    /// The caller sets their like of `artwork`.
    #[tracing::instrument(skip(self, cx), fields(user = %cx.who.user))]
    pub async fn set_like(
        &self,
        cx: &Context<'_>,
        artwork: &ArtworkId,
        liked: bool,
    ) -> Result<Accepted, CommandError> {
        let request = || json!({"artwork": artwork.as_str(), "liked": liked});
        self.once(
            cx,
            ("set_like", CommandClass::Interactions),
            request,
            |ids| async move {
                let event = rules::like(&cx.who.user, artwork, liked, ids.id("event"), now_ms());
                self.publish(&ids, event, None).await
            },
        )
        .await
    }

    /// The caller sets their favorite of `artwork`.
    #[tracing::instrument(skip(self, cx), fields(user = %cx.who.user))]
    pub async fn set_favorite(
        &self,
        cx: &Context<'_>,
        artwork: &ArtworkId,
        favorited: bool,
    ) -> Result<Accepted, CommandError> {
        let request = || json!({"artwork": artwork.as_str(), "favorited": favorited});
        self.once(
            cx,
            ("set_favorite", CommandClass::Interactions),
            request,
            |ids| async move {
                let event =
                    rules::favorite(&cx.who.user, artwork, favorited, ids.id("event"), now_ms());
                self.publish(&ids, event, None).await
            },
        )
        .await
    }

    /// The caller comments on `artwork`; the result's `id` is the comment's id.
    #[tracing::instrument(skip(self, cx, body), fields(user = %cx.who.user))]
    pub async fn post_comment(
        &self,
        cx: &Context<'_>,
        artwork: &ArtworkId,
        body: &str,
    ) -> Result<Accepted, CommandError> {
        let request = || json!({"artwork": artwork.as_str(), "body": body});
        self.once(
            cx,
            ("post_comment", CommandClass::Interactions),
            request,
            |ids| async move {
                let comment_id = ids.id("comment");
                let event = rules::post_comment(
                    &cx.who.user,
                    artwork,
                    body,
                    comment_id,
                    ids.id("event"),
                    now_ms(),
                )?;
                let mut client = self.client().await?;
                let tx = Self::begin(&mut client).await?;
                self.publish_in(&ids, tx, event, Some(comment_id.to_string()))
                    .await
            },
        )
        .await
    }

    /// The caller (its author or an admin) deletes a comment.
    #[tracing::instrument(skip(self, cx), fields(user = %cx.who.user))]
    pub async fn delete_comment(
        &self,
        cx: &Context<'_>,
        artwork: &ArtworkId,
        comment_id: Uuid,
    ) -> Result<Accepted, CommandError> {
        let request = || json!({"artwork": artwork.as_str(), "comment": comment_id});
        self.once(
            cx,
            ("delete_comment", CommandClass::Interactions),
            request,
            |ids| async move {
                let mut client = self.client().await?;
                let tx = Self::begin(&mut client).await?;
                let current = repository::comment(&tx, comment_id).await?;
                let event = rules::delete_comment(
                    cx.who,
                    artwork,
                    comment_id,
                    current.as_ref(),
                    ids.id("event"),
                    now_ms(),
                )?;
                self.publish_in(&ids, tx, event, Some(comment_id.to_string()))
                    .await
            },
        )
        .await
    }

    /// Records a view of `artwork`, by a signed-in viewer or anonymously. Keys belong to
    /// their user, so only a signed-in viewer's view takes one.
    #[tracing::instrument(skip(self, viewer, key))]
    pub async fn record_view(
        &self,
        viewer: Option<&Principal>,
        key: Option<&IdempotencyKey>,
        artwork: &ArtworkId,
    ) -> Result<Accepted, CommandError> {
        let Some(who) = viewer else {
            if key.is_some() {
                return Err(CommandError::AnonymousIdempotencyKey);
            }
            let ids = Ids::fresh();
            let event = rules::view(None, artwork, ids.id("event"), now_ms());
            return self.publish(&ids, event, None).await;
        };
        let cx = Context { who, key };
        self.once(
            &cx,
            ("record_view", CommandClass::Interactions),
            || json!({"artwork": artwork.as_str()}),
            |ids| async move {
                let event = rules::view(Some(&who.user), artwork, ids.id("event"), now_ms());
                self.publish(&ids, event, None).await
            },
        )
        .await
    }
}
