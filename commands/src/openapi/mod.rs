//! The OpenAPI 3.1 document of the command service, served at `/openapi.json`: built from the
//! request types and the parsers that validate them (identifiers, texts, the Idempotency-Key,
//! the generation bounds, unknown fields refused), with every status each operation can
//! answer. A test checks every documented operation is routed, and a property-based client
//! (schemathesis, `tests/openapi.rs`) holds the server to the document.
//!
//! Rendered here rather than derived by a crate such as utoipa: its attributes take literal
//! bounds and patterns, which would state every rule a second time beside the parser that
//! checks it. Here each bound and pattern comes from the constant or the type that checks it
//! (`json_schema()` of the identifiers and texts, with proptests that pattern and parser agree),
//! and the field lists sit next to the body structs, where schemathesis holds them to serde.

mod schema;

use axum::Json;
use gallery_schemas::{ArtworkId, UserId};
use serde_json::{Map, Value, json};

use self::schema::{error_responses, form_body, idempotency_key, json_body, path_param, uuid};
use crate::accounts::http as accounts;
use crate::http as commands;

pub(crate) use self::schema::{empty_or, image_file, integer};

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

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// A bearer token is required (`401` without).
    Token,
    /// A token is optional, but checked when sent (`401` for a bad one).
    OptionalToken,
    /// No token (accounts: the credentials are in the body).
    Anyone,
}

/// One operation as the server runs it.
struct Operation {
    summary: &'static str,
    caller: Caller,
    params: Vec<Value>,
    body: Option<Value>,
    /// Takes an `Idempotency-Key` (and may answer `409 IDEMPOTENCY_IN_PROGRESS` and `422
    /// IDEMPOTENCY_KEY_REUSED`).
    keyed: bool,
    /// The success: status and response schema.
    ok: (u16, &'static str, Value),
    /// Refusals of this operation's own rules (`403`, `404`, `409`, images...).
    refusals: &'static [u16],
    /// Spends a rate-limit quota (and may answer `429`).
    limited: bool,
}

impl Operation {
    /// A command answered with `202 Accepted`.
    fn command(summary: &'static str, params: Vec<Value>, refusals: &'static [u16]) -> Self {
        Self {
            summary,
            caller: Caller::Token,
            params,
            body: None,
            keyed: true,
            ok: (
                202,
                "Accepted: the event is durable in Kafka.",
                json!({"$ref": "#/components/schemas/Accepted"}),
            ),
            refusals,
            limited: true,
        }
    }

    fn with_body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// Every status the operation can answer: its own refusals, and those of the HTTP edge
    /// (`413` from a `Content-Length` on any route; `408` and `415` where a body is read), of
    /// the token, of the key, of the quota (where the operation spends one), and
    /// of the infrastructure (`500`, `503`).
    fn statuses(&self) -> Vec<u16> {
        let mut statuses = vec![400, 413, 500, 503];
        if self.limited {
            statuses.push(429);
        }
        statuses.extend_from_slice(self.refusals);
        if self.body.is_some() {
            statuses.extend([408, 415]);
        }
        if self.caller != Caller::Anyone {
            statuses.push(401);
        }
        if self.keyed {
            statuses.extend([409, 422]);
        }
        statuses.sort_unstable();
        statuses.dedup();
        statuses
    }

    fn render(self) -> Value {
        let statuses = self.statuses();
        let mut responses = Map::new();
        let (status, description, schema) = self.ok;
        responses.insert(
            status.to_string(),
            json!({"description": description, "content": {"application/json": {"schema": schema}}}),
        );
        responses.extend(error_responses(&statuses));
        let mut params = self.params;
        if self.keyed {
            params.push(idempotency_key());
        }
        let mut op = json!({"summary": self.summary, "parameters": params, "responses": responses});
        match self.caller {
            Caller::Token => op["security"] = json!([{"bearer": []}]),
            Caller::OptionalToken => op["security"] = json!([{}, {"bearer": []}]),
            Caller::Anyone => op["security"] = json!([]),
        }
        if let Some(body) = self.body {
            op["requestBody"] = body;
        }
        op
    }
}

fn artwork() -> Value {
    path_param("id", ArtworkId::json_schema())
}

fn exhibition() -> Value {
    path_param("id", uuid("Exhibition id."))
}

/// An account operation: no token but the one in the body (role changes excepted).
fn account(
    summary: &'static str,
    body: Value,
    ok: (u16, &'static str, Value),
    refusals: &'static [u16],
) -> Operation {
    Operation {
        summary,
        caller: Caller::Anyone,
        params: vec![],
        body: Some(json_body(body)),
        keyed: false,
        ok,
        refusals,
        limited: true,
    }
}

fn session(status: u16) -> (u16, &'static str, Value) {
    (
        status,
        "A session.",
        json!({"$ref": "#/components/schemas/Session"}),
    )
}

/// The document.
pub fn spec() -> Value {
    let set_fact = |summary| Operation::command(summary, vec![artwork()], &[]).render();
    let uuid_action = |summary, what| {
        Operation::command(
            summary,
            vec![path_param("id", uuid(what))],
            &[403, 404, 409],
        )
        .render()
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Gallery commands",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The write side of Gallery. Every accepted command is an immutable Kafka event; 202 answers only once Kafka acknowledged it, with the event id and its position (a read-your-writes token for the GraphQL API). Every refusal is JSON, {\"error\": {\"code\", \"message\"}}, and writes nothing."
        },
        "components": schema::components(),
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
                "post": Operation::command("Comment on an artwork; `id` in the answer is the comment's id.", vec![artwork()], &[])
                    .with_body(json_body(commands::CommentBody::schema())).render(),
            },
            "/v1/artworks/{id}/comments/{comment}": {
                "delete": Operation::command("Delete a comment (its author or an admin).",
                    vec![artwork(), path_param("comment", uuid("Comment id."))], &[403, 404, 409]).render(),
            },
            "/v1/artworks/{id}/views": {
                "post": Operation {
                    caller: Caller::OptionalToken,
                    ..Operation::command("Record a view (anonymous allowed; a token, if sent, must be valid; an Idempotency-Key only with a token, else 400 INVALID_IDEMPOTENCY_KEY, as keys belong to a user).", vec![artwork()], &[])
                }.render(),
            },
            "/v1/exhibitions": {
                "post": Operation::command("Create an exhibition (curators and admins); `id` in the answer is the exhibition's id.", vec![], &[403])
                    .with_body(json_body(commands::ExhibitionBody::schema())).render(),
            },
            "/v1/exhibitions/{id}/artworks": {
                "post": Operation::command("Add an artwork with its image (its curator, admins); `id` in the answer is the artwork's id.",
                    vec![exhibition()], &[403, 404, 409])
                    .with_body(form_body(commands::add_artwork_form())).render(),
            },
            "/v1/exhibitions/{id}/artworks/{artwork}": {
                "delete": Operation::command("Remove an artwork from an exhibition (its curator, admins).",
                    vec![exhibition(), path_param("artwork", ArtworkId::json_schema())], &[403, 404, 409]).render(),
            },
            "/v1/exhibitions/{id}/publish": {
                "post": uuid_action("Publish an exhibition (its curator, admins; needs an artwork).", "Exhibition id."),
            },
            "/v1/exhibitions/{id}/close": {
                "post": uuid_action("Close an exhibition (its curator, admins); it takes no more changes.", "Exhibition id."),
            },
            "/v1/generations": {
                "post": Operation::command("Ask for a text-to-image picture; `id` in the answer is the request id.", vec![], &[409])
                    .with_body(json_body(commands::TextToImageBody::schema())).render(),
            },
            "/v1/generations/image-to-image": {
                "post": Operation::command("Repaint a photo in a style (\"my photo as an impressionist self-portrait\"); `id` in the answer is the request id.", vec![], &[409])
                    .with_body(form_body(commands::image_to_image_form())).render(),
            },
            "/v1/generations/{id}/cancel": {
                "post": uuid_action("Cancel a generation (the requester or an admin).", "Generation request id."),
            },
            "/v1/auth/register": {
                "post": account("Create an account (a visitor) and log in.", accounts::RegisterBody::schema(), session(201), &[409]).render(),
            },
            "/v1/auth/login": {
                "post": account("Log in.", accounts::LoginBody::schema(), session(200), &[401]).render(),
            },
            "/v1/auth/refresh": {
                "post": account("Trade a refresh token for a new session (the token is used up).", accounts::RefreshBody::schema(), session(200), &[401]).render(),
            },
            "/v1/users/{id}/role": {
                "put": Operation {
                    caller: Caller::Token,
                    // An admin's command: it spends no sign-in quota.
                    limited: false,
                    params: vec![path_param("id", UserId::json_schema())],
                    ..account("Set a user's role (admins only).", accounts::RoleBody::schema(),
                        (200, "The account.", json!({"$ref": "#/components/schemas/User"})), &[403, 404])
                }.render(),
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

    #[test]
    fn every_operation_documents_the_edge_and_its_refusals() {
        let spec = spec();
        for (method, path) in OPERATIONS {
            let responses = &spec["paths"][path][method]["responses"];
            for status in ["400", "413", "500", "503"] {
                assert!(
                    responses.get(status).is_some(),
                    "{method} {path}: no {status}"
                );
            }
            // Every operation spends a quota but the admin's role change.
            let admin = *path == "/v1/users/{id}/role";
            assert_eq!(
                responses.get("429").is_some(),
                !admin,
                "{method} {path}: 429"
            );
            let takes_body = spec["paths"][path][method].get("requestBody").is_some();
            for status in ["408", "415"] {
                assert_eq!(
                    responses.get(status).is_some(),
                    takes_body,
                    "{method} {path}: {status}"
                );
            }
        }
        let comment = &spec["paths"]["/v1/artworks/{id}/comments"]["post"];
        assert!(comment["responses"].get("422").is_some(), "a reused key");
        let view = &spec["paths"]["/v1/artworks/{id}/views"]["post"];
        assert!(view["responses"].get("422").is_some(), "views take keys");
        let body = &comment["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["additionalProperties"], false);
        assert_eq!(body["properties"]["body"]["maxLength"], 2000);
    }
}
