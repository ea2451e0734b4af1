//! `exhibitions` and `artworks`: rows read for update, moved on by the pure fold, written
//! back whole. Catalog events are few, so rows are written one statement each.

use std::collections::HashMap;

use tokio_postgres::{Row, Transaction};
use uuid::Uuid;

use crate::error::{ProjectionError, RowError, stored};
use crate::fold::catalog::{ArtworkRow, CatalogBatch, ExhibitionRow, ExhibitionStatus};
use gallery_infra::Columns;

pub(super) async fn apply(
    tx: &Transaction<'_>,
    batch: &CatalogBatch,
) -> Result<(), ProjectionError> {
    let (exhibition_ids, artwork_ids) = batch.ids();
    let stored_exhibitions = read_exhibitions(tx, &exhibition_ids).await?;
    let stored_artworks = read_artworks(tx, &artwork_ids).await?;
    let plan = batch.plan(&stored_exhibitions, &stored_artworks);
    for x in &plan.exhibitions {
        tx.execute(
            "INSERT INTO exhibitions (exhibition_id, curator_id, title, description,
                 opens_at_ms, closes_at_ms, status, created_at_ms, published_at_ms, closed_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (exhibition_id) DO UPDATE
             SET status = excluded.status, published_at_ms = excluded.published_at_ms,
                 closed_at_ms = excluded.closed_at_ms",
            &[
                &x.exhibition_id,
                &x.curator_id,
                &x.title,
                &x.description,
                &x.opens_at_ms,
                &x.closes_at_ms,
                &x.status.as_str(),
                &x.created_at_ms,
                &x.published_at_ms,
                &x.closed_at_ms,
            ],
        )
        .await
        .map_err(ProjectionError::pg("upsert exhibition"))?;
    }
    for a in &plan.artworks {
        tx.execute(
            "INSERT INTO artworks (artwork_id, exhibition_id, title, artist, year, style,
                 description, image_key, image_content_type, image_width, image_height,
                 added_by, added_at_ms, removed, removed_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (artwork_id) DO UPDATE
             SET removed = excluded.removed, removed_at_ms = excluded.removed_at_ms",
            &[
                &a.artwork_id,
                &a.exhibition_id,
                &a.title,
                &a.artist,
                &a.year,
                &a.style,
                &a.description,
                &a.image_key,
                &a.image_content_type,
                &a.image_width,
                &a.image_height,
                &a.added_by,
                &a.added_at_ms,
                &a.removed_at_ms.is_some(),
                &a.removed_at_ms,
            ],
        )
        .await
        .map_err(ProjectionError::pg("upsert artwork"))?;
    }
    Ok(())
}

/// Every column of an `exhibitions` row.
pub const EXHIBITION_COLUMNS: &str = "exhibition_id, curator_id, title, description, opens_at_ms,
    closes_at_ms, status, created_at_ms, published_at_ms, closed_at_ms";

/// The exhibition in a row of [`EXHIBITION_COLUMNS`]: what the projector folds on and the query
/// API serves.
pub fn read_exhibition(r: &Row) -> Result<ExhibitionRow, RowError> {
    let status: ExhibitionStatus = stored(r, "exhibitions", "status")?;
    Ok(ExhibitionRow {
        exhibition_id: r.column("exhibition_id")?,
        curator_id: r.column("curator_id")?,
        title: r.column("title")?,
        description: r.column("description")?,
        opens_at_ms: r.column("opens_at_ms")?,
        closes_at_ms: r.column("closes_at_ms")?,
        status,
        created_at_ms: r.column("created_at_ms")?,
        published_at_ms: r.column("published_at_ms")?,
        closed_at_ms: r.column("closed_at_ms")?,
    })
}

async fn read_exhibitions(
    tx: &Transaction<'_>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, ExhibitionRow>, ProjectionError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {EXHIBITION_COLUMNS} FROM exhibitions WHERE exhibition_id = ANY($1)
                 ORDER BY exhibition_id FOR UPDATE"
            ),
            &[&ids],
        )
        .await
        .map_err(ProjectionError::pg("read exhibitions"))?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let row = read_exhibition(&r)?;
        out.insert(row.exhibition_id, row);
    }
    Ok(out)
}

/// Every column of an `artworks` row.
pub const ARTWORK_COLUMNS: &str = "artwork_id, exhibition_id, title, artist, year, style,
    description, image_key, image_content_type, image_width, image_height, added_by,
    added_at_ms, removed_at_ms";

/// The artwork in a row of [`ARTWORK_COLUMNS`]: what the projector folds on and the query API
/// serves.
pub fn read_artwork(r: &Row) -> Result<ArtworkRow, RowError> {
    Ok(ArtworkRow {
        artwork_id: r.column("artwork_id")?,
        exhibition_id: r.column("exhibition_id")?,
        title: r.column("title")?,
        artist: r.column("artist")?,
        year: r.column("year")?,
        style: r.column("style")?,
        description: r.column("description")?,
        image_key: r.column("image_key")?,
        image_content_type: r.column("image_content_type")?,
        image_width: r.column("image_width")?,
        image_height: r.column("image_height")?,
        added_by: r.column("added_by")?,
        added_at_ms: r.column("added_at_ms")?,
        removed_at_ms: r.column("removed_at_ms")?,
    })
}

async fn read_artworks(
    tx: &Transaction<'_>,
    ids: &[String],
) -> Result<HashMap<String, ArtworkRow>, ProjectionError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {ARTWORK_COLUMNS} FROM artworks WHERE artwork_id = ANY($1)
                 ORDER BY artwork_id FOR UPDATE"
            ),
            &[&ids],
        )
        .await
        .map_err(ProjectionError::pg("read artworks"))?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let row = read_artwork(&r)?;
        out.insert(row.artwork_id.clone(), row);
    }
    Ok(out)
}
