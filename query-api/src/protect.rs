//! Protection of the schema: a time limit per request, and a stable `extensions.code` on
//! every error, including those async-graphql raises itself (parse and validation errors,
//! depth and complexity limits, persisted queries).

use std::sync::Arc;
use std::time::Duration;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextSubscribe,
};
use async_graphql::futures_util::stream::BoxStream;
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ErrorExtensionValues, Response, ServerError, ServerResult, Variables};
use futures::StreamExt;

/// Codes of the errors the schema raises itself.
pub mod codes {
    pub const TIMEOUT: &str = "TIMEOUT";
    pub const QUERY_TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";
    pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
    pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
    pub const PERSISTED_QUERY_INVALID: &str = "PERSISTED_QUERY_INVALID";
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const INTERNAL: &str = "INTERNAL";
}

/// The extension: `timeout` bounds each query or mutation (not subscriptions, which live as
/// long as their connection).
#[derive(Debug, Clone, Copy)]
pub struct Protection {
    pub timeout: Duration,
}

impl ExtensionFactory for Protection {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

fn set_code(error: &mut ServerError, code: &str) {
    error
        .extensions
        .get_or_insert_with(ErrorExtensionValues::default)
        .set("code", code);
}

fn has_code(error: &ServerError) -> bool {
    error
        .extensions
        .as_ref()
        .is_some_and(|x| x.get("code").is_some())
}

/// The code of an error raised without one.
fn code_of(error: &ServerError) -> &'static str {
    match error.message.as_str() {
        "Query is nested too deep." | "Query is too complex." => codes::QUERY_TOO_COMPLEX,
        "PersistedQueryNotFound" => codes::PERSISTED_QUERY_NOT_FOUND,
        m if m.contains("\"PersistedQuery\"") => codes::PERSISTED_QUERY_INVALID,
        // Before execution (no path): the document does not validate against the schema.
        _ if error.path.is_empty() => codes::VALIDATION_FAILED,
        m if m.starts_with("Invalid value for argument") || m.starts_with("Failed to parse") => {
            codes::BAD_USER_INPUT
        }
        _ => codes::INTERNAL,
    }
}

/// Gives every error without a code one.
fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        if !has_code(error) {
            let code = code_of(error);
            if code == codes::INTERNAL {
                tracing::error!(message = %error.message, "GraphQL error without a code");
            }
            set_code(error, code);
        }
    }
    response
}

#[async_graphql::async_trait::async_trait]
impl Extension for Protection {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        match tokio::time::timeout(self.timeout, next.run(ctx)).await {
            Ok(response) => with_codes(response),
            Err(_) => {
                let mut error = ServerError::new(
                    format!(
                        "the request took longer than {} ms",
                        self.timeout.as_millis()
                    ),
                    None,
                );
                set_code(&mut error, codes::TIMEOUT);
                Response::from_errors(vec![error])
            }
        }
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream).map(with_codes).boxed()
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|mut e| {
            if !has_code(&e) {
                set_code(&mut e, codes::PARSE_FAILED);
            }
            e
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    struct Slow;

    #[Object]
    impl Slow {
        async fn slow(&self) -> i32 {
            tokio::time::sleep(Duration::from_secs(60)).await;
            1
        }

        async fn fast(&self) -> i32 {
            1
        }

        async fn nested(&self) -> Slow {
            Slow
        }
    }

    fn schema() -> Schema<Slow, EmptyMutation, EmptySubscription> {
        Schema::build(Slow, EmptyMutation, EmptySubscription)
            .extension(Protection {
                timeout: Duration::from_millis(50),
            })
            .limit_depth(3)
            .limit_complexity(5)
            .finish()
    }

    fn code(response: &Response) -> Option<String> {
        let error = response.errors.first()?;
        match error.extensions.as_ref()?.get("code")? {
            async_graphql::Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_time_is_a_timeout() {
        let response = schema().execute("{ fast slow }").await;
        assert_eq!(code(&response).as_deref(), Some(codes::TIMEOUT));
        let response = schema().execute("{ fast }").await;
        assert!(response.errors.is_empty());
    }

    #[tokio::test]
    async fn errors_of_the_schema_itself_carry_codes() {
        let s = schema();
        for (query, expected) in [
            (
                "{ nested { nested { nested { fast } } } }",
                codes::QUERY_TOO_COMPLEX,
            ),
            (
                "{ fast fast2: fast fast3: fast fast4: fast fast5: fast fast6: fast }",
                codes::QUERY_TOO_COMPLEX,
            ),
            ("{ fast", codes::PARSE_FAILED),
            ("{ unknown }", codes::VALIDATION_FAILED),
        ] {
            let response = s.execute(query).await;
            assert_eq!(code(&response).as_deref(), Some(expected), "{query}");
        }
    }
}
