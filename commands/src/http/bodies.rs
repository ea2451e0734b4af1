//! The JSON bodies of the command routes and the forms of the upload routes, as the OpenAPI
//! document shows them; each converts into the input of its command.

use gallery_schemas::{Description, PersonName, Prompt, StyleName, Title};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::decide::catalog::{NewExhibition, YEARS};
use crate::decide::generation::{Bounds, Params};
use crate::openapi::{empty_or, image_file, integer};
use crate::ops::GenerationInput;

/// The JSON body of `POST /v1/artworks/{id}/comments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    body: String,
}

impl CommentBody {
    /// The comment's text, unchecked (the command checks it).
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The body as the document shows it: the fields above, their rules, nothing else.
    pub(crate) fn schema() -> Value {
        json!({"type": "object", "additionalProperties": false, "required": ["body"], "properties": {
            "body": gallery_schemas::CommentBody::json_schema(),
        }})
    }
}

/// The JSON body of `POST /v1/exhibitions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExhibitionBody {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(with = "time::serde::rfc3339")]
    opens_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    closes_at: time::OffsetDateTime,
}

impl ExhibitionBody {
    /// The body as the document shows it (the rule between the two times, which JSON Schema
    /// cannot state, in their descriptions).
    pub(crate) fn schema() -> Value {
        json!({"type": "object", "additionalProperties": false,
               "required": ["title", "opensAt", "closesAt"], "properties": {
            "title": gallery_schemas::Title::json_schema(),
            "description": gallery_schemas::Description::json_schema(),
            "opensAt": {"type": "string", "format": "date-time", "description": "RFC 3339."},
            "closesAt": {"type": "string", "format": "date-time",
                         "description": "RFC 3339; must be after opensAt and in the future (400 INVALID_INPUT otherwise)."},
        }})
    }
}

fn millis(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl From<ExhibitionBody> for NewExhibition {
    fn from(input: ExhibitionBody) -> Self {
        NewExhibition {
            title: input.title,
            description: input.description,
            opens_at: millis(input.opens_at),
            closes_at: millis(input.closes_at),
        }
    }
}

/// The JSON body of `POST /v1/generations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TextToImageBody {
    prompt: String,
    negative_prompt: Option<String>,
    style: String,
    #[serde(default, deserialize_with = "optional_whole")]
    seed: Option<i64>,
    #[serde(default, deserialize_with = "optional_whole")]
    steps: Option<i32>,
    #[serde(default, deserialize_with = "optional_whole")]
    width: Option<i32>,
    #[serde(default, deserialize_with = "optional_whole")]
    height: Option<i32>,
    request_id: Option<Uuid>,
}

/// 2^63: the first whole `f64` beyond `i64`.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// A whole number within `T`'s range, as JSON Schema's `integer` reads numbers: written with
/// or without a zero fraction (`128` and `128.0` alike).
pub(super) fn whole<T: TryFrom<i64>>(n: &serde_json::Number) -> Option<T> {
    let whole = n.as_i64().or_else(|| {
        let f = n.as_f64()?;
        // Kept only in range and without a fraction, where the conversion is exact.
        (f.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&f)).then_some(f as i64)
    })?;
    T::try_from(whole).ok()
}

/// An optional whole number of a JSON body (see [`whole`]).
fn optional_whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    whole(&n).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!("expected a whole number within range, got {n}"))
    })
}

/// The generation parameters both modes take, with the bounds the service checks.
fn generation_fields(bounds: &Bounds) -> Map<String, Value> {
    let side = |which: &str| {
        json!({"type": "integer", "minimum": bounds.min_side, "maximum": bounds.max_side,
               "multipleOf": bounds.side_multiple, "default": bounds.default_side,
               "description": format!("{which} in pixels.")})
    };
    let mut fields = Map::new();
    fields.insert("negativePrompt".into(), empty_or(Prompt::json_schema()));
    fields.insert("style".into(), StyleName::json_schema());
    fields.insert(
        "seed".into(),
        integer(
            i64::MIN,
            i64::MAX,
            "Random when absent; the same seed reproduces an image.",
        ),
    );
    fields.insert(
        "steps".into(),
        json!({"type": "integer", "minimum": bounds.min_steps, "maximum": bounds.max_steps,
               "default": bounds.default_steps}),
    );
    fields.insert("width".into(), side("Width"));
    fields.insert("height".into(), side("Height"));
    fields
}

impl TextToImageBody {
    /// The body as the document shows it.
    pub(crate) fn schema() -> Value {
        let mut fields = generation_fields(&Bounds::default());
        fields.insert("prompt".into(), Prompt::json_schema());
        fields.insert(
            "requestId".into(),
            json!({"type": "string", "format": "uuid",
                   "description": "Client-chosen; works as an idempotency key of its own (another user's is 409)."}),
        );
        json!({"type": "object", "additionalProperties": false,
               "required": ["prompt", "style"], "properties": fields})
    }
}

/// The form of `POST /v1/generations/image-to-image`.
pub(crate) fn image_to_image_form() -> Value {
    let mut fields = generation_fields(&Bounds::default());
    fields.insert("prompt".into(), empty_or(Prompt::json_schema()));
    fields.insert("photo".into(), image_file("The photo to repaint"));
    fields.insert(
        "requestId".into(),
        empty_or(json!({"type": "string", "format": "uuid"})),
    );
    json!({"type": "object", "additionalProperties": false, "required": ["photo", "style"],
           "properties": fields})
}

/// The form of `POST /v1/exhibitions/{id}/artworks`.
pub(crate) fn add_artwork_form() -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["title", "artist", "image"], "properties": {
        "title": Title::json_schema(),
        "artist": PersonName::json_schema(),
        "year": integer(YEARS.0, YEARS.1, "The year it was made (negative: BCE)."),
        "style": empty_or(StyleName::json_schema()),
        "description": Description::json_schema(),
        "image": image_file("The artwork's picture"),
    }})
}

impl From<TextToImageBody> for GenerationInput {
    fn from(input: TextToImageBody) -> Self {
        let params = Params {
            prompt: Some(input.prompt),
            negative_prompt: input.negative_prompt,
            style: input.style,
            seed: input.seed,
            steps: input.steps,
            width: input.width,
            height: input.height,
        };
        GenerationInput::text_to_image(params, input.request_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(raw: &str) -> serde_json::Number {
        raw.parse().unwrap_or_else(|e| unreachable!("{raw}: {e}"))
    }

    #[test]
    fn whole_numbers_are_read_as_json_schema_reads_integers() {
        assert_eq!(whole::<i32>(&number("128")), Some(128));
        assert_eq!(whole::<i32>(&number("128.0")), Some(128));
        assert_eq!(whole::<i64>(&number("-1266.0")), Some(-1266));
        assert_eq!(whole::<i32>(&number("128.5")), None);
        assert_eq!(whole::<i32>(&number("3000000000")), None);
        assert_eq!(whole::<i64>(&number("9223372036854775807")), Some(i64::MAX));
        assert_eq!(whole::<i64>(&number("9223372036854775808.0")), None);
        assert_eq!(whole::<i64>(&number("1e300")), None);
    }

    #[test]
    fn a_generation_body_takes_whole_numbers_with_a_zero_fraction() {
        let body: Result<TextToImageBody, _> = serde_json::from_str(
            r#"{"prompt": "a cat", "style": "ink", "height": 128.0, "seed": -1266.0}"#,
        );
        let body = body.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (body.height, body.seed, body.width),
            (Some(128), Some(-1266), None)
        );
        let half: Result<TextToImageBody, _> =
            serde_json::from_str(r#"{"prompt": "a cat", "style": "ink", "steps": 2.5}"#);
        assert!(half.is_err());
    }
}
