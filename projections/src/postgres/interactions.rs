//! Likes, favorites, comments, views, their counts in `artwork_stats` and their hour buckets.
//! Each kind reads the stored state it touches (for update), plans with the pure fold, and
//! writes in a few set-based statements, whatever the size of the batch.
//!
//! `LOOKUP_PLANS`: a batch reads the rows of its own keys, a few hundred or thousand, from
//! tables that grow with the log to millions of rows. Written as a join of the keys with the
//! table, Postgres' cost model (random reads assumed four times dearer than sequential ones)
//! hashed the keys and scanned the whole table on every batch while it held up to some hundred
//! thousand rows, so each batch cost time in proportion to the read model's size (measured:
//! every lookup table scanned once per batch, the projector at a fifth of a `COPY` of the same
//! rows). Each lookup is therefore a `LATERAL` subquery per key that Postgres cannot flatten
//! into a join (it locks its row, or stops at one row): one primary-key probe per key, in the
//! keys' order, whatever the table's size or statistics.

use std::collections::{BTreeMap, HashMap, HashSet};

use tokio_postgres::{Row, Transaction};
use uuid::Uuid;

use super::Batch;
use crate::error::{ProjectionError, RowError};
use crate::fold::comments::{CommentBatch, CommentRow, StoredComment};
use crate::fold::views::ViewBatch;
use crate::fold::{Position, SetBatch, SetEvent, SetFact, SetKey, SetKind, SetPlan, StatsDelta};
use gallery_infra::Columns;

/// The columns of a `comments` row as posted (its deletion aside).
pub const COMMENT_COLUMNS: &str = "comment_id, artwork_id, user_id, body, posted_at_ms";

/// The comment in a row of [`COMMENT_COLUMNS`], as the query API serves it.
pub fn read_comment(r: &Row) -> Result<CommentRow, RowError> {
    Ok(CommentRow {
        comment_id: r.column("comment_id")?,
        artwork_id: r.column("artwork_id")?,
        user_id: r.column("user_id")?,
        body: r.column("body")?,
        posted_at_ms: r.column("posted_at_ms")?,
    })
}

/// The table of one kind of set fact; the kind's mark names it in `set_event_positions`.
struct SetTable {
    table: &'static str,
    flag: &'static str,
    kind: SetKind,
}

const LIKES: SetTable = SetTable {
    table: "artwork_likes",
    flag: "liked",
    kind: SetKind::Like,
};
const FAVORITES: SetTable = SetTable {
    table: "artwork_favorites",
    flag: "favorited",
    kind: SetKind::Favorite,
};

pub(super) async fn apply(tx: &Transaction<'_>, batch: &Batch) -> Result<(), ProjectionError> {
    let mut stats: BTreeMap<String, StatsDelta> = BTreeMap::new();
    if !batch.likes.is_empty() {
        let plan = apply_sets(tx, &LIKES, &batch.likes).await?;
        for (a, d) in &plan.count_deltas {
            stats.entry(a.clone()).or_default().likes += d;
        }
        if !plan.bucket_deltas.is_empty() {
            let (artworks, hours, deltas) = unzip_buckets(&plan.bucket_deltas);
            tx.execute(
                include_str!("../../sql/update_like_buckets.sql"),
                &[&artworks, &hours, &deltas],
            )
            .await
            .map_err(ProjectionError::pg("update like buckets"))?;
        }
    }
    if !batch.favorites.is_empty() {
        let plan = apply_sets(tx, &FAVORITES, &batch.favorites).await?;
        for (a, d) in &plan.count_deltas {
            stats.entry(a.clone()).or_default().favorites += d;
        }
    }
    if !batch.comments.is_empty() {
        for (a, d) in apply_comments(tx, &batch.comments).await? {
            stats.entry(a).or_default().comments += d;
        }
    }
    if !batch.views.is_empty() {
        for (a, d) in apply_views(tx, &batch.views).await? {
            stats.entry(a).or_default().views += d;
        }
    }
    stats.retain(|_, d| !d.is_zero());
    if !stats.is_empty() {
        apply_stats(tx, &stats).await?;
    }
    Ok(())
}

fn unzip_buckets(buckets: &BTreeMap<(String, i64), i64>) -> (Vec<&str>, Vec<i64>, Vec<i64>) {
    let mut artworks = Vec::with_capacity(buckets.len());
    let mut hours = Vec::with_capacity(buckets.len());
    let mut deltas = Vec::with_capacity(buckets.len());
    for ((a, h), d) in buckets {
        artworks.push(a.as_str());
        hours.push(*h);
        deltas.push(*d);
    }
    (artworks, hours, deltas)
}

/// Reads the pairs' stored facts (locked) and where the batch's events were first applied
/// (one statement each, pipelined), plans, and writes the new facts and the new positions
/// (pipelined too). The positions of an artwork's events are only written under the lock of
/// its partition's offset row, so they need no lock of their own.
async fn apply_sets(
    tx: &Transaction<'_>,
    t: &SetTable,
    batch: &SetBatch,
) -> Result<SetPlan, ProjectionError> {
    let (artworks, users): (Vec<&str>, Vec<&str>) =
        batch.keys().map(|(a, u)| (a.as_str(), u.as_str())).unzip();
    let (event_artworks, event_ids): (Vec<&str>, Vec<Uuid>) =
        batch.events().map(|(a, e)| (a.as_str(), *e)).unzip();
    // One index probe per pair, in the batch's (sorted) order, whatever the planner would
    // estimate: see `LOOKUP_PLANS`.
    let states = format!(
        "SELECT s.artwork_id, s.user_id, s.is_on, s.event_id, s.occurred_at_ms
         FROM unnest($1::text[], $2::text[]) AS k(a, u)
         CROSS JOIN LATERAL (
             SELECT artwork_id, user_id, {flag} AS is_on, event_id, occurred_at_ms
             FROM {table} WHERE artwork_id = k.a AND user_id = k.u
             FOR UPDATE
         ) s",
        flag = t.flag,
        table = t.table
    );
    let (rows, positions) = futures::try_join!(
        async {
            tx.query(&states, &[&artworks, &users])
                .await
                .map_err(ProjectionError::pg("read set states"))
        },
        async {
            tx.query(
                include_str!("../../sql/read_set_event_positions.sql"),
                &[&event_artworks, &event_ids, &t.kind.mark()],
            )
            .await
            .map_err(ProjectionError::pg("read set event positions"))
        },
    )?;
    let stored: HashMap<SetKey, SetFact> = rows
        .iter()
        .map(|r| {
            let fact = SetFact {
                on: r.column("is_on")?,
                event_id: r.column("event_id")?,
                occurred_at_ms: r.column("occurred_at_ms")?,
            };
            Ok(((r.column("artwork_id")?, r.column("user_id")?), fact))
        })
        .collect::<Result<_, ProjectionError>>()?;
    let applied: HashMap<SetEvent, Position> = positions
        .iter()
        .map(|r| {
            let at = Position {
                topic: r.column("topic")?,
                partition: r.column("partition")?,
                offset: r.column("message_offset")?,
            };
            Ok(((r.column("artwork_id")?, r.column("event_id")?), at))
        })
        .collect::<Result<_, ProjectionError>>()?;
    let plan = batch.plan(&stored, &applied);
    futures::try_join!(upsert_states(tx, t, &plan), insert_positions(tx, t, &plan))?;
    Ok(plan)
}

async fn upsert_states(
    tx: &Transaction<'_>,
    t: &SetTable,
    plan: &SetPlan,
) -> Result<(), ProjectionError> {
    if plan.upserts.is_empty() {
        return Ok(());
    }
    let mut a = Vec::with_capacity(plan.upserts.len());
    let mut u = Vec::with_capacity(plan.upserts.len());
    let mut on = Vec::with_capacity(plan.upserts.len());
    let mut ids = Vec::with_capacity(plan.upserts.len());
    let mut at = Vec::with_capacity(plan.upserts.len());
    for ((artwork, user), fact) in &plan.upserts {
        a.push(artwork.as_str());
        u.push(user.as_str());
        on.push(fact.on);
        ids.push(fact.event_id);
        at.push(fact.occurred_at_ms);
    }
    tx.execute(
        &format!(
            "INSERT INTO {table} (artwork_id, user_id, {flag}, event_id, occurred_at_ms)
             SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[], $4::uuid[], $5::bigint[])
             ON CONFLICT (artwork_id, user_id) DO UPDATE
             SET {flag} = excluded.{flag}, event_id = excluded.event_id,
                 occurred_at_ms = excluded.occurred_at_ms",
            flag = t.flag,
            table = t.table
        ),
        &[&a, &u, &on, &ids, &at],
    )
    .await
    .map_err(ProjectionError::pg("upsert set states"))?;
    Ok(())
}

/// Remembers where the batch's new events were first applied. The first position stays: a
/// position is only ever written once per event, unless a second projection name replays the
/// same log into the same tables, which writes the same positions.
async fn insert_positions(
    tx: &Transaction<'_>,
    t: &SetTable,
    plan: &SetPlan,
) -> Result<(), ProjectionError> {
    if plan.positions.is_empty() {
        return Ok(());
    }
    let n = plan.positions.len();
    let (mut a, mut ids) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut topics, mut partitions, mut offsets) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((artwork, event), at) in &plan.positions {
        a.push(artwork.as_str());
        ids.push(*event);
        topics.push(at.topic.as_str());
        partitions.push(at.partition);
        offsets.push(at.offset);
    }
    tx.execute(
        include_str!("../../sql/remember_set_event_positions.sql"),
        &[&t.kind.mark(), &a, &ids, &topics, &partitions, &offsets],
    )
    .await
    .map_err(ProjectionError::pg("remember set event positions"))?;
    Ok(())
}

async fn apply_comments(
    tx: &Transaction<'_>,
    batch: &CommentBatch,
) -> Result<BTreeMap<String, i64>, ProjectionError> {
    let ids = batch.ids();
    let rows = tx
        .query(include_str!("../../sql/read_comments.sql"), &[&ids])
        .await
        .map_err(ProjectionError::pg("read comments"))?;
    let stored: HashMap<Uuid, StoredComment> = rows
        .iter()
        .map(|r| {
            Ok((
                r.column("comment_id")?,
                StoredComment {
                    artwork_id: r.column("artwork_id")?,
                    deleted: r.column("deleted")?,
                },
            ))
        })
        .collect::<Result<_, ProjectionError>>()?;
    let plan = batch.plan(&stored);
    if !plan.inserts.is_empty() {
        let mut ids = vec![];
        let mut artworks = vec![];
        let mut users = vec![];
        let mut bodies = vec![];
        let mut at = vec![];
        for c in &plan.inserts {
            ids.push(c.comment_id);
            artworks.push(c.artwork_id.as_str());
            users.push(c.user_id.as_str());
            bodies.push(c.body.as_str());
            at.push(c.posted_at_ms);
        }
        tx.execute(
            &format!(
                "INSERT INTO comments ({COMMENT_COLUMNS})
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                 ON CONFLICT (comment_id) DO NOTHING"
            ),
            &[&ids, &artworks, &users, &bodies, &at],
        )
        .await
        .map_err(ProjectionError::pg("insert comments"))?;
    }
    if !plan.deletions.is_empty() {
        let mut ids = vec![];
        let mut by = vec![];
        let mut at = vec![];
        for d in &plan.deletions {
            ids.push(d.comment_id);
            by.push(d.deleted_by.as_str());
            at.push(d.deleted_at_ms);
        }
        tx.execute(
            include_str!("../../sql/delete_comments.sql"),
            &[&ids, &by, &at],
        )
        .await
        .map_err(ProjectionError::pg("delete comments"))?;
    }
    Ok(plan.count_deltas)
}

async fn apply_views(
    tx: &Transaction<'_>,
    batch: &ViewBatch,
) -> Result<BTreeMap<String, i64>, ProjectionError> {
    let ids = batch.ids();
    let rows = tx
        .query(include_str!("../../sql/read_views.sql"), &[&ids])
        .await
        .map_err(ProjectionError::pg("read views"))?;
    let stored: HashSet<Uuid> = rows
        .iter()
        .map(|r| r.column("event_id"))
        .collect::<Result<_, _>>()?;
    let plan = batch.plan(&stored);
    if plan.inserts.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut ids = vec![];
    let mut artworks = vec![];
    let mut users = vec![];
    let mut at = vec![];
    for v in &plan.inserts {
        ids.push(v.event_id);
        artworks.push(v.artwork_id.as_str());
        users.push(v.user_id.as_deref());
        at.push(v.viewed_at_ms);
    }
    tx.execute(
        include_str!("../../sql/insert_views.sql"),
        &[&ids, &artworks, &users, &at],
    )
    .await
    .map_err(ProjectionError::pg("insert views"))?;
    let (artworks, hours, deltas) = unzip_buckets(&plan.bucket_deltas);
    tx.execute(
        include_str!("../../sql/update_view_buckets.sql"),
        &[&artworks, &hours, &deltas],
    )
    .await
    .map_err(ProjectionError::pg("update view buckets"))?;
    Ok(plan.count_deltas)
}

/// Creates missing stats rows at zero, then adds the deltas: a CHECK holds at every step, and
/// none is evaluated on a proposed row of an `INSERT ... ON CONFLICT`.
async fn apply_stats(
    tx: &Transaction<'_>,
    stats: &BTreeMap<String, StatsDelta>,
) -> Result<(), ProjectionError> {
    let mut artworks = Vec::with_capacity(stats.len());
    let (mut likes, mut favorites, mut comments, mut views) = (vec![], vec![], vec![], vec![]);
    for (a, d) in stats {
        artworks.push(a.as_str());
        likes.push(d.likes);
        favorites.push(d.favorites);
        comments.push(d.comments);
        views.push(d.views);
    }
    tx.execute(
        include_str!("../../sql/create_stats_rows.sql"),
        &[&artworks],
    )
    .await
    .map_err(ProjectionError::pg("create stats rows"))?;
    tx.execute(
        include_str!("../../sql/update_stats.sql"),
        &[&artworks, &likes, &favorites, &comments, &views],
    )
    .await
    .map_err(ProjectionError::pg("update stats"))?;
    Ok(())
}
