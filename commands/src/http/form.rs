//! The multipart forms of the upload routes, read into their commands' inputs. A form that
//! cannot be read, or lacks a field, is a [`BodyError`].

use axum::extract::Multipart;

use super::bodies::whole;
use crate::body::BodyError;
use crate::decide::Refusal;
use crate::decide::catalog::NewArtwork;
use crate::decide::generation::Params;
use crate::error::CommandError;
use crate::input::request_id;
use crate::ops::{ArtworkUpload, GenerationInput};

/// The fields of a multipart form: text fields by name, and one file.
#[derive(Debug, Default)]
struct Form {
    fields: std::collections::HashMap<String, String>,
    file: Option<Vec<u8>>,
}

impl Form {
    async fn read(
        mut multipart: Multipart,
        file_field: &'static str,
    ) -> Result<Self, CommandError> {
        let mut form = Form::default();
        let bad = BodyError::Multipart;
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or_default().to_owned();
            if name == file_field {
                form.file = Some(field.bytes().await.map_err(bad)?.to_vec());
            } else {
                let text = field.text().await.map_err(bad)?;
                form.fields.insert(name, text);
            }
        }
        Ok(form)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.fields.get(name).cloned()
    }

    fn required(&self, name: &'static str) -> Result<String, CommandError> {
        self.text(name)
            .ok_or(BodyError::MissingField { name }.into())
    }

    /// A whole number, written as JSON writes numbers (`128`, or `128.0`).
    fn number<T: TryFrom<i64>>(&self, name: &'static str) -> Result<Option<T>, CommandError> {
        match self.text(name).filter(|s| !s.trim().is_empty()) {
            None => Ok(None),
            Some(raw) => raw
                .trim()
                .parse::<serde_json::Number>()
                .ok()
                .and_then(|n| whole(&n))
                .map(Some)
                .ok_or(CommandError::Refused(Refusal::Rule {
                    field: name,
                    rule: "must be a whole number",
                })),
        }
    }

    fn file(&mut self, name: &'static str) -> Result<Vec<u8>, CommandError> {
        self.file
            .take()
            .ok_or(BodyError::MissingFile { name }.into())
    }
}

/// Reads the multipart form of `POST /v1/exhibitions/{id}/artworks`: the artwork's details,
/// unchecked (the command checks them), and its image, as sent.
pub async fn artwork_upload(multipart: Multipart) -> Result<ArtworkUpload, CommandError> {
    let mut form = Form::read(multipart, "image").await?;
    Ok(ArtworkUpload {
        details: NewArtwork {
            title: form.required("title")?,
            artist: form.required("artist")?,
            year: form.number("year")?,
            style: form.text("style").filter(|s| !s.is_empty()),
            description: form.text("description").unwrap_or_default(),
        },
        image: form.file("image")?,
    })
}

/// Reads the multipart form of `POST /v1/generations/image-to-image`: the request's parameters,
/// unchecked (the command checks them), and its photo, as sent.
pub async fn image_to_image_input(multipart: Multipart) -> Result<GenerationInput, CommandError> {
    let mut form = Form::read(multipart, "photo").await?;
    let request_id = request_id(form.text("requestId").filter(|s| !s.is_empty()).as_deref())?;
    let params = Params {
        prompt: form.text("prompt"),
        negative_prompt: form.text("negativePrompt"),
        style: form.required("style")?,
        seed: form.number("seed")?,
        steps: form.number("steps")?,
        width: form.number("width")?,
        height: form.number("height")?,
    };
    Ok(GenerationInput::image_to_image(
        params,
        form.file("photo")?,
        request_id,
    ))
}
