//! The one conversion from what a client sends (a path segment, a JSON body, a form field, a
//! GraphQL argument) to a command's input, for the HTTP routes and the GraphQL mutations
//! alike: an id is parsed with the name of the field it came from, so the same bad value is
//! refused with the same code and message on either, and a generation request is built from
//! its parameters in one place.

use gallery_schemas::{ArtworkId, GenerationMode};
use uuid::Uuid;

use crate::decide::Refusal;
use crate::decide::generation::Params;
use crate::error::CommandError;
use crate::ops::GenerationInput;

/// An artwork id (`INVALID_INPUT` naming the artwork id when it is not one).
pub fn artwork_id(raw: &str) -> Result<ArtworkId, CommandError> {
    ArtworkId::parse(raw).map_err(|source| CommandError::InvalidInput {
        field: "artwork id",
        source,
    })
}

/// A UUID given as `field` (refused by the rule "must be a UUID" when it is not one).
pub fn uuid(field: &'static str, raw: &str) -> Result<Uuid, CommandError> {
    Uuid::parse_str(raw).map_err(|_| {
        CommandError::Refused(Refusal::Rule {
            field,
            rule: "must be a UUID",
        })
    })
}

/// A client-chosen generation request id, when one is given.
pub fn request_id(raw: Option<&str>) -> Result<Option<Uuid>, CommandError> {
    raw.map(|raw| uuid("requestId", raw)).transpose()
}

impl GenerationInput {
    /// A text-to-image request.
    pub fn text_to_image(params: Params, request_id: Option<Uuid>) -> Self {
        Self {
            mode: GenerationMode::TextToImage,
            params,
            photo: None,
            request_id,
        }
    }

    /// An image-to-image request: `photo` repainted as `params` ask.
    pub fn image_to_image(params: Params, photo: Vec<u8>, request_id: Option<Uuid>) -> Self {
        Self {
            mode: GenerationMode::ImageToImage,
            params,
            photo: Some(photo),
            request_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    #[test]
    fn a_bad_id_is_refused_naming_its_field() {
        let e = uuid("comment id", "nope").unwrap_err();
        assert_eq!(e.kind(), Code::InvalidInput);
        assert!(
            e.public_message().contains("comment id"),
            "{}",
            e.public_message()
        );
        assert_eq!(
            request_id(Some("x")).unwrap_err().public_message(),
            uuid("requestId", "x").unwrap_err().public_message()
        );
        assert_eq!(request_id(None).ok(), Some(None));
        assert_eq!(artwork_id("").unwrap_err().kind(), Code::InvalidInput);
    }

    #[test]
    fn a_generation_request_is_of_its_mode() {
        let id = Uuid::nil();
        let text = GenerationInput::text_to_image(Params::default(), Some(id));
        assert_eq!(
            (text.mode, text.photo, text.request_id),
            (GenerationMode::TextToImage, None, Some(id))
        );
        let image = GenerationInput::image_to_image(Params::default(), vec![1], None);
        assert_eq!(
            (image.mode, image.photo),
            (GenerationMode::ImageToImage, Some(vec![1]))
        );
    }
}
