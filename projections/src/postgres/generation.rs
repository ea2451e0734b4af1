//! `generation_jobs`: one row per request, moved on by its later events.

use std::collections::HashMap;

use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::fold::generation::{GenerationBatch, JobRow, JobStatus};

pub(super) async fn apply(
    tx: &Transaction<'_>,
    batch: &GenerationBatch,
) -> Result<(), ProjectionError> {
    let ids = batch.ids();
    let rows = tx
        .query(
            "SELECT request_id, user_id, mode, prompt, negative_prompt, style, seed, steps,
                    width, height, source_image_key, degraded, status, requested_at_ms,
                    cancelled_at_ms
             FROM generation_jobs WHERE request_id = ANY($1)
             ORDER BY request_id FOR UPDATE",
            &[&ids],
        )
        .await
        .map_err(ProjectionError::pg("read generation jobs"))?;
    let mut stored = HashMap::with_capacity(rows.len());
    for r in rows {
        let status: String = r.get(12);
        let status = JobStatus::parse(&status).ok_or(ProjectionError::Stored {
            table: "generation_jobs",
            column: "status",
            value: status,
        })?;
        let id: Uuid = r.get(0);
        stored.insert(
            id,
            JobRow {
                request_id: id,
                user_id: r.get(1),
                mode: r.get(2),
                prompt: r.get(3),
                negative_prompt: r.get(4),
                style: r.get(5),
                seed: r.get(6),
                steps: r.get(7),
                width: r.get(8),
                height: r.get(9),
                source_image_key: r.get(10),
                degraded: r.get(11),
                status,
                requested_at_ms: r.get(13),
                cancelled_at_ms: r.get(14),
            },
        );
    }
    let changed = batch.plan(&stored);
    for job in &changed {
        tx.execute(
            "INSERT INTO generation_jobs (request_id, user_id, mode, prompt, negative_prompt,
                 style, seed, steps, width, height, source_image_key, degraded, status,
                 requested_at_ms, cancelled_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (request_id) DO UPDATE
             SET status = excluded.status, cancelled_at_ms = excluded.cancelled_at_ms",
            &[
                &job.request_id,
                &job.user_id,
                &job.mode,
                &job.prompt,
                &job.negative_prompt,
                &job.style,
                &job.seed,
                &job.steps,
                &job.width,
                &job.height,
                &job.source_image_key,
                &job.degraded,
                &job.status.as_str(),
                &job.requested_at_ms,
                &job.cancelled_at_ms,
            ],
        )
        .await
        .map_err(ProjectionError::pg("upsert generation job"))?;
    }
    Ok(())
}
