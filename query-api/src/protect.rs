//! Protection of the schema: a budget per document ([`crate::guard`]: size, depth and fields
//! checked before and while parsing, off the async runtime's worker threads), a time limit per
//! request, a bound on the operations one WebSocket connection runs at once
//! ([`SubscriptionSlots`]), and a stable `extensions.code` on every error, including those
//! async-graphql raises itself (parse and validation errors, depth and complexity limits,
//! persisted queries).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest,
    NextSubscribe, NextValidation,
};
use async_graphql::futures_util::stream::BoxStream;
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{
    ErrorExtensionValues, Request, Response, ServerError, ServerResult, ValidationResult, Variables,
};
use futures::StreamExt;

use crate::guard::{DocumentGuard, off_the_workers, selects_introspection};
use crate::persisted::PersistedQueries;

/// Codes of the errors the schema raises itself.
pub mod codes {
    pub const TIMEOUT: &str = "TIMEOUT";
    pub const QUERY_TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";
    pub const QUERY_TOO_LARGE: &str = "QUERY_TOO_LARGE";
    pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
    pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
    pub const PERSISTED_QUERY_INVALID: &str = "PERSISTED_QUERY_INVALID";
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const TOO_MANY_SUBSCRIPTIONS: &str = "TOO_MANY_SUBSCRIPTIONS";
    pub const INTERNAL: &str = "INTERNAL";
}

/// The extension: `documents` parses and bounds every document; `timeout` bounds each query
/// or mutation (not subscriptions, which live as long as their connection); `persisted` keeps
/// the automatic persisted queries; without `introspection`, a document that selects
/// `__schema` or `__type` is refused.
#[derive(Debug, Clone)]
pub struct Protection {
    pub timeout: Duration,
    pub documents: DocumentGuard,
    pub persisted: PersistedQueries,
    pub introspection: bool,
}

impl ExtensionFactory for Protection {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Guarded {
            protection: self.clone(),
            small: AtomicBool::new(false),
        })
    }
}

/// The extension of one request: whether its document was small enough to be validated on
/// the worker thread (see [`crate::guard::INLINE_FIELDS`]).
struct Guarded {
    protection: Protection,
    small: AtomicBool,
}

pub(crate) fn set_code(error: &mut ServerError, code: &str) {
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

/// A running subscription, counted in [`crate::metrics::SUBSCRIPTIONS`] until dropped (with
/// its stream, when the client stops it or goes away).
struct Live;

impl Live {
    fn start() -> Self {
        metrics::gauge!(crate::metrics::SUBSCRIPTIONS).increment(1.0);
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::SUBSCRIPTIONS).decrement(1.0);
    }
}

/// A count of things held at once, at most `limit`: a [`Slot`] is taken for each and gives its
/// place back when dropped. The operations of one WebSocket connection
/// ([`SubscriptionSlots`]) and the WebSocket connections of the process
/// ([`crate::ws::Connections`]) are counted so.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    running: Arc<AtomicUsize>,
    limit: usize,
}

impl Slots {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            running: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// A slot, or `None` when `limit` are already held.
    pub(crate) fn take(&self) -> Option<Slot> {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.running.clone()))
    }
}

/// A place in [`Slots`], until dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The operations (subscriptions, and queries sent over the socket) one WebSocket connection
/// runs at once: at most `limit`. It lives in the connection's session data, so every
/// `subscribe` of the connection takes a slot of the same count; a slot is freed when its
/// stream is dropped (completed by the client, ended, or its connection gone).
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionSlots(Slots);

impl SubscriptionSlots {
    pub(crate) fn new(limit: usize) -> Self {
        Self(Slots::new(limit))
    }

    /// A slot, or `None` when `limit` operations already run.
    fn take(&self) -> Option<Slot> {
        self.0.take()
    }

    /// The answer to a `subscribe` beyond the limit: one error, then the end of the stream
    /// (the client hears `next` with the error, then `complete`).
    fn refusal(&self) -> Response {
        let mut error = ServerError::new(
            format!(
                "this connection already runs {} subscriptions; complete one first",
                self.0.limit()
            ),
            None,
        );
        set_code(&mut error, codes::TOO_MANY_SUBSCRIPTIONS);
        Response::from_errors(vec![error])
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
impl Extension for Guarded {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let response = match tokio::time::timeout(self.protection.timeout, next.run(ctx)).await {
            Ok(response) => with_codes(response),
            Err(_) => {
                let mut error = ServerError::new(
                    format!(
                        "the request took longer than {} ms",
                        self.protection.timeout.as_millis()
                    ),
                    None,
                );
                set_code(&mut error, codes::TIMEOUT);
                Response::from_errors(vec![error])
            }
        };
        crate::metrics::record(&response);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        // Refused before the document is even parsed: the stream is dropped unpolled.
        let slot = match ctx.data_opt::<SubscriptionSlots>() {
            Some(slots) => match slots.take() {
                Some(slot) => Some(slot),
                None => {
                    let refusal = slots.refusal();
                    crate::metrics::record_errors(&refusal);
                    return futures::stream::once(async move { refusal }).boxed();
                }
            },
            None => None,
        };
        let live = Live::start();
        next.run(ctx, stream)
            .map(move |response| {
                let _held = (&live, &slot);
                with_codes(response)
            })
            .boxed()
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let request = self
            .protection
            .persisted
            .resolve(request, self.protection.documents.limits())
            .await?;
        next.run(ctx, request).await
    }

    /// Parses the document within its budget instead of async-graphql's own parsing step
    /// (whose depth check expands fragments and is capped below what `max_depth` allows).
    async fn parse_query(
        &self,
        _ctx: &ExtensionContext<'_>,
        query: &str,
        _variables: &Variables,
        _next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let parsed = self.protection.documents.parse(query).await?;
        self.small.store(parsed.small, Ordering::Relaxed);
        let document = parsed.document;
        if !self.protection.introspection && selects_introspection(&document) {
            let mut error = ServerError::new("introspection is switched off on this server", None);
            set_code(&mut error, codes::VALIDATION_FAILED);
            return Err(error);
        }
        Ok(document)
    }

    /// Validates a document (already known to be small, fragments expanded) under the same
    /// permit as parsing, off the worker threads; a short one of few fields right here.
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        if self.small.load(Ordering::Relaxed) {
            return next.run(ctx).await;
        }
        let _permit = self
            .protection
            .documents
            .permit()
            .await
            .map_err(|e| vec![e])?;
        off_the_workers(|| futures::executor::block_on(next.run(ctx)))
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

    fn protection() -> Protection {
        Protection {
            persisted: PersistedQueries::new(10),
            introspection: true,
            timeout: Duration::from_millis(50),
            documents: DocumentGuard::new(
                crate::guard::DocumentLimits {
                    max_bytes: 10_000,
                    max_tokens: 1_000,
                    max_depth: 3,
                    max_fields: 5,
                },
                1,
            ),
        }
    }

    fn schema() -> Schema<Slow, EmptyMutation, EmptySubscription> {
        Schema::build(Slow, EmptyMutation, EmptySubscription)
            .extension(protection())
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

    /// A short document of few fields is parsed and validated right away, even while every
    /// permit of the guard is taken; a longer one waits for a permit (here: past its time).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_documents_do_not_wait_for_the_guards_permits() {
        let protection = protection();
        let schema = Schema::build(Slow, EmptyMutation, EmptySubscription)
            .extension(protection.clone())
            .finish();
        let held = protection.documents.permit().await;
        assert!(held.is_ok());
        let response = schema.execute("{ fast nested { fast } }").await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        let long = format!("{{ fast {} }}", " ".repeat(crate::guard::INLINE_BYTES));
        let response = schema.execute(long.as_str()).await;
        assert_eq!(code(&response).as_deref(), Some(codes::TIMEOUT));
        drop(held);
        let response = schema.execute(long.as_str()).await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_time_is_a_timeout() {
        let response = schema().execute("{ fast slow }").await;
        assert_eq!(code(&response).as_deref(), Some(codes::TIMEOUT));
        let response = schema().execute("{ fast }").await;
        assert!(response.errors.is_empty());
    }

    /// Runs `body` on this thread with a recorder of its own (tests run in parallel, and the
    /// global recorder is the process's), given the recorder's handle; returns the handle.
    fn recording<F: std::future::Future<Output = ()>>(
        body: impl FnOnce(metrics_exporter_prometheus::PrometheusHandle) -> F,
    ) -> metrics_exporter_prometheus::PrometheusHandle {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            runtime.block_on(body(handle.clone()));
        });
        handle
    }

    #[test]
    fn requests_and_their_errors_are_counted_by_code() {
        let handle = recording(|_| async {
            let s = schema();
            for query in ["{ fast }", "{ fast }", "{ unknown }", "{ fast"] {
                s.execute(query).await;
            }
        });
        let text = handle.render();
        for line in [
            "gallery_graphql_requests_total{outcome=\"ok\"} 2",
            "gallery_graphql_requests_total{outcome=\"error\"} 2",
            "gallery_graphql_errors_total{code=\"GRAPHQL_VALIDATION_FAILED\"} 1",
            "gallery_graphql_errors_total{code=\"GRAPHQL_PARSE_FAILED\"} 1",
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
    }

    struct Ticks;

    #[async_graphql::Subscription]
    impl Ticks {
        async fn ticks(&self) -> impl futures::Stream<Item = i32> {
            futures::stream::iter(0..)
        }
    }

    #[test]
    fn running_subscriptions_are_counted_until_their_stream_ends() {
        recording(|handle| async move {
            let live = || {
                let text = handle.render();
                text.lines()
                    .find_map(|l| l.strip_prefix("gallery_graphql_subscriptions "))
                    .map(str::to_owned)
            };
            let s = Schema::build(Slow, EmptyMutation, Ticks)
                .extension(protection())
                .finish();
            let mut first = s.execute_stream("subscription { ticks }");
            let mut second = s.execute_stream("subscription { ticks }");
            assert!(first.next().await.is_some());
            assert!(second.next().await.is_some());
            assert_eq!(live().as_deref(), Some("2"));
            drop(first);
            assert_eq!(live().as_deref(), Some("1"));
            drop(second);
            assert_eq!(live().as_deref(), Some("0"));
        });
    }

    #[tokio::test]
    async fn a_connection_runs_at_most_its_slots_and_a_dropped_stream_frees_one() {
        let s = Schema::build(Slow, EmptyMutation, Ticks)
            .extension(protection())
            .finish();
        let mut session = async_graphql::Data::default();
        session.insert(SubscriptionSlots::new(2));
        let session = Arc::new(session);
        let start =
            || s.execute_stream_with_session_data("subscription { ticks }", session.clone());
        let mut first = start();
        let mut second = start();
        assert!(first.next().await.is_some_and(|r| r.errors.is_empty()));
        assert!(second.next().await.is_some_and(|r| r.errors.is_empty()));
        let mut third = start();
        let refused = third.next().await.expect("a refusal");
        assert_eq!(
            code(&refused).as_deref(),
            Some(codes::TOO_MANY_SUBSCRIPTIONS)
        );
        assert!(third.next().await.is_none(), "a refused stream ends");
        drop(first);
        let mut fourth = start();
        assert!(fourth.next().await.is_some_and(|r| r.errors.is_empty()));
        // Another connection's slots are its own; without any, nothing is counted.
        let mut other = async_graphql::Data::default();
        other.insert(SubscriptionSlots::new(1));
        let mut elsewhere =
            s.execute_stream_with_session_data("subscription { ticks }", Arc::new(other));
        assert!(elsewhere.next().await.is_some_and(|r| r.errors.is_empty()));
        let mut unbounded = s.execute_stream("subscription { ticks }");
        assert!(unbounded.next().await.is_some_and(|r| r.errors.is_empty()));
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
