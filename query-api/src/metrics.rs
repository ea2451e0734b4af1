//! The GraphQL API's metrics: every name in one place, with its description. GraphQL answers
//! errors with HTTP 200, so the HTTP metrics do not show them; these do, by their stable code.

use async_graphql::{Response, Value};
use metrics::{describe_counter, describe_gauge};

/// GraphQL requests (queries and mutations) answered, by `outcome`: `ok` or `error` (at least
/// one error in the response).
pub const REQUESTS: &str = "gallery_graphql_requests_total";
/// Errors in GraphQL responses, by `code` (the error's `extensions.code`).
pub const ERRORS: &str = "gallery_graphql_errors_total";
/// Live subscriptions (WebSocket `subscribe` operations running).
pub const SUBSCRIPTIONS: &str = "gallery_graphql_subscriptions";

/// Open WebSocket connections (`/graphql/ws`), initialised or not; at most
/// `query_api.max_websocket_connections`, one more is refused (`TOO_MANY_CONNECTIONS` in
/// [`ERRORS`]).
pub const WEBSOCKET_CONNECTIONS: &str = "gallery_graphql_websocket_connections";
/// WebSocket connections closed with 4408 for sending no `connection_init` in time.
pub const WEBSOCKET_INIT_TIMEOUTS: &str = "gallery_graphql_websocket_init_timeouts_total";

/// Every metric the GraphQL API records.
pub const NAMES: &[&str] = &[
    REQUESTS,
    ERRORS,
    SUBSCRIPTIONS,
    WEBSOCKET_CONNECTIONS,
    WEBSOCKET_INIT_TIMEOUTS,
];

/// Registers the descriptions with the installed recorder (call after installing it).
pub fn describe() {
    describe_counter!(
        REQUESTS,
        "GraphQL requests answered, by outcome (ok, error)"
    );
    describe_counter!(ERRORS, "Errors in GraphQL responses, by code");
    describe_gauge!(SUBSCRIPTIONS, "GraphQL subscriptions running");
    describe_gauge!(
        WEBSOCKET_CONNECTIONS,
        "GraphQL WebSocket connections open, initialised or not"
    );
    describe_counter!(
        WEBSOCKET_INIT_TIMEOUTS,
        "GraphQL WebSocket connections closed (4408) for sending no connection_init in time"
    );
}

/// Counts a response and its errors (every error has a code by then).
pub(crate) fn record(response: &Response) {
    let outcome = if response.errors.is_empty() {
        "ok"
    } else {
        "error"
    };
    metrics::counter!(REQUESTS, "outcome" => outcome).increment(1);
    record_errors(response);
}

/// Counts the errors of a response by code (alone: those of a refused `subscribe`, which is no
/// request).
pub(crate) fn record_errors(response: &Response) {
    for error in &response.errors {
        let code = match error.extensions.as_ref().and_then(|x| x.get("code")) {
            Some(Value::String(code)) => code.clone(),
            _ => "NONE".to_owned(),
        };
        metrics::counter!(ERRORS, "code" => code).increment(1);
    }
}
