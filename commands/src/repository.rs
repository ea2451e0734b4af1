//! The aggregate state commands are decided on, kept by the write side in Postgres. Each
//! stateful command locks its row, decides, publishes, records the change, then commits, so
//! concurrent commands on one aggregate are decided one after the other.

use gallery_schemas::{ArtworkId, Event, ExhibitionStatus, UserId};
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::db::DbError;
use crate::decide::catalog::ExhibitionState;
use crate::decide::generation::RequestState;
use crate::decide::interactions::CommentState;
use gallery_infra::Columns;

pub async fn exhibition(
    tx: &Transaction<'_>,
    id: Uuid,
) -> Result<Option<ExhibitionState>, DbError> {
    let row = tx
        .query_opt(include_str!("../sql/read_exhibition.sql"), &[&id])
        .await
        .map_err(DbError::pg("read exhibition"))?;
    let Some(r) = row else { return Ok(None) };
    let status: ExhibitionStatus =
        r.column::<&str>("status")?
            .parse()
            .map_err(|source| DbError::Stored {
                table: "commands.exhibitions",
                source,
            })?;
    let Ok(curator) = UserId::parse(r.column("curator_id")?) else {
        return Ok(None);
    };
    Ok(Some(ExhibitionState {
        curator,
        status,
        artworks: r.column("artworks")?,
    }))
}

/// The exhibition an artwork is in now (None when unknown or removed).
pub async fn artwork_exhibition(
    tx: &Transaction<'_>,
    artwork: &ArtworkId,
) -> Result<Option<Uuid>, DbError> {
    let row = tx
        .query_opt(
            include_str!("../sql/read_artwork.sql"),
            &[&artwork.as_str()],
        )
        .await
        .map_err(DbError::pg("read artwork"))?;
    Ok(row.map(|r| r.column("exhibition_id")).transpose()?)
}

pub async fn comment(tx: &Transaction<'_>, id: Uuid) -> Result<Option<CommentState>, DbError> {
    let row = tx
        .query_opt(include_str!("../sql/read_comment.sql"), &[&id])
        .await
        .map_err(DbError::pg("read comment"))?;
    let Some(r) = row else { return Ok(None) };
    let Ok(artwork_id) = ArtworkId::parse(r.column("artwork_id")?) else {
        return Ok(None);
    };
    let Ok(author) = UserId::parse(r.column("author_id")?) else {
        return Ok(None);
    };
    Ok(Some(CommentState {
        artwork_id,
        author,
        deleted: r.column("deleted")?,
    }))
}

pub async fn generation(tx: &Transaction<'_>, id: Uuid) -> Result<Option<RequestState>, DbError> {
    let row = tx
        .query_opt(include_str!("../sql/read_generation.sql"), &[&id])
        .await
        .map_err(DbError::pg("read generation"))?;
    let Some(r) = row else { return Ok(None) };
    let Ok(user) = UserId::parse(r.column("user_id")?) else {
        return Ok(None);
    };
    Ok(Some(RequestState {
        user,
        cancelled: r.column("cancelled")?,
    }))
}

/// Records what an accepted event changes in the aggregate state. Idempotent, so a replayed
/// event leaves the same state.
pub async fn record(tx: &Transaction<'_>, event: &Event) -> Result<(), DbError> {
    let (sql, params, what): (&str, &[&(dyn ToSql + Sync)], &'static str) = match event {
        Event::ExhibitionCreated(e) => (
            include_str!("../sql/record_exhibition.sql"),
            &[&e.exhibition_id, &e.curator_id.as_str()],
            "record exhibition",
        ),
        Event::ArtworkAdded(e) => (
            include_str!("../sql/record_artwork.sql"),
            &[&e.exhibition_id, &e.artwork_id.as_str()],
            "record artwork",
        ),
        Event::ArtworkRemoved(e) => (
            include_str!("../sql/record_artwork_removal.sql"),
            &[&e.exhibition_id, &e.artwork_id.as_str()],
            "record removal",
        ),
        Event::ExhibitionPublished(e) => (
            include_str!("../sql/record_publication.sql"),
            &[&e.exhibition_id],
            "record publication",
        ),
        Event::ExhibitionClosed(e) => (
            "UPDATE commands.exhibitions SET status = 'closed' WHERE exhibition_id = $1",
            &[&e.exhibition_id],
            "record closing",
        ),
        Event::CommentPosted(e) => (
            include_str!("../sql/record_comment.sql"),
            &[&e.comment_id, &e.artwork_id.as_str(), &e.user_id.as_str()],
            "record comment",
        ),
        Event::CommentDeleted(e) => (
            "UPDATE commands.comments SET deleted = true WHERE comment_id = $1",
            &[&e.comment_id],
            "record comment deletion",
        ),
        Event::GenerationCancelled(e) => (
            "UPDATE commands.generations SET cancelled = true WHERE request_id = $1",
            &[&e.request_id],
            "record cancellation",
        ),
        // Reserved before publishing (its unique id guards against reuse); recorded again
        // for an event re-sent by a takeover, whose first attempt's reservation may have
        // rolled back.
        Event::GenerationRequested(e) => (
            include_str!("../sql/record_generation.sql"),
            &[&e.request_id, &e.user_id.as_str()],
            "record generation request",
        ),
        // Stateless.
        _ => return Ok(()),
    };
    tx.execute(sql, params)
        .await
        .map(|_| ())
        .map_err(DbError::pg(what))
}

/// Reserves a generation request id for `user` before its event is published. False when
/// the id is taken (by anyone).
pub async fn reserve_generation(
    tx: &Transaction<'_>,
    request_id: Uuid,
    user: &UserId,
) -> Result<bool, DbError> {
    let n = tx
        .execute(
            include_str!("../sql/record_generation.sql"),
            &[&request_id, &user.as_str()],
        )
        .await
        .map_err(DbError::pg("reserve generation"))?;
    Ok(n == 1)
}
