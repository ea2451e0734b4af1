//! Metrics for Prometheus: one recorder per process (every role in it records into the same
//! one), served as text at `GET /metrics` on `metrics.listen`, beside `GET /healthz`.

use std::sync::{Mutex, PoisonError};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

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
        .set_buckets_for_metric(
            Matcher::Full(gallery_gpu_workers::metrics::PAINT_SECONDS.to_owned()),
            gallery_gpu_workers::metrics::PAINT_SECONDS_BUCKETS,
        )?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::Taken)?;
    gallery_gpu_workers::metrics::describe();
    *installed = Some(handle.clone());
    Ok(handle)
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
    use axum::http::Request;
    use tower::ServiceExt;

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
