//! `generation_jobs`: one row per request, moved on by its later events (see
//! [`crate::fold::generation`]). The batch reads the rows it touches, folds, and writes back
//! the rows that changed, whole.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};

use crate::error::{ProjectionError, RowError, stored};
use crate::fold::generation::{
    Failure, GenerationBatch, JobResult, JobRow, JobStatus, Progress, StoredImage,
};
use gallery_infra::Columns;

/// Every column of `generation_jobs`, in the order of [`Values::params`].
/// Every column of a `generation_jobs` row, in the order the upsert binds them.
pub const COLUMNS: &str = "request_id, user_id, mode, prompt, negative_prompt, style, seed, steps,
    width, height, source_image_key, degraded, status, requested_at_ms, cancelled_at_ms,
    finished_at_ms, model, started_at_ms, progress_step, progress_steps, progress_at_ms,
    result_image_key, result_image_content_type, result_image_width, result_image_height,
    result_image_size_bytes, result_webp_key, result_webp_content_type, result_webp_width,
    result_webp_height, result_webp_size_bytes, result_thumbnail_key,
    result_thumbnail_content_type, result_thumbnail_width, result_thumbnail_height,
    result_thumbnail_size_bytes, cache_hit, result_degraded, result_steps, duration_ms,
    failure_code, failure_reason";

/// The columns a later event may change (everything but the request's own).
const MUTABLE: &[&str] = &[
    "status",
    "cancelled_at_ms",
    "finished_at_ms",
    "model",
    "started_at_ms",
    "progress_step",
    "progress_steps",
    "progress_at_ms",
    "result_image_key",
    "result_image_content_type",
    "result_image_width",
    "result_image_height",
    "result_image_size_bytes",
    "result_webp_key",
    "result_webp_content_type",
    "result_webp_width",
    "result_webp_height",
    "result_webp_size_bytes",
    "result_thumbnail_key",
    "result_thumbnail_content_type",
    "result_thumbnail_width",
    "result_thumbnail_height",
    "result_thumbnail_size_bytes",
    "cache_hit",
    "result_degraded",
    "result_steps",
    "duration_ms",
    "failure_code",
    "failure_reason",
];

const COLUMN_COUNT: usize = 42;

pub(super) async fn apply(
    tx: &Transaction<'_>,
    batch: &GenerationBatch,
) -> Result<(), ProjectionError> {
    let ids = batch.ids();
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM generation_jobs WHERE request_id = ANY($1)
                 ORDER BY request_id FOR UPDATE"
            ),
            &[&ids],
        )
        .await
        .map_err(ProjectionError::pg("read generation jobs"))?;
    let mut stored = HashMap::with_capacity(rows.len());
    for r in &rows {
        let job = read_row(r)?;
        stored.insert(job.request_id, job);
    }
    let changed = batch.plan(&stored);
    if changed.is_empty() {
        return Ok(());
    }
    let placeholders: Vec<String> = (1..=COLUMN_COUNT).map(|i| format!("${i}")).collect();
    let updates: Vec<String> = MUTABLE
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let sql = format!(
        "INSERT INTO generation_jobs ({COLUMNS}) VALUES ({})
         ON CONFLICT (request_id) DO UPDATE SET {}",
        placeholders.join(", "),
        updates.join(", ")
    );
    let statement = tx
        .prepare(&sql)
        .await
        .map_err(ProjectionError::pg("prepare generation job upsert"))?;
    for job in &changed {
        let values = Values::of(job);
        tx.execute(&statement, &values.params())
            .await
            .map_err(ProjectionError::pg("upsert generation job"))?;
    }
    Ok(())
}

/// The columns of an image: key, content type, width, height, size.
type ImageColumnNames = [&'static str; 5];

const RESULT_IMAGE: ImageColumnNames = [
    "result_image_key",
    "result_image_content_type",
    "result_image_width",
    "result_image_height",
    "result_image_size_bytes",
];
const RESULT_WEBP: ImageColumnNames = [
    "result_webp_key",
    "result_webp_content_type",
    "result_webp_width",
    "result_webp_height",
    "result_webp_size_bytes",
];
const RESULT_THUMBNAIL: ImageColumnNames = [
    "result_thumbnail_key",
    "result_thumbnail_content_type",
    "result_thumbnail_width",
    "result_thumbnail_height",
    "result_thumbnail_size_bytes",
];

/// The image in `columns`, if every one of them is set.
fn image(r: &Row, columns: ImageColumnNames) -> Result<Option<StoredImage>, RowError> {
    let [key, content_type, width, height, size_bytes] = columns;
    Ok(
        match (
            r.column(key)?,
            r.column(content_type)?,
            r.column(width)?,
            r.column(height)?,
            r.column(size_bytes)?,
        ) {
            (Some(key), Some(content_type), Some(width), Some(height), Some(size_bytes)) => {
                Some(StoredImage {
                    key,
                    content_type,
                    width,
                    height,
                    size_bytes,
                })
            }
            _ => None,
        },
    )
}

/// The job in a row of [`COLUMNS`]: what the projector folds on and the query API serves.
pub fn read_row(r: &Row) -> Result<JobRow, RowError> {
    let status: JobStatus = stored(r, "generation_jobs", "status")?;
    let progress = match (
        r.column("progress_step")?,
        r.column("progress_steps")?,
        r.column("progress_at_ms")?,
    ) {
        (Some(step), Some(steps), Some(at_ms)) => Some(Progress { step, steps, at_ms }),
        _ => None,
    };
    let result = match (
        image(r, RESULT_IMAGE)?,
        image(r, RESULT_WEBP)?,
        image(r, RESULT_THUMBNAIL)?,
    ) {
        (Some(image), Some(webp), Some(thumbnail)) => Some(Box::new(JobResult {
            image,
            webp,
            thumbnail,
            cache_hit: r.column::<Option<bool>>("cache_hit")?.unwrap_or(false),
            degraded: r
                .column::<Option<bool>>("result_degraded")?
                .unwrap_or(false),
            steps: r.column::<Option<i32>>("result_steps")?.unwrap_or(0),
            duration_ms: r.column::<Option<i64>>("duration_ms")?.unwrap_or(0),
        })),
        _ => None,
    };
    let failure = match (r.column("failure_code")?, r.column("failure_reason")?) {
        (Some(code), Some(reason)) => Some(Failure { code, reason }),
        _ => None,
    };
    Ok(JobRow {
        request_id: r.column("request_id")?,
        user_id: r.column("user_id")?,
        mode: r.column("mode")?,
        prompt: r.column("prompt")?,
        negative_prompt: r.column("negative_prompt")?,
        style: r.column("style")?,
        seed: r.column("seed")?,
        steps: r.column("steps")?,
        width: r.column("width")?,
        height: r.column("height")?,
        source_image_key: r.column("source_image_key")?,
        degraded: r.column("degraded")?,
        status,
        requested_at_ms: r.column("requested_at_ms")?,
        cancelled_at_ms: r.column("cancelled_at_ms")?,
        finished_at_ms: r.column("finished_at_ms")?,
        model: r.column("model")?,
        started_at_ms: r.column("started_at_ms")?,
        progress,
        result,
        failure,
    })
}

/// The optional columns of a job, flattened for the statement's parameters.
struct Values<'a> {
    job: &'a JobRow,
    status: &'static str,
    progress_step: Option<i32>,
    progress_steps: Option<i32>,
    progress_at_ms: Option<i64>,
    /// PNG, WebP, thumbnail.
    images: [ImageColumns<'a>; 3],
    cache_hit: Option<bool>,
    result_degraded: Option<bool>,
    result_steps: Option<i32>,
    duration_ms: Option<i64>,
    failure_code: Option<&'a str>,
    failure_reason: Option<&'a str>,
}

struct ImageColumns<'a> {
    key: Option<&'a str>,
    content_type: Option<&'a str>,
    width: Option<i32>,
    height: Option<i32>,
    size_bytes: Option<i64>,
}

impl<'a> ImageColumns<'a> {
    fn of(image: Option<&'a StoredImage>) -> Self {
        ImageColumns {
            key: image.map(|i| i.key.as_str()),
            content_type: image.map(|i| i.content_type.as_str()),
            width: image.map(|i| i.width),
            height: image.map(|i| i.height),
            size_bytes: image.map(|i| i.size_bytes),
        }
    }
}

impl<'a> Values<'a> {
    fn of(job: &'a JobRow) -> Self {
        let result = job.result.as_deref();
        Values {
            job,
            status: job.status.as_str(),
            progress_step: job.progress.map(|p| p.step),
            progress_steps: job.progress.map(|p| p.steps),
            progress_at_ms: job.progress.map(|p| p.at_ms),
            images: [
                ImageColumns::of(result.map(|r| &r.image)),
                ImageColumns::of(result.map(|r| &r.webp)),
                ImageColumns::of(result.map(|r| &r.thumbnail)),
            ],
            cache_hit: result.map(|r| r.cache_hit),
            result_degraded: result.map(|r| r.degraded),
            result_steps: result.map(|r| r.steps),
            duration_ms: result.map(|r| r.duration_ms),
            failure_code: job.failure.as_ref().map(|f| f.code.as_str()),
            failure_reason: job.failure.as_ref().map(|f| f.reason.as_str()),
        }
    }

    /// The parameters, in the order of [`COLUMNS`].
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let j = self.job;
        let mut out: Vec<&(dyn ToSql + Sync)> = vec![
            &j.request_id,
            &j.user_id,
            &j.mode,
            &j.prompt,
            &j.negative_prompt,
            &j.style,
            &j.seed,
            &j.steps,
            &j.width,
            &j.height,
            &j.source_image_key,
            &j.degraded,
            &self.status,
            &j.requested_at_ms,
            &j.cancelled_at_ms,
            &j.finished_at_ms,
            &j.model,
            &j.started_at_ms,
            &self.progress_step,
            &self.progress_steps,
            &self.progress_at_ms,
        ];
        for i in &self.images {
            out.extend([
                &i.key as &(dyn ToSql + Sync),
                &i.content_type,
                &i.width,
                &i.height,
                &i.size_bytes,
            ]);
        }
        out.extend([
            &self.cache_hit as &(dyn ToSql + Sync),
            &self.result_degraded,
            &self.result_steps,
            &self.duration_ms,
            &self.failure_code,
            &self.failure_reason,
        ]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn columns() -> Vec<&'static str> {
        COLUMNS.split(',').map(str::trim).collect()
    }

    #[test]
    fn the_statement_has_one_parameter_per_column_and_updates_only_columns() {
        assert_eq!(columns().len(), COLUMN_COUNT);
        for c in MUTABLE {
            assert!(columns().contains(c), "{c}");
        }
        let job = JobRow {
            request_id: Uuid::nil(),
            user_id: "ada".into(),
            mode: "text_to_image".into(),
            prompt: None,
            negative_prompt: None,
            style: "impressionism".into(),
            seed: 1,
            steps: 20,
            width: 512,
            height: 512,
            source_image_key: None,
            degraded: false,
            status: JobStatus::Requested,
            requested_at_ms: 0,
            cancelled_at_ms: None,
            finished_at_ms: None,
            model: None,
            started_at_ms: None,
            progress: None,
            result: None,
            failure: None,
        };
        assert_eq!(Values::of(&job).params().len(), COLUMN_COUNT);
    }
}
