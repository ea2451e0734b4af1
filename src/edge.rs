//! The HTTP edge every server of the process shares: connections with a deadline for their
//! headers, and requests with one body limit and a deadline for their body.
//!
//! - A request whose `Content-Length` announces more than `http.max_body_bytes` is refused at
//!   once, from its headers, without reading a byte of the body.
//! - A body that turns out larger (chunked, or longer than announced) is cut at the limit,
//!   and the request is refused the same way, whatever the route's handler made of the cut.
//! - A request's headers must arrive within `http.header_read_timeout_ms` of the connection's
//!   opening or of the previous response (so an idle keep-alive connection is closed then);
//!   its body within `http.body_read_timeout_ms` of its headers, or the request is refused
//!   with `408`.
//!
//! Each server answers these refusals in its own error shape ([`Refusals`]); every refusal
//! closes the connection, since the rest of its body is never read.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Sleep;
use tower::ServiceExt;

use crate::config::ConfigError;

/// The `http` configuration section: limits of every HTTP server of the process.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Largest request body, in bytes, on every route (uploads included).
    pub max_body_bytes: u64,
    /// Longest wait for a request's headers, from the connection's opening or the previous
    /// response.
    pub header_read_timeout_ms: u64,
    /// Longest wait for a whole request body, from the end of its headers.
    pub body_read_timeout_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            // The largest image (10 MiB by default) and the other fields of its form.
            max_body_bytes: 12 * 1024 * 1024,
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 30_000,
        }
    }
}

/// Bounds of the timeouts: a tenth of a second to an hour.
const TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;
/// Bounds of the body limit: a kibibyte to a gibibyte.
const BODY_BYTES: std::ops::RangeInclusive<u64> = 1024..=(1 << 30);

impl HttpSettings {
    /// Checks every bound; `largest_image` is the image limit, which a body must be able to
    /// carry.
    pub fn validate(&self, largest_image: u64) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| ConfigError::Invalid { key, reason };
        if !BODY_BYTES.contains(&self.max_body_bytes) {
            return Err(invalid(
                "http.max_body_bytes",
                format!(
                    "must be between {} and {}",
                    BODY_BYTES.start(),
                    BODY_BYTES.end()
                ),
            ));
        }
        if self.max_body_bytes < largest_image {
            return Err(invalid(
                "http.max_body_bytes",
                format!(
                    "must be at least media.limits.max_bytes ({largest_image}), or no upload of \
                     the largest image accepted could arrive"
                ),
            ));
        }
        for (key, ms) in [
            ("http.header_read_timeout_ms", self.header_read_timeout_ms),
            ("http.body_read_timeout_ms", self.body_read_timeout_ms),
        ] {
            if !TIMEOUT_MS.contains(&ms) {
                return Err(invalid(
                    key,
                    format!(
                        "must be between {} and {} (an hour)",
                        TIMEOUT_MS.start(),
                        TIMEOUT_MS.end()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
}

/// How one server answers the edge's refusals, in its own error shape.
#[derive(Debug, Clone, Copy)]
pub struct Refusals {
    /// `413`: the body is larger than the limit (the argument), announced or read.
    pub too_large: fn(u64) -> Response,
    /// `408`: the body did not arrive within the timeout (the argument).
    pub too_slow: fn(Duration) -> Response,
}

/// What the edge decided about a request's body while the handler read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    TooLarge,
    TooSlow,
}

/// Why a guarded body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the request body did not arrive within {after:?}")]
    TooSlow { after: Duration },
    #[error("the request body could not be read")]
    Read(#[source] axum::Error),
}

#[derive(Debug, Clone, Copy)]
struct Guard {
    settings: HttpSettings,
    refusals: Refusals,
}

/// `router` behind the edge's body limit and body deadline, refusing as `refusals` says.
pub fn guard(router: Router, settings: &HttpSettings, refusals: Refusals) -> Router {
    let limit = usize::try_from(settings.max_body_bytes).unwrap_or(usize::MAX);
    let guard = Guard {
        settings: *settings,
        refusals,
    };
    router
        .layer(axum::middleware::from_fn_with_state(guard, guard_request))
        // Extractors cut bodies at the same limit (they never see more than the edge lets
        // through, so the edge decides first).
        .layer(DefaultBodyLimit::max(limit))
}

/// The body length a request announces, if any.
fn announced_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A refusal that also ends the connection: the rest of the body is not read.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn guard_request(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let limit = guard.settings.max_body_bytes;
    if announced_length(&request).is_some_and(|n| n > limit) {
        return closing((guard.refusals.too_large)(limit));
    }
    let verdict = Arc::new(OnceLock::new());
    let timeout = guard.settings.body_read_timeout();
    let request = request.map(|body| {
        Body::new(GuardedBody {
            inner: body,
            remaining: limit,
            limit,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            verdict: verdict.clone(),
        })
    });
    let response = next.run(request).await;
    match verdict.get() {
        None => response,
        Some(Verdict::TooLarge) => closing((guard.refusals.too_large)(limit)),
        Some(Verdict::TooSlow) => closing((guard.refusals.too_slow)(timeout)),
    }
}

/// A request body cut at the limit and at the deadline; what stopped it is recorded in
/// `verdict` for the edge to answer.
struct GuardedBody {
    inner: Body,
    remaining: u64,
    limit: u64,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    verdict: Arc<OnceLock<Verdict>>,
}

impl GuardedBody {
    fn stop(&self, verdict: Verdict) -> BodyError {
        let _ = self.verdict.set(verdict);
        match verdict {
            Verdict::TooLarge => BodyError::TooLarge { limit: self.limit },
            Verdict::TooSlow => BodyError::TooSlow {
                after: self.timeout,
            },
        }
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(verdict) = this.verdict.get() {
            return Poll::Ready(Some(Err(this.stop(*verdict))));
        }
        // Checked on every poll, so a steady trickle of data cannot outlast the deadline.
        if this.deadline.is_elapsed() {
            return Poll::Ready(Some(Err(this.stop(Verdict::TooSlow))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame
                    .data_ref()
                    .map_or(0, |data| u64::try_from(data.len()).unwrap_or(u64::MAX));
                if len > this.remaining {
                    return Poll::Ready(Some(Err(this.stop(Verdict::TooLarge))));
                }
                this.remaining -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Read(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(this.stop(Verdict::TooSlow)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `app` on `listener` until `stop` resolves, then lets the open connections finish
/// their requests (idle ones close at once). HTTP/1.1 with upgrades (WebSocket); the peer's
/// address is in each request's [`ConnectInfo`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &HttpSettings,
    stop: impl Future<Output = ()>,
) {
    let header_timeout = settings.header_read_timeout();
    // Connections hold a receiver: `closing` tells them to finish, and the sender sees when
    // the last one is gone.
    let (closing, connections) = watch::channel(false);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // the listener itself is fine; pause so a full table can drain.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    let response: Result<Response, Infallible> =
                        app.oneshot(request.map(Body::new)).await;
                    response
                }
            },
        );
        let mut shutdown = connections.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            let told_to_close = async {
                let _ = shutdown.wait_for(|closing| *closing).await;
            };
            tokio::select! {
                result = connection.as_mut() => log_connection_end(result, peer),
                () = told_to_close => {
                    connection.as_mut().graceful_shutdown();
                    log_connection_end(connection.await, peer);
                }
            }
            drop(shutdown);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    drop(connections);
    closing.closed().await;
}

fn log_connection_end(result: Result<(), hyper::Error>, peer: SocketAddr) {
    if let Err(e) = result {
        if e.is_timeout() {
            tracing::debug!(%peer, "connection closed: its headers did not arrive in time");
        } else {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bounds_are_checked() {
        let d = HttpSettings::default();
        assert_eq!(d.max_body_bytes, 12 * 1024 * 1024);
        assert!(d.validate(10 * 1024 * 1024).is_ok());
        let key = |s: HttpSettings, image| match s.validate(image) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => unreachable!("{other:?}"),
        };
        assert_eq!(key(d, d.max_body_bytes + 1), "http.max_body_bytes");
        let tiny = HttpSettings {
            max_body_bytes: 10,
            ..d
        };
        assert_eq!(key(tiny, 0), "http.max_body_bytes");
        let never = HttpSettings {
            body_read_timeout_ms: 0,
            ..d
        };
        assert_eq!(key(never, 0), "http.body_read_timeout_ms");
        let forever = HttpSettings {
            header_read_timeout_ms: 4_000_000,
            ..d
        };
        assert_eq!(key(forever, 0), "http.header_read_timeout_ms");
    }
}
