//! The OpenAPI 3.1 document of the command service, served at `/openapi.json`. Built here
//! next to the routes it describes; a test checks every documented operation is routed.

use axum::Json;
use serde_json::{Value, json};

/// (method, path) of every documented operation.
pub const OPERATIONS: &[(&str, &str)] = &[
    ("put", "/v1/artworks/{id}/like"),
    ("delete", "/v1/artworks/{id}/like"),
    ("put", "/v1/artworks/{id}/favorite"),
    ("delete", "/v1/artworks/{id}/favorite"),
    ("post", "/v1/artworks/{id}/comments"),
    ("delete", "/v1/artworks/{id}/comments/{comment}"),
    ("post", "/v1/artworks/{id}/views"),
    ("post", "/v1/exhibitions"),
    ("post", "/v1/exhibitions/{id}/artworks"),
    ("delete", "/v1/exhibitions/{id}/artworks/{artwork}"),
    ("post", "/v1/exhibitions/{id}/publish"),
    ("post", "/v1/exhibitions/{id}/close"),
    ("post", "/v1/generations"),
    ("post", "/v1/generations/image-to-image"),
    ("post", "/v1/generations/{id}/cancel"),
    ("post", "/v1/auth/register"),
    ("post", "/v1/auth/login"),
    ("post", "/v1/auth/refresh"),
    ("put", "/v1/users/{id}/role"),
];

pub async fn document() -> Json<Value> {
    Json(spec())
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": {"type": "string"}})
}

fn idempotency_param() -> Value {
    json!({"name": "Idempotency-Key", "in": "header", "required": false,
           "description": "Makes a retried command return the original result and write no second event; the same key with a different request is refused (422 IDEMPOTENCY_KEY_REUSED).",
           "schema": {"type": "string", "minLength": 1, "maxLength": 200}})
}

fn errors(codes: &[u16]) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert(
        "202".into(),
        json!({"description": "Accepted: the event is durable in Kafka.",
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}}),
    );
    for code in codes {
        let description = match code {
            400 => {
                "Invalid input (INVALID_INPUT, INVALID_JSON, INVALID_BODY, INVALID_IDEMPOTENCY_KEY)."
            }
            401 => "Missing, malformed, expired or forged token (UNAUTHENTICATED).",
            403 => "Not allowed for this user or role (FORBIDDEN).",
            404 => "Unknown exhibition, artwork, comment or request (NOT_FOUND).",
            409 => "Conflicts with the current state (CONFLICT, IDEMPOTENCY_IN_PROGRESS).",
            413 => "Upload too large (PAYLOAD_TOO_LARGE).",
            415 => {
                "Not JSON, not a form, or not a PNG, JPEG or WebP image (UNSUPPORTED_MEDIA_TYPE)."
            }
            422 => {
                "Image out of bounds, corrupt, or an idempotency key reused (INVALID_IMAGE, IMAGE_DIMENSIONS, IDEMPOTENCY_KEY_REUSED)."
            }
            429 => "Rate limited (RATE_LIMITED); see Retry-After.",
            503 => {
                "Kafka, the registry or the database is unavailable, or the AI painter is overloaded (UNAVAILABLE, OVERLOADED); nothing was written; see Retry-After."
            }
            _ => "Error.",
        };
        out.insert(
            code.to_string(),
            json!({"description": description,
                   "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    out
}

fn operation(summary: &str, params: Vec<Value>, body: Option<Value>, codes: &[u16]) -> Value {
    let mut params = params;
    params.push(idempotency_param());
    let mut op = json!({
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": params,
        "responses": errors(codes),
    });
    if let Some(body) = body {
        op["requestBody"] = body;
    }
    op
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn form_body(schema: Value) -> Value {
    json!({"required": true, "content": {"multipart/form-data": {"schema": schema}}})
}

fn session_responses(ok: &str, codes: &[(u16, &str)]) -> Value {
    let mut out = serde_json::Map::new();
    out.insert(
        ok.to_owned(),
        json!({"description": "A session.",
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Session"}}}}),
    );
    for (code, description) in codes {
        out.insert(
            code.to_string(),
            json!({"description": description,
                   "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    Value::Object(out)
}

fn account_operation(summary: &str, ok: &str, body: Value, codes: &[(u16, &str)]) -> Value {
    json!({
        "summary": summary,
        "requestBody": json_body(body),
        "responses": session_responses(ok, codes),
    })
}

fn spec() -> Value {
    let artwork = || {
        path_param(
            "id",
            "Artwork id: 1 to 64 ASCII letters, digits, '-' or '_'.",
        )
    };
    let exhibition = || path_param("id", "Exhibition id (UUID).");
    let common = [400, 401, 429, 503];
    let with = |extra: &[u16]| {
        let mut c: Vec<u16> = common.iter().chain(extra).copied().collect();
        c.sort_unstable();
        c
    };
    let set_fact = |what: &str| operation(what, vec![artwork()], None, &with(&[]));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Gallery commands",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The write side of Gallery. Every accepted command is an immutable Kafka event; 202 answers only once Kafka acknowledged it, with the event id and its position (a read-your-writes token for the GraphQL API)."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Accepted": {"type": "object", "required": ["eventId", "position"], "properties": {
                    "eventId": {"type": "string", "format": "uuid"},
                    "position": {"type": "object", "required": ["topic", "partition", "offset"], "properties": {
                        "topic": {"type": "string"}, "partition": {"type": "integer"}, "offset": {"type": "integer"}}},
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
        },
        "paths": {
            "/v1/artworks/{id}/like": {
                "put": set_fact("Like an artwork (set semantics: liking twice counts once)."),
                "delete": set_fact("Unlike an artwork."),
            },
            "/v1/artworks/{id}/favorite": {
                "put": set_fact("Favorite an artwork."),
                "delete": set_fact("Unfavorite an artwork."),
            },
            "/v1/artworks/{id}/comments": {
                "post": operation("Comment on an artwork; `id` in the answer is the comment's id.", vec![artwork()],
                    Some(json_body(json!({"type": "object", "required": ["body"], "properties": {
                        "body": {"type": "string", "minLength": 1, "maxLength": 2000,
                                 "description": "No control characters except line breaks and tabs."}}}))),
                    &with(&[])),
            },
            "/v1/artworks/{id}/comments/{comment}": {
                "delete": operation("Delete a comment (its author or an admin).",
                    vec![artwork(), path_param("comment", "Comment id (UUID).")], None, &with(&[403, 404, 409])),
            },
            "/v1/artworks/{id}/views": {
                "post": {
                    "summary": "Record a view (anonymous allowed; a token, if sent, must be valid; an Idempotency-Key only with a token, else 400 INVALID_IDEMPOTENCY_KEY).",
                    "parameters": [artwork(), idempotency_param()],
                    "responses": errors(&with(&[409, 422])),
                },
            },
            "/v1/exhibitions": {
                "post": operation("Create an exhibition (curators); `id` in the answer is the exhibition's id.", vec![],
                    Some(json_body(json!({"type": "object", "required": ["title", "opensAt", "closesAt"], "properties": {
                        "title": {"type": "string", "minLength": 1, "maxLength": 200},
                        "description": {"type": "string", "maxLength": 5000},
                        "opensAt": {"type": "string", "format": "date-time"},
                        "closesAt": {"type": "string", "format": "date-time", "description": "After opensAt, in the future."}}}))),
                    &with(&[403])),
            },
            "/v1/exhibitions/{id}/artworks": {
                "post": operation("Add an artwork with its image (PNG, JPEG or WebP, checked by content); `id` in the answer is the artwork's id.",
                    vec![exhibition()],
                    Some(form_body(json!({"type": "object", "required": ["title", "artist", "image"], "properties": {
                        "title": {"type": "string"}, "artist": {"type": "string"},
                        "year": {"type": "integer"}, "style": {"type": "string"},
                        "description": {"type": "string"},
                        "image": {"type": "string", "format": "binary"}}}))),
                    &with(&[403, 404, 409, 413, 415, 422])),
            },
            "/v1/exhibitions/{id}/artworks/{artwork}": {
                "delete": operation("Remove an artwork from an exhibition.",
                    vec![exhibition(), path_param("artwork", "Artwork id.")], None, &with(&[403, 404, 409])),
            },
            "/v1/exhibitions/{id}/publish": {
                "post": operation("Publish an exhibition (needs at least one artwork).", vec![exhibition()], None, &with(&[403, 404, 409])),
            },
            "/v1/exhibitions/{id}/close": {
                "post": operation("Close an exhibition; it takes no more changes.", vec![exhibition()], None, &with(&[403, 404, 409])),
            },
            "/v1/generations": {
                "post": operation("Ask for a text-to-image picture; `id` in the answer is the request id.", vec![],
                    Some(json_body(json!({"type": "object", "required": ["prompt", "style"], "properties": {
                        "prompt": {"type": "string", "minLength": 1, "maxLength": 1000},
                        "negativePrompt": {"type": "string", "maxLength": 1000},
                        "style": {"type": "string", "minLength": 1, "maxLength": 64},
                        "seed": {"type": "integer", "description": "Random when absent; the same seed reproduces an image."},
                        "steps": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20},
                        "width": {"type": "integer", "minimum": 64, "maximum": 1024, "multipleOf": 8, "default": 512},
                        "height": {"type": "integer", "minimum": 64, "maximum": 1024, "multipleOf": 8, "default": 512},
                        "requestId": {"type": "string", "format": "uuid", "description": "Client-chosen; a retry with the same id returns the original result."}}}))),
                    &with(&[409])),
            },
            "/v1/generations/image-to-image": {
                "post": operation("Repaint a photo in a style (\"my photo as an impressionist self-portrait\").", vec![],
                    Some(form_body(json!({"type": "object", "required": ["photo", "style"], "properties": {
                        "photo": {"type": "string", "format": "binary"},
                        "style": {"type": "string"}, "prompt": {"type": "string"}, "negativePrompt": {"type": "string"},
                        "seed": {"type": "integer"}, "steps": {"type": "integer"},
                        "width": {"type": "integer"}, "height": {"type": "integer"},
                        "requestId": {"type": "string", "format": "uuid"}}}))),
                    &with(&[409, 413, 415, 422])),
            },
            "/v1/auth/register": {
                "post": account_operation("Create an account (a visitor) and log in.", "201",
                    json!({"type": "object", "required": ["username", "password", "displayName"], "properties": {
                        "username": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                        "password": {"type": "string", "minLength": 10, "maxLength": 256},
                        "displayName": {"type": "string", "minLength": 1, "maxLength": 120}}}),
                    &[(400, "Invalid input (INVALID_INPUT), naming the field."), (409, "USERNAME_TAKEN"), (429, "RATE_LIMITED"), (503, "UNAVAILABLE")]),
            },
            "/v1/auth/login": {
                "post": account_operation("Log in.", "200",
                    json!({"type": "object", "required": ["username", "password"], "properties": {
                        "username": {"type": "string"}, "password": {"type": "string"}}}),
                    &[(400, "INVALID_INPUT"), (401, "INVALID_CREDENTIALS"), (429, "RATE_LIMITED"), (503, "UNAVAILABLE")]),
            },
            "/v1/auth/refresh": {
                "post": account_operation("Trade a refresh token for a new session.", "200",
                    json!({"type": "object", "required": ["refreshToken"], "properties": {
                        "refreshToken": {"type": "string"}}}),
                    &[(400, "INVALID_INPUT"), (401, "INVALID_REFRESH_TOKEN"), (429, "RATE_LIMITED"), (503, "UNAVAILABLE")]),
            },
            "/v1/users/{id}/role": {
                "put": {
                    "summary": "Set a user's role (admins only).",
                    "security": [{"bearer": []}],
                    "parameters": [path_param("id", "User id.")],
                    "requestBody": json_body(json!({"type": "object", "required": ["role"], "properties": {
                        "role": {"type": "string", "enum": ["visitor", "curator", "admin"]}}})),
                    "responses": {
                        "200": {"description": "The account.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/User"}}}},
                        "400": {"description": "INVALID_INPUT", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                        "401": {"description": "UNAUTHENTICATED", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                        "403": {"description": "FORBIDDEN", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                        "404": {"description": "NOT_FOUND", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    },
                },
            },
            "/v1/generations/{id}/cancel": {
                "post": operation("Cancel a generation (the requester or an admin).",
                    vec![path_param("id", "Request id (UUID).")], None, &with(&[403, 404, 409])),
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_operation_is_documented_and_nothing_else() {
        let spec = spec();
        let mut documented = vec![];
        for (path, item) in spec["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut listed: Vec<(String, String)> = OPERATIONS
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        listed.sort();
        assert_eq!(documented, listed);
    }
}
