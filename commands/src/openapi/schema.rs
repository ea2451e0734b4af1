//! The pieces of the OpenAPI document: the answers every operation shares, parameters and
//! components, each rendered from the type or constant the server checks.

use serde_json::{Map, Value, json};

use crate::idempotency::MAX_KEY_LEN;

/// The statuses, and their error codes, the command service answers with an error body.
pub(super) fn error_description(status: u16) -> &'static str {
    match status {
        400 => {
            "Invalid input, naming the field (INVALID_INPUT), a body that is not JSON (INVALID_JSON) or not the form expected (INVALID_BODY), or a bad Idempotency-Key (INVALID_IDEMPOTENCY_KEY)."
        }
        401 => {
            "Missing, malformed, expired or forged token (UNAUTHENTICATED); for accounts, wrong credentials (INVALID_CREDENTIALS) or an unusable refresh token (INVALID_REFRESH_TOKEN)."
        }
        403 => "Not allowed for this user or role (FORBIDDEN).",
        404 => "Unknown exhibition, artwork, comment, generation request or user (NOT_FOUND).",
        408 => {
            "The request body did not arrive within the body read timeout (REQUEST_TIMEOUT); the connection is closed."
        }
        409 => {
            "Conflicts with the current state (CONFLICT), a request with this Idempotency-Key still running (IDEMPOTENCY_IN_PROGRESS, see Retry-After), or a username taken (USERNAME_TAKEN)."
        }
        413 => {
            "The body, announced or sent, is larger than the server's body limit, or the image larger than the image limit (PAYLOAD_TOO_LARGE)."
        }
        415 => {
            "The body is not of the content type the operation takes, or the image is not PNG, JPEG or WebP by its content (UNSUPPORTED_MEDIA_TYPE)."
        }
        422 => {
            "This Idempotency-Key (or generation requestId) was used with a different request (IDEMPOTENCY_KEY_REUSED), or the image is corrupt or out of bounds (INVALID_IMAGE, IMAGE_DIMENSIONS)."
        }
        429 => "Over the quota of the command's class (RATE_LIMITED); see Retry-After.",
        500 => "Internal error (INTERNAL), logged with its cause; nothing was written.",
        503 => {
            "Kafka, the database or the image store is unavailable (UNAVAILABLE), or the AI painter is overloaded (OVERLOADED); nothing was written; see Retry-After."
        }
        _ => "Error.",
    }
}

/// The error answers of `statuses`, each `{"error": {"code", "message"}}`.
pub(super) fn error_responses(statuses: &[u16]) -> Map<String, Value> {
    let mut out = Map::new();
    for &status in statuses {
        let mut response = json!({
            "description": error_description(status),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        });
        if matches!(status, 409 | 429 | 503) {
            response["headers"] = json!({"Retry-After": {
                "description": "Seconds to wait before retrying (for the answers where retrying helps).",
                "schema": {"type": "integer", "minimum": 1},
            }});
        }
        out.insert(status.to_string(), response);
    }
    out
}

pub(super) fn path_param(name: &str, schema: Value) -> Value {
    let description = schema["description"].clone();
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

/// A UUID, in the hyphenated form.
pub(super) fn uuid(description: &str) -> Value {
    json!({"type": "string", "format": "uuid", "description": description})
}

/// The characters of an Idempotency-Key: visible ASCII, what [`u8::is_ascii_graphic`] takes.
const KEY_CHARS: &str = "[\\x21-\\x7e]";

/// The `Idempotency-Key` header, as [`crate::idempotency::IdempotencyKey::parse`] takes it.
pub(super) fn idempotency_key() -> Value {
    let schema = gallery_schemas::json_schema::string(
        &format!("{KEY_CHARS}{{1,{MAX_KEY_LEN}}}"),
        1,
        MAX_KEY_LEN,
        "1 to 200 visible ASCII characters.",
    );
    json!({
        "name": "Idempotency-Key", "in": "header", "required": false, "schema": schema,
        "description": "Makes a retried command return the original answer and write no second event. Keys belong to their user; the same key with a different request is refused (422 IDEMPOTENCY_KEY_REUSED), and a retry while the first attempt runs is 409 IDEMPOTENCY_IN_PROGRESS.",
    })
}

/// A JSON request body; `schema` says whether unknown fields are refused.
pub(crate) fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

/// A `multipart/form-data` request body (text fields and one file).
pub(crate) fn form_body(schema: Value) -> Value {
    json!({"required": true, "content": {"multipart/form-data": {"schema": schema}}})
}

/// A file field of a form: an image checked by its content.
pub(crate) fn image_file(what: &str) -> Value {
    json!({"type": "string", "format": "binary", "contentMediaType": "application/octet-stream",
           "description": format!("{what}: PNG, JPEG or WebP, recognised by its content whatever its name, within the server's image limits (bytes, sides, pixels).")})
}

/// An optional text field that may also be sent empty (meaning absent).
pub(crate) fn empty_or(schema: Value) -> Value {
    json!({"anyOf": [{"type": "string", "maxLength": 0}, schema]})
}

/// A whole number within `min..=max`.
pub(crate) fn integer(min: i64, max: i64, description: &str) -> Value {
    json!({"type": "integer", "format": "int64", "minimum": min, "maximum": max, "description": description})
}

pub(super) fn components() -> Value {
    json!({
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": {
            "Accepted": {"type": "object", "required": ["eventId", "position"], "properties": {
                "eventId": {"type": "string", "format": "uuid"},
                "position": {"type": "object", "required": ["topic", "partition", "offset"], "properties": {
                    "topic": {"type": "string"}, "partition": {"type": "integer"}, "offset": {"type": "integer"}},
                    "description": "Where the event landed: a read-your-writes token for the GraphQL API."},
                "id": {"type": "string", "description": "Id of what the command created (comment, exhibition, artwork, generation request)."},
                "degraded": {"type": "boolean", "description": "Generation only: scaled down because the backlog is high."}
            }},
            "User": {"type": "object", "required": ["id", "displayName", "role"], "properties": {
                "id": {"type": "string"}, "displayName": {"type": "string"},
                "role": {"type": "string", "enum": ["visitor", "curator", "admin"]}}},
            "Session": {"type": "object", "required": ["accessToken", "tokenType", "expiresIn", "refreshToken", "user"], "properties": {
                "accessToken": {"type": "string", "description": "The bearer token of every other command (a JWT)."},
                "tokenType": {"type": "string", "enum": ["Bearer"]},
                "expiresIn": {"type": "integer", "description": "Seconds."},
                "refreshToken": {"type": "string", "description": "Single use: each refresh returns a new one; a reused one revokes the login."},
                "user": {"$ref": "#/components/schemas/User"}}},
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string", "description": "Stable machine-readable code."},
                    "message": {"type": "string", "description": "Human-readable explanation."}}}}}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::IdempotencyKey;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_key_pattern_accepts_exactly_what_parse_accepts(
            raw in "[ -\\x{80}\\t]{0,4}|[!-~]{195,205}"
        ) {
            let header = idempotency_key();
            let pattern = header["schema"]["pattern"].as_str().unwrap_or("");
            let plain = pattern
                .strip_suffix(gallery_schemas::json_schema::END_GUARD)
                .unwrap_or(pattern);
            let re = regex::Regex::new(plain).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(re.is_match(&raw), IdempotencyKey::parse(&raw).is_ok(), "{:?}", raw);
        }
    }
}
