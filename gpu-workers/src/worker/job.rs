//! One job from dispatch to outcome: the result cache, the source photo, painting and
//! encoding on a paint thread, storing the images and the cache manifest. It reports what
//! happens to the session; the session alone turns reports into events.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gallery_schemas::ImageRef;
use image::RgbImage;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use super::images::{Encoded, SourceLimits, check_reference, decode_source, encode_result};
use super::painter::{FailureCode, PaintError, PaintJob, PaintParams, Painter, Rejection};
use super::pool::PaintPool;
use super::store::{Manifest, ResultStore, StoreError};
use super::throttle::Throttle;

/// Attempts of an object-store call before the job fails.
const STORE_ATTEMPTS: u32 = 5;

/// What every job shares.
#[derive(Debug)]
pub struct JobEnv {
    pub pool: PaintPool,
    pub store: ResultStore,
    pub source_limits: SourceLimits,
    pub progress_interval: Duration,
    pub thumbnail_side: u32,
}

/// A job as dispatched.
#[derive(Debug)]
pub struct JobSpec {
    /// Tells this run's reports from those of an earlier run of the same request.
    pub seq: u64,
    pub params: PaintParams,
    pub source: Option<ImageRef>,
    pub cache_key: String,
    pub painter: Arc<dyn Painter>,
    pub cancel: Arc<AtomicBool>,
}

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    Completed {
        manifest: Box<Manifest>,
        cache_hit: bool,
        duration_ms: i64,
    },
    Failed(Rejection),
    Cancelled {
        step: u32,
    },
}

/// What a job reports.
#[derive(Debug)]
pub enum Report {
    /// Painting begins (after the cache missed and the source was read).
    Started,
    Progress {
        step: u32,
        steps: u32,
    },
    Finished(Outcome),
}

/// A report of the run `seq`.
#[derive(Debug)]
pub struct Update {
    pub seq: u64,
    pub report: Report,
}

/// Runs `spec` to its outcome, reporting to `updates`.
pub async fn run(env: Arc<JobEnv>, spec: JobSpec, updates: UnboundedSender<Update>) {
    let seq = spec.seq;
    let outcome = execute(&env, spec, &updates).await;
    let _ = updates.send(Update {
        seq,
        report: Report::Finished(outcome),
    });
}

fn internal(reason: impl Into<String>) -> Rejection {
    Rejection::new(FailureCode::Internal, reason)
}

async fn execute(env: &Arc<JobEnv>, spec: JobSpec, updates: &UnboundedSender<Update>) -> Outcome {
    match retry(|| env.store.manifest(&spec.cache_key)).await {
        Ok(Some(manifest)) => {
            return Outcome::Completed {
                manifest: Box::new(manifest),
                cache_hit: true,
                duration_ms: 0,
            };
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "the result cache is unreadable; painting"),
    }
    let source = match &spec.source {
        Some(reference) => match load_source(env, reference).await {
            Ok(image) => Some(image),
            Err(rejection) => return Outcome::Failed(rejection),
        },
        None => None,
    };
    if spec.cancel.load(Ordering::Acquire) {
        return Outcome::Cancelled { step: 0 };
    }
    let _ = updates.send(Update {
        seq: spec.seq,
        report: Report::Started,
    });
    let started = Instant::now();
    let (tx, rx) = oneshot::channel();
    let task = {
        let (painter, cancel, updates) =
            (spec.painter.clone(), spec.cancel.clone(), updates.clone());
        let job = PaintJob {
            params: spec.params.clone(),
            source,
        };
        let (seq, interval, side) = (spec.seq, env.progress_interval, env.thumbnail_side);
        move || {
            let painted = paint(&*painter, &job, &cancel, interval, side, |step, steps| {
                let _ = updates.send(Update {
                    seq,
                    report: Report::Progress { step, steps },
                });
            });
            let _ = tx.send(painted);
        }
    };
    if env.pool.submit(task).is_err() {
        return Outcome::Failed(internal("the paint threads are not running"));
    }
    let encoded = match rx.await {
        Ok(Ok(encoded)) => encoded,
        Ok(Err(PaintError::Cancelled { step })) => return Outcome::Cancelled { step },
        Ok(Err(PaintError::Rejected(rejection))) => return Outcome::Failed(rejection),
        Ok(Err(PaintError::Model { source })) => {
            tracing::error!(error = %source, "the model failed");
            return Outcome::Failed(internal(format!("the model failed: {source}")));
        }
        Err(_) => {
            tracing::error!("the painter stopped without an answer (it panicked)");
            return Outcome::Failed(internal("the painter stopped unexpectedly"));
        }
    };
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    match store_result(env, &spec, encoded).await {
        Ok(manifest) => Outcome::Completed {
            manifest: Box::new(manifest),
            cache_hit: false,
            duration_ms,
        },
        Err(e) => {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "could not store the result");
            Outcome::Failed(internal("the result could not be stored"))
        }
    }
}

/// Paints and encodes on the calling (paint) thread; `report(step, steps)` is called for the
/// throttled steps.
fn paint(
    painter: &dyn Painter,
    job: &PaintJob,
    cancel: &AtomicBool,
    interval: Duration,
    thumbnail_side: u32,
    mut report: impl FnMut(u32, u32),
) -> Result<Encoded, PaintError> {
    if cancel.load(Ordering::Acquire) {
        return Err(PaintError::Cancelled { step: 0 });
    }
    let mut throttle = Throttle::new(interval, Instant::now());
    let mut progress = |step: u32, steps: u32| {
        if cancel.load(Ordering::Acquire) {
            return ControlFlow::Break(());
        }
        if throttle.ready(Instant::now()) {
            report(step, steps);
        }
        ControlFlow::Continue(())
    };
    let image = painter.paint(job, &mut progress)?;
    encode_result(&image, thumbnail_side).map_err(|e| PaintError::Model {
        source: Box::new(e),
    })
}

/// Fetches and checks the source photo; decodes it off the runtime.
async fn load_source(env: &Arc<JobEnv>, reference: &ImageRef) -> Result<RgbImage, Rejection> {
    let limits = env.source_limits;
    check_reference(reference, &limits)?;
    let unavailable = |e: StoreError| match e {
        StoreError::NotFound { key } => Rejection::new(
            FailureCode::InvalidImage,
            format!("the source image {key} is not in the object store"),
        ),
        other => {
            tracing::error!(error = %other, "reading the source image failed");
            internal("object storage is unavailable")
        }
    };
    let size = retry(|| env.store.size(&reference.key))
        .await
        .map_err(unavailable)?;
    if size > limits.max_bytes {
        return Err(Rejection::new(
            FailureCode::InvalidImage,
            format!(
                "the stored source image is {size} bytes; at most {} are accepted",
                limits.max_bytes
            ),
        ));
    }
    let bytes = retry(|| env.store.get(&reference.key))
        .await
        .map_err(unavailable)?;
    let reference = reference.clone();
    tokio::task::spawn_blocking(move || decode_source(&bytes, &reference, &limits))
        .await
        .map_err(|_| internal("decoding the source image did not finish"))?
}

/// Stores the three images, then the cache manifest that points at them.
async fn store_result(
    env: &Arc<JobEnv>,
    spec: &JobSpec,
    encoded: Encoded,
) -> Result<Manifest, StoreError> {
    let store = &env.store;
    let (w, h) = (encoded.width, encoded.height);
    let image = retry(|| store.put_image(encoded.png.clone(), "png", "image/png", w, h)).await?;
    let webp = retry(|| store.put_image(encoded.webp.clone(), "webp", "image/webp", w, h)).await?;
    let (tw, th) = (encoded.thumbnail_width, encoded.thumbnail_height);
    let thumbnail =
        retry(|| store.put_image(encoded.thumbnail.clone(), "png", "image/png", tw, th)).await?;
    let manifest = Manifest {
        model: spec.painter.model().to_owned(),
        weights_digest: spec.painter.weights_digest().to_owned(),
        image,
        webp,
        thumbnail,
        steps: spec.painter.steps(&spec.params),
    };
    retry(|| store.put_manifest(&spec.cache_key, &manifest)).await?;
    Ok(manifest)
}

/// Retries an object-store call that failed for the store's reasons (not a missing object).
async fn retry<T, F, Fut>(mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut pause = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(StoreError::Store { key, source }) if attempt < STORE_ATTEMPTS => {
                tracing::warn!(%key, error = %source, attempt, "object storage failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 3).min(Duration::from_secs(3));
                attempt += 1;
            }
            other => return other,
        }
    }
}
