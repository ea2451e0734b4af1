//! Generation requests and cancellation.

use gallery_schemas::GenerationMode;
use serde_json::json;
use uuid::Uuid;

use crate::decide::Refusal;
use crate::decide::generation::{self as rules, Params};
use crate::error::CommandError;
use crate::idempotency::{IdempotencyKey, fingerprint};
use crate::library::{Accepted, Commands, Context, now_ms};
use crate::ports::ImageKind;
use crate::ratelimit::CommandClass;
use crate::repository;

/// A generation request as a client sends it.
#[derive(Debug, Clone)]
pub struct GenerationInput {
    pub mode: GenerationMode,
    pub params: Params,
    /// The photo to repaint (image-to-image).
    pub photo: Option<Vec<u8>>,
    /// A client-chosen id: a retry with the same id returns the original result.
    pub request_id: Option<Uuid>,
}

impl Commands {
    /// The caller asks for a picture; the result's `id` is the request id and `degraded`
    /// tells whether it was scaled down because the backlog is high.
    #[tracing::instrument(skip(self, cx, input), fields(user = %cx.who.user, mode = ?input.mode))]
    pub async fn request_generation(
        &self,
        cx: &Context<'_>,
        input: GenerationInput,
    ) -> Result<Accepted, CommandError> {
        let p = &input.params;
        let request = json!({
            "mode": format!("{:?}", input.mode), "prompt": p.prompt,
            "negativePrompt": p.negative_prompt, "style": p.style, "seed": p.seed,
            "steps": p.steps, "width": p.width, "height": p.height,
            "photo": input.photo.as_deref().map(|b| fingerprint("image", b)),
            "requestId": input.request_id,
        });
        // A client-chosen request id works as an idempotency key of its own.
        let derived_key = match (cx.key, input.request_id) {
            (None, Some(id)) => IdempotencyKey::parse(&format!("generation:{id}")).ok(),
            _ => None,
        };
        let cx = Context {
            who: cx.who,
            key: cx.key.or(derived_key.as_ref()),
        };
        let cx = &cx;
        self.once(
            cx,
            ("request_generation", CommandClass::Generation),
            move || request,
            |ids| async move {
                let admission = self
                    .admission
                    .admit()
                    .map_err(|o| CommandError::Overloaded {
                        backlog: o.backlog,
                        retry_after: o.retry_after,
                    })?;
                let request_id = input.request_id.unwrap_or_else(|| ids.id("request"));
                let event_id = ids.id("event");
                // Check the parameters before storing a photo.
                let checked = rules::check(
                    input.mode,
                    &input.params,
                    input.photo.is_some(),
                    &self.bounds,
                    admission,
                )?;
                let source = match input.photo {
                    Some(bytes) => Some(self.images()?.put_image(bytes, ImageKind::Photo).await?),
                    None => None,
                };
                let event = rules::request(
                    cx.who,
                    checked,
                    source,
                    request_id,
                    ids.seed(),
                    event_id,
                    now_ms(),
                );
                let mut client = self.client().await?;
                let tx = Self::begin(&mut client).await?;
                if !repository::reserve_generation(&tx, request_id, &cx.who.user).await? {
                    return Err(Refusal::Conflict {
                        reason: "this request id is already used",
                    }
                    .into());
                }
                self.publish_in(&ids, tx, event, Some(request_id.to_string()))
                    .await
            },
        )
        .await
    }

    /// The requester (or an admin) cancels a generation.
    #[tracing::instrument(skip(self, cx), fields(user = %cx.who.user))]
    pub async fn cancel_generation(
        &self,
        cx: &Context<'_>,
        request_id: Uuid,
    ) -> Result<Accepted, CommandError> {
        let request = || json!({"request": request_id});
        self.once(
            cx,
            ("cancel_generation", CommandClass::Generation),
            request,
            |ids| async move {
                let mut client = self.client().await?;
                let tx = Self::begin(&mut client).await?;
                let current = repository::generation(&tx, request_id).await?;
                let event = rules::cancel(
                    cx.who,
                    current.as_ref(),
                    request_id,
                    ids.id("event"),
                    now_ms(),
                )?;
                self.publish_in(&ids, tx, event, Some(request_id.to_string()))
                    .await
            },
        )
        .await
    }
}
