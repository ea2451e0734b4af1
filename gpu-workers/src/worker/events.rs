//! The worker's events about one request: ids derived from the request, key = request id.

use std::time::{SystemTime, UNIX_EPOCH};

use gallery_schemas::{
    Event, GenerationCancelConfirmed, GenerationCompleted, GenerationFailed, GenerationProgressed,
    GenerationRequested, GenerationStarted,
};

use super::ids;
use super::painter::Rejection;
use super::store::Manifest;

/// Milliseconds since the Unix epoch, UTC.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub fn started(request: &GenerationRequested, worker: &str, model: &str) -> Event {
    GenerationStarted {
        event_id: ids::started(request.request_id),
        request_id: request.request_id,
        user_id: request.user_id.clone(),
        worker: worker.to_owned(),
        model: model.to_owned(),
        occurred_at: now_ms(),
    }
    .into()
}

pub fn progressed(request: &GenerationRequested, step: u32, steps: u32) -> Event {
    GenerationProgressed {
        event_id: ids::progressed(request.request_id, step),
        request_id: request.request_id,
        user_id: request.user_id.clone(),
        step: int(step),
        steps: int(steps),
        occurred_at: now_ms(),
    }
    .into()
}

/// How a completed job got its picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedHow {
    pub cache_hit: bool,
    pub degraded: bool,
    pub duration_ms: i64,
}

pub fn completed(request: &GenerationRequested, result: &Manifest, how: CompletedHow) -> Event {
    GenerationCompleted {
        event_id: ids::terminal(request.request_id),
        request_id: request.request_id,
        user_id: request.user_id.clone(),
        model: result.model.clone(),
        weights_digest: result.weights_digest.clone(),
        image: result.image.clone(),
        webp: result.webp.clone(),
        thumbnail: result.thumbnail.clone(),
        cache_hit: how.cache_hit,
        degraded: how.degraded,
        steps: int(result.steps),
        width: result.image.width,
        height: result.image.height,
        duration_ms: how.duration_ms,
        occurred_at: now_ms(),
    }
    .into()
}

pub fn failed(request: &GenerationRequested, why: &Rejection) -> Event {
    GenerationFailed {
        event_id: ids::terminal(request.request_id),
        request_id: request.request_id,
        user_id: request.user_id.clone(),
        code: why.code.as_str().to_owned(),
        reason: why.reason.clone(),
        occurred_at: now_ms(),
    }
    .into()
}

pub fn cancel_confirmed(request: &GenerationRequested, step: u32) -> Event {
    GenerationCancelConfirmed {
        event_id: ids::terminal(request.request_id),
        request_id: request.request_id,
        user_id: request.user_id.clone(),
        step: int(step),
        occurred_at: now_ms(),
    }
    .into()
}

/// Whether `event` ends a request, and which.
pub fn terminal_of(event: &Event) -> Option<uuid::Uuid> {
    match event {
        Event::GenerationCompleted(e) => Some(e.request_id),
        Event::GenerationFailed(e) => Some(e.request_id),
        Event::GenerationCancelConfirmed(e) => Some(e.request_id),
        _ => None,
    }
}
