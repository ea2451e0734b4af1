//! Metrics for Prometheus: one recorder per process (every role in it records into the same
//! one), served as text at `GET /metrics` on `metrics.listen`, beside `GET /healthz`.

use std::sync::{Mutex, PoisonError};

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests answered, by `service` (`commands`, `query-api`), `method`, `route` (the
/// route's pattern, e.g. `/v1/artworks/{id}/like`; `unmatched` for none) and `status`.
pub const HTTP_REQUESTS: &str = "gallery_http_requests_total";
/// Time to answer an HTTP request (to the response head), by `service`, `method` and `route`.
pub const HTTP_SECONDS: &str = "gallery_http_request_seconds";
/// Buckets of every histogram but the painter's: a millisecond to ten seconds.
pub const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The HTTP metrics.
pub const NAMES: &[&str] = &[HTTP_REQUESTS, HTTP_SECONDS];

/// The content type of Prometheus' text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Why metrics cannot be recorded.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("the Prometheus recorder could not be built")]
    Build(#[from] BuildError),
    #[error("another metrics recorder is installed in this process")]
    Taken,
}

/// Installs the process's Prometheus recorder the first time (later calls return the same
/// handle) and registers every metric's description.
pub fn recorder() -> Result<PrometheusHandle, MetricsError> {
    let mut installed = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = &*installed {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets(BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(gallery_gpu_workers::metrics::PAINT_SECONDS.to_owned()),
            gallery_gpu_workers::metrics::PAINT_SECONDS_BUCKETS,
        )?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::Taken)?;
    describe();
    gallery_commands::metrics::describe();
    gallery_query_api::metrics::describe();
    gallery_projections::metrics::describe();
    gallery_gpu_workers::metrics::describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

fn describe() {
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by service, method, route and status"
    );
    metrics::describe_histogram!(
        HTTP_SECONDS,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by service, method and route"
    );
}

/// `router` with every request counted and timed as `service`.
pub fn track(router: Router, service: &'static str) -> Router {
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| record(service, request, next),
    ))
}

async fn record(service: &'static str, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    // Known methods by name; anything else as one label value, so a client cannot grow the
    // series without bound.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(HTTP_SECONDS, "service" => service, "method" => method, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "service" => service, "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// `GET /metrics` (the text format) and `GET /healthz`.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    // Histograms are kept in blocks until drained; drain them now.
                    handle.run_upkeep();
                    ([(header::CONTENT_TYPE, CONTENT_TYPE)], handle.render()).into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn scrape(handle: PrometheusHandle) -> String {
        let response = router(handle)
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// Every metric an alert rule or the Prometheus set-up of `docker-compose.yml` names is
    /// one Gallery records (a histogram's series by its `_bucket`, `_count`, `_sum`).
    #[test]
    fn the_alert_rules_name_only_metrics_gallery_records() {
        let compose = include_str!("../docker-compose.yml");
        let known: Vec<&str> = NAMES
            .iter()
            .chain(gallery_commands::metrics::NAMES)
            .chain(gallery_query_api::metrics::NAMES)
            .chain(gallery_projections::metrics::NAMES)
            .chain(gallery_gpu_workers::metrics::NAMES)
            .copied()
            .collect();
        let named: Vec<&str> = compose
            .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .filter(|word| word.starts_with("gallery_"))
            .collect();
        assert!(named.len() >= 10, "the alert rules are there: {named:?}");
        for word in named {
            let name = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .filter(|base| known.contains(base))
                .unwrap_or(word);
            assert!(known.contains(&name), "{word} is no metric Gallery records");
        }
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_pattern_and_status() {
        let handle = recorder().unwrap();
        let app = track(
            Router::new().route(
                "/things/{id}",
                get(|| async { "a thing" }).post(|| async { axum::http::StatusCode::CONFLICT }),
            ),
            "test-service",
        );
        for (method, path) in [
            ("GET", "/things/1"),
            ("GET", "/things/2"),
            ("POST", "/things/3"),
            ("GET", "/nothing"),
        ] {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        let text = scrape(handle).await;
        for line in [
            "gallery_http_requests_total{service=\"test-service\",method=\"GET\",route=\"/things/{id}\",status=\"200\"} 2",
            "gallery_http_requests_total{service=\"test-service\",method=\"POST\",route=\"/things/{id}\",status=\"409\"} 1",
            "gallery_http_requests_total{service=\"test-service\",method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
            "gallery_http_request_seconds_count{service=\"test-service\",method=\"GET\",route=\"/things/{id}\"} 2",
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
    }

    #[tokio::test]
    async fn metrics_are_served_as_prometheus_text_with_their_descriptions() {
        let handle = recorder().unwrap();
        assert!(recorder().is_ok(), "installing twice gives the same handle");
        metrics::counter!(gallery_gpu_workers::metrics::JOBS_FINISHED, "outcome" => "completed")
            .increment(2);
        metrics::histogram!(gallery_gpu_workers::metrics::PAINT_SECONDS, "mode" => "image_to_image")
            .record(0.3);
        let response = router(handle)
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.contains("# HELP gallery_painter_jobs_finished_total Generation jobs finished"),
            "{text}"
        );
        assert!(
            text.contains("gallery_painter_jobs_finished_total{outcome=\"completed\"} 2"),
            "{text}"
        );
        // A histogram with the painter's buckets, not a summary.
        assert!(
            text.contains(
                "gallery_painter_paint_seconds_bucket{mode=\"image_to_image\",le=\"0.5\"} 1"
            ),
            "{text}"
        );
    }
}
