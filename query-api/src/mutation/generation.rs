//! Generation requests for the AI painter, and their cancellation.

use async_graphql::{Context, ID, InputObject, Object, Upload};
use gallery_commands::GenerationInput;
use gallery_commands::decide::generation::Params;
use gallery_commands::input::request_id;

use super::{Call, CommandResult, reply, upload_bytes, uuid, writes};

/// A text-to-image request.
#[derive(Debug, InputObject)]
pub struct TextToImageInput {
    /// What to paint.
    pub prompt: String,
    #[graphql(flatten)]
    pub painting: PaintingInput,
    /// A client-chosen id (a UUID): sending the same one again returns the original result.
    pub request_id: Option<ID>,
}

/// An image-to-image request; the photo is a separate upload.
#[derive(Debug, InputObject)]
pub struct ImageToImageInput {
    /// What to make of the photo, if anything beyond the style.
    pub prompt: Option<String>,
    #[graphql(flatten)]
    pub painting: PaintingInput,
    /// A client-chosen id (a UUID): sending the same one again returns the original result.
    pub request_id: Option<ID>,
}

/// How to paint, the same for both kinds of request (its fields are the requests' own).
#[derive(Debug, InputObject)]
pub struct PaintingInput {
    /// What to keep out of the picture.
    pub negative_prompt: Option<String>,
    /// The painting style.
    pub style: String,
    /// The random seed; chosen by the server when left out.
    pub seed: Option<i64>,
    /// Denoising steps, 1 to 50 (20 when left out).
    pub steps: Option<i32>,
    /// Width in pixels, 64 to 1024, a multiple of 8 (512 when left out).
    pub width: Option<i32>,
    /// Height in pixels, 64 to 1024, a multiple of 8 (512 when left out).
    pub height: Option<i32>,
}

impl PaintingInput {
    /// The command's parameters: these, and `prompt`.
    fn params(self, prompt: Option<String>) -> Params {
        Params {
            prompt,
            negative_prompt: self.negative_prompt,
            style: self.style,
            seed: self.seed,
            steps: self.steps,
            width: self.width,
            height: self.height,
        }
    }
}

/// The request id a client chose, if any.
fn chosen(id: Option<&ID>) -> Result<Option<uuid::Uuid>, gallery_commands::CommandError> {
    request_id(id.map(|id| id.as_str()))
}

/// Generation requests.
#[derive(Debug, Default)]
pub struct GenerationMutations;

#[Object]
impl GenerationMutations {
    /// The caller asks the AI painter for a picture from a prompt. The result's `id` is the
    /// request id; `degraded` tells whether the request was scaled down because the backlog
    /// is high. Refused with `OVERLOADED` when the backlog is full.
    async fn request_text_to_image(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The request.")] input: TextToImageInput,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        let w = writes(ctx)?;
        reply(
            async {
                let call = Call::of(ctx, idempotency_key)?;
                let request_id = chosen(input.request_id.as_ref())?;
                let params = input.painting.params(Some(input.prompt));
                let request = GenerationInput::text_to_image(params, request_id);
                w.commands.request_generation(&call.cx(), request).await
            }
            .await,
        )
    }

    /// The caller asks the AI painter to repaint a photo, sent as a file of a multipart
    /// request (GraphQL multipart request spec). Answers like `requestTextToImage`.
    async fn request_image_to_image(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The request.")] input: ImageToImageInput,
        #[graphql(desc = "The photo to repaint (JPEG, PNG or WebP).")] photo: Upload,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        let w = writes(ctx)?;
        reply(
            async {
                let call = Call::of(ctx, idempotency_key)?;
                let request_id = chosen(input.request_id.as_ref())?;
                let params = input.painting.params(input.prompt);
                let photo = upload_bytes(ctx, &photo, "photo").await?;
                let request = GenerationInput::image_to_image(params, photo, request_id);
                w.commands.request_generation(&call.cx(), request).await
            }
            .await,
        )
    }

    /// The requester (or an admin) cancels a generation.
    async fn cancel_generation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The request's id (a UUID).")] request_id: ID,
        #[graphql(desc = "Makes a retry safe: the same key and request replay the first result.")]
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<CommandResult> {
        let w = writes(ctx)?;
        reply(
            async {
                let call = Call::of(ctx, idempotency_key)?;
                let request = uuid("request id", &request_id)?;
                w.commands.cancel_generation(&call.cx(), request).await
            }
            .await,
        )
    }
}
